"""Code mode against real Ray, a real upstream MCP server over stdio (tests/upstream_server.py:
``add``, a destructive ``drop``, ``fail``, ``wait``) and real fastmcp Clients in memory: session
code calls upstream tools through ``raykernel_tools`` (in a Ray session, and in one whose
network is off), a destructive one only with the client's consent asked by elicitation, a
tool error arrives typed, a slow call is stopped by the run's timeout; a session's function
registered as a tool is listed, answers, survives hibernation and goes with its session."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import mcp_types
import pytest
from fastmcp import Client
from fastmcp.client.messages import MessageHandler
from fastmcp.exceptions import ToolError

from tests.helpers import REPO, call, run

UPSTREAM = str(REPO / "tests" / "upstream_server.py")


@pytest.fixture(scope="module")
def dropped(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("upstream") / "dropped.txt"


@pytest.fixture(scope="module")
async def codemode_server(
    tmp_path_factory: pytest.TempPathFactory, dropped: Path
) -> AsyncIterator[Any]:
    from raykernel.server.build import build_server
    from raykernel.settings import Settings

    workspace = tmp_path_factory.mktemp("codemode")
    mcp, _app = build_server(
        Settings(
            workspace=workspace,
            state_dir=Path(f"{workspace}-state"),
            interrupt_grace=2.0,
            session_memory_limit=1 << 30,
            toolsets=["all"],
            config=None,
            mcp_servers={
                "calc": {
                    "command": sys.executable,
                    "args": [UPSTREAM],
                    "env": {"UPSTREAM_DROPPED": str(dropped)},
                }
            },
        )
    )
    async with Client(mcp) as anchor:
        await anchor.call_tool("list_sessions", {})
        yield mcp


@pytest.fixture
async def client(codemode_server: Any) -> AsyncIterator[Client]:
    async with Client(codemode_server) as c:
        yield c


@pytest.fixture
async def session(client: Client) -> AsyncIterator[str]:
    """A session of its own on a Ray actor (not the front end's local "default")."""
    sid = f"code-{time.monotonic_ns()}"
    await call(client, "create_session", session_id=sid)
    yield sid
    await call(client, "delete_session", session_id=sid)


def _drops(dropped: Path) -> list[str]:
    return dropped.read_text().split() if dropped.exists() else []


async def test_session_code_calls_an_upstream_tool_and_gets_the_number(
    client: Client, session: str
) -> None:
    code = (
        "import raykernel_tools\n"
        "names = [s['name'] for s in raykernel_tools.servers()]\n"
        "total = raykernel_tools.calc.add(a=2, b=3) + raykernel_tools.calc.add(40, 2)\n"
        "(names, total, type(total).__name__)"
    )
    reply = await run(client, code, session_id=session)
    assert reply["success"], reply
    assert reply["result"] == "(['calc'], 47, 'int')"

    shown = await run(
        client, "import raykernel_tools\nhelp(raykernel_tools.calc)", session_id=session
    )
    assert "add(a: int, b: int)" in shown["stdout"]
    assert "Add two integers." in shown["stdout"]
    assert "Asks the client for consent" in shown["stdout"]  # drop's entry

    # The run's history entry names the calls it made.
    history = await call(client, "get_history", session_id=session, last=3)
    entry = next(e for e in history["entries"] if "total =" in e["code"])
    calls = entry["upstream_calls"]
    assert [(c["server"], c["tool"], c["ok"]) for c in calls] == [("calc", "add", True)] * 2
    assert calls[0]["arguments"] == '{"a": 2, "b": 3}'


async def test_a_session_with_network_off_still_calls_upstream(client: Client) -> None:
    sid = f"offline-{time.monotonic_ns()}"
    await call(client, "create_session", session_id=sid, network="off")
    try:
        code = (
            "import socket, raykernel_tools\n"
            "interfaces = sorted(name for _, name in socket.if_nameindex())\n"
            "(interfaces, raykernel_tools.calc.add(a=20, b=22))"
        )
        reply = await run(client, code, session_id=sid)
        assert reply["success"], reply
        assert reply["result"] == "(['lo'], 42)"
    finally:
        await call(client, "delete_session", session_id=sid)


async def test_an_upstream_tool_error_is_typed_in_session_code(
    client: Client, session: str
) -> None:
    code = (
        "import raykernel_tools\n"
        "try:\n"
        "    raykernel_tools.calc.fail(reason='no such table')\n"
        "except raykernel_tools.ToolError as exc:\n"
        "    caught = (type(exc).__name__, 'no such table' in str(exc))\n"
        "try:\n"
        "    raykernel_tools.nowhere.add(a=1, b=2)\n"
        "except raykernel_tools.NotFound as exc:\n"
        "    missing = str(exc)\n"
        "caught, missing"
    )
    reply = await run(client, code, session_id=session)
    assert reply["success"], reply
    assert reply["result"].startswith("(('UpstreamToolError', True), \"UpstreamNotFound: no MCP")


async def test_a_slow_upstream_call_is_stopped_by_the_runs_timeout(
    client: Client, session: str
) -> None:
    started = time.monotonic()
    reply = await run(
        client,
        "import raykernel_tools\nraykernel_tools.calc.wait(seconds=30)",
        session_id=session,
        timeout=2,
    )
    assert time.monotonic() - started < 15
    assert reply["error"]["ename"] == "TimeoutError", reply
    assert reply["state_preserved"] is True and not reply["restarted"]
    # The session goes on, and so do its upstream calls.
    again = await run(client, "raykernel_tools.calc.add(a=1, b=1)", session_id=session)
    assert again["result"] == "2", again


class Consent:
    """An elicitation handler answering ``choice`` and counting the questions."""

    def __init__(self, choice: str | None) -> None:
        self.choice = choice
        self.asked: list[str] = []

    async def __call__(self, message: str, response_type: Any, params: Any, context: Any) -> Any:
        self.asked.append(message)
        if self.choice is None:
            from fastmcp.client.elicitation import ElicitResult

            return ElicitResult(action="decline")
        return {"value": self.choice}


DROP = (
    "import raykernel_tools\n"
    "try:\n"
    "    outcome = raykernel_tools.calc.drop(table={table!r})\n"
    "except (raykernel_tools.ApprovalDenied, raykernel_tools.ApprovalRequired) as exc:\n"
    "    outcome = type(exc).__name__\n"
    "outcome"
)


async def test_a_destructive_tool_runs_once_the_client_allows_it(
    codemode_server: Any, dropped: Path
) -> None:
    consent = Consent("allow_once")
    async with Client(codemode_server, mode="legacy", elicitation_handler=consent) as legacy:
        sid = f"drop-{time.monotonic_ns()}"
        await call(legacy, "create_session", session_id=sid)
        try:
            reply = await run(legacy, DROP.format(table="users"), session_id=sid)
            assert reply["result"] == "{'dropped': 'users'}", reply
            assert _drops(dropped).count("users") == 1
            assert len(consent.asked) == 1
            assert f"session {sid!r} wants to call calc.drop with" in consent.asked[0]
            assert '{"table": "users"}' in consent.asked[0]
            # Once is once: the next call is asked again.
            await run(legacy, DROP.format(table="orders"), session_id=sid)
            assert len(consent.asked) == 2 and "orders" in _drops(dropped)

            # Always, for this session: asked once more, then not again.
            consent.choice = "allow_always"
            for table in ("a1", "a2"):
                reply = await run(legacy, DROP.format(table=table), session_id=sid)
                assert reply["result"] == f"{{'dropped': '{table}'}}", reply
            assert len(consent.asked) == 3
            history = await call(legacy, "get_history", session_id=sid, last=1)
            assert history["entries"][-1]["upstream_calls"][0]["approval"] == "always"
        finally:
            await call(legacy, "delete_session", session_id=sid)


async def test_a_declined_destructive_call_does_not_run(
    codemode_server: Any, dropped: Path
) -> None:
    consent = Consent(None)
    async with Client(codemode_server, mode="legacy", elicitation_handler=consent) as legacy:
        sid = f"deny-{time.monotonic_ns()}"
        await call(legacy, "create_session", session_id=sid)
        try:
            reply = await run(legacy, DROP.format(table="declined"), session_id=sid)
            assert reply["result"] == "'ApprovalDenied'", reply
            assert len(consent.asked) == 1
            consent.choice = "deny"
            reply = await run(legacy, DROP.format(table="declined"), session_id=sid)
            assert reply["result"] == "'ApprovalDenied'", reply
            assert "declined" not in _drops(dropped)
        finally:
            await call(legacy, "delete_session", session_id=sid)


async def test_a_client_that_cannot_be_asked_gets_a_typed_refusal(
    client: Client, session: str, dropped: Path
) -> None:
    # fastmcp's default client speaks 2026-07-28: no server-initiated elicitation.
    reply = await run(client, DROP.format(table="unasked"), session_id=session)
    assert reply["result"] == "'ApprovalRequired'", reply
    assert "unasked" not in _drops(dropped)


class Changes(MessageHandler):
    def __init__(self) -> None:
        super().__init__()
        self.tools_changed = asyncio.Event()

    async def on_tool_list_changed(self, message: mcp_types.ToolListChangedNotification) -> None:
        self.tools_changed.set()


async def test_a_session_function_as_a_tool(codemode_server: Any) -> None:
    changes = Changes()
    async with Client(codemode_server, mode="legacy", message_handler=changes) as legacy:
        sid = f"tools-{time.monotonic_ns()}"
        await call(legacy, "create_session", session_id=sid)
        deleted = False
        try:
            await run(
                legacy,
                "def scaled(values: list[float], factor: float = 2.0) -> dict:\n"
                "    '''Scale values by factor; their sum too.'''\n"
                "    out = [v * factor for v in values]\n"
                "    return {'values': out, 'sum': sum(out)}\n",
                session_id=sid,
            )
            reply = await call(
                legacy, "register_session_tool", name="scale", function="scaled", session_id=sid
            )
            assert reply["input_schema"]["required"] == ["values"]
            await asyncio.wait_for(changes.tools_changed.wait(), 10)
            listed = {t.name: t for t in await legacy.list_tools()}
            assert listed["scale"].description == "Scale values by factor; their sum too."
            props = listed["scale"].input_schema["properties"]
            assert props["values"]["type"] == "array" and props["factor"]["default"] == 2.0

            answer = await legacy.call_tool("scale", {"values": [1, 2.5], "factor": 3})
            assert answer.data == {"values": [3, 7.5], "sum": 10.5}

            # It survives hibernation: the function is in the namespace the image keeps.
            await call(legacy, "hibernate_session", session_id=sid)
            answer = await legacy.call_tool("scale", {"values": [4]})
            assert answer.data == {"values": [8.0], "sum": 8.0}

            # Its failures are typed.
            with pytest.raises(ToolError, match=r"^FunctionFailed: TypeError"):
                await legacy.call_tool("scale", {"values": "abc", "factor": None})

            # Deleting the session removes the tool, and clients are told.
            changes.tools_changed.clear()
            await call(legacy, "delete_session", session_id=sid)
            deleted = True
            await asyncio.wait_for(changes.tools_changed.wait(), 10)
            assert "scale" not in {t.name for t in await legacy.list_tools()}
            with pytest.raises(ToolError, match=r"^ToolNotFound"):
                await legacy.call_tool("scale", {"values": [1]})
        finally:
            if not deleted:
                await call(legacy, "delete_session", session_id=sid)


async def test_unregistering_a_session_tool(client: Client, session: str) -> None:
    await run(client, "def hello(name: str) -> str:\n    return 'hi ' + name", session_id=session)
    await call(client, "register_session_tool", name="hello", function="hello", session_id=session)
    assert (await client.call_tool("hello", {"name": "ada"})).data == "hi ada"
    with pytest.raises(ToolError, match=r"^InvalidArgument: name: a tool named 'run_python_code'"):
        await client.call_tool(
            "register_session_tool",
            {"name": "run_python_code", "function": "hello", "session_id": session},
        )
    with pytest.raises(ToolError, match=r"^FunctionFailed: NameError"):
        await client.call_tool(
            "register_session_tool", {"name": "x", "function": "nope", "session_id": session}
        )
    assert (await call(client, "unregister_session_tool", name="hello"))["unregistered"]
    assert "hello" not in {t.name for t in await client.list_tools()}
    with pytest.raises(ToolError, match=r"^ToolNotFound"):
        await client.call_tool("unregister_session_tool", {"name": "hello"})
