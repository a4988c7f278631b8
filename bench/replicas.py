"""Front ends as replicas (issue 14): calls per second through one front end and through two.

    .venv/bin/python bench/replicas.py [--seconds 20] [--sessions 16] [--clients 32]

A one-node Ray cluster (ray.cluster_utils, owned and shut down by this script), two HTTP front
ends joined to it, 16 sessions, 32 stateless clients each calling `1+1` in its session (client i
in session i % 16) for a fixed time: once all through front end A, once alternating A and B.
Prints calls/s (ratio two/one) and where the CPU went per call (front ends, session actors
and kernels, the registry actor, GCS, raylet), plus the per-call costs of the pieces a paper
estimate needs: an MCP call's latency alone, a registry round trip, a session actor round trip.
Not part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import psutil
from fastmcp import Client

sys.path.insert(0, str(Path(__file__).resolve().parent))
from baselines import clean_env, raykernel_cmd

NAMESPACE = "raykernel"


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_front_end(address: str, workspace: str, log: Path) -> tuple[str, subprocess.Popen]:
    port = free_port()
    command = raykernel_cmd(workspace, "--transport", "http", "--port", str(port))
    env = {**clean_env(), "RAYKERNEL_RAY_ADDRESS": address, "RAYKERNEL_WARM_POOL_SIZE": "0"}
    proc = subprocess.Popen(command, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1)
        except urllib.error.HTTPError:
            return f"http://127.0.0.1:{port}/mcp", proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("front end did not start: " + log.read_text())


async def tool(client: Client, name: str, **arguments: Any) -> dict[str, Any]:
    result = await client.call_tool(name, arguments)
    return result.structured_content


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
            total += times.user + times.system
        except psutil.Error:
            pass
    return total


async def load(urls: list[str], sessions: list[str], clients: int, seconds: float) -> int:
    """Every client calls `1+1` in its session until time is up; the number of calls made."""
    done = 0
    stop = time.monotonic() + seconds

    async def one(i: int) -> None:
        nonlocal done
        async with Client(urls[i % len(urls)], timeout=120) as client:
            while time.monotonic() < stop:
                reply = await tool(
                    client, "run_python_code", code="1+1", session_id=sessions[i % len(sessions)]
                )
                assert reply["result"] == "2", reply
                done += 1

    await asyncio.gather(*(one(i) for i in range(clients)))
    return done


async def latency(url: str, session: str, n: int) -> float:
    async with Client(url) as client:
        samples = []
        for _ in range(n + 5):
            started = time.perf_counter()
            await tool(client, "run_python_code", code="1+1", session_id=session)
            samples.append(time.perf_counter() - started)
    return statistics.median(samples[5:])


def ray_round_trips(address: str, session_actor: str, n: int) -> tuple[float, float]:
    """p50 of a registry call and of a session actor's ping, from a driver of our own."""
    import ray

    ray.init(address=address, namespace=NAMESPACE, log_to_driver=False)
    try:
        registry = ray.get_actor("raykernel-registry")
        actor = ray.get_actor(session_actor)
        results = []
        for call in (lambda: registry.get.remote("x"), lambda: actor.ping.remote()):
            samples = []
            for _ in range(n + 5):
                started = time.perf_counter()
                ray.get(call())
                samples.append(time.perf_counter() - started)
            results.append(statistics.median(samples[5:]))
        return results[0], results[1]
    finally:
        ray.shutdown()


def descendants(pid: int) -> list[int]:
    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return []


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--sessions", type=int, default=16)
    parser.add_argument("--clients", type=int, default=32)
    args = parser.parse_args()
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": os.cpu_count() or 2})
    workspace = tempfile.mkdtemp()
    procs: list[subprocess.Popen] = []
    try:
        head = cluster.head_node
        gcs = [p.process.pid for p in head.all_processes.get("gcs_server", [])]
        raylet = [p.process.pid for p in head.all_processes.get("raylet", [])]
        (url_a, proc_a) = start_front_end(cluster.address, workspace, Path(workspace) / "a.log")
        procs.append(proc_a)
        (url_b, proc_b) = start_front_end(cluster.address, workspace, Path(workspace) / "b.log")
        procs.append(proc_b)
        sessions = [f"s{i}" for i in range(args.sessions)]

        async def setup() -> dict[str, list[int]]:
            pids: dict[str, list[int]] = {"sessions": []}
            async with Client(url_a, timeout=300) as client:
                for sid in sessions:
                    await tool(client, "create_session", session_id=sid)
                for sid in [*sessions, "default"]:
                    health = await tool(client, "get_kernel_health", session_id=sid)
                    pids["sessions"] += [health["actor_pid"], health["pid"]]
            return pids

        pids = asyncio.run(setup())
        front = [proc_a.pid, proc_b.pid]
        known = set(front + gcs + raylet + pids["sessions"])
        workers = [p for r in raylet for p in descendants(r) if p not in known]
        groups = {
            "front ends": front,
            "session actors + kernels": pids["sessions"],
            "GCS": gcs,
            "raylet": raylet,
            "other Ray workers (registry actor)": workers,
        }
        rows = []
        for label, urls in (("one front end", [url_a]), ("two front ends", [url_a, url_b])):
            asyncio.run(load(urls, sessions, args.clients, 3.0))  # warm up
            before = {k: cpu_seconds(v) for k, v in groups.items()}
            started = time.perf_counter()
            calls = asyncio.run(load(urls, sessions, args.clients, args.seconds))
            elapsed = time.perf_counter() - started
            used = {k: cpu_seconds(v) - before[k] for k, v in groups.items()}
            rows.append((label, calls / elapsed, {k: v / calls for k, v in used.items()}))
        alone = asyncio.run(latency(url_a, sessions[0], 50))
        actor_name = None
        import ray

        ray.init(address=cluster.address, namespace=NAMESPACE, log_to_driver=False)
        try:
            actor_name = next(
                n for n in ray.util.list_named_actors() if n.startswith("raykernel-session:")
            )
        finally:
            ray.shutdown()
        registry_rtt, actor_rtt = ray_round_trips(cluster.address, actor_name, 200)
    finally:
        for proc in procs:
            proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
        cluster.shutdown()

    print(
        f"\nfront ends as replicas ({os.cpu_count()} cores, {args.sessions} sessions, "
        f"{args.clients} clients, `1+1`, {args.seconds:g} s each)\n"
    )
    base = rows[0][1]
    for label, rate, per_call in rows:
        print(f"{label:16} {rate:7.1f} calls/s  ({rate / base:.2f}x one front end)")
        for part, seconds in per_call.items():
            print(f"    {part:36} {seconds * 1e3:6.2f} ms CPU per call")
    print(f"\none call alone (one client, one front end): {alone * 1e3:.1f} ms p50")
    print(f"registry actor round trip: {registry_rtt * 1e3:.2f} ms p50")
    print(f"session actor round trip (ping): {actor_rtt * 1e3:.2f} ms p50")


if __name__ == "__main__":
    main()
