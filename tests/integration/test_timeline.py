"""One timeline per session: execution counts only grow and the history keeps every run, across
a kernel's death (with its checkpoint restored), restart_kernel and hibernation; rewind reaches
any checkpointed run, before or after a crash. Real Ray, a real client."""

from __future__ import annotations

from fastmcp import Client

from tests.helpers import call, run

KILL = "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)"


async def _counts(client: Client, sid: str) -> list[tuple[int | None, str]]:
    history = await call(client, "get_history", session_id=sid)
    return [(e["execution_count"], e["status"]) for e in history["entries"]]


async def test_a_crash_does_not_restart_the_timeline(client: Client) -> None:
    sid = "timeline-crash"
    await call(client, "create_session", session_id=sid, checkpoint="after_run")
    try:
        assert (await run(client, "x = 1", session_id=sid))["execution_count"] == 1
        assert (await run(client, "x = 2", session_id=sid))["execution_count"] == 2
        crashed = await run(client, KILL, session_id=sid)
        assert crashed["error"]["ename"] == "KernelDied" and crashed["execution_count"] == 3
        after = await run(client, "x", session_id=sid)
        assert after["result"] == "2" and after["state_preserved"] == "checkpoint", after
        assert after["execution_count"] == 4
        assert await _counts(client, sid) == [(1, "ok"), (2, "ok"), (3, "crashed"), (4, "ok")]
        entries = (await call(client, "get_history", session_id=sid))["entries"]
        assert entries[2]["restored"] == {"state_preserved": "checkpoint", "to_execution": 2}
        assert entries[2]["error"].startswith("KernelDied:")
        # The checkpoints from before the crash are still reachable.
        rewound = await call(client, "rewind_session", session_id=sid, to_execution=1)
        assert rewound["rewound_to_execution"] == 1
        back = await run(client, "x", session_id=sid)
        assert back["result"] == "1" and back["execution_count"] == 5
        statuses = [status for _count, status in await _counts(client, sid)]
        assert statuses == ["ok", "ok", "crashed", "ok", "note", "ok"]
    finally:
        await call(client, "delete_session", session_id=sid)


async def test_restart_and_hibernation_keep_the_timeline(client: Client) -> None:
    sid = "timeline-moves"
    await call(client, "create_session", session_id=sid)
    try:
        await run(client, "y = 1", session_id=sid)
        await call(client, "restart_kernel", session_id=sid)
        assert (await run(client, "y = 2", session_id=sid))["execution_count"] == 2
        await call(client, "restart_kernel", session_id=sid, preserve_state=True)
        assert (await run(client, "y", session_id=sid))["execution_count"] == 3
        await call(client, "hibernate_session", session_id=sid)
        resumed = await run(client, "y + 1", session_id=sid)
        assert resumed["resumed"] is True and resumed["execution_count"] == 4
        assert [c for c, _s in await _counts(client, sid)] == [1, 2, 3, 4]
    finally:
        await call(client, "delete_session", session_id=sid)
