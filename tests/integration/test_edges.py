"""Bad calls at the edges, through a real client: typed refusals in plain words, the server's
store closed to file tools, and restart_kernel stopping the run in progress."""

from __future__ import annotations

import asyncio
import time

import pytest
from fastmcp import Client
from mcp.shared.exceptions import MCPError

from tests.helpers import call, call_error, run


@pytest.mark.parametrize(
    ("tool", "arguments", "expected"),
    [
        ("create_session", {"session_id": 123}, "InvalidArgument: session_id: must be a string"),
        ("create_session", {"session_id": ""}, "InvalidSessionId: session_id: invalid session id"),
        ("create_session", {"session_id": "../x"}, "InvalidSessionId: session_id: invalid"),
        ("run_python_code", {"code": ""}, "InvalidArgument: code: must not be empty"),
        ("run_python_code", {"code": "1", "timeout": -5}, "InvalidArgument: timeout: must be"),
        ("run_python_code", {}, "InvalidArgument: code: is required"),
        ("run_python_code", {"code": "1", "colour": 1}, "InvalidArgument: colour: is not an arg"),
        ("get_history", {"last": "many"}, "InvalidArgument: last: must be an integer"),
        ("create_session", {"resources": {"CPU": 1}}, "InvalidArgument: resources"),
        # Placement is offered on a cluster only: here node_id is no argument at all.
        ("create_session", {"node_id": "0"}, "InvalidArgument: node_id: is not an argument here"),
        ("no_such_tool", {}, "ToolNotFound: no tool named 'no_such_tool'"),
    ],
)
async def test_bad_arguments_get_typed_plain_refusals(
    client: Client, tool: str, arguments: dict, expected: str
) -> None:
    before = set((await call(client, "list_sessions"))["sessions"])
    error = await call_error(client, tool, **arguments)
    assert error.startswith(expected), error
    for internal in ("pydantic", "validation error for", "call[", "http", "type="):
        assert internal not in error, error
    assert set((await call(client, "list_sessions"))["sessions"]) == before


async def test_a_missing_variable_is_named_without_exception_classes(
    client: Client, scratch: str
) -> None:
    error = await call_error(
        client, "transfer_variable", from_session=scratch, to_session="default", name="nope"
    )
    assert error == f"InvalidArgument: no variable named 'nope' in session '{scratch}'"


async def test_unknown_resources_and_prompts_are_typed(client: Client) -> None:
    with pytest.raises(MCPError) as resource:
        await client.read_resource("raykernel://nothing/here")
    assert str(resource.value).startswith("ResourceNotFound:")
    with pytest.raises(MCPError) as missing_file:
        await client.read_resource("raykernel://outputs/not-there.txt")
    assert str(missing_file.value).startswith("ResourceNotFound:")
    with pytest.raises(MCPError) as prompt:
        await client.get_prompt("no_such_prompt", {})
    assert str(prompt.value).startswith("PromptNotFound:")
    with pytest.raises(MCPError) as argument:
        await client.get_prompt("analyze_csv", {})
    assert str(argument.value) == "InvalidArgument: path: is required"


@pytest.mark.parametrize(
    ("tool", "arguments", "refusal"),
    [
        # The store is outside the workspace now; the folder older versions used stays closed.
        ("write_file", {"path": ".raykernel/snapshots/evil.zip", "content": "x"}, "store"),
        ("delete_file", {"path": ".raykernel"}, "store"),
        ("list_files", {"path": ".raykernel"}, "store"),
        ("read_file", {"path": "{store}/snapshots/local/kept.zip"}, "outside the workspace"),
        ("write_file", {"path": "{store}/snapshots/local/evil.zip", "content": "x"}, "outside"),
        ("delete_file", {"path": "{store}/snapshots"}, "outside the workspace"),
    ],
)
async def test_file_tools_cannot_reach_the_servers_store(
    client: Client, app, tool: str, arguments: dict, refusal: str
) -> None:
    await call(client, "snapshot_session", name="kept")
    kept = app.moves.snapshot_path("local", "kept")
    assert kept.is_file() and not kept.is_relative_to(app.workspace.root)
    store = str(app.settings.store)
    arguments = {k: v.replace("{store}", store) for k, v in arguments.items()}
    error = await call_error(client, tool, **arguments)
    assert error.startswith("PathOutsideWorkspace:") and refusal in error
    assert kept.is_file()
    assert not kept.with_name("evil.zip").exists()
    listing = await call(client, "list_files", recursive=True)
    assert not any(e["path"].startswith(".raykernel") for e in listing["entries"])


async def test_descriptions_are_cleaned_of_control_characters(client: Client) -> None:
    created = await call(
        client, "create_session", session_id="described", description="a\x1b[2Jb\x00c\nd"
    )
    assert created["description"] == "a[2Jbc\nd"
    listed = (await call(client, "list_sessions"))["sessions"]["described"]["description"]
    assert listed == "a[2Jbc\nd"
    await call(client, "delete_session", session_id="described")


async def test_restart_kernel_stops_the_run_in_progress(client: Client, scratch: str) -> None:
    await run(client, "kept = 41", session_id=scratch)
    running = asyncio.ensure_future(
        run(client, "import time\nkept += 1\ntime.sleep(30)", session_id=scratch)
    )
    await asyncio.sleep(1.0)
    started = time.monotonic()
    restarted = await call(client, "restart_kernel", session_id=scratch, preserve_state=True)
    assert time.monotonic() - started < 10
    assert restarted["stopped_run"] == "interrupted"
    assert restarted["state_preserved"] is True and "kept" in restarted["preserved"]
    reply = await running
    assert reply["interrupted"] is True
    assert (await run(client, "kept", session_id=scratch))["result"] == "42"


async def test_restart_kernel_kills_a_run_that_ignores_the_interrupt(
    client: Client, scratch: str
) -> None:
    running = asyncio.ensure_future(
        run(
            client,
            "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\ntime.sleep(60)",
            session_id=scratch,
        )
    )
    await asyncio.sleep(1.0)
    restarted = await call(client, "restart_kernel", session_id=scratch, preserve_state=True)
    assert restarted["stopped_run"] == "killed"
    assert restarted["state_preserved"] is False and restarted["not_preserved"]
    reply = await running
    assert reply["error"]["ename"] == "KernelDied"
    assert "restart_kernel" in reply["error"]["evalue"]
    assert (await run(client, "1 + 1", session_id=scratch))["result"] == "2"
