"""A node's memory guard on a cluster: one small actor per node (named
``raykernel-memory-guard:<node id>``, detached like the sessions it watches), made by the first
session claimed there and kept by every session on the node registering with it
(``watch``). It runs ``raykernel.memory.MemoryGuard`` over them: it measures their kernels on
this node, and asks their actors whether they run code and to stop a run or kill a kernel.

An embedded server needs none: its front end is on the only node and watches every session
itself (``raykernel.sessions.capacity``).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from raykernel.memory import INTERVAL, MemoryGuard, Watched, node_memory, watch

from .host import SessionHost

GUARD_PREFIX = "raykernel-memory-guard:"
# A registration is held this long by the guard, then made again by its session.
HOLD = 60.0


class NodeGuard:
    def __init__(self, high_water: float, budget: int | None, grace: float) -> None:
        import ray

        ip = ray.util.get_node_ip_address()
        self.guard = MemoryGuard(high_water, budget, node=f"node {ip}", grace=grace)
        self.sessions: dict[str, tuple[Watched, float]] = {}
        self._watching: asyncio.Future[None] | None = None

    async def watch(self, key: str, owner: str, actor: Any) -> None:
        """Register a session of this node (its actor's handle); held for ``HOLD`` s."""
        if self._watching is None:
            self._watching = asyncio.ensure_future(watch(self.guard, self._entries, INTERVAL))

        async def report() -> dict[str, Any]:
            return await actor.perform.remote(SessionHost.memory_report)

        async def stop(reason: str) -> Any:
            return await actor.perform.remote(SessionHost.memory_stop, reason)

        async def kill(reason: str) -> Any:
            return await actor.perform.remote(SessionHost.memory_kill, reason)

        self.sessions[key] = (Watched(key, owner, report, stop, kill), time.monotonic())
        await asyncio.sleep(HOLD)

    def _entries(self) -> list[Watched]:
        # A session that stopped calling (hibernated, deleted, its actor gone) is let go.
        cutoff = time.monotonic() - 2 * HOLD
        for key in [k for k, (_w, seen) in self.sessions.items() if seen < cutoff]:
            del self.sessions[key]
        return [watched for watched, _seen in self.sessions.values()]

    async def usage(self) -> dict[str, Any]:
        """The node's memory and the guard's last actions."""
        used, total = node_memory()
        return {
            "used": used,
            "total": total,
            "high_water": self.guard.high_water,
            "sessions": len(self.sessions),
            "events": self.guard.events[-10:],
        }


def node_guard(config: dict[str, Any], namespace: str) -> Any:
    """This node's guard, made if it is not there yet (blocking: call it in a thread)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    global _remote
    if _remote is None:
        _remote = ray.remote(NodeGuard)
    node_id = ray.get_runtime_context().get_node_id()
    return _remote.options(
        name=f"{GUARD_PREFIX}{node_id}",
        namespace=namespace,
        get_if_exists=True,
        lifetime="detached",
        num_cpus=0,
        max_restarts=-1,
        max_concurrency=10_000,  # every session's registration is a call it holds
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
    ).remote(config["high_water"], config.get("budget"), config["grace"])


_remote: Any = None
