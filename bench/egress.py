"""What the egress allow-list costs (issue 25): one command, one table.

    .venv/bin/python bench/egress.py [--requests 100]

A small page from an HTTP server on 127.0.0.1, fetched with urllib from inside a session: one
session whose network is an allow-list naming that server (through its proxy), one with the
network on (directly), alternating, in one run. Reported: p50 and p99 of one GET as the kernel
times it, and the difference (target: within +2 ms). Not part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import http.server
import socketserver
import sys
import tempfile
import threading

from fastmcp import Client

TIMED = (
    "import time, urllib.request\ntimes = []\n"
    "for _ in range({n}):\n"
    "    started = time.perf_counter()\n"
    "    urllib.request.urlopen('http://127.0.0.1:{port}/', timeout=10).read()\n"
    "    times.append(time.perf_counter() - started)\n"
    "times.sort()\n(times[len(times) // 2] * 1000, times[int(len(times) * 0.99) - 1] * 1000)"
)


def serve() -> int:
    class Page(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def do_GET(self) -> None:
            body = b"x" * 512
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Page)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server.server_address[1]


async def main(requests: int) -> None:
    from raykernel.server.build import build_server
    from raykernel.settings import Settings

    port = serve()
    workspace = tempfile.mkdtemp(prefix="raykernel-egress-")
    mcp, _app = build_server(Settings(workspace=workspace, config=None, warm_pool_size=0))
    async with Client(mcp) as client:
        await client.call_tool(
            "create_session", {"session_id": "listed", "network": [f"127.0.0.1:{port}"]}
        )
        await client.call_tool("create_session", {"session_id": "open"})
        figures: dict[str, list[tuple[float, float]]] = {"listed": [], "open": []}
        for _round in range(5):  # alternating, so neither side has the quieter machine
            for sid in ("listed", "open"):
                code = TIMED.format(n=requests // 5, port=port)
                reply = await client.call_tool("run_python_code", {"code": code, "session_id": sid})
                data = reply.structured_content
                assert data["success"], data
                figures[sid].append(eval(data["result"]))
    p50 = {sid: sorted(v[0] for v in values)[2] for sid, values in figures.items()}
    p99 = {sid: max(v[1] for v in values) for sid, values in figures.items()}
    print(f"urllib GET of a 512-byte page on 127.0.0.1, {requests} per session, alternating:")
    print("| | allow-list (proxy) | network on | difference |")
    print("| --- | --- | --- | --- |")
    for name, values in (("p50", p50), ("p99", p99)):
        diff = values["listed"] - values["open"]
        print(f"| {name} | {values['listed']:.2f} ms | {values['open']:.2f} ms | +{diff:.2f} ms |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100)
    options = parser.parse_args()
    asyncio.run(main(options.requests))
    sys.exit(0)
