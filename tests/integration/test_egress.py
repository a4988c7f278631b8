"""Egress by allow-list, from inside a session through a real client: the kernel has no network
of its own, and its proxy (in the session's actor, reached through the session's own
127.0.0.1:3128) lets through the listed destinations only. Two HTTP servers on 127.0.0.1, run
by the test: one allowed, one not."""

from __future__ import annotations

import http.server
import socketserver
import threading
from ast import literal_eval
from collections.abc import Iterator

import pytest
from fastmcp import Client

from tests.helpers import call, call_error, run


def _server(text: str) -> tuple[socketserver.ThreadingTCPServer, int]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = text.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


@pytest.fixture
def servers() -> Iterator[tuple[int, int]]:
    allowed, a = _server("from the allowed server")
    other, b = _server("from the other server")
    yield a, b
    for server in (allowed, other):
        server.shutdown()
        server.server_close()


GET = (
    "import urllib.request, urllib.error\n"
    "def get(port):\n"
    "    try:\n"
    "        reply = urllib.request.urlopen(f'http://127.0.0.1:{port}/', timeout=10)\n"
    "        return reply.read().decode()\n"
    "    except urllib.error.HTTPError as exc:\n"
    "        return f'{exc.code} {exc.read().decode().strip()}'\n"
)


async def test_only_listed_destinations_answer(client: Client, servers: tuple[int, int]) -> None:
    a, b = servers
    created = await call(client, "create_session", session_id="listed", network=[f"127.0.0.1:{a}"])
    await call(client, "create_session", session_id="open")
    try:
        assert created["network"] == [f"127.0.0.1:{a}"]
        assert created["isolation"]["network"].startswith("allowlist")
        await run(client, GET, session_id="listed")
        assert (await run(client, f"get({a})", session_id="listed"))["result"] == (
            "'from the allowed server'"
        )
        refusing = await run(client, f"get({b})", session_id="listed")
        refused = literal_eval(refusing["result"])
        assert refused.startswith("403 raykernel: 127.0.0.1:") and "not in this session" in refused
        # The run says what its list refused meanwhile (its trace carries the same).
        assert refusing["network_refused"] == {"count": 1, "last": f"127.0.0.1:{b}"}
        assert f"allowed: 127.0.0.1:{a}" in refused
        # requests and curl read the same proxy variables.
        via_requests = await run(
            client,
            f"import requests\nrequests.get('http://127.0.0.1:{a}/', timeout=10).text",
            session_id="listed",
        )
        assert via_requests["result"] == "'from the allowed server'", via_requests
        via_curl = await run(
            client,
            "import subprocess\nsubprocess.run(['curl', '-s', '-o', '/dev/null', '-w', "
            f"'%{{http_code}}', 'http://127.0.0.1:{b}/'], capture_output=True, text=True).stdout",
            session_id="listed",
        )
        assert via_curl["result"] == "'403'", via_curl
        # A tunnel (what HTTPS uses) and SOCKS5 obey the same list.
        tunnel = await run(
            client,
            "import http.client\ndef tunnel(port):\n"
            "    conn = http.client.HTTPConnection('127.0.0.1', 3128, timeout=10)\n"
            "    conn.set_tunnel('127.0.0.1', port)\n"
            "    try:\n"
            "        conn.request('GET', '/')\n"
            "        return conn.getresponse().read().decode()\n"
            "    except OSError as exc:\n"
            "        return str(exc)\n"
            f"tunnel({a}), tunnel({b})",
            session_id="listed",
        )
        assert tunnel["result"].startswith(
            "('from the allowed server', 'Tunnel connection failed: 403"
        )
        socks = await run(
            client,
            "import socket, struct\ndef socks(port):\n"
            "    s = socket.create_connection(('127.0.0.1', 3128), timeout=10)\n"
            "    s.sendall(b'\\x05\\x01\\x00'); s.recv(2)\n"
            "    s.sendall(b'\\x05\\x01\\x00\\x01' + socket.inet_aton('127.0.0.1') + "
            "struct.pack('!H', port))\n"
            "    return s.recv(10)[1]\n"
            f"socks({a}), socks({b})",
            session_id="listed",
        )
        assert socks["result"] == "(0, 2)"  # granted; not allowed by the ruleset
        # Nothing reaches out but through the proxy.
        raw = await run(
            client,
            f"import socket\nsocket.create_connection(('127.0.0.1', {a}), timeout=3)",
            session_id="listed",
        )
        assert raw["success"] is False and raw["error"]["ename"] == "ConnectionRefusedError"
        # The neighbour with the network on reaches both, directly.
        await run(client, GET, session_id="open")
        both = await run(client, f"get({a}), get({b})", session_id="open")
        assert both["result"] == "('from the allowed server', 'from the other server')"
        # Health says what the list allows and what it refused.
        health = await call(client, "get_kernel_health", session_id="listed")
        network = health["network"]
        assert network["mode"] == "allowlist" and network["allowed"] == [f"127.0.0.1:{a}"]
        assert network["refused"] >= 4 and network["last_refused"] == f"127.0.0.1:{b}"
    finally:
        await call(client, "delete_session", session_id="listed")
        await call(client, "delete_session", session_id="open")


