"""The stdio wire against hostile lines, through the real server as a subprocess: every line
gets an answer (or, for a malformed response, deliberately none), nothing stops the server, and
a session's state survives it all."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import server_command, subprocess_env
from tests.stdio_peer import StdioPeer

pytestmark = [pytest.mark.subprocess, pytest.mark.fuzz]

LIMIT = 1 << 20  # RAYKERNEL_MAX_REQUEST_BYTES for this server: one line, one message


def _call(request_id: object, arguments: str) -> bytes:
    return (
        f'{{"jsonrpc": "2.0", "id": {request_id}, "method": "tools/call", '
        f'"params": {{"name": "ping", "arguments": {arguments}}}}}\n'
    ).encode()


def _error(peer: StdioPeer) -> tuple[object, int]:
    reply = peer.receive(30)
    assert "error" in reply, reply
    return reply["id"], reply["error"]["code"]


@pytest.fixture
def peer(tmp_path: Path):
    server = StdioPeer(
        server_command("--workspace", str(tmp_path)),
        subprocess_env(RAYKERNEL_MAX_REQUEST_BYTES=str(LIMIT), RAYKERNEL_WARM_POOL_SIZE="0"),
        str(tmp_path / "server.log"),
    )
    server.initialize()
    yield server
    server.close()


def test_hostile_lines_each_get_an_answer_and_the_server_lives(peer: StdioPeer) -> None:
    secret = peer.call_tool("run_python_code", {"code": "secret = 'kept'\nsecret"})
    assert secret["result"]["structuredContent"]["result"] == "'kept'"

    # Depth: the line that used to end the process, bare and inside a call.
    peer.send_raw(b"[" * 10_000 + b"\n")
    assert _error(peer) == (None, -32700)
    peer.send_raw(_call(41, '{"x": ' + "[" * 1000 + "]" * 1000 + "}"))
    assert _error(peer) == (41, -32700)  # found by scanning: the client is not left waiting
    peer.send_raw(_call(42, '{"x": ' + "[" * 500 + "]" * 500 + "}"))
    assert _error(peer) == (42, -32700)
    # A lone surrogate: valid JSON for Python, not for the SDK's parser.
    peer.send_raw(_call(43, '{"x": "\\ud800"}'))
    assert _error(peer) == (43, -32700)
    # Ids MCP does not allow: object, array, null, float, bool -> -32600 with id null.
    for bad_id in ("{}", "[1]", "null", "1.5", "true"):
        peer.send_raw(f'{{"jsonrpc": "2.0", "id": {bad_id}, "method": "ping"}}\n'.encode())
        assert _error(peer) == (None, -32600), bad_id
    # Not a message object at all.
    for value in (b"42\n", b'"text"\n', b"[]\n"):
        peer.send_raw(value)
        assert _error(peer) == (None, -32600), value
    # A line above the limit is dropped as it streams in, and answered.
    peer.send_raw(b'{"jsonrpc": "2.0", "id": 44, "method": "ping", "pad": "' + b"x" * (2 * LIMIT))
    peer.send_raw(b'"}\n')
    assert _error(peer) == (None, -32600)
    # A malformed response is not answered (JSON-RPC forbids it): the next reply is the ping's.
    peer.send_raw(b'{"jsonrpc": "2.0", "id": {}, "result": {}}\n')
    # Pipelining: several requests in one write, each answered, in order.
    pipelined = b"".join(
        json.dumps({"jsonrpc": "2.0", "id": 100 + i, "method": "ping"}).encode() + b"\n"
        for i in range(3)
    )
    peer.send_raw(pipelined)
    assert [peer.receive(30)["id"] for _ in range(3)] == [100, 101, 102]

    alive = peer.call_tool("run_python_code", {"code": "secret"})
    assert alive["result"]["structuredContent"]["result"] == "'kept'"
    assert peer.proc.poll() is None
    for line in peer.raw_stdout:
        assert json.loads(line)["jsonrpc"] == "2.0"


def test_resource_uris_are_normalised_before_matching(peer: StdioPeer) -> None:
    """A raw client sends URIs as written; the server removes dot segments (RFC 3986) as the
    fastmcp client does, so every client gets the same answer."""
    peer.call_tool("write_file", {"path": "outputs/n.txt", "content": "normal"})
    same = peer.request("resources/read", {"uri": "raykernel://outputs/x/../n.txt"})
    assert same["result"]["contents"][0]["text"] == "normal"
    climbed = peer.request("resources/read", {"uri": "raykernel://outputs/../../../etc/passwd"})
    assert climbed["error"]["message"].startswith("ResourceNotFound:")
    default = peer.request("resources/read", {"uri": "raykernel://sessions/x/../default"})
    assert json.loads(default["result"]["contents"][0]["text"])["session_id"] == "default"
    store = peer.request("resources/read", {"uri": "raykernel://outputs/../.raykernel/x"})
    assert store["error"]["message"].startswith("ResourceNotFound:")
