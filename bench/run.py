"""raykernel benchmarks: one command, a table, ratios against the bare fastmcp floor.

    .venv/bin/python bench/run.py [--calls 200] [--sessions 20]

Rows: run_python_code `x=1; print(x)` latency per transport (in memory, stdio, streamable HTTP),
raykernel vs a bare fastmcp server doing the same exec in-process; create_session alone, and
create_session + first run_python_code result. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

from fastmcp import Client
from fastmcp.client.transports import StdioTransport

HERE = Path(__file__).resolve().parent
CODE = "x=1; print(x)"


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def _time_calls(
    call: Callable[[], Awaitable[Any]], n: int, warmup: int = 20
) -> tuple[float, float]:
    for _ in range(warmup):
        await call()
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        await call()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples), _pct(samples, 0.99)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("RAYKERNEL_")}


class _HttpServer:
    def __init__(self, command: list[str], port: int) -> None:
        self.command, self.port = command, port

    async def __aenter__(self) -> str:
        self.proc = subprocess.Popen(  # noqa: ASYNC220 - starting, not waiting
            self.command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env()
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return f"http://127.0.0.1:{self.port}/mcp"
            await asyncio.sleep(0.1)
        raise RuntimeError(f"server did not start: {self.command}")

    async def __aexit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.wait(60)


def _raykernel_cmd(workspace: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "raykernel", "--workspace", workspace, *extra]


async def _latency(client_cm: AbstractAsyncContextManager[Client], n: int) -> tuple[float, float]:
    async with client_cm as client:
        await client.call_tool("run_python_code", {"code": "1"})  # waits for Ray and default
        return await _time_calls(lambda: client.call_tool("run_python_code", {"code": CODE}), n)


async def bench_latency(n: int, workspace: str) -> list[tuple[str, tuple[float, float], tuple]]:
    from raykernel.server import build_server
    from raykernel.settings import Settings

    bare_cmd = [sys.executable, str(HERE / "bare_server.py")]
    rows = []
    import bare_server

    mcp, _app = build_server(Settings(workspace=workspace, config=None))
    rows.append(
        ("memory", await _latency(Client(mcp), n), await _latency(Client(bare_server.mcp), n))
    )

    def stdio(cmd: list[str]) -> Client:
        return Client(
            StdioTransport(cmd[0], cmd[1:], env=_env(), keep_alive=False, log_file=Path(os.devnull))
        )

    rows.append(
        (
            "stdio",
            await _latency(stdio(_raykernel_cmd(workspace)), n),
            await _latency(stdio(bare_cmd), n),
        )
    )

    port_rk, port_bare = _free_port(), _free_port()
    async with _HttpServer(
        _raykernel_cmd(workspace, "--transport", "http", "--port", str(port_rk)), port_rk
    ) as url_rk:
        async with _HttpServer([*bare_cmd, "http", str(port_bare)], port_bare) as url_bare:
            rows.append(
                ("http", await _latency(Client(url_rk), n), await _latency(Client(url_bare), n))
            )
    return rows


async def bench_sessions(n: int, workspace: str) -> dict[str, tuple[float, float]]:
    from raykernel.server import build_server
    from raykernel.settings import Settings

    mcp, _app = build_server(Settings(workspace=workspace, config=None, max_sessions=n + 2))
    create, first = [], []
    async with Client(mcp) as client:
        await client.call_tool("list_sessions", {})
        for i in range(n):
            started = time.perf_counter()
            await client.call_tool("create_session", {"session_id": f"b{i}"})
            created = time.perf_counter()
            await client.call_tool("run_python_code", {"code": "1+1", "session_id": f"b{i}"})
            done = time.perf_counter()
            create.append(created - started)
            first.append(done - started)
            await client.call_tool("delete_session", {"session_id": f"b{i}"})
    return {
        "create_session": (statistics.median(create), _pct(create, 0.99)),
        "create_session + first result": (statistics.median(first), _pct(first, 0.99)),
    }


async def bench_load(calls: int, workspace: str) -> dict[str, tuple[float, float]]:
    """16 clients, each on its own session, `1+1` in a loop; with and without a neighbour
    session spinning a busy loop."""
    from raykernel.server import build_server
    from raykernel.settings import Settings

    mcp, _app = build_server(Settings(workspace=workspace, config=None, max_sessions=40))
    rows = {}
    async with Client(mcp) as anchor:
        ids = [f"load{i}" for i in range(16)]
        for sid in [*ids, "neighbour"]:
            await anchor.call_tool("create_session", {"session_id": sid})

        async def worker(sid: str) -> list[float]:
            async with Client(mcp) as client:
                samples = []
                for _ in range(calls):
                    started = time.perf_counter()
                    await client.call_tool("run_python_code", {"code": "1+1", "session_id": sid})
                    samples.append(time.perf_counter() - started)
                return samples

        for label, spin in (
            ("16 clients, quiet neighbour", False),
            ("16 clients, busy neighbour", True),
        ):
            spinner = None
            if spin:
                spinner = asyncio.ensure_future(
                    anchor.call_tool(
                        "run_python_code",
                        {"code": "while True: pass", "session_id": "neighbour", "timeout": 600},
                    )
                )
                await asyncio.sleep(0.5)
            samples = [
                x for batch in await asyncio.gather(*(worker(s) for s in ids)) for x in batch
            ]
            rows[label] = (statistics.median(samples), _pct(samples, 0.99))
            if spinner is not None:
                await anchor.call_tool("interrupt_session", {"session_id": "neighbour"})
                await spinner
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--sessions", type=int, default=20)
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    with tempfile.TemporaryDirectory() as workspace:
        latency = asyncio.run(bench_latency(args.calls, workspace))
        sessions = asyncio.run(bench_sessions(args.sessions, workspace))
        load = asyncio.run(bench_load(max(args.calls // 4, 10), workspace))
    print(f"\nraykernel benchmarks ({os.cpu_count()} cores), times in ms\n")
    print(f"{'row':44} {'p50':>9} {'p99':>9} {'floor p50':>10} {'ratio p50':>10}")
    for transport, (p50, p99), (floor50, _floor99) in latency:
        label = f"run_python_code `{CODE}` over {transport}"
        print(
            f"{label:44} {p50 * 1e3:9.2f} {p99 * 1e3:9.2f} {floor50 * 1e3:10.2f} "
            f"{p50 / floor50:9.2f}x"
        )
    for label, (p50, p99) in sessions.items():
        print(f"{label:44} {p50 * 1e3:9.2f} {p99 * 1e3:9.2f} {'-':>10} {'-':>10}")
    quiet = load["16 clients, quiet neighbour"]
    for label, (p50, p99) in load.items():
        label = f"run_python_code `1+1`, {label}"
        print(
            f"{label:44} {p50 * 1e3:9.2f} {p99 * 1e3:9.2f} {quiet[0] * 1e3:10.2f} "
            f"{p50 / quiet[0]:9.2f}x"
        )
    print(
        "\nfloor: bench/bare_server.py, a bare fastmcp server exec'ing in-process "
        "(same transport, same client)."
    )


if __name__ == "__main__":
    main()
