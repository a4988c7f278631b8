"""Helpers of the cluster tests: a front end joined to the test's cluster, over stdio."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastmcp import Client

from tests.helpers import stdio_transport


def cluster_client(cluster: Any, workspace: Path, **env: str | None) -> Client:
    return Client(
        stdio_transport(
            workspace, "--ray-address", cluster.address, RAYKERNEL_WARM_POOL_SIZE="0", **env
        )
    )


async def create(client: Client, **arguments: Any) -> dict[str, Any]:
    return (await client.call_tool("create_session", arguments)).structured_content
