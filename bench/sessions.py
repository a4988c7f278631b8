"""Sessions that outlive their processes (issue 12): one command, one table.

    .venv/bin/python bench/sessions.py [--sessions 1000] [--resident 12]

1. N sessions, each holding ~1 MB of its own state, created on this machine; then every one
   answers `x` with its own value. Reported: the whole process tree's memory (PSS: the server,
   Ray's processes, every actor and kernel), its peak, and the wall time of each phase, against
   what N Jupyter kernels would hold (N x one idle kernel's USS).
2. hibernate and resume (resume + first result) of a session holding 10 MB, p50 / p99.
3. what checkpoints cost: back-to-back runs that each change 1 MB, checkpoint "after_run"
   against "off" (the checkpoint is taken after the reply, before the next run).
4. cold sessions under churn (issue 24): 300 sessions of 1 MB, 16 resident, each asked once in
   shuffled order: the whole pass, and one call's p50 / p99.
5. create_session of sessions that have not run yet: 10,000 of them, and one call's p50.
Not part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
from fastmcp import Client

sys.path.insert(0, str(Path(__file__).resolve().parent))
from baselines import Jupyter

ROWS: list[tuple[str, str, str, str]] = []


def row(name: str, value: str, baseline: str = "", ratio: float | None = None) -> None:
    ROWS.append((name, value, baseline, f"{ratio:.2f}x" if ratio is not None else ""))
    print(f"  {name}: {value}  {baseline}  {ROWS[-1][3]}", file=sys.stderr, flush=True)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def tree_pss() -> int:
    """PSS of this process and everything under it (Ray, actors, kernels)."""
    total = 0
    me = psutil.Process()
    for process in [me, *me.children(recursive=True)]:
        try:
            total += process.memory_full_info().pss
        except psutil.Error:
            pass
    return total


class Peak:
    """The largest tree_pss() seen, sampled every half second while it runs."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> Peak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._stop.wait(0.5):
            self.peak = max(self.peak, tree_pss())


def gib(size: float) -> str:
    return f"{size / 2**30:.2f} GiB"


async def bench_many(n: int, resident: int, workspace: str) -> None:
    from raykernel.server.build import build_server
    from raykernel.settings import Settings

    mcp, _app = build_server(
        Settings(
            workspace=workspace,
            config=None,
            max_sessions=n + 10,
            max_resident_sessions=resident,
            warm_pool_size=2,
            hibernate_after=0,
            toolsets=["all"],
        )
    )
    async with Client(mcp) as client:
        await client.call_tool("list_sessions", {})
        with Peak() as peak:
            started = time.perf_counter()
            for i in range(n):
                sid = f"s{i}"
                await client.call_tool("create_session", {"session_id": sid})
                await client.call_tool(
                    "run_python_code",
                    {"code": f"import os\nx = {i}\nstate = os.urandom(1 << 20)", "session_id": sid},
                )
            created = time.perf_counter() - started
            started = time.perf_counter()
            for i in range(n):
                reply = await client.call_tool(
                    "run_python_code", {"code": "x", "session_id": f"s{i}"}
                )
                assert reply.structured_content["result"] == str(i), reply.structured_content
            answered = time.perf_counter() - started
        settled = tree_pss()
    kernel = jupyter_uss()
    row(
        f"1. {n} sessions with 1 MB each, whole tree PSS, peak",
        gib(peak.peak),
        f"{n} Jupyter kernels {gib(kernel * n)}",
        peak.peak / (kernel * n),
    )
    row(f"1. {n} sessions, whole tree PSS at the end", gib(settled), "target <= 3 GiB")
    row(f"1. create {n} sessions and give each 1 MB", f"{created:.0f} s", f"resident {resident}")
    row(f"1. every one of {n} answers `x` (most resume)", f"{answered:.0f} s")


def jupyter_uss() -> int:
    jupyter = Jupyter()
    try:
        jupyter.execute("1")
        time.sleep(1)
        return psutil.Process(jupyter.pid).memory_full_info().uss
    finally:
        jupyter.close()


async def bench_resume(n: int, workspace: str) -> None:
    from raykernel.server.build import build_server
    from raykernel.settings import Settings

    mcp, _app = build_server(
        Settings(workspace=workspace, config=None, hibernate_after=0, toolsets=["all"])
    )
    hibernates, resumes = [], []
    async with Client(mcp) as client:
        await client.call_tool(
            "run_python_code", {"code": "import os\nx = 1\nstate = os.urandom(10 << 20)"}
        )
        await asyncio.sleep(1)  # the pool fills
        for _ in range(n):
            started = time.perf_counter()
            await client.call_tool("hibernate_session", {})
            hibernates.append(time.perf_counter() - started)
            await asyncio.sleep(0.5)  # the recycled actor is back in the pool
            started = time.perf_counter()
            reply = await client.call_tool("run_python_code", {"code": "len(state)"})
            resumes.append(time.perf_counter() - started)
            assert reply.structured_content["resumed"] is True
    row(
        "2. resume + first result, 10 MB of state, p50 / p99",
        f"{statistics.median(resumes) * 1e3:.0f} / {pct(resumes, 0.99) * 1e3:.0f} ms",
        "target p50 <= 300 ms; E2B ~1 s",
    )
    row(
        "2. hibernate, 10 MB of state, p50 / p99",
        f"{statistics.median(hibernates) * 1e3:.0f} / {pct(hibernates, 0.99) * 1e3:.0f} ms",
        "E2B ~4 s per GB",
    )


