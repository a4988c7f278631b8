"""A plugin function's value comes back as JSON: what data libraries return (NumPy scalars and
arrays, pandas timestamps and missing values, dates, decimals, sets) is converted, not refused;
what is really not JSON is still ResultNotJSON."""

from __future__ import annotations

import datetime
import decimal
import json

import cloudpickle
import numpy as np
import pandas as pd

from raykernel.kernel.functions import call


def _value(fn, **namespace):
    reply = call(cloudpickle.dumps((fn, (), {})), namespace, 1_000_000)
    return reply


def test_data_libraries_values_are_converted() -> None:
    def summary(ns):
        df = ns["df"]
        return {
            "rows": df.shape[0],  # an int
            "total": df["x"].sum(),  # numpy.int64
            "mean": df["x"].mean(),  # numpy.float64
            "first": df["when"].iloc[0],  # pandas.Timestamp
            "missing": df["when"].iloc[-1],  # NaT
            "counts": df["x"].value_counts().to_dict(),  # numpy int keys
            "array": np.array([1.5, np.nan]),
            "flag": np.bool_(True),
            "day": datetime.date(2026, 12, 2),
            "price": decimal.Decimal("1.25"),
            "tags": {"b", "a"},
            "na": pd.NA,
        }

    df = pd.DataFrame({"x": [1, 2, 2], "when": [pd.Timestamp("2026-01-01"), None, pd.NaT]})
    reply = _value(summary, df=df)
    assert reply["success"], reply["error"]
    assert json.loads(reply["value_json"]) == {
        "rows": 3,
        "total": 5,
        "mean": 5 / 3,
        "first": "2026-01-01T00:00:00",
        "missing": None,
        "counts": {"2": 2, "1": 1},
        "array": [1.5, None],
        "flag": True,
        "day": "2026-12-02",
        "price": 1.25,
        "tags": ["a", "b"],
        "na": None,
    }


def test_what_is_not_json_is_still_refused() -> None:
    reply = _value(lambda ns: {"f": open})
    assert not reply["success"] and reply["error"]["ename"] == "ResultNotJSON"
