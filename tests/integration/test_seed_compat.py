"""Clients written for python-mcp-server 0.6.2 (the seed whose session API raykernel
implements) keep working: every key they read is in raykernel's replies, beside its own. The
table was made by calling each tool on both servers (bench/.seed-venv) and comparing keys;
code_completion and inspect_object follow Jupyter's replies, which the seed passed through."""

from __future__ import annotations

from typing import Any

from fastmcp import Client

from tests.helpers import call

SEED_KEYS: list[tuple[str, dict[str, Any], str]] = [
    (
        "run_python_code",
        {"code": "x = 1\nx + 1"},
        "stdout stderr results outputs new_files execution_time",
    ),
    (
        "code_completion",
        {"code": "pri", "cursor_pos": 3},
        "matches cursor_start cursor_end metadata status",
    ),
    ("inspect_object", {"code": "print", "cursor_pos": 5}, "status found data metadata"),
    ("list_files", {}, "root files"),
    ("ping", {}, "ok"),
    ("write_file", {"path": "outputs/seed.txt", "content": "hi"}, "path"),
    ("read_file", {"path": "outputs/seed.txt"}, "text"),
    ("save_script", {"name": "seed_s1", "content": "print(1)"}, "script"),
    ("run_script", {"name": "seed_s1"}, "stdout stderr returncode new_files"),
    ("delete_file", {"path": "outputs/seed.txt"}, "success"),
    ("list_variables", {}, "variables"),
    ("get_workspace_info", {}, "workspace scripts outputs uploads"),
    (
        "get_kernel_health",
        {},
        "status session_id uptime execution_count last_execution_time average_execution_time "
        "kernel_process metadata system",
    ),
    ("check_kernel_responsiveness", {}, "responsive response_time timeout"),
    ("create_session", {"session_id": "seed-s2"}, "session_id status metadata timestamp"),
    (
        "switch_session",
        {"session_id": "seed-s2"},
        "previous_session current_session status timestamp",
    ),
    ("list_sessions", {}, "sessions active_session total_sessions timestamp"),
    (
        "switch_session",
        {"session_id": "default"},
        "previous_session current_session status timestamp",
    ),
    (
        "restart_kernel",
        {"session_id": "seed-s2"},
        "restarted session_id preserve_state preserved_vars restored_vars timestamp",
    ),
    ("delete_session", {"session_id": "seed-s2"}, "session_id status was_active timestamp"),
]


async def test_every_key_a_seed_client_reads_is_there(legacy_client: Client) -> None:
    for tool, arguments, names in SEED_KEYS:
        reply = await call(legacy_client, tool, **arguments)
        keys = set(names.split())
        assert keys <= set(reply), (tool, sorted(keys - set(reply)))
    restarted = await call(legacy_client, "restart_kernel", session_id="default")
    assert restarted["restarted"] is True  # the key the seed's own tests check
    ran = await call(legacy_client, "run_python_code", code="40 + 2")
    assert ran["results"] == ["42"]
