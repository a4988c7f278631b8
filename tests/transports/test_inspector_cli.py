"""The official MCP Inspector CLI (npm @modelcontextprotocol/inspector, pinned in
tests/inspector/package.json and installed by the README's test command) against the server:
tools/list and a run_python_code call over stdio, and tools/list over streamable HTTP."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO, http_server_process, subprocess_env

pytestmark = pytest.mark.subprocess

INSPECTOR = REPO / "tests" / "inspector" / "node_modules" / ".bin" / "mcp-inspector"


def _inspector(tmp_path: Path, *args: str) -> dict:
    assert INSPECTOR.is_file(), (
        "the MCP Inspector is not installed: run `npm ci --prefix tests/inspector` "
        "(the README's test command does)"
    )
    # The Inspector keeps a server catalog; keep it out of the user's home.
    env = subprocess_env(MCP_CATALOG_PATH=str(tmp_path / "inspector-catalog.json"))
    done = subprocess.run(
        [str(INSPECTOR), "--cli", *args],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def _stdio_server(workspace: Path) -> list[str]:
    return [sys.executable, "-m", "raykernel", "--workspace", str(workspace)]


def test_inspector_cli_lists_tools_and_runs_code_over_stdio(tmp_path: Path) -> None:
    listed = _inspector(tmp_path, *_stdio_server(tmp_path), "--method", "tools/list")
    tools = {tool["name"]: tool for tool in listed["tools"]}
    # A new user's server: the default toolsets (background runs are in "runs", off).
    assert {"run_python_code", "create_session", "inspect_object"} <= set(tools)
    assert "get_run" not in tools and "enable_toolsets" in tools
    # No destructiveHint stated: the spec's default, destructive, holds.
    assert "destructiveHint" not in tools["run_python_code"].get("annotations", {})

    called = _inspector(
        tmp_path,
        *_stdio_server(tmp_path),
        "--method",
        "tools/call",
        "--tool-name",
        "run_python_code",
        "--tool-arg",
        "code=print('from the inspector'); 6 * 7",
    )
    assert called["isError"] is False
    assert called["structuredContent"]["result"] == "42"
    assert called["structuredContent"]["stdout"] == "from the inspector\n"


def test_inspector_cli_lists_tools_over_http(tmp_path: Path) -> None:
    with http_server_process(tmp_path) as (url, _proc, token):
        header = f"Authorization: Bearer {token}"
        listed = _inspector(
            tmp_path, url, "--transport", "http", "--header", header, "--method", "tools/list"
        )
    assert "run_python_code" in {tool["name"] for tool in listed["tools"]}
