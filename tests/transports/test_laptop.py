"""The laptop case (issue 13), as a stdio client sees it: the first call needs no Ray (the
"default" session is served by the server itself, its kernel the server's child), Ray starts
when a second session needs an actor, and nothing outlives the server, even a SIGKILLed one."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import psutil
import pytest
from fastmcp import Client

from tests.helpers import stdio_transport

pytestmark = pytest.mark.subprocess


def _server(known: set[int]) -> psutil.Process:
    """The one server process the client just started (a new child of this process)."""
    new = [c for c in psutil.Process().children() if c.pid not in known]
    assert len(new) == 1, new
    return new[0]


def _alive(processes: list[psutil.Process]) -> list[psutil.Process]:
    alive = []
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                alive.append(process)
        except psutil.NoSuchProcess:
            pass
    return alive


async def _until_gone(processes: list[psutil.Process], timeout: float = 30) -> list[str]:
    """What is still running after ``timeout`` seconds (zombies do not count)."""
    await asyncio.to_thread(psutil.wait_procs, _alive(processes), timeout)
    return [" ".join(p.cmdline()[:3]) for p in _alive(processes)]


async def test_default_needs_no_ray_and_a_second_session_starts_it(tmp_path: Path) -> None:
    known = {c.pid for c in psutil.Process().children()}
    async with Client(stdio_transport(tmp_path)) as client:
        first = await client.call_tool("run_python_code", {"code": "x = 21\nx * 2"})
        assert first.structured_content["result"] == "42"
        server = _server(known)
        # The server and the default session's kernel (with the waiter and reaper of its PID
        # namespace): no Ray process at all.
        tree = server.children(recursive=True)
        health = (await client.call_tool("get_kernel_health", {})).structured_content
        assert len(tree) == 3 and tree[-1].pid == health["pid"], tree
        assert not any("ray" in " ".join(p.cmdline()).replace("raykernel", "") for p in tree)
        assert health["ray_actor"] is False
        assert health["actor_pid"] == server.pid
        assert "not a Ray actor" in health["served_by"]
        assert health["isolation"]["mode"] == "confined"

        # A second session needs an actor: Ray starts at its first call (it is created cold),
        # and both sessions work together.
        await client.call_tool("create_session", {"session_id": "second"})
        await client.call_tool("run_python_code", {"code": "None", "session_id": "second"})
        other = (
            await client.call_tool("get_kernel_health", {"session_id": "second"})
        ).structured_content
        assert other["ray_actor"] is True and other["node_id"]
        assert other["actor_pid"] != server.pid
        moved = await client.call_tool(
            "transfer_variable", {"from_session": "default", "to_session": "second", "name": "x"}
        )
        assert moved.structured_content["type"] == "int"
        there = await client.call_tool("run_python_code", {"code": "x", "session_id": "second"})
        assert there.structured_content["result"] == "21"
        await client.call_tool("run_python_code", {"code": "y = 7", "session_id": "second"})
        await client.call_tool(
            "transfer_variable", {"from_session": "second", "to_session": "default", "name": "y"}
        )
        back = await client.call_tool("run_python_code", {"code": "x + y"})
        assert back.structured_content["result"] == "28"
        # The default session stays where it is, and keeps its state across a kernel restart
        # with preserve_state.
        restarted = await client.call_tool("restart_kernel", {"preserve_state": True})
        assert restarted.structured_content["state_preserved"] is True
        after = await client.call_tool("run_python_code", {"code": "x + y"})
        assert after.structured_content["result"] == "28"
        tree = server.children(recursive=True)
        commands = [" ".join(p.cmdline()) for p in tree]
        assert any("raylet" in c for c in commands)
        # The lean head: no autoscaler monitor, no log monitor, no prestarted idle workers.
        for unneeded in ("autoscaler/_private/monitor.py", "log_monitor.py", "ray::IDLE"):
            assert not any(unneeded in c for c in commands), commands
    assert await _until_gone([server, *tree]) == []


async def test_a_killed_server_leaves_no_kernel_behind(tmp_path: Path) -> None:
    known = {c.pid for c in psutil.Process().children()}
    async with Client(stdio_transport(tmp_path)) as client:
        health = await client.call_tool("get_kernel_health", {})
        kernel = psutil.Process(health.structured_content["pid"])
        server = _server(known)
        # A run that never reads its socket again: only the kernel's parent-death signal
        # can end it once the server is gone.
        busy = asyncio.ensure_future(
            client.call_tool("run_python_code", {"code": "while True: pass", "timeout": 600})
        )
        await asyncio.sleep(1.0)
        os.kill(server.pid, signal.SIGKILL)
        assert await _until_gone([kernel], timeout=10) == []
        busy.cancel()


async def test_ray_at_launch_makes_default_a_ray_actor(tmp_path: Path) -> None:
    transport = stdio_transport(tmp_path, RAYKERNEL_RAY_START="at_launch")
    async with Client(transport) as client:
        reply = await client.call_tool("run_python_code", {"code": "1 + 1"})
        assert reply.structured_content["result"] == "2"
        health = (await client.call_tool("get_kernel_health", {})).structured_content
        assert health["ray_actor"] is True
        assert "served_by" not in health
