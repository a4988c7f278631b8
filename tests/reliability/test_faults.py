"""Runaway, crashing and resource-hungry code: the server and other sessions keep working,
and every reply says exactly what happened to the session's state."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import psutil
import pytest
from fastmcp import Client

from tests.helpers import call, call_error, run


@pytest.fixture
def sid(scratch: str) -> str:
    return scratch


def _alive(pids: list[int]) -> list[int]:
    alive = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
        except psutil.NoSuchProcess:
            pass
    return alive


async def test_signal_ignoring_code_is_killed_restarted_and_files_survive(
    client: Client, sid: str, workspace: Path
) -> None:
    await run(client, f"open('outputs/{sid}.keep', 'w').write('kept')\nvalue = 1", session_id=sid)
    started = time.monotonic()
    reply = await run(
        client,
        "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        "while True:\n    time.sleep(1)",
        session_id=sid,
        timeout=2,
    )
    assert time.monotonic() - started < 15
    assert reply["error"]["ename"] == "TimeoutError"
    assert reply["interrupted"] is True
    assert reply["restarted"] is True
    assert reply["state_preserved"] is False
    assert (workspace / "outputs" / f"{sid}.keep").read_text() == "kept"
    assert (await run(client, "'value' in globals()", session_id=sid))["result"] == "False"


async def test_endless_printing_is_capped_and_front_end_memory_stays_flat(
    client: Client, sid: str
) -> None:
    front_end = psutil.Process()
    await run(client, "print('warm')", session_id=sid)
    before = front_end.memory_info().rss
    for _ in range(3):
        reply = await run(client, "while True:\n    print('x' * 1000)", session_id=sid, timeout=2)
        assert reply["interrupted"] is True
        assert len(reply["stdout"]) <= 100_200
        assert "output truncated" in reply["stdout"]
        huge = await run(client, "'y' * 10**8", session_id=sid)
        assert len(huge["result"]) <= 100_200 and "truncated" in huge["result"]
    assert front_end.memory_info().rss - before < 100 * 2**20


@pytest.mark.parametrize("code", ["import sys\nsys.exit(2)", "raise SystemExit('stop')"])
async def test_system_exit_is_reported_and_state_kept(client: Client, sid: str, code: str) -> None:
    await run(client, "kept = 'yes'", session_id=sid)
    reply = await run(client, code, session_id=sid)
    assert reply["success"] is False
    assert reply["error"]["ename"] == "SystemExit"
    assert reply["restarted"] is False
    assert (await run(client, "kept", session_id=sid))["result"] == "'yes'"


async def test_segfault_is_reported_with_its_signal_and_restarts_on_next_call(
    client: Client, sid: str
) -> None:
    reply = await run(client, "import ctypes\nctypes.string_at(0)", session_id=sid)
    assert reply["error"]["ename"] == "KernelDied"
    assert "SIGSEGV" in reply["error"]["evalue"]
    assert reply["state_preserved"] is False
    health = await call(client, "get_kernel_health", session_id=sid)
    assert health["status"] == "dead"
    assert "SIGSEGV" in health["death_reason"]
    again = await run(client, "1 + 1", session_id=sid)
    assert again["result"] == "2" and again["restarted"] is True
    assert (await call(client, "get_kernel_health", session_id=sid))["restart_count"] == 1


async def test_os_exit_is_reported_with_its_status(client: Client, sid: str) -> None:
    reply = await run(client, "import os\nos._exit(7)", session_id=sid)
    assert reply["error"]["ename"] == "KernelDied"
    assert "os._exit(7)" in reply["error"]["evalue"]


async def test_five_crashes_in_a_row_keep_the_session_dead_until_restarted(
    client: Client, sid: str
) -> None:
    for attempt in range(5):
        reply = await run(client, "import os\nos._exit(1)", session_id=sid)
        assert reply["error"]["ename"] == "KernelDied", attempt
    error = await call_error(client, "run_python_code", code="1", session_id=sid)
    assert error.startswith("SessionUnavailable:") and "5 times in a row" in error
    assert (await call(client, "get_kernel_health", session_id=sid))["status"] == "dead"
    await call(client, "restart_kernel", session_id=sid)
    assert (await run(client, "40 + 2", session_id=sid))["result"] == "42"


async def test_memory_limit_gives_memory_error_and_spares_other_sessions(
    client: Client, sid: str
) -> None:
    await run(client, "kept = 'state'", session_id=sid)
    reply = await run(client, "hog = bytearray(3 * 2**30)", session_id=sid)
    assert reply["success"] is False
    assert reply["error"]["ename"] == "MemoryError"
    assert reply["restarted"] is False
    numpy = await run(client, "import numpy as np\nnp.ones((50_000, 10_000))", session_id=sid)
    assert (
        numpy["error"]["ename"] == "_ArrayMemoryError" or "MemoryError" in numpy["error"]["ename"]
    )
    assert (await run(client, "kept", session_id=sid))["result"] == "'state'"
    assert (await run(client, "1", session_id="default"))["success"] is True


async def test_runaway_children_are_bounded_and_gone_after_delete(client: Client, app) -> None:
    sid = f"spawner-{time.monotonic_ns()}"
    await call(client, "create_session", session_id=sid)
    await run(client, "None", session_id=sid)  # its kernel starts at its first call
    # The kernel leads its own process group: everything user code starts stays in it.
    pgid = app.router.sessions[sid].kernel_pid
    assert os.getpgid(pgid) == pgid
    reply = await run(
        client,
        "import subprocess, time\n"
        "procs = []\n"
        "for _ in range(60):\n"
        "    procs.append(subprocess.Popen(['sleep', '600']))\n"
        "    time.sleep(0.02)\n"
        "time.sleep(1)",
        session_id=sid,
    )
    assert "notice" in reply and "limit of 20 processes" in reply["notice"]
    session = psutil.Process(app.router.sessions[sid].kernel_pid)
    assert len(session.children(recursive=True)) <= 20
    # A detached orphan (double fork through a shell) and a fork tree stay in the group.
    await run(
        client,
        "import os, subprocess, sys\n"
        "os.system('sleep 600 &')\n"
        "subprocess.Popen([sys.executable, '-c', "
        "'import os, time\\nfor _ in range(3): os.fork()\\ntime.sleep(600)'])",
        session_id=sid,
    )
    await asyncio.sleep(0.5)
    group = [p.pid for p in psutil.process_iter() if _pgid(p.pid) == pgid]
    assert len(group) >= 9  # the session, the orphan, 8 forked sleepers
    await call(client, "delete_session", session_id=sid)
    assert _alive(group) == []


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None
