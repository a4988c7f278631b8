"""Snapshots, restore, fork and transfer_variable through a real client."""

from __future__ import annotations

import time
import zipfile

from fastmcp import Client

from tests.helpers import call, call_error, run

SETUP = (
    "import threading\n"
    "import numpy as np\n"
    "data = {'rows': [1, 2, 3]}\n"
    "arr = np.arange(10)\n"
    "square = lambda v: v * v\n"
    "lock = threading.Lock()"
)


async def test_snapshot_then_restore_after_delete(client: Client, app) -> None:
    sid = f"snap-{time.monotonic_ns()}"
    await call(client, "create_session", session_id=sid)
    await run(client, SETUP, session_id=sid)
    saved = await call(client, "snapshot_session", session_id=sid, name=f"{sid}-1")
    assert set(saved["saved"]) >= {"data", "arr", "square"}
    assert "lock" in saved["not_preserved"]
    path = app.moves.snapshot_path("local", f"{sid}-1")
    assert zipfile.is_zipfile(path)
    listed = await call(client, "list_snapshots")
    assert f"{sid}-1" in {s["snapshot"] for s in listed["snapshots"]}
    await call(client, "delete_session", session_id=sid)

    restored = await call(client, "restore_session", snapshot=f"{sid}-1", session_id=sid)
    assert restored["created"] is True
    assert restored["snapshot_of"] == sid
    assert "lock" in restored["not_preserved"]
    reply = await run(client, "(data['rows'], int(arr.sum()), square(4))", session_id=sid)
    assert reply["result"] == "([1, 2, 3], 45, 16)"
    await call(client, "delete_session", session_id=sid)


async def test_bad_snapshot_requests_are_refused(client: Client) -> None:
    assert (await call_error(client, "restore_session", snapshot="does-not-exist")).startswith(
        "InvalidArgument:"
    )
    error = await call_error(client, "snapshot_session", name="../escape")
    assert "name" in error


async def test_fork_copies_state_and_then_diverges(client: Client) -> None:
    sid = f"orig-{time.monotonic_ns()}"
    await call(client, "create_session", session_id=sid)
    await run(client, SETUP + "\ncounter = 1", session_id=sid)
    forked = await call(client, "fork_session", session_id=sid, new_session_id=f"{sid}-fork")
    assert forked["forked_from"] == sid
    assert "counter" in forked["restored"] and "lock" in forked["not_preserved"]
    await run(client, "counter += 100", session_id=f"{sid}-fork")
    assert (await run(client, "counter", session_id=sid))["result"] == "1"
    assert (await run(client, "counter", session_id=f"{sid}-fork"))["result"] == "101"
    again = await call_error(client, "fork_session", session_id=sid, new_session_id=f"{sid}-fork")
    assert again.startswith("InvalidArgument:") and "already exists" in again
    for s in (sid, f"{sid}-fork"):
        await call(client, "delete_session", session_id=s)


async def test_transfer_variable_between_sessions(client: Client) -> None:
    a, b = f"ta-{time.monotonic_ns()}", f"tb-{time.monotonic_ns()}"
    for s in (a, b):
        await call(client, "create_session", session_id=s)
    await run(client, SETUP, session_id=a)
    moved = await call(
        client, "transfer_variable", from_session=a, to_session=b, name="arr", **{"as": "copied"}
    )
    assert moved == {
        "from_session": a,
        "to_session": b,
        "name": "arr",
        "as": "copied",
        "type": "ndarray",
    }
    assert (await run(client, "int(copied.sum())", session_id=b))["result"] == "45"
    plain = await call(client, "transfer_variable", from_session=a, to_session=b, name="square")
    assert plain["as"] == "square"
    assert (await run(client, "square(3)", session_id=b))["result"] == "9"
    missing = await call_error(
        client, "transfer_variable", from_session=a, to_session=b, name="nope"
    )
    assert missing.startswith("InvalidArgument:") and "nope" in missing
    unpicklable = await call_error(
        client, "transfer_variable", from_session=a, to_session=b, name="lock"
    )
    assert unpicklable.startswith("InvalidArgument:")
    assert (await run(client, "'lock' in globals()", session_id=b))["result"] == "False"
    for s in (a, b):
        await call(client, "delete_session", session_id=s)