async def bench_checkpoint(n: int, workspace: str) -> None:
    from raykernel.server.build import build_server
    from raykernel.settings import Settings

    mcp, _app = build_server(Settings(workspace=workspace, config=None, hibernate_after=0))
    results = {}
    code = "import os\nbuf = os.urandom(1 << 20)"
    async with Client(mcp) as client:
        await client.call_tool("list_sessions", {})
        for mode in ("off", "after_run"):
            sid = f"cp-{mode}"
            await client.call_tool("create_session", {"session_id": sid, "checkpoint": mode})
            args = {"code": code, "session_id": sid}
            for _ in range(5):
                await client.call_tool("run_python_code", args)
            for pause in (0.2, 0.0):  # a client that reads the reply first; back to back
                samples = []
                for _ in range(n):
                    await asyncio.sleep(pause)
                    started = time.perf_counter()
                    await client.call_tool("run_python_code", args)
                    samples.append(time.perf_counter() - started)
                results[mode, pause] = statistics.median(samples)
    for pause, label in ((0.2, "0.2 s apart"), (0.0, "back to back")):
        after, off = results["after_run", pause], results["off", pause]
        row(
            f"3. runs changing 1 MB, {label}, checkpoint after_run, p50",
            f"{after * 1e3:.1f} ms",
            f"off {off * 1e3:.1f} ms",
            after / off,
        )


async def bench_cold(n: int, resident: int, workspace: str) -> None:
    """Issue 24's churn: N sessions holding 1 MB each, more than can be resident; then each
    asked once, in shuffled order (most resume, each making room for itself)."""
    import random

    from raykernel.server.build import build_server
    from raykernel.settings import Settings

    mcp, _app = build_server(
        Settings(
            workspace=workspace,
            config=None,
            max_sessions=n + 10,
            max_resident_sessions=resident,
            warm_pool_size=2,
            hibernate_after=0,
        )
    )
    async with Client(mcp) as client:
        await client.call_tool("list_sessions", {})
        for i in range(n):
            await client.call_tool("create_session", {"session_id": f"c{i}"})
            await client.call_tool(
                "run_python_code",
                {"code": f"import os\nx = {i}\nstate = os.urandom(1 << 20)", "session_id": f"c{i}"},
            )
        order = list(range(n))
        random.Random(24).shuffle(order)
        calls = []
        started = time.perf_counter()
        for i in order:
            begun = time.perf_counter()
            reply = await client.call_tool("run_python_code", {"code": "x", "session_id": f"c{i}"})
            calls.append(time.perf_counter() - begun)
            assert reply.structured_content["result"] == str(i), reply.structured_content
        asked = time.perf_counter() - started
    row(
        f"4. {n} sessions (1 MB each, {resident} resident), each asked once in shuffled order",
        f"{asked:.0f} s",
        "target <= 60 s for 300",
    )
    row(
        "4. one call to a session that must resume, p50 / p99",
        f"{statistics.median(calls) * 1e3:.0f} / {pct(calls, 0.99) * 1e3:.0f} ms",
        "target p50 <= 150 ms",
    )


async def bench_create(n: int, workspace: str) -> None:
    """create_session alone (a session that has never run code)."""
    from raykernel.server.build import build_server
    from raykernel.settings import Settings

    mcp, _app = build_server(
        Settings(workspace=workspace, config=None, max_sessions=n + 10, hibernate_after=0)
    )
    async with Client(mcp) as client:
        await client.call_tool("list_sessions", {})
        samples = []
        started = time.perf_counter()
        for i in range(n):
            begun = time.perf_counter()
            await client.call_tool("create_session", {"session_id": f"n{i}"})
            samples.append(time.perf_counter() - begun)
        total = time.perf_counter() - started
        first = await client.call_tool("run_python_code", {"code": "1 + 1", "session_id": "n0"})
        assert first.structured_content["result"] == "2"
    row(
        f"5. create {n} sessions that have not run yet",
        f"{total:.1f} s",
        "target < 60 s for 10,000",
    )
    row(
        "5. create_session, p50 / p99",
        f"{statistics.median(samples) * 1e3:.1f} / {pct(samples, 0.99) * 1e3:.1f} ms",
        "target p50 <= 5 ms",
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--resident", type=int, default=12)
    parser.add_argument("--rows", default="1,2,3,4,5")
    parser.add_argument("--churn", type=int, default=300, help="sessions of row 4")
    parser.add_argument("--churn-resident", type=int, default=16)
    parser.add_argument("--creates", type=int, default=10_000, help="sessions of row 5")
    args = parser.parse_args()
    wanted = set(args.rows.split(","))
    with tempfile.TemporaryDirectory() as workspace:
        if "1" in wanted:
            asyncio.run(bench_many(args.sessions, args.resident, workspace))
        if "2" in wanted:
            asyncio.run(bench_resume(20, workspace))
        if "3" in wanted:
            asyncio.run(bench_checkpoint(50, workspace))
    for number, bench in (
        ("4", lambda w: bench_cold(args.churn, args.churn_resident, w)),
        ("5", lambda w: bench_create(args.creates, w)),
    ):
        if number in wanted:
            with tempfile.TemporaryDirectory() as workspace:
                asyncio.run(bench(workspace))
    print(f"\nraykernel sessions beyond processes ({psutil.cpu_count()} cores)\n")
    widths = [max(len(r[i]) for r in ROWS) for i in range(4)]
    for name, value, baseline, ratio in ROWS:
        print(
            "  ".join(
                (f"{name:{widths[0]}}", f"{value:>{widths[1]}}", f"{baseline:{widths[2]}}", ratio)
            )
        )


if __name__ == "__main__":
    main()
