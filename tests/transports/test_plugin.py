"""A third-party plugin, installed as a real distribution with a `raykernel` entry point, loaded
by a stdio server and driven through a client: its tool, its execute hooks inside sessions, its
health and session hooks in the front end, and blocking it by setting."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastmcp import Client
from fastmcp.exceptions import ToolError

from tests.helpers import REPO, stdio_transport, subprocess_env

pytestmark = pytest.mark.subprocess


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Install examples/raykernel-plugin-example into a private target folder (as pip/uv would)."""
    target = tmp_path_factory.mktemp("plugin-site")
    # Built from a copy: setuptools leaves build/ and *.egg-info beside the sources, and an
    # egg-info on sys.path would make the example an installed plugin for other tests.
    source = tmp_path_factory.mktemp("plugin-src") / "example"
    shutil.copytree(REPO / "examples" / "raykernel-plugin-example", source)
    uv = Path(sys.executable).parent / "uv"
    subprocess.run(
        [
            str(uv),
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--python",
            sys.executable,
            "--target",
            str(target),
            str(source),
        ],
        check=True,
    )
    assert (target / "raykernel_example_plugin.py").is_file()
    yield target


def _transport(workspace: Path, site: Path, **env: str) -> Any:
    return stdio_transport(workspace, PYTHONPATH=str(site), **env)


async def test_example_plugin_end_to_end(plugin_site: Path, tmp_path: Path) -> None:
    (tmp_path / "outputs").mkdir()
    (tmp_path / "outputs" / "words.txt").write_text("one two three four")
    async with Client(_transport(tmp_path, plugin_site)) as client:
        tools = {t.name: t for t in await client.list_tools()}
        assert "word_count" in tools
        counted = await client.call_tool("word_count", {"path": "outputs/words.txt"})
        assert counted.structured_content == {"path": "outputs/words.txt", "words": 4}
        templates = {t.uri_template for t in await client.list_resource_templates()}
        assert "example://words/{path*}" in templates
        words = await client.read_resource("example://words/outputs/words.txt")
        assert json.loads(words[0].text)["words"] == ["one", "two", "three", "four"]
        prompt = await client.get_prompt("count_words", {"path": "outputs/words.txt"})
        assert "word_count tool on outputs/words.txt" in prompt.messages[0].content.text

        ran = await client.call_tool("run_python_code", {"code": "a = 1\nb = 2\na + b"})
        assert ran.structured_content["result"] == "3"
        assert ran.structured_content["extras"] == {"example_lines": 3}

        refused = await client.call_tool(
            "run_python_code", {"code": "hit = True\nlaunch_missiles()"}
        )
        assert refused.structured_content["success"] is False
        assert refused.structured_content["error"]["ename"] == "ExecutionRefused"
        check = await client.call_tool("run_python_code", {"code": "'hit' in globals()"})
        assert check.structured_content["result"] == "False"

        health = await client.call_tool("get_kernel_health", {})
        assert health.structured_content["extra"] == {"example_seen": "default"}

        await client.call_tool("create_session", {"session_id": "plugged"})
        await client.call_tool("restart_kernel", {"session_id": "plugged"})
        await client.call_tool("delete_session", {"session_id": "plugged"})
    events = (tmp_path / "example-plugin-events.log").read_text().splitlines()
    assert events == [
        "created default restarted=False",
        "created plugged restarted=False",
        "created plugged restarted=True",
        "deleted plugged",
    ]


async def test_blocked_plugin_is_not_loaded(plugin_site: Path, tmp_path: Path) -> None:
    transport = _transport(tmp_path, plugin_site, RAYKERNEL_BLOCKED_PLUGINS='["example"]')
    async with Client(transport) as client:
        names = {t.name for t in await client.list_tools()}
        assert "word_count" not in names and "run_python_code" in names
        with pytest.raises(ToolError):
            await client.call_tool("word_count", {"path": "x"})


async def test_a_plugin_that_is_not_installed_over_stdio(tmp_path: Path) -> None:
    """The kit's serve_stdio: the plugins setting loads a module from PYTHONPATH, and its
    session-backed tool and its hooks inside sessions work in the subprocess server."""
    from raykernel.testing import serve_stdio

    sys.path.insert(0, str(REPO / "examples" / "raykernel-plugin-example"))
    try:
        (tmp_path / "t.csv").write_text("a,b\n1,x\n2,y\n3,z\n")
        async with serve_stdio(["raykernel_example_plugin"], workspace=tmp_path) as client:
            summary = await client.call_tool("dataframe_summary", {"path": "t.csv"})
            assert summary.structured_content["shape"] == [3, 2]
            ran = await client.call_tool("run_python_code", {"code": "1"})
            assert ran.structured_content["extras"] == {"example_lines": 1}
    finally:
        sys.path.remove(str(REPO / "examples" / "raykernel-plugin-example"))


def test_the_example_s_own_tests_pass_outside_this_repository(
    plugin_site: Path, tmp_path: Path
) -> None:
    """What a plugin author runs: the example's test file in a project of its own (no
    asyncio_mode setting: pytest-asyncio's strict default), with raykernel's fixtures."""
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(REPO / "examples" / "raykernel-plugin-example" / "test_example_plugin.py", project)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_example_plugin.py"],
        cwd=project,
        env={**subprocess_env(), "PYTHONPATH": str(plugin_site)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "1 passed" in done.stdout
