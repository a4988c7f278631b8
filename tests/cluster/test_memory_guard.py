"""On a cluster each node has its own memory guard (an actor the first session there makes):
the run of the biggest running session on that node is stopped, a bystander there keeps its
state. Real two-node cluster, a front end over stdio, a small budget per node."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.helpers import cluster_client, create
from tests.helpers import call, run
from tests.integration.test_memory_pressure import HOG_FIRST, HOG_GROWING

pytestmark = pytest.mark.subprocess


async def test_a_nodes_guard_stops_its_biggest_running_session(
    cluster: Any, tmp_path: Path
) -> None:
    worker = cluster.worker.node_id
    env = {
        "RAYKERNEL_MEMORY_HIGH_WATER": "0.8",
        "RAYKERNEL_SESSION_MEMORY_BUDGET": str(600 << 20),
        "RAYKERNEL_INTERRUPT_GRACE": "2",
    }
    async with cluster_client(cluster, tmp_path, **env) as client:
        for sid in ("bystander", "hog1", "hog2"):
            await create(client, session_id=sid, node_id=worker)
        await run(client, "secret = 'kept-77'", session_id="bystander")
        first = asyncio.ensure_future(run(client, HOG_FIRST, session_id="hog1", timeout=120))
        await asyncio.sleep(4)
        second = asyncio.ensure_future(run(client, HOG_GROWING, session_id="hog2", timeout=120))
        one, two = await asyncio.wait_for(asyncio.gather(first, second), 120)
        for reply in (one, two):
            assert reply["error"]["ename"] == "MemoryError", reply
            assert reply["interrupted"] is True and reply["restarted"] is False
        assert f"node {cluster.worker.node_ip_address}" in one["error"]["evalue"]
        assert (await run(client, "secret", session_id="bystander"))["result"] == "'kept-77'"
        listed = (await call(client, "list_sessions"))["sessions"]
        assert {listed[s]["status"] for s in ("bystander", "hog1", "hog2")} == {"healthy"}
