"""Dependencies, scripts, files, variables, restart and health through a real client."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import psutil
import pytest
from fastmcp import Client

from raykernel.errors import PathOutsideWorkspace
from tests.helpers import HOSTILE_PACKAGE_SPECS, call, call_error, run


@pytest.fixture
async def pair(client: Client):
    ids = [f"p{i}-{time.monotonic_ns()}" for i in range(2)]
    for sid in ids:
        await call(client, "create_session", session_id=sid)
    yield ids
    for sid in ids:
        await call(client, "delete_session", session_id=sid)


@pytest.mark.parametrize("spec", [s for s in HOSTILE_PACKAGE_SPECS if s.strip()])
async def test_hostile_package_specs_are_refused_before_anything_runs(
    client: Client, spec: str, app
) -> None:
    count = app.router.sessions["default"].execution_count
    error = await call_error(client, "install_dependencies", packages=["six", spec])
    assert error.startswith("InvalidPackageSpec:")
    assert app.router.sessions["default"].execution_count == count


async def test_install_is_private_to_one_session(client: Client, pair: list[str]) -> None:
    mine, other = pair
    reply = await call(client, "install_dependencies", packages=["tinydb"], session_id=mine)
    assert reply["success"] is True, reply["stderr"]
    assert reply["installed"] == ["tinydb"]
    ok = await run(client, "import tinydb\ntinydb.__name__", session_id=mine)
    assert ok["result"] == "'tinydb'"
    missing = await run(client, "import tinydb", session_id=other)
    assert missing["error"]["ename"] == "ModuleNotFoundError"
    # The installer's cache is shared: the second session installs without fetching again.
    again = await call(client, "install_dependencies", packages=["tinydb"], session_id=other)
    assert again["success"] is True and "Installed 1 package" in again["stderr"]
    assert "Prepared" not in again["stderr"] and "Download" not in again["stderr"]


async def test_saved_script_imports_from_another_session_and_runs(
    client: Client, pair: list[str], workspace: Path
) -> None:
    first, second = pair
    saved = await call(
        client,
        "save_script",
        name="analysis_utils",
        content="import sys\ndef double(v):\n    return v * 2\nARGS = sys.argv[1:]\n",
    )
    assert saved == {
        "script": "scripts/analysis_utils.py",
        "name": "analysis_utils",
        "size": saved["size"],
    }
    assert (workspace / "scripts" / "analysis_utils.py").is_file()
    imported = await run(
        client, "import analysis_utils\nanalysis_utils.double(21)", session_id=second
    )
    assert imported["result"] == "42"
    ran = await call(client, "run_script", name="analysis_utils", args=["a", "b"], session_id=first)
    assert ran["success"] is True
    assert (await run(client, "ARGS", session_id=first))["result"] == "['a', 'b']"
    names = [s["name"] for s in (await call(client, "list_scripts"))["scripts"]]
    assert "analysis_utils" in names
    for bad in ("../evil", "has-dash", "1abc", "a/b"):
        assert (await call_error(client, "save_script", name=bad, content="x")).startswith(
            "InvalidArgument:"
        )
    assert (await call_error(client, "run_script", name="nothere")).startswith("InvalidArgument:")


async def test_file_tools_round_trip_and_refuse_outside(
    client: Client, workspace: Path, tmp_path: Path
) -> None:
    written = await call(client, "write_file", path="outputs/notes/a.md", content="# hi")
    assert {written["path"], written["size"]} == {"outputs/notes/a.md", 4}
    # For a named session, the file tools act on its node (the only one, embedded).
    node = (await call(client, "get_kernel_health", session_id="default"))["node_id"]
    served = await call(client, "read_file", path="outputs/notes/a.md", session_id="default")
    assert served["node_id"] == node and served["content"] == "# hi"
    error = await call_error(
        client, "write_file", path="outputs/x.md", content="", session_id="nope"
    )
    assert error.startswith("SessionNotFound:")
    assert not (workspace / "outputs" / "x.md").exists()
    assert (await call(client, "read_file", path="outputs/notes/a.md"))["content"] == "# hi"
    listing = await call(client, "list_files", path="outputs/notes")
    assert [e["path"] for e in listing["entries"]] == ["outputs/notes/a.md"]
    info = await call(client, "get_workspace_info")
    assert info["workspace"] == str(workspace)
    assert info["outputs_dir"] == str(workspace / "outputs")
    outside = tmp_path / "victim.txt"
    outside.write_text("untouched")
    os.symlink(outside, workspace / "outputs" / "planted")
    for path in ("../victim.txt", "/etc/passwd", "a/../../b", str(outside), "outputs/planted"):
        error = await call_error(client, "write_file", path=path, content="pwned")
        assert error.startswith("PathOutsideWorkspace:"), (path, error)
    assert outside.read_text() == "untouched"
    assert (await call(client, "delete_file", path="outputs/notes"))["deleted"] is True
    assert not (workspace / "outputs" / "notes").exists()


async def test_sessions_share_outputs_folder(client: Client, pair: list[str]) -> None:
    first, second = pair
    await run(client, f"open('outputs/{first}.txt', 'w').write('from first')", session_id=first)
    reply = await run(client, f"open('outputs/{first}.txt').read()", session_id=second)
    assert reply["result"] == "'from first'"


async def test_list_variables(client: Client, pair: list[str]) -> None:
    sid = pair[0]
    await run(client, "import numpy as np\nmatrix = np.zeros((2, 3))\nname = 'n'", session_id=sid)
    reply = await call(client, "list_variables", session_id=sid)
    rows = {v["name"]: v for v in reply["variables"]}
    assert set(rows) == {"matrix", "name"}
    assert rows["matrix"]["type"] == "ndarray" and rows["matrix"]["shape"] == [2, 3]
    assert reply["total"] == 2


async def test_restart_with_and_without_state(client: Client, pair: list[str], app) -> None:
    sid = pair[0]
    await run(
        client, "import threading\nkeep = {'k': [1]}\nlock = threading.Lock()", session_id=sid
    )
    old_pid = app.router.sessions[sid].kernel_pid
    reply = await call(client, "restart_kernel", session_id=sid, preserve_state=True)
    assert reply["status"] == "restarted"
    assert "keep" in reply["preserved"]
    assert "lock" in reply["not_preserved"]
    assert reply["state_preserved"] is False
    assert app.router.sessions[sid].kernel_pid != old_pid  # a new kernel, the same actor
    assert not psutil.pid_exists(old_pid) or psutil.Process(old_pid).status() == "zombie"
    assert (await run(client, "keep['k']", session_id=sid))["result"] == "[1]"
    plain = await call(client, "restart_kernel", session_id=sid)
    assert plain["preserved"] == [] and plain["restart_count"] == 2
    assert (await run(client, "'keep' in globals()", session_id=sid))["result"] == "False"


async def test_health_and_responsiveness(client: Client, pair: list[str]) -> None:
    sid = pair[0]
    await run(client, "x = 1", session_id=sid)
    health = await call(client, "get_kernel_health", session_id=sid)
    assert health["status"] == "healthy"
    assert health["memory_usage"] > 10_000_000
    assert health["execution_count"] == 1
    assert health["uptime"] > 0
    assert psutil.pid_exists(health["pid"])
    assert health["node_id"]
    assert health["last_execution_time"]
    ping = await call(client, "check_kernel_responsiveness", session_id=sid)
    assert ping["responsive"] is True
    assert 0 < ping["response_time"] < 5
    assert (await call(client, "ping"))["status"] == "ok"


async def test_session_killed_from_outside_is_detected(client: Client, pair: list[str]) -> None:
    sid = pair[0]
    await run(client, "x = 1", session_id=sid)
    pid = (await call(client, "get_kernel_health", session_id=sid))["pid"]
    os.kill(pid, signal.SIGKILL)
    psutil.Process(pid).wait(5) if psutil.pid_exists(pid) else None
    started = time.monotonic()
    health = await call(client, "get_kernel_health", session_id=sid)
    assert health["status"] == "dead"
    assert time.monotonic() - started < 5
    assert (await call(client, "check_kernel_responsiveness", session_id=sid))[
        "responsive"
    ] is False
    revived = await run(client, "1 + 1", session_id=sid)
    assert revived["result"] == "2" and revived["restarted"] is True


async def test_internal_errors_are_masked_at_the_mcp_boundary(
    client: Client, app, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fault injection in our own code (not a mock of Ray or MCP): an unexpected exception
    reaches the client as a generic error without its text."""

    def broken(owner: str) -> dict:
        raise RuntimeError("secret internal detail /etc/shadow")

    # The file tools reach a workspace through the App's Workspaces (its operations are
    # Workspace's methods, by reference): the fault goes there.
    monkeypatch.setattr(app.workspaces, "of", broken)
    error = await call_error(client, "get_workspace_info")
    assert "secret" not in error and "shadow" not in error and "RuntimeError" not in error
    assert "get_workspace_info" in error


async def test_a_plugin_runs_only_scripts_inside_the_workspace(app) -> None:
    """app.sessions.run_script takes a path as the file tools do (an early refusal; the
    session's actor then reads the script beneath the owner's workspace, following no link):
    nothing outside the owner's workspace, or in the server's store, is read or run."""
    for path in ("../outside.py", "/etc/passwd", ".raykernel/pool.py"):
        with pytest.raises(PathOutsideWorkspace):
            await app.sessions.run_script(None, path)
