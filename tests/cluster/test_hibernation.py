"""Hibernation on a two-node cluster (ray.cluster_utils, token auth on): a session hibernated on
node 2 resumes on node 1 once node 2 is gone, and a front end killed with SIGKILL in the middle
of a hibernation loses nothing: the next front end finds the session, live or hibernated, with
its state."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.helpers import cluster_client, create
from tests.helpers import server_command, subprocess_env
from tests.stdio_peer import StdioPeer

pytestmark = pytest.mark.subprocess


async def test_hibernated_sessions_move_and_survive_their_front_end(
    cluster: Any, tmp_path: Path
) -> None:
    head_id, worker_id = cluster.head_node.node_id, cluster.worker.node_id
    async with cluster_client(cluster, tmp_path) as client:
        created = await create(
            client, session_id="wanderer", node_id=worker_id, node_affinity="soft"
        )
        assert created["node_id"] == worker_id
        await client.call_tool("run_python_code", {"code": "x = 7", "session_id": "wanderer"})
        await client.call_tool("hibernate_session", {"session_id": "wanderer"})
        cluster.remove_node(cluster.worker)
        reply = await client.call_tool(
            "run_python_code", {"code": "x * 6", "session_id": "wanderer"}
        )
        assert reply.structured_content["result"] == "42"
        assert reply.structured_content["resumed"] is True
        health = await client.call_tool("get_kernel_health", {"session_id": "wanderer"})
        assert health.structured_content["node_id"] == head_id

    # A front end killed (SIGKILL) while a session hibernates.
    peer = StdioPeer(
        server_command("--workspace", str(tmp_path), "--ray-address", cluster.address),
        subprocess_env(RAYKERNEL_WARM_POOL_SIZE="0"),
        str(tmp_path / "killed.log"),
    )
    try:
        peer.initialize()
        peer.call_tool("create_session", {"session_id": "precious"})
        setup = "big = bytes(200_000_000)\nmark = 'kept'"
        assert peer.call_tool("run_python_code", {"code": setup, "session_id": "precious"})[
            "result"
        ]["structuredContent"]["success"]
        peer.send(
            {
                "jsonrpc": "2.0",
                "id": 999,
                "method": "tools/call",
                "params": {"name": "hibernate_session", "arguments": {"session_id": "precious"}},
            }
        )
        await asyncio.sleep(0.4)
    finally:
        peer.proc.kill()
        peer.proc.wait(30)
    async with cluster_client(cluster, tmp_path) as client:
        listing = (await client.call_tool("list_sessions", {})).structured_content
        assert listing["sessions"]["precious"]["status"] in ("healthy", "hibernated")
        reply = await client.call_tool(
            "run_python_code", {"code": "(mark, len(big))", "session_id": "precious"}
        )
        assert reply.structured_content["result"] == "('kept', 200000000)"
        await client.call_tool("delete_session", {"session_id": "precious"})
        await client.call_tool("delete_session", {"session_id": "wanderer"})
