"""Datasets (issue 26 part 3): DuckDB views over a million generated rows in the workspace (a
CSV glob and a Parquet file), described, grouped and written to Parquet through the tools, and
the same views from the session's code; SQL reaches nothing outside the workspace, loads no
extension and cannot unlock its configuration; without DuckDB the tools say how to get it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pytest
from fastmcp import Client

from tests.helpers import call, call_error, run, stdio_transport

ROWS = 1_000_000
KEYS = 10


@pytest.fixture(scope="module")
def sales(workspace: Path) -> dict[str, Any]:
    """A million rows (id, region, amount) as two CSV files and one Parquet file, and what a
    GROUP BY over them must give, computed with numpy."""
    rng = np.random.default_rng(26)
    region = rng.integers(0, KEYS, ROWS)
    amount = rng.integers(0, 1000, ROWS)
    frame = pd.DataFrame(
        {"id": np.arange(ROWS), "region": [f"r{k}" for k in region], "amount": amount}
    )
    folder = workspace / "sales"
    (folder / "csv").mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    half = ROWS // 2
    for part, rows in enumerate((frame.iloc[:half], frame.iloc[half:])):
        con.from_df(rows).write_csv(str(folder / "csv" / f"part-{part}.csv"))
    con.from_df(frame).write_parquet(str(folder / "sales.parquet"))
    return {
        "first": frame.head(5).to_numpy().tolist(),
        "count": np.bincount(region, minlength=KEYS).tolist(),
        "total": np.bincount(region, weights=amount, minlength=KEYS).astype(np.int64).tolist(),
    }


def by_region(rows: list[list[Any]]) -> dict[str, tuple[int, int]]:
    return {row[0]: (row[1], row[2]) for row in rows}


GROUP_BY = (
    "SELECT region, count(*) AS n, sum(amount) AS total FROM {table} "
    "GROUP BY region ORDER BY region"
)


async def test_a_million_rows_through_the_tools_and_from_session_code(
    client: Client, scratch: str, sales: dict[str, Any], workspace: Path
) -> None:
    expected = {f"r{k}": (sales["count"][k], sales["total"][k]) for k in range(KEYS)}
    csv = await call(
        client,
        "register_dataset",
        name="sales_csv",
        paths=["sales/csv/part-*.csv"],
        session_id=scratch,
    )
    assert csv["format"] == "csv" and csv["files"] == 2
    parquet = await call(
        client,
        "register_dataset",
        name="sales_parquet",
        paths=["sales/sales.parquet"],
        session_id=scratch,
    )
    assert parquet["files"] == 1
    listed = await call(client, "list_datasets", session_id=scratch)
    assert [d["name"] for d in listed["datasets"]] == ["sales_csv", "sales_parquet"]

    for name in ("sales_csv", "sales_parquet"):
        described = await call(client, "describe_dataset", name=name, session_id=scratch)
        assert [c["name"] for c in described["columns"]] == ["id", "region", "amount"]
        assert described["columns"][1]["type"] == "VARCHAR"
        assert described["columns"][2]["type"] == "BIGINT"
        assert described["row_count"] == ROWS
        assert described["first_rows"] == sales["first"]

        grouped = await call(
            client, "query_datasets", sql=GROUP_BY.format(table=name), session_id=scratch
        )
        assert [c["name"] for c in grouped["columns"]] == ["region", "n", "total"]
        assert by_region(grouped["rows"]) == expected and grouped["more"] is False

    # The whole result to outputs/, a preview of max_rows in the reply.
    written = await call(
        client,
        "query_datasets",
        sql="SELECT * FROM sales_parquet WHERE amount < 10",
        max_rows=3,
        output="small_sales",
        session_id=scratch,
    )
    small = pd.read_parquet(workspace / "outputs" / "small_sales.parquet")
    wanted = len(small)
    assert written["output"] == "outputs/small_sales.parquet"
    assert written["row_count"] == wanted and 0 < wanted < ROWS
    assert len(written["rows"]) == 3 and written["more"] is True
    assert (small["amount"] < 10).all()
    source = pd.read_parquet(workspace / "sales" / "sales.parquet")
    assert wanted == int((source["amount"] < 10).sum())
    grouped_file = await call(
        client,
        "query_datasets",
        sql=GROUP_BY.format(table="sales_csv"),
        max_rows=0,
        output="by_region",
        session_id=scratch,
    )
    assert grouped_file["rows"] == [] and grouped_file["row_count"] == KEYS
    frame = pd.read_parquet(workspace / "outputs" / "by_region.parquet")
    assert dict(
        zip(frame["region"], zip(frame["n"], frame["total"], strict=True), strict=True)
    ) == {k: (n, float(t)) for k, (n, t) in expected.items()}

    # The session's code sees the same views through its builtin `datasets`.
    ran = await run(
        client,
        "frame = datasets.sql('SELECT * FROM sales_csv').df()\n"
        "sums = frame.groupby('region')['amount'].sum()\n"
        "[len(frame), {k: int(v) for k, v in sums.items()}]",
        session_id=scratch,
    )
    assert ran["success"] is True, ran["error"]
    assert ran["result"] == repr([ROWS, {f"r{k}": sales["total"][k] for k in range(KEYS)}])
    # What the session's SQL makes is a dataset for the tools too, and drops like one.
    made = await run(
        client,
        "datasets.sql('CREATE VIEW big AS SELECT * FROM sales_parquet WHERE amount > 990')",
        session_id=scratch,
    )
    assert made["success"] is True, made["error"]
    big = await call(client, "describe_dataset", name="big", session_id=scratch)
    assert big["row_count"] == int((source["amount"] > 990).sum())
    assert (await call(client, "drop_dataset", name="big", session_id=scratch))["kind"] == "view"
    assert (await call(client, "drop_dataset", name="sales_csv", session_id=scratch)) == {
        "dropped": "sales_csv",
        "kind": "view",
    }
    error = await call_error(client, "describe_dataset", name="sales_csv", session_id=scratch)
    assert error.startswith("NotFound: no dataset named 'sales_csv'")


async def test_sql_stays_in_the_workspace_and_cannot_unlock(
    client: Client, scratch: str, workspace: Path
) -> None:
    (workspace / "sandbox").mkdir(exist_ok=True)
    (workspace / "sandbox" / "ok.csv").write_text("a\n1\n")
    link = workspace / "sandbox" / "passwd.csv"
    if not link.is_symlink():
        link.symlink_to("/etc/passwd")
    await call(client, "register_dataset", name="ok", paths=["sandbox/ok.csv"], session_id=scratch)

    refused = {
        "SELECT * FROM read_csv('/etc/passwd')": "Permission Error",
        f"SELECT * FROM read_csv('{workspace}/../../../etc/passwd')": "Permission Error",
        "SELECT * FROM read_text('/etc/hostname')": "Permission Error",
        # DuckDB 1.0 let sniff_csv past enable_external_access (fixed in 1.1, the lower bound).
        "SELECT * FROM sniff_csv('/etc/passwd')": "Permission Error",
        "COPY (SELECT * FROM ok) TO '/tmp/raykernel-datasets-escape.csv'": "Permission Error",
        "INSTALL httpfs": "Permission Error",
        "LOAD httpfs": "Permission Error",
        "SELECT * FROM read_csv('https://example.com/x.csv')": "Permission Error",
        "SET enable_external_access = true": "the configuration has been locked",
        "SET allowed_directories = ['/']": "the configuration has been locked",
        "SET autoinstall_known_extensions = true": "the configuration has been locked",
        "RESET lock_configuration": "the configuration has been locked",
    }
    for sql, why in refused.items():
        error = await call_error(client, "query_datasets", sql=sql, session_id=scratch)
        assert error.startswith("InvalidArgument: DuckDB: ") and why in error, (sql, error)
    # The lock holds for the session's code on the same connection.
    unlocked = await run(
        client, "datasets.sql('SET enable_external_access = true')", session_id=scratch
    )
    assert unlocked["success"] is False and "locked" in unlocked["error"]["evalue"]
    # ...and the connection still answers afterwards.
    ok = await call(client, "query_datasets", sql="SELECT sum(a) AS s FROM ok", session_id=scratch)
    assert ok["rows"] == [[1]]

    for paths, kind in [
        (["../outside.csv"], "PathOutsideWorkspace"),
        (["/etc/passwd"], "PathOutsideWorkspace"),
        (["sandbox/passwd.csv"], "PathOutsideWorkspace"),  # a symlink out
        (["sandbox/*.parquet"], "FileNotFound"),
        (["sandbox"], "InvalidArgument"),  # a folder
        (["sandbox/ok.csv", "sales/sales.parquet"], "InvalidArgument"),  # two formats
    ]:
        error = await call_error(
            client, "register_dataset", name="bad", paths=paths, session_id=scratch
        )
        assert error.startswith(f"{kind}: "), (paths, error)
    for name in ("1st", "a-b", "x" * 64, 'a"b'):
        error = await call_error(client, "register_dataset", name=name, paths=["sandbox/ok.csv"])
        assert error.startswith("InvalidArgument: name: "), (name, error)
    error = await call_error(client, "query_datasets", sql="SELECT 1", output="../escape")
    assert error.startswith("InvalidArgument: output: "), error


async def test_without_duckdb_the_tools_say_how_to_install_it(client: Client, scratch: str) -> None:
    # The kernel's import of duckdb fails as it would where it is not installed.
    await run(client, "import sys\nsys.modules['duckdb'] = None", session_id=scratch)
    error = await call_error(client, "list_datasets", session_id=scratch)
    assert error.startswith("MissingDependency: ") and "pip install raykernel[datasets]" in error


@pytest.mark.subprocess
async def test_over_stdio_the_toolset_is_off_by_default_and_turned_on_by_name(
    tmp_path: Path,
) -> None:
    (tmp_path / "t.csv").write_text("k,v\na,1\nb,2\na,3\n")
    async with Client(stdio_transport(tmp_path, RAYKERNEL_TOOLSETS=None)) as client:
        names = {tool.name for tool in await client.list_tools()}
        assert "query_datasets" not in names and "enable_toolsets" in names
        await call(client, "enable_toolsets", toolsets=["datasets"])
        names = {tool.name for tool in await client.list_tools()}
        assert {"register_dataset", "query_datasets", "drop_dataset"} <= names
        await call(client, "register_dataset", name="t", paths=["t.csv"])
        reply = await call(
            client, "query_datasets", sql="SELECT k, sum(v) AS s FROM t GROUP BY k ORDER BY k"
        )
        assert reply["rows"] == [["a", 4], ["b", 2]]
