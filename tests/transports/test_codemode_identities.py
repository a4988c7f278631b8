"""Code mode and identities, over streamable HTTP against a real server with two named tokens:
alice and carol may call the upstream server (mcp_server_access lists it for them), bob may not
(an identity not listed gets none); each identity has its own connection to a stateful server
(a note alice leaves there is not carol's to read); a session tool belongs to who registered
it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from fastmcp import Client
from fastmcp.exceptions import ToolError

from raykernel.server.http_security import token_hash
from tests.helpers import REPO, call, http_server_process, run

pytestmark = pytest.mark.subprocess

TOKENS = {"alice": "alice-secret", "bob": "bob-secret", "carol": "carol-secret"}


async def test_only_identities_given_a_server_call_it_and_session_tools_are_their_owners(
    tmp_path: Path,
) -> None:
    upstream = {
        "calc": {
            "command": sys.executable,
            "args": [str(REPO / "tests" / "upstream_server.py")],
            "env": {"UPSTREAM_DROPPED": str(tmp_path / "dropped.txt")},
        }
    }
    env = {
        "RAYKERNEL_AUTH_TOKENS": json.dumps({n: token_hash(t) for n, t in TOKENS.items()}),
        "RAYKERNEL_MCP_SERVERS": json.dumps(upstream),
        "RAYKERNEL_MCP_SERVER_ACCESS": json.dumps(
            {"token:alice": ["calc"], "token:carol": ["calc"]}
        ),
        "RAYKERNEL_WARM_POOL_SIZE": "0",
    }
    with http_server_process(tmp_path, **env) as (url, *_):
        async with (
            Client(url, auth=TOKENS["alice"]) as alice,
            Client(url, auth=TOKENS["bob"]) as bob,
            Client(url, auth=TOKENS["carol"]) as carol,
        ):
            code = (
                "import raykernel_tools\n"
                "try:\n"
                "    value = raykernel_tools.calc.add(a=2, b=3)\n"
                "except raykernel_tools.NotFound as exc:\n"
                "    value = str(exc)\n"
                "([s['name'] for s in raykernel_tools.servers()], value)"
            )
            assert (await run(alice, code))["result"] == "(['calc'], 5)"
            refused = (await run(bob, code))["result"]
            assert refused.startswith("([], \"UpstreamNotFound: no MCP server 'calc'"), refused
            assert "(it may call: none)" in refused

            # A stateful upstream server: alice's note stays on alice's connection.
            await run(alice, "import raykernel_tools\nraykernel_tools.calc.note(text='alice-note')")
            read = "import raykernel_tools\nraykernel_tools.calc.read_note()"
            assert (await run(alice, read))["result"] == "'alice-note'"
            assert (await run(carol, read))["result"] == "''"

            await run(alice, "def twice(x: int) -> int:\n    return 2 * x")
            await call(alice, "register_session_tool", name="twice", function="twice")
            assert (await alice.call_tool("twice", {"x": 21})).data == 42
            assert "twice" in {t.name for t in await alice.list_tools()}
            # Bob: not listed, unknown when called, and not his to take or remove.
            assert "twice" not in {t.name for t in await bob.list_tools()}
            with pytest.raises(ToolError, match=r"^ToolNotFound: no tool named 'twice'"):
                await bob.call_tool("twice", {"x": 1})
            await run(bob, "def twice(x: int) -> int:\n    return 0")
            with pytest.raises(ToolError, match=r"^InvalidArgument: name: a tool named 'twice'"):
                await bob.call_tool("register_session_tool", {"name": "twice", "function": "twice"})
            with pytest.raises(ToolError, match=r"^ToolNotFound"):
                await bob.call_tool("unregister_session_tool", {"name": "twice"})
            assert (await alice.call_tool("twice", {"x": 5})).data == 10
