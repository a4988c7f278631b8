"""Sessions belong to identities, over HTTP against a real server: two named bearer tokens and
an admin token, and two JWT subjects. Another identity's session is SessionNotFound on every
road; each identity has its own default; an admin sees and manages all; quotas refuse with
QuotaExceeded and change nothing."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from fastmcp import Client
from mcp.shared.exceptions import MCPError

from raykernel.server.http_security import token_hash
from tests.helpers import call, call_error, http_server_process, run

pytestmark = pytest.mark.subprocess

TOKENS = {"alice": "alice-secret", "bob": "bob-secret", "ops": "ops-secret"}


async def _refused(client: Client, tool: str, kind: str, **arguments: Any) -> None:
    error = await call_error(client, tool, **arguments)
    assert error.startswith(f"{kind}:"), (tool, error)


async def test_two_token_identities_never_see_each_other(tmp_path: Path) -> None:
    hashes = {name: token_hash(token) for name, token in TOKENS.items()}
    env = {
        "RAYKERNEL_AUTH_TOKENS": json.dumps(hashes),
        "RAYKERNEL_ADMIN_IDENTITIES": json.dumps(["token:ops"]),
        "RAYKERNEL_MAX_SESSIONS_PER_IDENTITY": "3",
        "RAYKERNEL_MAX_CONCURRENT_RUNS_PER_IDENTITY": "1",
        "RAYKERNEL_WARM_POOL_SIZE": "0",
    }
    with http_server_process(tmp_path, **env) as (url, _proc):
        async with (
            Client(url, auth=TOKENS["alice"]) as alice,
            Client(url, auth=TOKENS["bob"]) as bob,
            Client(url, auth=TOKENS["ops"]) as ops,
        ):
            await call(alice, "create_session", session_id="a1")
            await run(alice, "secret = 'alice-only'", session_id="a1")
            await run(alice, "mine = 'alice'")  # in alice's own "default"
            background = await call(
                alice, "run_python_code", code="import time\ntime.sleep(2)", background=True
            )

            # Bob: not listed, and every road to it is "not found".
            assert set((await call(bob, "list_sessions"))["sessions"]) == {"default"}
            for name in ("a1", "token:alice/a1"):
                await _refused(bob, "run_python_code", "SessionNotFound", code="1", session_id=name)
                await _refused(bob, "delete_session", "SessionNotFound", session_id=name)
                await _refused(bob, "list_variables", "SessionNotFound", session_id=name)
                await _refused(bob, "get_kernel_health", "SessionNotFound", session_id=name)
                await _refused(bob, "snapshot_session", "SessionNotFound", session_id=name)
                await _refused(
                    bob, "fork_session", "SessionNotFound", session_id=name, new_session_id="b"
                )
                await _refused(
                    bob,
                    "transfer_variable",
                    "SessionNotFound",
                    from_session=name,
                    to_session="default",
                    name="secret",
                )
            with pytest.raises(MCPError, match=r"^SessionNotFound"):
                await bob.read_resource("raykernel://sessions/a1")
            await _refused(bob, "get_run", "RunNotFound", run_id=background["run_id"])
            assert (await call(bob, "list_runs"))["runs"] == []
            # Bob's default is his own.
            assert (await run(bob, "'mine' in globals()"))["result"] == "False"
            assert "b" not in (await call(bob, "list_sessions"))["sessions"]

            # Quotas: alice holds default and a1 (3 allowed), and one run in flight.
            await _refused(alice, "run_python_code", "QuotaExceeded", code="1")
            done = await call(alice, "get_run", run_id=background["run_id"], wait=30)
            assert done["status"] == "done"

            # The admin sees and manages every identity's sessions (alice's run is over: the
            # quota of runs in flight counts a session owner's runs).
            listed = set((await call(ops, "list_sessions"))["sessions"])
            assert {"token:alice/a1", "token:alice/default", "token:bob/default"} <= listed
            peek = await run(ops, "secret", session_id="token:alice/a1")
            assert peek["result"] == "'alice-only'"

            await call(alice, "create_session", session_id="a2")
            await _refused(alice, "create_session", "QuotaExceeded", session_id="a3")
            assert set((await call(alice, "list_sessions"))["sessions"]) == {"default", "a1", "a2"}
            assert (await run(alice, "secret", session_id="a1"))["result"] == "'alice-only'"


async def test_two_jwt_subjects_never_see_each_other(tmp_path: Path) -> None:
    from fastmcp.server.auth.providers.jwt import RSAKeyPair

    keys = RSAKeyPair.generate()
    claims = {"issuer": "https://issuer.test", "audience": "raykernel"}
    alice_jwt = keys.create_token(subject="alice@example.com", **claims)
    bob_jwt = keys.create_token(subject="bob@example.com", **claims)
    env = {
        "RAYKERNEL_JWT_PUBLIC_KEY": keys.public_key,
        "RAYKERNEL_JWT_ISSUER": "https://issuer.test",
        "RAYKERNEL_JWT_AUDIENCE": "raykernel",
        "RAYKERNEL_WARM_POOL_SIZE": "0",
    }
    with http_server_process(tmp_path, **env) as (url, _proc):
        async with Client(url, auth=alice_jwt) as alice, Client(url, auth=bob_jwt) as bob:
            await call(alice, "create_session", session_id="shared-name")
            await run(alice, "owner = 'alice'", session_id="shared-name")
            # The same id for bob is a different session of his own.
            await call(bob, "create_session", session_id="shared-name")
            reply = await run(bob, "'owner' in globals()", session_id="shared-name")
            assert reply["result"] == "False"
            qualified = "jwt:alice@example.com/shared-name"
            await _refused(
                bob, "run_python_code", "SessionNotFound", code="1", session_id=qualified
            )
            alices, bobs = await asyncio.gather(
                call(alice, "list_sessions"), call(bob, "list_sessions")
            )
            assert set(alices["sessions"]) == set(bobs["sessions"]) == {"default", "shared-name"}
            assert (await run(alice, "owner", session_id="shared-name"))["result"] == "'alice'"
