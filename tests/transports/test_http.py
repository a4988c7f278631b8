"""The server as a streamable-HTTP subprocess, driven by clients of both protocol eras."""

from __future__ import annotations

import asyncio
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import psutil
import pytest
from fastmcp import Client

from tests.helpers import HttpServer, http_server_process

pytestmark = pytest.mark.subprocess


@pytest.fixture(scope="module")
def http_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpServer]:
    workspace = tmp_path_factory.mktemp("http-workspace")
    with http_server_process(workspace) as server:
        proc = server.proc
        tree = psutil.Process(proc.pid).children(recursive=True)
        yield server
        proc.terminate()  # SIGTERM to our own child: graceful shutdown stops Ray too
        # uvicorn re-raises the signal once it has shut down, so the status is -SIGTERM.
        assert proc.wait(60) in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in (workspace / "server.log").read_text()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(p.is_running() for p in tree):
        time.sleep(0.2)
    assert [p for p in tree if p.is_running() and p.status() != psutil.STATUS_ZOMBIE] == []


async def test_modern_client_over_http(http_server: HttpServer) -> None:
    async with Client(http_server.url, auth=http_server.token) as client:
        await client.call_tool("create_session", {"session_id": "h1"})
        reply = await client.call_tool(
            "run_python_code", {"code": "v = 5\nv ** 2", "session_id": "h1"}
        )
        assert reply.structured_content["result"] == "25"
        again = await client.call_tool("run_python_code", {"code": "v", "session_id": "h1"})
        assert again.structured_content["result"] == "5"


async def test_legacy_clients_have_separate_active_sessions_over_http(
    http_server: HttpServer,
) -> None:
    async with (
        Client(http_server.url, auth=http_server.token, mode="legacy") as one,
        Client(http_server.url, auth=http_server.token, mode="legacy") as two,
    ):
        await one.call_tool("create_session", {"session_id": "h-legacy"})
        await one.call_tool("switch_session", {"session_id": "h-legacy"})
        mine = await one.call_tool("run_python_code", {"code": "1"})
        theirs = await two.call_tool("run_python_code", {"code": "1"})
        assert mine.structured_content["session_id"] == "h-legacy"
        assert theirs.structured_content["session_id"] == "default"


def test_bad_origin_is_refused_with_403(http_server: HttpServer) -> None:
    request = urllib.request.Request(
        http_server.url,
        data=b'{"jsonrpc":"2.0","id":1,"method":"ping"}',
        headers={
            "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream",
            "Origin": "http://evil.example",
            "Authorization": f"Bearer {http_server.token}",
        },
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=10)
    assert info.value.code == 403


async def test_caller_going_away_over_http_interrupts_its_run(http_server: HttpServer) -> None:
    async with Client(http_server.url, auth=http_server.token) as client:
        await client.call_tool("create_session", {"session_id": "h-cancel"})
        await client.call_tool("run_python_code", {"code": "kept = 1", "session_id": "h-cancel"})
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(
                client.call_tool(
                    "run_python_code",
                    {"code": "import time\ntime.sleep(10**6)", "session_id": "h-cancel"},
                ),
                1.5,
            )
    async with Client(http_server.url, auth=http_server.token) as client:
        started = time.monotonic()
        reply = await client.call_tool(
            "run_python_code", {"code": "kept", "session_id": "h-cancel"}
        )
        assert time.monotonic() - started < 5
        assert reply.structured_content["result"] == "1"
