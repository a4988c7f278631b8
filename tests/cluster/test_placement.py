"""Two Ray nodes on this machine (ray.cluster_utils.Cluster) and a front end joining them with
--ray-address: placement by resources and node, refusal of impossible requests, spreading,
and losing a node."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from fastmcp import Client
from fastmcp.exceptions import ToolError

from tests.cluster.helpers import cluster_client
from tests.cluster.helpers import create as _create
from tests.helpers import call_error, stdio_transport

pytestmark = pytest.mark.subprocess


_client = cluster_client


async def test_placement_spread_refusal_and_node_loss(cluster: Any, tmp_path: Path) -> None:
    head_id, worker_id = cluster.head_node.node_id, cluster.worker.node_id
    async with _client(cluster, tmp_path) as client:
        special = await _create(client, session_id="special", resources={"special": 1})
        assert special["node_id"] == worker_id
        assert special["resources"] == {"resources": {"special": 1.0}}
        pinned = await _create(client, session_id="pinned", node_id=head_id)
        assert pinned["node_id"] == head_id

        for bad in (
            {"num_gpus": 1},
            {"resources": {"nope": 1}},
            {"node_id": "ab" * 28},
            {"num_cpus": 64},
        ):
            started = time.monotonic()
            with pytest.raises(ToolError, match="InvalidArgument"):
                await _create(client, session_id="impossible", **bad)
            assert time.monotonic() - started < 10
        listing = (await client.call_tool("list_sessions", {})).structured_content
        assert "impossible" not in listing["sessions"]

        for i in range(4):  # cold: placed on a node at their first call
            await _create(client, session_id=f"spread{i}")
            await client.call_tool("run_python_code", {"code": "1", "session_id": f"spread{i}"})
        healths = [
            (await client.call_tool("get_kernel_health", {"session_id": f"spread{i}"}))
            for i in range(4)
        ]
        assert {h.structured_content["node_id"] for h in healths} == {head_id, worker_id}
        health = await client.call_tool("get_kernel_health", {"session_id": "special"})
        assert health.structured_content["node_id"] == worker_id
        assert health.structured_content["node_ip"]

        # Lose the worker node: its sessions say so, the others keep working.
        await _create(client, session_id="roamer", node_id=worker_id, node_affinity="soft")
        await client.call_tool("run_python_code", {"code": "x = 1", "session_id": "roamer"})
        # One that keeps checkpoints: its timeline and state go on on another node.
        await _create(
            client,
            session_id="keeper",
            node_id=worker_id,
            node_affinity="soft",
            checkpoint="after_run",
        )
        for code in ("k = 1", "k = 2"):
            await client.call_tool("run_python_code", {"code": code, "session_id": "keeper"})
        await asyncio.sleep(1)  # its last checkpoint is stored off the reply's path
        cluster.remove_node(cluster.worker)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            health = await client.call_tool("get_kernel_health", {"session_id": "roamer"})
            if health.structured_content["status"] == "dead":
                break
            await asyncio.sleep(0.5)
        assert health.structured_content["status"] == "dead"
        assert "lost with its node" in health.structured_content["death_reason"]
        started = time.monotonic()
        error = await call_error(client, "list_files", session_id="roamer")
        assert error.startswith("SessionUnavailable:") and "lost" in error
        assert time.monotonic() - started < 10
        alive = await client.call_tool("run_python_code", {"code": "1 + 1", "session_id": "pinned"})
        assert alive.structured_content["result"] == "2"
        # A restart places the lost session on a live node (soft affinity falls back).
        back = (
            await client.call_tool(
                "run_python_code", {"code": "'x' in globals()", "session_id": "roamer"}
            )
        ).structured_content
        assert back["restarted"] is True and back["result"] == "False"
        assert "lost with its node" in back["notice"]
        moved = await client.call_tool("get_kernel_health", {"session_id": "roamer"})
        assert moved.structured_content["node_id"] == head_id
        kept = (
            await client.call_tool("run_python_code", {"code": "k", "session_id": "keeper"})
        ).structured_content
        assert kept["result"] == "2" and kept["state_preserved"] == "checkpoint", kept
        assert kept["execution_count"] == 3
        history = (
            await client.call_tool("get_history", {"session_id": "keeper"})
        ).structured_content
        assert [e["execution_count"] for e in history["entries"]] == [1, 2, 3]


async def test_sessions_outlive_a_front_end_restart(cluster: Any, tmp_path: Path) -> None:
    async with _client(cluster, tmp_path) as first:
        await _create(first, session_id="keeper", description="kept across restarts")
        await _create(first, session_id="pinned-keeper", resources={"special": 1})
        await first.call_tool("run_python_code", {"code": "answer = 42", "session_id": "keeper"})
        for i in range(8):
            await _create(first, session_id=f"many{i}")
    # A new front end on the same cluster finds them, with their state, without being told.
    started = time.monotonic()
    async with _client(cluster, tmp_path) as second:
        listing = (await second.call_tool("list_sessions", {})).structured_content
        found = time.monotonic() - started
        sessions = listing["sessions"]
        assert {"default", "keeper", "pinned-keeper", *(f"many{i}" for i in range(8))} <= set(
            sessions
        )
        assert sessions["keeper"]["description"] == "kept across restarts"
        assert sessions["keeper"]["execution_count"] == 1
        assert sessions["pinned-keeper"]["resources"] == {"resources": {"special": 1.0}}
        reply = await second.call_tool(
            "run_python_code", {"code": "answer", "session_id": "keeper"}
        )
        assert reply.structured_content["result"] == "42"
        print(f"restarted front end listed {len(sessions)} sessions in {found:.2f} s")
        # Deleting kills the actor for good.
        await second.call_tool("delete_session", {"session_id": "keeper"})
        for i in range(8):
            await second.call_tool("delete_session", {"session_id": f"many{i}"})
        await second.call_tool("delete_session", {"session_id": "pinned-keeper"})
    async with _client(cluster, tmp_path) as third:
        listing = (await third.call_tool("list_sessions", {})).structured_content
        assert "keeper" not in listing["sessions"]


async def test_embedded_mode_never_joins_a_cluster_already_on_the_machine(
    cluster: Any, tmp_path: Path
) -> None:
    async with Client(stdio_transport(tmp_path)) as client:
        health = (await client.call_tool("get_kernel_health", {})).structured_content
    assert health["node_id"] not in {cluster.head_node.node_id, cluster.worker.node_id}
