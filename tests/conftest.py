"""Shared fixtures. Integration tests run one real server (real Ray, in this process) for the
whole test session, reached through fastmcp's real in-memory Client; transport tests start the
server as a subprocess and speak stdio or streamable HTTP to it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastmcp import Client
from fastmcp.exceptions import ToolError

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("workspace")


@pytest.fixture(scope="session")
async def server(workspace: Path) -> AsyncIterator[Any]:
    """The MCP server, kept alive (and Ray with it) by one anchor client for the session."""
    from raykernel.server import build_server
    from raykernel.settings import Settings

    mcp, _app = build_server(
        Settings(
            workspace=workspace,
            max_sessions=40,
            interrupt_grace=2.0,
            session_memory_limit=1 << 30,
            max_session_processes=20,
            config=None,
        )
    )
    async with Client(mcp) as anchor:
        await anchor.call_tool("list_sessions", {})  # waits for Ray and "default"
        yield mcp


@pytest.fixture
async def client(server: Any) -> AsyncIterator[Client]:
    """fastmcp's default client: the stateless 2026-07-28 protocol."""
    async with Client(server) as c:
        yield c


@pytest.fixture
async def legacy_client(server: Any) -> AsyncIterator[Client]:
    """A handshake-era (2025-11-25) client: it has an MCP session."""
    async with Client(server, mode="legacy") as c:
        yield c


@pytest.fixture
async def scratch(client: Client) -> AsyncIterator[str]:
    """A fresh session for one test, deleted afterwards."""
    sid = f"scratch-{time.monotonic_ns()}"
    await call(client, "create_session", session_id=sid)
    yield sid
    await call(client, "delete_session", session_id=sid)


@pytest.fixture
def app(server: Any) -> Any:
    """The server's App (router, workspace): for assertions about state, never to act."""
    return server._lifespan_result["app"]


async def call(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    """Call a tool and return its structured reply."""
    result = await client.call_tool(tool, arguments)
    assert result.structured_content is not None, result
    return result.structured_content


async def call_error(client: Client, tool: str, **arguments: Any) -> str:
    """Call a tool that must fail; return the error text the client sees."""
    with pytest.raises(ToolError) as info:
        await client.call_tool(tool, arguments)
    return str(info.value)


async def run(client: Client, code: str, **arguments: Any) -> dict[str, Any]:
    return await call(client, "run_python_code", code=code, **arguments)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "raykernel", *args]


def subprocess_env(**extra: str | None) -> dict[str, str]:
    """This process's environment without raykernel's and Ray's address settings; ``extra``
    adds variables, and removes those given as None."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAYKERNEL_")}
    env.pop("RAY_ADDRESS", None)
    for name, value in extra.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def stdio_transport(workspace: Path, *args: str, **env: str | None) -> Any:
    """The server as a stdio subprocess for fastmcp's Client; its stderr goes to server.log."""
    from fastmcp.client.transports import StdioTransport

    return StdioTransport(
        command=sys.executable,
        args=server_command("--workspace", str(workspace), *args)[1:],
        env=subprocess_env(**env),
        keep_alive=False,
        log_file=workspace / "server.log",
    )


def text_of(result: Any) -> dict[str, Any]:
    """The JSON text block of a tool result (what a text-only client reads)."""
    return json.loads(result.content[0].text)


@contextmanager
def http_server_process(workspace: Path, **env: str) -> Iterator[tuple[str, subprocess.Popen]]:
    """``raykernel --transport http`` as a subprocess; yields (url, process) once it answers.
    On exit it is stopped with SIGTERM, as a service manager would."""
    port = free_port()
    with open(workspace / "server.log", "wb") as log:
        proc = subprocess.Popen(
            server_command(
                "--transport", "http", "--port", str(port), "--workspace", str(workspace)
            ),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=subprocess_env(**env),
        )
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1)
                    break
                except urllib.error.HTTPError:
                    break  # it answers (404 on /): it is up
                except OSError:
                    time.sleep(0.2)
            else:
                pytest.fail("HTTP server did not start: " + (workspace / "server.log").read_text())
            yield f"http://127.0.0.1:{port}/mcp", proc
        finally:
            proc.terminate()
            proc.wait(60)
