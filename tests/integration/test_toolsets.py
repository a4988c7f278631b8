"""Toolsets (issue 26): the default server offers python-mcp-server 0.6.2's tools in at most
12 KB of tools/list, `all` offers every tool, a tool of a toolset that is off is unknown, a
plugin's tools go in the group it declares (else one named after it), a bad name stops the
start, and turning toolsets on reaches every connected client as tools/list_changed."""

from __future__ import annotations

import asyncio
import json
import subprocess
import types
from pathlib import Path
from typing import Any

import mcp_types
import pytest
from fastmcp import Client
from fastmcp.client.messages import MessageHandler
from fastmcp.exceptions import ToolError
from pydantic import ValidationError

from raykernel.api import hints, hookimpl
from raykernel.errors import InvalidSetting
from tests.helpers import call, http_server_process, server_command, stdio_transport, subprocess_env

# Every tool python-mcp-server 0.6.2 has: its clients, and its own tests, call them.
SEED_TOOLS = {
    "run_python_code", "code_completion", "inspect_object", "list_files", "ping", "delete_file",
    "read_file", "write_file", "save_script", "run_script", "install_dependencies",
    "list_variables", "restart_kernel", "get_workspace_info", "get_kernel_health",
    "check_kernel_responsiveness", "create_session", "switch_session", "list_sessions",
    "delete_session",
}  # fmt: skip
DEFAULT_BUDGET = 12_000


def listing_bytes(tools: list[Any]) -> int:
    """tools/list as a client receives it (the wire's names)."""
    return len(
        json.dumps([t.model_dump(mode="json", exclude_none=True, by_alias=True) for t in tools])
    )


def _build(tmp_path: Path, plugins: list[Any] = (), **settings: Any) -> Any:
    from raykernel.server.build import build_server
    from raykernel.settings import Settings

    return build_server(Settings(workspace=tmp_path, config=None, **settings), plugins)


async def _names(mcp: Any) -> set[str]:
    # Without middleware: listing through it would start Ray in the background.
    return {tool.name for tool in await mcp.list_tools(run_middleware=False)}


async def test_the_default_over_stdio_is_the_seeds_tools_in_12_kb(tmp_path: Path) -> None:
    async with Client(stdio_transport(tmp_path, RAYKERNEL_TOOLSETS=None)) as client:
        tools = await client.list_tools()
        names = {tool.name for tool in tools}
        assert SEED_TOOLS <= names, sorted(SEED_TOOLS - names)
        assert listing_bytes(tools) <= DEFAULT_BUDGET, listing_bytes(tools)
        assert not {"fork_session", "run_variants", "export_notebook", "get_run"} & names
        with pytest.raises(ToolError, match=r"^ToolNotFound: no tool named 'fork_session'"):
            await client.call_tool("fork_session", {"session_id": "default", "new_session_id": "f"})
        # Embedded: placement cannot work on one machine, so create_session does not offer it.
        create = next(tool for tool in tools if tool.name == "create_session")
        assert not {"num_cpus", "node_id", "resources"} & set(create.input_schema["properties"])
        ran = await call(client, "run_python_code", code="6 * 7")
        assert ran["result"] == "42"


async def test_all_offers_every_tool(tmp_path: Path) -> None:
    everything, app = _build(tmp_path, toolsets="all")
    default, _ = _build(tmp_path)
    every = await _names(everything)
    registered = {tool for tools in app.toolsets.groups.values() for tool in tools}
    assert every == registered and len(every) >= 38
    assert {"fork_session", "run_variants", "export_notebook", "get_run", "get_history"} <= every
    assert await _names(default) < every


async def test_a_toolset_left_out_is_absent(tmp_path: Path) -> None:
    mcp, _app = _build(tmp_path, toolsets="sessions,execution")
    names = await _names(mcp)
    assert "run_python_code" in names and "create_session" in names
    assert not {"read_file", "save_script", "list_variables"} & names


def _plugin() -> types.ModuleType:
    """A third-party plugin: one tool in a group it declares, one in none."""
    plugin = types.ModuleType("toolset_plugin")

    async def word_twice(word: str) -> dict[str, Any]:
        """Say a word twice, for the toolset tests."""
        return {"said": f"{word} {word}"}

    async def word_once(word: str) -> dict[str, Any]:
        """Say a word once, for the toolset tests."""
        return {"said": word}

    @hookimpl
    def register_tools(register: Any) -> None:
        register(word_twice, title="Twice", annotations=hints(read_only=True), toolset="words")
        register(word_once, title="Once", annotations=hints(read_only=True))
        plugin.register = register  # to register a tool later

    plugin.register_tools = register_tools
    return plugin


