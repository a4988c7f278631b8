"""Session lifecycle through a real MCP client against real Ray."""

from __future__ import annotations

import psutil
import pytest
from fastmcp import Client

from tests.helpers import call, call_error, run


async def test_default_session_exists_and_cannot_be_deleted(client: Client) -> None:
    listing = await call(client, "list_sessions")
    assert "default" in listing["sessions"]
    error = await call_error(client, "delete_session", session_id="default")
    assert error.startswith("ProtectedSession:")
    assert "default" in (await call(client, "list_sessions"))["sessions"]


async def test_create_is_idempotent_and_keeps_description(client: Client) -> None:
    first = await call(client, "create_session", session_id="idem", description="first")
    assert first["status"] == "created"
    assert first["description"] == "first"
    again = await call(client, "create_session", session_id="idem", description="second")
    assert again == {**first, "status": "exists", "timestamp": again["timestamp"]}
    await call(client, "delete_session", session_id="idem")


async def test_generated_id_when_none_given(client: Client) -> None:
    reply = await call(client, "create_session")
    assert reply["session_id"].startswith("session-")
    await call(client, "delete_session", session_id=reply["session_id"])


async def test_list_sessions_fields(client: Client) -> None:
    await call(client, "create_session", session_id="listed", description="for listing")
    await run(client, "1", session_id="listed")
    listing = await call(client, "list_sessions")
    assert listing["max_sessions"] == 40
    assert listing["total_sessions"] == len(listing["sessions"])
    entry = listing["sessions"]["listed"]
    assert entry["description"] == "for listing"
    assert entry["execution_count"] == 1
    assert entry["status"] == "healthy"
    assert entry["active"] is False
    assert entry["created_at"].endswith("+00:00")
    await call(client, "delete_session", session_id="listed")


async def test_delete_kills_the_process_and_is_then_unknown(client: Client, app) -> None:
    await call(client, "create_session", session_id="doomed")
    await run(
        client,
        "import subprocess, sys\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])",
        session_id="doomed",
    )
    pid = app.router.sessions["doomed"].pid
    children = psutil.Process(pid).children(recursive=True)
    assert children, "the session should have a child process"
    reply = await call(client, "delete_session", session_id="doomed")
    assert reply.pop("timestamp") > 0
    assert reply == {
        "session_id": "doomed",
        "status": "deleted",
        "was_active": False,
        "active_session": "default",
    }
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children)
    # Deleting twice is harmless: a clear error, nothing else.
    assert (await call_error(client, "delete_session", session_id="doomed")).startswith(
        "SessionNotFound:"
    )
    error = await call_error(client, "run_python_code", code="1", session_id="doomed")
    assert error.startswith("SessionNotFound:")
    assert "doomed" not in (await call(client, "list_sessions"))["sessions"]


@pytest.mark.parametrize("bad", ["", "a" * 65, "has space", "slash/x", "../up", "ü"])
async def test_invalid_ids_are_refused_and_nothing_is_created(client: Client, bad: str) -> None:
    before = (await call(client, "list_sessions"))["sessions"].keys()
    error = await call_error(client, "create_session", session_id=bad)
    assert "session" in error.lower()
    assert (await call(client, "list_sessions"))["sessions"].keys() == before


async def test_unknown_session_is_never_created_implicitly(client: Client) -> None:
    for tool, args in [
        ("run_python_code", {"code": "1"}),
        ("list_variables", {}),
        ("get_kernel_health", {}),
        ("switch_session", {}),
    ]:
        error = await call_error(client, tool, session_id="ghost", **args)
        assert error.startswith("SessionNotFound:"), (tool, error)
    assert "ghost" not in (await call(client, "list_sessions"))["sessions"]


async def test_max_sessions_is_enforced(client: Client, app) -> None:
    existing = len(app.router.sessions)
    made = []
    try:
        for i in range(40 - existing):
            made.append((await call(client, "create_session", session_id=f"fill{i}"))["session_id"])
        error = await call_error(client, "create_session", session_id="one-too-many")
        assert error.startswith("SessionLimitReached:")
        assert "one-too-many" not in app.router.sessions
    finally:
        for sid in made:
            await call(client, "delete_session", session_id=sid)


async def test_stateless_clients_share_the_server_wide_active_session(server) -> None:
    """fastmcp's default client has no MCP session: the active session is server-wide."""
    async with Client(server) as one, Client(server) as two:
        await call(one, "create_session", session_id="shared-active")
        switched = await call(one, "switch_session", session_id="shared-active")
        assert switched.pop("timestamp") > 0
        assert switched == {
            "previous_session": "default",
            "current_session": "shared-active",
            "status": "switched",
        }
        assert (await run(two, "1"))["session_id"] == "shared-active"
        # Deleting the active session makes "default" active again.
        deleted = await call(two, "delete_session", session_id="shared-active")
        assert deleted["was_active"] is True
        assert deleted["active_session"] == "default"
        assert (await run(one, "1"))["session_id"] == "default"


async def test_legacy_clients_each_have_their_own_active_session(server) -> None:
    """2025-11-25 clients have an MCP session: each one's active session is its own."""
    async with Client(server, mode="legacy") as one, Client(server, mode="legacy") as two:
        await call(one, "create_session", session_id="mine")
        await call(one, "switch_session", session_id="mine")
        assert (await run(one, "x = 'one'"))["session_id"] == "mine"
        assert (await run(two, "1"))["session_id"] == "default"
        listing = await call(one, "list_sessions")
        assert listing["active_session"] == "mine"
        assert listing["sessions"]["mine"]["active"] is True
        assert (await call(two, "list_sessions"))["active_session"] == "default"
        await call(two, "delete_session", session_id="mine")
        assert (await call(one, "list_sessions"))["active_session"] == "default"