async def test_an_allowed_name_that_resolves_to_a_denied_range_is_refused(
    client: Client, servers: tuple[int, int]
) -> None:
    a, _b = servers
    await call(client, "create_session", session_id="by-name", network=[f"localhost:{a}"])
    try:
        await run(client, GET, session_id="by-name")
        refused = literal_eval((await run(client, f"get({a})", session_id="by-name"))["result"])
        assert refused.startswith("403")  # 127.0.0.1 by address is not localhost by name
        named = await run(
            client,
            "import urllib.request, urllib.error\ntry:\n"
            f"    urllib.request.urlopen('http://localhost:{a}/', timeout=10)\n"
            "except urllib.error.HTTPError as exc:\n    reason = exc.read().decode()\nreason",
            session_id="by-name",
        )
        assert "resolves to 127.0.0.1" in named["result"] and "denied range" in named["result"]
    finally:
        await call(client, "delete_session", session_id="by-name")


async def test_a_live_sessions_list_changes_for_its_new_connections(
    client: Client, servers: tuple[int, int]
) -> None:
    a, b = servers
    await call(client, "create_session", session_id="switched", network=[f"127.0.0.1:{a}"])
    try:
        await run(client, GET, session_id="switched")
        assert (await run(client, f"get({a})[:4]", session_id="switched"))["result"] == "'from'"
        changed = await call(
            client, "set_session_network", session_id="switched", network=[f"127.0.0.1:{b}"]
        )
        assert changed["network"]["allowed"] == [f"127.0.0.1:{b}"]
        after = await run(client, f"get({a})[:3], get({b})", session_id="switched")
        assert after["result"] == "('403', 'from the other server')"
        assert (await run(client, "x = 1\nx", session_id="switched"))["result"] == "1"
        listed = (await call(client, "list_sessions"))["sessions"]["switched"]
        assert listed["network"] == [f"127.0.0.1:{b}"]
        # A bad destination changes nothing; an "on" session has no list to change.
        error = await call_error(
            client, "set_session_network", session_id="switched", network=["not a host!"]
        )
        assert error.startswith("InvalidArgument:")
        assert (await run(client, f"get({b})", session_id="switched"))["result"].startswith("'from")
        error = await call_error(
            client, "set_session_network", session_id="default", network=["pypi.org"]
        )
        assert error.startswith("InvalidArgument:") and "only an allow-list" in error
    finally:
        await call(client, "delete_session", session_id="switched")


async def test_a_bad_destination_is_refused_before_anything_starts(client: Client) -> None:
    for bad in (["http://pypi.org"], ["pypi.org:99999"], ["exa mple.com"], [""]):
        error = await call_error(client, "create_session", session_id="never", network=bad)
        assert error.startswith("InvalidArgument:"), (bad, error)
    assert "never" not in (await call(client, "list_sessions"))["sessions"]