async def test_a_plugins_declared_group_and_its_own(tmp_path: Path) -> None:
    plugin = _plugin()
    default, app = _build(tmp_path, [plugin])
    assert app.toolsets.groups["words"] == ["word_twice"]
    own = next(name for name, tools in app.toolsets.groups.items() if tools == ["word_once"])
    assert own == "toolset_plugin"  # named after the plugin
    assert {"word_twice", "word_once"} <= await _names(default)  # on by default

    only_words, _ = _build(tmp_path, [_plugin()], toolsets="sessions,words")
    names = await _names(only_words)
    assert "word_twice" in names and "word_once" not in names
    async with Client(only_words) as client:
        said = await call(client, "word_twice", word="hi")
        assert said == {"said": "hi hi"}
        with pytest.raises(ToolError, match=r"^ToolNotFound: "):
            await client.call_tool("word_once", {"word": "hi"})


def test_bad_toolset_names_stop_the_start(tmp_path: Path) -> None:
    from raykernel.settings import Settings

    with pytest.raises(ValidationError, match="InvalidSetting: toolsets: 'no good' is not"):
        Settings(workspace=tmp_path, config=None, toolsets="sessions,no good")
    with pytest.raises(ValidationError, match="InvalidSetting: toolsets: name at least one"):
        Settings(workspace=tmp_path, config=None, toolsets=" , ")
    with pytest.raises(InvalidSetting, match=r"no toolset named 'stat' \(there are: all, "):
        _build(tmp_path, toolsets="default,stat")
    # The command line says so and exits, before serving anything.
    done = subprocess.run(
        server_command("--workspace", str(tmp_path), "--toolsets", "sessions,notebook"),
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 2, done.stderr
    assert "invalid settings: InvalidSetting: toolsets: no toolset named 'notebook'" in done.stderr


class Changes(MessageHandler):
    def __init__(self) -> None:
        super().__init__()
        self.tools_changed = asyncio.Event()

    async def on_tool_list_changed(self, message: mcp_types.ToolListChangedNotification) -> None:
        self.tools_changed.set()


async def test_enabling_a_toolset_tells_every_connected_client_over_http(
    tmp_path: Path,
) -> None:
    with http_server_process(tmp_path, RAYKERNEL_TOOLSETS="default") as http:
        caller, watcher = Changes(), Changes()
        async with (
            Client(http.url, auth=http.token, mode="legacy", message_handler=caller) as one,
            Client(http.url, auth=http.token, mode="legacy", message_handler=watcher) as two,
        ):
            assert "fork_session" not in {t.name for t in await two.list_tools()}
            await asyncio.sleep(0.5)  # the watcher's stream for server messages is open
            reply = await call(one, "enable_toolsets", toolsets=["state"])
            assert reply["enabled"] == ["state"] and reply["toolsets"]["state"]["on"]
            await asyncio.wait_for(watcher.tools_changed.wait(), 10)
            await asyncio.wait_for(caller.tools_changed.wait(), 10)
            assert "fork_session" in {t.name for t in await two.list_tools()}

            # Nothing new to offer: nobody is told again.
            watcher.tools_changed.clear()
            assert (await call(one, "enable_toolsets", toolsets=["state"]))["enabled"] == []
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(watcher.tools_changed.wait(), 1)
            with pytest.raises(ToolError, match=r"^InvalidArgument: no toolset named 'x'"):
                await one.call_tool("enable_toolsets", {"toolsets": ["x"]})


async def test_a_tool_a_plugin_registers_later_is_announced(tmp_path: Path) -> None:
    plugin = _plugin()
    mcp, _app = _build(tmp_path, [plugin])
    changes = Changes()
    async with Client(mcp, mode="legacy", message_handler=changes) as client:
        assert "word_thrice" not in {t.name for t in await client.list_tools()}

        async def word_thrice(word: str) -> dict[str, Any]:
            """Say a word three times, registered after the start."""
            return {"said": " ".join([word] * 3)}

        plugin.register(word_thrice, title="Thrice", annotations=hints(read_only=True))
        await asyncio.wait_for(changes.tools_changed.wait(), 10)
        assert (await call(client, "word_thrice", word="a")) == {"said": "a a a"}


def test_settings_read_a_comma_list_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from raykernel.settings import Settings

    monkeypatch.setenv("RAYKERNEL_TOOLSETS", "default, state")
    assert Settings(workspace=tmp_path, config=None).toolsets == ("default", "state")
