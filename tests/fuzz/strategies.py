"""Arguments for every tool, generated from the tool's own inputSchema (hypothesis-jsonschema),
valid ones and deliberately broken variants of them.

The schemas are narrowed where a valid call would leave this machine or stall the suite: session
ids come from a small set (never the canary's), waits and timeouts are short, and
install_dependencies gets only broken calls (a valid one would install from PyPI)."""

from __future__ import annotations

import copy
import os
from collections import Counter
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

# Calls of each kind (valid, broken) per tool; CI keeps the default, a longer run raises it.
BUDGET = int(os.environ.get("RAYKERNEL_FUZZ_EXAMPLES", "8"))
# Counts by outcome ("valid/ok", "broken/InvalidArgument"...), printed at the end of the run.
OUTCOMES: Counter[str] = Counter()
FUZZ_SESSIONS = ["fuzz-1", "fuzz-2", "ghost-fuzz", "default"]
SESSION_FIELDS = {"session_id", "from_session", "to_session", "new_session_id"}
# Valid calls of these would reach the network or block for minutes.
NO_VALID_CALLS = {"install_dependencies"}
SHORT = {"wait": 0.2, "timeout": 2.0}

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)


def narrowed(schema: dict[str, Any]) -> dict[str, Any]:
    schema = copy.deepcopy(schema)
    for name, prop in schema.get("properties", {}).items():
        if name in SESSION_FIELDS:
            options: list[Any] = list(FUZZ_SESSIONS)
            if name not in schema.get("required", []):
                options.append(None)
            schema["properties"][name] = {"enum": options}
        elif name in SHORT:
            schema["properties"][name] = {"type": "number", "minimum": 0.01, "maximum": SHORT[name]}
        elif prop.get("type") == "string" and "maxLength" not in prop and "enum" not in prop:
            prop["maxLength"] = 200
    return schema


def valid_arguments(schema: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    return from_schema(narrowed(schema))


def broken_arguments(schema: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """A valid call with one thing wrong: a required argument missing, one argument of a
    random JSON type or value, or an argument the tool does not have."""
    properties = list(schema.get("properties", {}))
    required = list(schema.get("required", []))
    base = valid_arguments(schema) if properties else st.just({})

    @st.composite
    def broken(draw: st.DrawFn) -> dict[str, Any]:
        arguments = dict(draw(base))
        choices = ["extra"]
        if required:
            choices.append("missing")
        if properties:
            choices.append("wrong")
        how = draw(st.sampled_from(choices))
        if how == "missing":
            arguments.pop(draw(st.sampled_from(required)), None)
        elif how == "wrong":
            name = draw(st.sampled_from(properties))
            value = draw(JSON_VALUES)
            if name in SHORT and isinstance(value, int | float) and value > SHORT[name]:
                value = -1  # still wrong, and never a long wait
            arguments[name] = value
        else:
            arguments[draw(st.text(min_size=1, max_size=12))] = draw(JSON_VALUES)
        return arguments

    return broken()


def examples(strategy: st.SearchStrategy[Any], count: int) -> list[Any]:
    """``count`` examples drawn deterministically (a fixed seed per strategy); the calls are
    then made by an async test, which hypothesis cannot drive itself."""
    drawn: list[Any] = []

    @settings(
        max_examples=count,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def collect(value: Any) -> None:
        drawn.append(value)

    collect()
    return drawn
