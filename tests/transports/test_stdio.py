"""The server as a stdio subprocess: protocol hygiene, both protocol eras, clean exit."""

from __future__ import annotations

import json
import time
from pathlib import Path

import psutil
import pytest
from fastmcp import Client

from tests.helpers import server_command, stdio_transport, subprocess_env
from tests.stdio_peer import StdioPeer

pytestmark = pytest.mark.subprocess


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def test_raw_legacy_session_keeps_stdout_clean_and_exits_cleanly(tmp_path: Path) -> None:
    peer = StdioPeer(
        server_command("--workspace", str(tmp_path)),
        subprocess_env(),
        str(tmp_path / "server.log"),
    )
    try:
        started = time.monotonic()
        init = peer.initialize()
        tools = peer.request("tools/list", {})
        # The handshake and tools/list do not wait for Ray to start.
        assert time.monotonic() - started < 15
        assert init["result"]["protocolVersion"] == "2025-11-25"
        names = {t["name"] for t in tools["result"]["tools"]}
        assert {"run_python_code", "create_session", "list_sessions"} <= names

        noisy = (
            "import os, sys, subprocess\n"
            "subprocess.run(['cat'])\n"  # a child reading stdin must not eat protocol bytes
            "for i in range(20000): print('noise', i)\n"
            "print('err noise', file=sys.stderr)\n"
            "os.write(1, b'raw fd write\\n')\n"
            "subprocess.run(['echo', 'child output'])\n"
            "'done'"
        )
        reply = peer.call_tool("run_python_code", {"code": noisy})
        result = reply["result"]["structuredContent"]
        assert result["success"] is True
        assert result["result"] == "'done'"
        assert result["stdout"].startswith("noise 0\n")
        assert "output truncated" in result["stdout"]

        # A garbage line gets a JSON-RPC parse error; the server keeps serving.
        peer.send_raw(b"this is not json\n")
        assert peer.receive(30) == {
            "jsonrpc": "2.0",
            "id": None,
            "error": {"code": -32700, "message": "Parse error: not valid JSON"},
        }
        peer.send_raw(b'{"jsonrpc": "2.0", "id": 99, "no_method": true}\n')
        assert peer.receive(30)["error"]["code"] == -32600
        peer.send_raw(b'{"id": 100, "method": 7}\n')
        invalid = peer.receive(30)
        assert invalid["id"] == 100 and invalid["error"]["code"] == -32600
        assert peer.call_tool("ping", {})["result"]["structuredContent"]["status"] == "ok"

        # Progress notifications go out only for a call that carries a progress token.
        ticking = "import time\nfor i in range(5):\n    print('tick', i)\n    time.sleep(0.4)"
        before = len(peer.raw_stdout)
        peer.call_tool("run_python_code", {"code": ticking})
        assert not any(b"notifications/progress" in line for line in peer.raw_stdout[before:])
        before = len(peer.raw_stdout)
        peer.call_tool("run_python_code", {"code": ticking}, progress_token="tok-1")
        progress = [
            json.loads(line)["params"]
            for line in peer.raw_stdout[before:]
            if b"notifications/progress" in line
        ]
        assert progress and all(p["progressToken"] == "tok-1" for p in progress)
        assert any("tick" in p.get("message", "") for p in progress)

        # The legacy era keeps an MCP session, so the active session sticks.
        peer.call_tool("create_session", {"session_id": "s1"})
        peer.call_tool("switch_session", {"session_id": "s1"})
        where = peer.call_tool("run_python_code", {"code": "1"})
        assert where["result"]["structuredContent"]["session_id"] == "s1"

        server_pid = peer.proc.pid
        tree = _descendants(server_pid)
        assert tree, "Ray's processes should be children of the server"
    finally:
        code = peer.close()
    # Every line on stdout was protocol: nothing from the user, Ray or children leaked.
    for line in peer.raw_stdout:
        assert line.startswith(b"{"), line[:200]
        message = json.loads(line)
        assert message["jsonrpc"] == "2.0"
    assert not any(b"noise" in line and b"jsonrpc" not in line for line in peer.raw_stdout)
    assert code == 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(p.is_running() for p in tree):
        time.sleep(0.2)
    leftover = [p for p in tree if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert leftover == [], [p.cmdline()[:3] for p in leftover]


async def test_modern_fastmcp_client_over_stdio(tmp_path: Path) -> None:
    async with Client(stdio_transport(tmp_path)) as client:
        created = await client.call_tool("create_session", {"session_id": "stdio-a"})
        assert created.structured_content["status"] == "created"
        reply = await client.call_tool(
            "run_python_code", {"code": "import sys\nsys.version_info[0]", "session_id": "stdio-a"}
        )
        assert reply.structured_content["result"] == "3"
        other = await client.call_tool("run_python_code", {"code": "print('sys' in dir())"})
        assert other.structured_content["stdout"] == "False\n"
        listing = await client.call_tool("list_sessions", {})
        assert set(listing.structured_content["sessions"]) == {"default", "stdio-a"}


def test_sigterm_shuts_down_cleanly_and_kills_session_children(tmp_path: Path) -> None:
    """Clients stop stdio servers with SIGTERM: sessions, their children and Ray must go too."""
    peer = StdioPeer(
        server_command("--workspace", str(tmp_path)), subprocess_env(), str(tmp_path / "log")
    )
    try:
        peer.initialize()
        peer.call_tool(
            "run_python_code",
            {"code": "import subprocess\nsubprocess.Popen(['sleep', '600']).pid"},
        )
        tree = _descendants(peer.proc.pid)
        # Its host PID (the session's own PID namespace numbers it otherwise).
        (child,) = [p.pid for p in tree if p.cmdline() == ["sleep", "600"]]
        peer.proc.terminate()
        peer.proc.wait(60)
    finally:
        if peer.proc.poll() is None:
            peer.proc.kill()
    deadline = time.monotonic() + 30
    survivors = [child]
    while time.monotonic() < deadline and survivors:
        survivors = [
            p.pid
            for p in [*tree, psutil.Process(child) if psutil.pid_exists(child) else None]
            if p is not None and p.is_running() and p.status() != psutil.STATUS_ZOMBIE
        ]
        time.sleep(0.2)
    assert survivors == []
