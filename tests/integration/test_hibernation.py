"""Sessions that outlive their processes, through a real client against real Ray: hibernation
(on demand and when idle) and resumption, residency (least recently used sessions make room),
checkpoints (a crash costs at most the run that crashed), rewind, and fork-and-compare."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from fastmcp import Client

from tests.helpers import call, call_error, run


@pytest.fixture
async def small(workspace: Path) -> AsyncIterator[tuple[Client, Any]]:
    """A second server on this process's Ray: three resident sessions at most, sessions idle
    for 2 s hibernate by themselves."""
    from raykernel.server.app import app_of
    from raykernel.server.build import build_server
    from raykernel.settings import Settings

    mcp, _ = build_server(
        Settings(
            workspace=workspace,
            max_resident_sessions=3,
            hibernate_after=2,
            warm_pool_size=1,
            toolsets=["all"],
            config=None,
        )
    )
    async with Client(mcp) as client:
        await call(client, "list_sessions")
        yield client, app_of(mcp)


async def test_idle_sessions_hibernate_and_the_next_call_resumes_them(
    small: tuple[Client, Any],
) -> None:
    client, app = small
    await call(client, "create_session", session_id="sleepy")
    await run(
        client,
        "import json, threading\nfrom collections import Counter\n"
        "counts = Counter('hibernate')\nlock = threading.Lock()\nlines = [1, 2, 3]",
        session_id="sleepy",
    )
    pids = (await call(client, "get_kernel_health", session_id="sleepy"))["pid"]
    for _ in range(40):  # idle for hibernate_after (2 s): it goes by itself
        await asyncio.sleep(0.25)
        if app.router.sessions["sleepy"].status == "hibernated":
            break
    listed = (await call(client, "list_sessions"))["sessions"]["sleepy"]
    assert listed["status"] == "hibernated" and listed["image_bytes"] > 0
    health = await call(client, "get_kernel_health", session_id="sleepy")
    assert health["status"] == "hibernated" and health["hibernated_at"]
    image = app.router.lifecycle.image_path(app.router.sessions["sleepy"])
    assert image.is_file() and not image.is_relative_to(app.workspace.root)
    assert not psutil.pid_exists(pids) or psutil.Process(pids).status() == "zombie"

    reply = await run(
        client, "(counts['e'], json.dumps(lines), 'lock' in globals())", session_id="sleepy"
    )
    assert reply["resumed"] is True
    assert reply["result"] == "(2, '[1, 2, 3]', False)"
    assert "lock" in reply["not_preserved"]
    history = await call(client, "get_history", session_id="sleepy")
    assert [e["execution_count"] for e in history["entries"]] == [1, 2]
    assert (await call(client, "get_kernel_health", session_id="sleepy"))["status"] == "healthy"
    assert not image.exists()  # resumed: the image has served
    await call(client, "hibernate_session", session_id="sleepy")
    assert image.is_file()
    await call(client, "delete_session", session_id="sleepy")
    assert not image.exists()  # deleting a hibernated session deletes its image


async def test_installed_packages_survive_hibernation(client: Client, scratch: str, app) -> None:
    installed = await call(client, "install_dependencies", packages=["six"], session_id=scratch)
    assert installed["success"] is True, installed
    await run(client, "import six\nversion = six.__version__", session_id=scratch)
    hibernated = await call(client, "hibernate_session", session_id=scratch)
    assert hibernated["status"] == "hibernated"
    reply = await run(client, "import six\nsix.__version__ == version", session_id=scratch)
    assert reply["resumed"] is True and reply["result"] == "True"


async def test_least_recently_used_sessions_make_room(small: tuple[Client, Any]) -> None:
    client, app = small
    ids = [f"lru{i}" for i in range(6)]
    for i, sid in enumerate(ids):
        await call(client, "create_session", session_id=sid)
        await run(client, f"x = {i} * 100", session_id=sid)
    for _round in range(2):
        for i, sid in enumerate(ids):
            assert (await run(client, "x", session_id=sid))["result"] == str(i * 100)
            resident = [r for r in app.router.sessions.values() if r.resident]
            assert len(resident) <= 3
    statuses = (await call(client, "list_sessions"))["sessions"]
    assert sum(1 for s in statuses.values() if s["status"] == "hibernated") >= 3
    for sid in ids:
        await call(client, "delete_session", session_id=sid)


async def test_a_busy_session_does_not_hibernate(client: Client, scratch: str) -> None:
    running = asyncio.ensure_future(run(client, "import time\ntime.sleep(2)", session_id=scratch))
    await asyncio.sleep(0.5)
    hibernated = await call(client, "hibernate_session", session_id=scratch)  # waits its turn
    assert hibernated["status"] == "hibernated"
    assert (await running)["success"] is True


async def test_a_crash_costs_at_most_the_run_that_crashed(client: Client) -> None:
    await call(client, "create_session", session_id="saved", checkpoint="after_run")
    for code in ("a = 1", "b = [a, 2]", "b.append(3)"):
        assert (await run(client, code, session_id="saved"))["success"] is True
    crashed = await run(
        client, "import ctypes\nb.append(4)\nctypes.string_at(0)", session_id="saved"
    )
    assert crashed["error"]["ename"] == "KernelDied"
    after = await run(client, "(a, b)", session_id="saved")
    assert after["result"] == "(1, [1, 2, 3])"
    assert after["state_preserved"] == "checkpoint"
    assert after["restored_to_execution"] == 3
    assert after["restarted"] is True
    await call(client, "delete_session", session_id="saved")


async def test_rewind_and_variants(client: Client) -> None:
    await call(client, "create_session", session_id="tuned", checkpoint="after_run")
    await run(client, "rate = 0.1\nlog = ['start']", session_id="tuned")
    await run(client, "rate = 0.5\nlog.append('second')", session_id="tuned")
    await run(client, "rate = 0.9\nlog.append('third')", session_id="tuned")
    rewound = await call(client, "rewind_session", session_id="tuned", to_execution=1)
    assert rewound["rewound_to_execution"] == 1
    assert (await run(client, "(rate, log)", session_id="tuned"))["result"] == "(0.1, ['start'])"
    history = await call(client, "get_history", session_id="tuned")
    assert any(e["status"] == "note" and "rewound" in e["stdout"] for e in history["entries"])
    missing = await call_error(client, "rewind_session", session_id="tuned", to_execution=99)
    assert missing.startswith("InvalidArgument:") and "kept" in missing

    compared = await call(
        client,
        "run_variants",
        session_id="tuned",
        variants=["score = rate * 10", "score = rate * 30", "score = 1 / 0"],
        compare=["score", "rate"],
        keep="best",
        best_by="score",
    )
    assert compared["compare"]["score"] == ["1.0", "3.0", None]
    assert compared["compare"]["rate"] == ["0.1", "0.1", "0.1"]
    assert [v["success"] for v in compared["variants"]] == [True, True, False]
    assert compared["variants"][2]["reply"]["error"]["ename"] == "ZeroDivisionError"
    kept = compared["kept"]
    assert len(kept) == 1 and kept[0] == compared["variants"][1]["session_id"]
    sessions = (await call(client, "list_sessions"))["sessions"]
    assert kept[0] in sessions
    assert not any(v["session_id"] in sessions for v in compared["variants"] if v["variant"] != 1)
    assert (await run(client, "'score' in globals()", session_id="tuned"))["result"] == "False"
    for sid in ("tuned", kept[0]):
        await call(client, "delete_session", session_id=sid)
