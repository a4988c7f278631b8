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
    with http_server_process(tmp_path, **env) as (url, *_):
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
    # A subject that extends alice's with a "/": jwt:alice@example.com/... named its sessions
    # as if they were alice's own ids (#38, break 7).
    longer_jwt = keys.create_token(subject="alice@example.com/jwt:bob", **claims)
    env = {
        "RAYKERNEL_JWT_PUBLIC_KEY": keys.public_key,
        "RAYKERNEL_JWT_ISSUER": "https://issuer.test",
        "RAYKERNEL_JWT_AUDIENCE": "raykernel",
        "RAYKERNEL_WARM_POOL_SIZE": "0",
    }
    with http_server_process(tmp_path, **env) as (url, *_):
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

            async with Client(url, auth=longer_jwt) as longer:
                await call(longer, "create_session", session_id="vault")
                await run(longer, "secret = 'not alice'", session_id="vault")
                # No identity holds a "/" (the subject's own is escaped): a qualified id has
                # one, and the longer subject's sessions are its own, not alice's.
                for name in ("jwt:alice@example.com%2Fjwt:bob/vault", "jwt:bob/vault"):
                    await _refused(
                        alice, "run_python_code", "SessionNotFound", code="1", session_id=name
                    )
                extended = "jwt:alice@example.com/jwt:bob/vault"
                await _refused(
                    alice, "run_python_code", "InvalidSessionId", code="1", session_id=extended
                )
                await _refused(alice, "create_session", "InvalidSessionId", session_id=extended)
                listed = (await call(longer, "list_sessions"))["sessions"]
                assert set(listed) == {"default", "vault"}, listed
                assert set((await call(alice, "list_sessions"))["sessions"]) == {
                    "default",
                    "shared-name",
                }


async def test_each_identity_has_a_workspace_of_its_own(tmp_path: Path) -> None:
    """A file one identity's session writes (by tool or by code) is not there for another:
    not by read_file, list_files, scripts or resources, nor from its code (its kernel's
    Landlock rules name its own folder only). An admin reaches it through the owner's session."""
    from fastmcp.server.auth.providers.jwt import RSAKeyPair

    keys = RSAKeyPair.generate()
    claims = {"issuer": "https://issuer.test", "audience": "raykernel"}
    alice_jwt, bob_jwt, ops_jwt = (
        keys.create_token(subject=f"{name}@example.com", **claims)
        for name in ("alice", "bob", "ops")
    )
    env = {
        "RAYKERNEL_JWT_PUBLIC_KEY": keys.public_key,
        "RAYKERNEL_JWT_ISSUER": "https://issuer.test",
        "RAYKERNEL_JWT_AUDIENCE": "raykernel",
        "RAYKERNEL_ADMIN_IDENTITIES": json.dumps(["jwt:ops@example.com"]),
    }
    with http_server_process(tmp_path, **env) as (url, *_):
        async with (
            Client(url, auth=alice_jwt) as alice,
            Client(url, auth=bob_jwt) as bob,
            Client(url, auth=ops_jwt) as ops,
        ):
            await call(alice, "write_file", path="outputs/by-tool.txt", content="alice's tool")
            made = await run(
                alice,
                "import os\nopen('outputs/by-code.txt', 'w').write('alice code')\n"
                "os.path.abspath('outputs/by-code.txt')",
            )
            assert made["new_files"] == ["outputs/by-code.txt"], made
            alice_file = Path(eval(made["result"]))
            assert alice_file.is_relative_to(tmp_path) and alice_file.parent.parent != tmp_path
            await call(alice, "save_script", name="alicelib", content="SECRET = 'alice'\n")

            # Not by tool: as if the files did not exist.
            relative = str(alice_file.relative_to(tmp_path))
            for path in ("outputs/by-tool.txt", "outputs/by-code.txt", relative):
                await _refused(bob, "read_file", "FileNotFound", path=path)
            for path in (str(alice_file), f"../{relative}"):
                await _refused(bob, "read_file", "PathOutsideWorkspace", path=path)
            assert (await call(bob, "list_files", path="outputs"))["entries"] == []
            assert (await call(bob, "list_scripts"))["total"] == 0
            await _refused(bob, "run_script", "InvalidArgument", name="alicelib")
            with pytest.raises(MCPError, match=r"^ResourceNotFound"):
                await bob.read_resource("raykernel://outputs/by-tool.txt")
            # Nor from code.
            peek = await run(bob, f"open({str(alice_file)!r}).read()")
            assert peek["error"]["ename"] == "PermissionError", peek
            above = await run(bob, f"import os\nos.listdir({str(tmp_path)!r})")
            assert above["error"]["ename"] == "PermissionError", above
            imported = await run(bob, "import alicelib")
            assert imported["error"]["ename"] == "ModuleNotFoundError", imported

            # The same names are bob's own; alice's stay hers.
            await call(bob, "write_file", path="outputs/by-tool.txt", content="bob's tool")
            mine = await call(alice, "read_file", path="outputs/by-tool.txt")
            assert mine["content"] == "alice's tool"
            assert (await run(alice, "import alicelib\nalicelib.SECRET"))["result"] == "'alice'"

            # An admin reaches alice's files through alice's session.
            seen = await call(
                ops,
                "read_file",
                path="outputs/by-code.txt",
                session_id="jwt:alice@example.com/default",
            )
            assert seen["content"] == "alice code"


async def test_a_jwt_subject_named_like_another_identity_is_not_that_identity(
    tmp_path: Path,
) -> None:
    """A JWT whose subject spells another identity ("token:alice") is jwt:token:alice: it
    never gets alice's active session, whatever alice switched to."""
    from fastmcp.server.auth.providers.jwt import RSAKeyPair

    keys = RSAKeyPair.generate()
    claims = {"issuer": "https://issuer.test", "audience": "raykernel"}
    impostor_jwt = keys.create_token(subject="token:alice", **claims)
    env = {
        "RAYKERNEL_AUTH_TOKENS": json.dumps({"alice": token_hash(TOKENS["alice"])}),
        "RAYKERNEL_JWT_PUBLIC_KEY": keys.public_key,
        "RAYKERNEL_JWT_ISSUER": "https://issuer.test",
        "RAYKERNEL_JWT_AUDIENCE": "raykernel",
        "RAYKERNEL_WARM_POOL_SIZE": "0",
    }
    with http_server_process(tmp_path, **env) as (url, *_):
        async with Client(url, auth=TOKENS["alice"]) as alice:
            await call(alice, "create_session", session_id="private")
            await call(alice, "switch_session", session_id="private")
            await run(alice, "secret = 'alice-only'")  # in alice's active session
        async with Client(url, auth=impostor_jwt) as impostor:
            reply = await run(impostor, "'secret' in globals()")
            assert reply["result"] == "False"
            listed = await call(impostor, "list_sessions")
            assert set(listed["sessions"]) == {"default"}
            await _refused(
                impostor, "switch_session", "SessionNotFound", session_id="token:alice/private"
            )
