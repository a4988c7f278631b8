"""Memory pressure: the session that uses the memory is the one stopped, and nobody else loses
anything. Real Ray, a real server and client; the node's budget is made small
(``session_memory_budget``) so the test is cheap on two cores: two hogs and a bystander."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import ray
from fastmcp import Client

from tests.helpers import call, run

MIB = 1 << 20

# Holds 300 MiB in the session (a global: its state is what an interrupt keeps).
HOG_FIRST = (
    "import time\nheld = [bytearray(10 << 20) for _ in range(30)]\n"
    "for _ in range(600):\n    time.sleep(0.05)"
)
# Grows 10 MiB at a time, up to 600 MiB.
HOG_GROWING = (
    "import time\ngrown = []\n"
    "for _ in range(60):\n    grown.append(bytearray(10 << 20))\n    time.sleep(0.1)\n"
    "time.sleep(30)"
)


@pytest.fixture
async def budgeted(workspace: Path) -> Any:
    from raykernel.server.build import build_server
    from raykernel.settings import Settings

    mcp, app = build_server(
        Settings(
            workspace=workspace,
            memory_high_water=0.8,
            session_memory_budget=600 * MIB,  # the guard acts past 480 MiB for all sessions
            interrupt_grace=2.0,
            warm_pool_size=0,
            config=None,
        )
    )
    async with Client(mcp) as client:
        yield client, app


async def test_the_biggest_running_session_is_stopped_and_the_bystander_keeps_its_state(
    budgeted: Any,
) -> None:
    client, _app = budgeted
    for sid in ("bystander", "hog1", "hog2"):
        await call(client, "create_session", session_id=sid)
    await run(client, "secret = 'kept-77'", session_id="bystander")
    first = asyncio.ensure_future(run(client, HOG_FIRST, session_id="hog1", timeout=120))
    await asyncio.sleep(3)  # hog1 holds its 300 MiB
    second = asyncio.ensure_future(run(client, HOG_GROWING, session_id="hog2", timeout=120))
    one, two = await asyncio.wait_for(asyncio.gather(first, second), 90)

    # Each hog's run was stopped, biggest first, with a typed reply saying why; its variables
    # stay (an interrupt keeps the state), its kernel was never replaced.
    for reply, name in ((one, "hog1"), (two, "hog2")):
        assert reply["success"] is False, reply
        assert reply["error"]["ename"] == "MemoryError", reply["error"]
        assert "used the most" in reply["error"]["evalue"], reply["error"]
        assert reply["interrupted"] is True and reply["restarted"] is False, name
    assert "budget of 600 MiB" in one["error"]["evalue"]
    assert (await run(client, "len(held)", session_id="hog1"))["result"] == "30"
    kept = await run(client, "len(grown) < 60", session_id="hog2")
    assert kept["result"] == "True"  # stopped before it had all it wanted

    # The bystander lost nothing, and every session answers with a true status.
    assert (await run(client, "secret", session_id="bystander"))["result"] == "'kept-77'"
    listed = (await call(client, "list_sessions"))["sessions"]
    for sid in ("bystander", "hog1", "hog2"):
        assert listed[sid]["status"] == "healthy", listed[sid]
    # The hogs let go of their memory: the node is under its mark again, nothing is stopped.
    await run(client, "del held", session_id="hog1")
    await run(client, "del grown", session_id="hog2")
    assert (await run(client, "x = bytearray(50 << 20); len(x)", session_id="hog2"))["success"]
    for sid in ("bystander", "hog1", "hog2"):
        await call(client, "delete_session", session_id=sid)


async def test_an_actor_killed_from_outside_is_recorded_dead_and_revived_saying_so(
    client: Client, app: Any
) -> None:
    await call(client, "create_session", session_id="doomed")
    await run(client, "value = 41", session_id="doomed")
    record = app.router.sessions["doomed"]
    ray.kill(ray.get_actor(record.actor_name, namespace=app.settings.namespace), no_restart=True)
    await asyncio.sleep(1)
    # The listing asks each live session: it does not call a dead one healthy.
    listed = (await call(client, "list_sessions"))["sessions"]
    assert listed["doomed"]["status"] == "dead", listed["doomed"]
    health = await call(client, "get_kernel_health", session_id="doomed")
    assert health["status"] == "dead" and health["death_reason"], health
    revived = await run(client, "'value' in globals()", session_id="doomed")
    assert revived["result"] == "False"
    assert revived["restarted"] is True and revived["state_preserved"] is False, revived
    assert "notice" in revived and "lost" in revived["notice"], revived
    assert (await call(client, "list_sessions"))["sessions"]["doomed"]["status"] == "healthy"
    await call(client, "delete_session", session_id="doomed")
