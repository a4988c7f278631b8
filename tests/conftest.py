"""Shared fixtures. Integration tests run one real server (real Ray, in this process) for the
whole test session, reached through fastmcp's real in-memory Client; transport tests start the
server as a subprocess and speak stdio or streamable HTTP to it."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import hypothesis.strategies  # noqa: F401 - see below
import pytest
from fastmcp import Client

from tests.helpers import call

# hypothesis.strategies is imported (and rewritten by pytest) at the start: imported late, at
# the end of a run in which a stdio transport was collected after its event loop closed, its
# ast.parse met CPython 3.11.7's "AST constructor recursion depth mismatch" SystemError and the
# run exited 1 with every test passed.


@pytest.fixture(scope="session")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("workspace")


@pytest.fixture(scope="session")
async def server(workspace: Path) -> AsyncIterator[Any]:
    """The MCP server, kept alive (and Ray with it) by one anchor client for the session."""
    from raykernel.server.build import build_server
    from raykernel.settings import Settings

    mcp, _app = build_server(
        Settings(
            workspace=workspace,
            max_sessions=40,
            interrupt_grace=2.0,
            session_memory_limit=1 << 30,
            max_session_processes=20,
            # The suite exercises every tool; what a default server offers is tested apart
            # (tests/integration/test_toolsets.py).
            toolsets=["all"],
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
    from raykernel.server.app import app_of

    return app_of(server)
