"""Cluster figures (issue 4) on two Ray nodes on this machine (ray.cluster_utils.Cluster):

    .venv/bin/python bench/cluster.py [--sessions 10] [--repeat 5]

1. create_session pinned to the second node -> first result (a cold actor: pinned sessions do
   not use the warm pool);
2. a restarted front end finding N existing sessions (process start, Ray connect, rediscovery,
   until list_sessions shows them all);
3. with a 100 MB namespace: snapshot_session, restore_session into a new session,
   fork_session, and transfer_variable of a 100 MB array to a session on the other node.
Prints one table of medians. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from fastmcp import Client
from fastmcp.client.transports import StdioTransport

sys.path.insert(0, str(Path(__file__).resolve().parent))
from baselines import clean_env, raykernel_cmd

HUNDRED_MB = "import numpy as np\nbig = np.ones(100 * 2**20 // 8)\nsmall = {'k': 1}"


def client(address: str, workspace: str) -> Client:
    command = raykernel_cmd(workspace, "--ray-address", address)
    env = {**clean_env(), "RAYKERNEL_WARM_POOL_SIZE": "0", "RAYKERNEL_TOOLSETS": "all"}
    return Client(StdioTransport(command=command[0], args=command[1:], env=env, keep_alive=False))


async def tool(c: Client, tool_name: str, /, **arguments: Any) -> dict[str, Any]:
    result = await c.call_tool(tool_name, arguments)
    return result.structured_content


async def timed(coro: Any) -> float:
    started = time.perf_counter()
    await coro
    return time.perf_counter() - started


async def measure(address: str, worker_id: str, sessions: int, repeat: int) -> list[tuple]:
    rows = []
    workspace = tempfile.mkdtemp()
    async with client(address, workspace) as c:
        await tool(c, "list_sessions")  # Ray connected, default session up
        times = []
        for i in range(repeat):

            async def create_and_run(sid: str = f"far{i}") -> None:
                await tool(c, "create_session", session_id=sid, node_id=worker_id)
                await tool(c, "run_python_code", code="1 + 1", session_id=sid)

            times.append(await timed(create_and_run()))
        rows.append(("create on the 2nd node -> first result", times))
        for i in range(sessions - repeat):
            await tool(c, "create_session", session_id=f"kept{i}")

        await tool(c, "create_session", session_id="big", node_id=worker_id)
        await tool(c, "run_python_code", code=HUNDRED_MB, session_id="big")
        snap, restore, fork, transfer = [], [], [], []
        for i in range(repeat):
            snap.append(await timed(tool(c, "snapshot_session", session_id="big", name=f"big{i}")))
            restore.append(
                await timed(tool(c, "restore_session", snapshot=f"big{i}", session_id=f"r{i}"))
            )
            fork.append(
                await timed(tool(c, "fork_session", session_id="big", new_session_id=f"f{i}"))
            )
            transfer.append(
                await timed(
                    tool(
                        c,
                        "transfer_variable",
                        from_session="big",
                        to_session="far0",
                        name="big",
                        **{"as": f"copy{i}"},
                    )
                )
            )
            for sid in (f"r{i}", f"f{i}"):
                await tool(c, "delete_session", session_id=sid)
        rows += [
            ("snapshot_session, 100 MB namespace", snap),
            ("restore_session into a new session, 100 MB", restore),
            ("fork_session, 100 MB namespace", fork),
            ("transfer_variable, 100 MB array, across nodes", transfer),
        ]
        listed = await tool(c, "list_sessions")
        expected = set(listed["sessions"])
    found = []
    for _ in range(repeat):
        started = time.perf_counter()
        async with client(address, workspace) as c:
            listing = await tool(c, "list_sessions")
            found.append(time.perf_counter() - started)
            assert expected <= set(listing["sessions"]), "a session was not found again"
    rows.append((f"restarted front end finds {len(expected)} sessions", found))
    async with client(address, workspace) as c:
        for sid in expected - {"default"}:
            await tool(c, "delete_session", session_id=sid)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        worker = cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        rows = asyncio.run(
            measure(cluster.address, worker.node_id, max(args.sessions, args.repeat), args.repeat)
        )
    finally:
        cluster.shutdown()
    print(f"\nraykernel on a two-node Ray cluster (medians of {args.repeat})\n")
    for name, samples in rows:
        print(f"{name:<50} {statistics.median(samples):7.2f} s")


if __name__ == "__main__":
    main()
