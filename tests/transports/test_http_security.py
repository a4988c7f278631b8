"""HTTP auth and limits against a real server subprocess: bearer token, JWT, loopback rule,
body size limit."""

from __future__ import annotations

import asyncio
import json
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastmcp import Client

from tests.helpers import http_server_process, server_command, subprocess_env

pytestmark = pytest.mark.subprocess


@contextmanager
def http_server(workspace: Path, **env: str) -> Iterator[str]:
    with http_server_process(workspace, **env) as server:
        yield server.url


def _post(url: str, body: bytes, token: str | None = None) -> int:
    headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


async def test_bearer_token_is_required_and_errors_do_not_leak(tmp_path: Path) -> None:
    with http_server(
        tmp_path, RAYKERNEL_AUTH_TOKEN="s3cret-token", RAYKERNEL_MAX_REQUEST_BYTES="200000"
    ) as url:
        ping = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping"}).encode()
        assert _post(url, ping) == 401
        assert _post(url, ping, token="wrong") == 401
        async with Client(url, auth="s3cret-token") as client:
            reply = await client.call_tool("run_python_code", {"code": "6 * 7"})
            assert reply.structured_content["result"] == "42"
        # Body size limit: a request above it is refused before it is read.
        big = json.dumps(
            {
                "jsonrpc": "2.0",
                "id": 2,
                "method": "tools/call",
                "params": {"name": "run_python_code", "arguments": {"code": "#" * 300_000}},
            }
        ).encode()
        assert _post(url, big, token="s3cret-token") == 413
    log = (tmp_path / "server.log").read_text()
    assert "s3cret-token" not in log


async def test_jwt_verifier(tmp_path: Path) -> None:
    from fastmcp.server.auth.providers.jwt import RSAKeyPair

    keys = RSAKeyPair.generate()
    good = keys.create_token(subject="alice", issuer="https://issuer.test", audience="raykernel")
    bob = keys.create_token(subject="bob", issuer="https://issuer.test", audience="raykernel")
    forged = RSAKeyPair.generate().create_token(
        subject="mallory", issuer="https://issuer.test", audience="raykernel"
    )
    with http_server(
        tmp_path,
        RAYKERNEL_JWT_PUBLIC_KEY=keys.public_key,
        RAYKERNEL_JWT_ISSUER="https://issuer.test",
        RAYKERNEL_JWT_AUDIENCE="raykernel",
    ) as url:
        ping = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping"}).encode()
        assert _post(url, ping, token=forged) == 401
        async with Client(url, auth=good) as alice, Client(url, auth=bob) as other:
            reply = await alice.call_tool("list_sessions", {})
            assert "default" in reply.structured_content["sessions"]
            # Stateless clients with an identity each have their own active session.
            await alice.call_tool("create_session", {"session_id": "alices"})
            await alice.call_tool("switch_session", {"session_id": "alices"})
            mine = await alice.call_tool("run_python_code", {"code": "1"})
            theirs = await other.call_tool("run_python_code", {"code": "1"})
            assert mine.structured_content["session_id"] == "alices"
            assert theirs.structured_content["session_id"] == "default"


def test_non_loopback_without_auth_refuses_to_start(tmp_path: Path) -> None:
    done = subprocess.run(
        server_command("--transport", "http", "--host", "0.0.0.0", "--workspace", str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=60,
        env=subprocess_env(),
    )
    assert done.returncode == 2
    assert "non-loopback" in done.stderr and "RAYKERNEL_AUTH_TOKEN" in done.stderr


async def test_a_server_with_no_auth_settings_makes_and_requires_its_own_token(
    tmp_path: Path,
) -> None:
    """Jupyter's rule: a token even on localhost. Made at first start (0600 in state_dir),
    the same next time, printed with a ready line for a client, shown by --print-token."""
    ping = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping"}).encode()
    state = tmp_path / "state"
    with http_server_process(tmp_path, RAYKERNEL_STATE_DIR=str(state)) as (url, _, token):
        assert token and len(token) >= 40
        assert (state / "http-token").stat().st_mode & 0o777 == 0o600
        assert _post(url, ping) == 401  # any local process without the token
        assert _post(url, ping, token="not-it") == 401
        assert _post(url, ping, token=token) not in (401, 403)  # past auth (a bare ping: 400)
        async with Client(url, auth=token) as client:
            health = (await client.call_tool("get_kernel_health", {})).structured_content
            assert health["ray_actor"] is False  # identity "local": the laptop's own default
    log = (tmp_path / "server.log").read_text()
    assert f'--header "Authorization: Bearer {token}"' in log
    assert "claude mcp add --transport http raykernel" in log
    with http_server_process(tmp_path, "again.log", RAYKERNEL_STATE_DIR=str(state)) as again:
        assert again.token == token
    printed = await asyncio.to_thread(
        subprocess.run,
        server_command("--print-token", "--workspace", str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=60,
        env=subprocess_env(RAYKERNEL_STATE_DIR=str(state)),
    )
    assert printed.returncode == 0 and printed.stdout.strip() == token


async def test_opting_out_of_the_token_is_explicit_and_loopback_only(tmp_path: Path) -> None:
    ping = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping"}).encode()
    with http_server_process(tmp_path, RAYKERNEL_AUTH="none") as (url, _, token):
        assert token is None
        assert _post(url, ping) not in (401, 403)
    assert "WITHOUT authentication" in (tmp_path / "server.log").read_text()
    done = await asyncio.to_thread(
        subprocess.run,
        server_command("--transport", "http", "--host", "0.0.0.0", "--workspace", str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=60,
        env=subprocess_env(RAYKERNEL_AUTH="none"),
    )
    assert done.returncode == 2 and "non-loopback" in done.stderr
