"""``app.sessions.call_function``, the plugin API's road into a session: a function shipped by
value runs in the session's kernel (real Ray, real kernel process) beside the user's variables,
and only its JSON value comes back. It leaves no trace in the history, fails with typed errors,
is interrupted past its timeout, and sees only the caller's own sessions."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from typing import Any

import pytest
from fastmcp import Client

from raykernel.errors import (
    FunctionFailed,
    InvalidArgument,
    RaykernelError,
    SessionBusy,
    SessionNotFound,
)
from tests.helpers import call, run


def total_of(namespace: Mapping[str, Any], name: str, scale: int = 1) -> dict[str, Any]:
    return {"total": sum(namespace[name]) * scale, "pid": os.getpid()}


async def test_a_function_reads_the_session_and_leaves_no_trace(
    client: Client, app: Any, scratch: str
) -> None:
    await run(client, "values = [1, 2, 3]", session_id=scratch)
    value = await app.sessions.call_function(scratch, total_of, "values", scale=10)
    assert value == {"total": 60, "pid": 2}  # ran in the session's kernel (PID 2 of its own)
    # A lambda travels too (by value), and NaN becomes None (JSON has none).
    assert await app.sessions.call_function(scratch, lambda ns: [len(ns["values"]), 1e999]) == [
        3,
        None,
    ]
    history = await call(client, "get_history", session_id=scratch)
    assert history["total"] == 1
    assert (await run(client, "values", session_id=scratch))["execution_count"] == 2


class ColumnMissing(RaykernelError):
    """A plugin's own refusal."""


def _missing_column(ns: Mapping[str, Any]) -> None:
    raise ColumnMissing("no column 'y'")


async def test_failures_are_typed_and_the_session_lives_on(
    client: Client, app: Any, scratch: str
) -> None:
    await run(client, "x = 1", session_id=scratch)

    def boom(ns: Mapping[str, Any]) -> None:
        raise ValueError("no good")

    with pytest.raises(FunctionFailed) as failed:
        await app.sessions.call_function(scratch, boom)
    assert failed.value.ename == "ValueError" and "no good" in failed.value.traceback
    with pytest.raises(FunctionFailed, match="ResultNotJSON"):
        await app.sessions.call_function(scratch, lambda ns: object())
    with pytest.raises(FunctionFailed, match="ResultTooLarge"):
        await app.sessions.call_function(scratch, lambda ns: "x" * 5000, max_result_bytes=1000)

    # A refusal on purpose comes back as itself, with its fields.
    def refuse(ns: Mapping[str, Any]) -> None:
        from raykernel.errors import FunctionFailed as Own
        from raykernel.errors import InvalidArgument

        if "x" in ns:
            raise InvalidArgument("x is taken")
        raise Own("Custom", "its value", "its traceback")

    with pytest.raises(InvalidArgument, match="x is taken"):
        await app.sessions.call_function(scratch, refuse)
    # A plugin's own kind too (this module's, shipped by value with the function).
    with pytest.raises(ColumnMissing, match="no column 'y'"):
        await app.sessions.call_function(scratch, _missing_column)
    # The namespace is read-only.
    with pytest.raises(FunctionFailed, match="AttributeError"):
        await app.sessions.call_function(scratch, lambda ns: ns.__setitem__("x", 2))
    assert (await run(client, "x", session_id=scratch))["result"] == "1"


async def test_a_function_past_its_timeout_is_interrupted_not_the_session(
    client: Client, app: Any, scratch: str
) -> None:
    await run(client, "kept = 'yes'", session_id=scratch)

    def spin(ns: Mapping[str, Any]) -> None:
        while True:
            pass

    with pytest.raises(FunctionFailed) as failed:
        await app.sessions.call_function(scratch, spin, timeout=1)
    assert failed.value.ename == "TimeoutError"
    assert (await run(client, "kept", session_id=scratch))["result"] == "'yes'"


async def test_busy_sessions_queue_unless_the_caller_will_not_wait(
    client: Client, app: Any, scratch: str
) -> None:
    running = asyncio.ensure_future(
        run(client, "import time\ntime.sleep(1.5)\nready = 1", session_id=scratch)
    )
    await asyncio.sleep(0.5)
    with pytest.raises(SessionBusy):
        await app.sessions.call_function(scratch, lambda ns: 1, wait=False)
    # Queued behind the run, it sees what the run made.
    assert await app.sessions.call_function(scratch, lambda ns: ns["ready"]) == 1
    assert (await running)["success"] is True


async def test_only_the_callers_sessions_and_inside_the_confinement(app: Any, scratch: str) -> None:
    with pytest.raises(SessionNotFound):
        await app.sessions.call_function("token:bob/theirs", lambda ns: 1)

    def look_around(ns: Mapping[str, Any]) -> dict[str, Any]:
        import os

        return {
            "ray_env": [k for k in os.environ if k.startswith("RAY")],
            "home": os.environ["HOME"],
        }

    seen = await app.sessions.call_function(scratch, look_around)
    assert seen["ray_env"] == []
    assert seen["home"] != os.environ["HOME"]  # the kernel's private home (confined)
