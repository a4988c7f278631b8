"""The nodes sessions run on: which one is this front end's, whether one is alive, and what must
happen on a session's own node while the session is busy (a signal, a measurement, the live
output tail, a file operation): done here for this node, else by that node's agent actor.

A session is one thread while it runs code, so none of this can be asked of the session."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import psutil

from raykernel.kernel.interrupts import request_interrupt
from raykernel.kernel.live_output import read_tail

from .ray_runtime import RayRuntime

log = logging.getLogger(__name__)

AGENT_TIMEOUT = 30.0
FILE_TIMEOUT = 60.0


class Nodes:
    def __init__(self, runtime: RayRuntime, namespace: str, detached: bool) -> None:
        self.runtime = runtime
        self.namespace = namespace
        self.detached = detached
        self._agents: dict[str | None, Any] = {}

    @property
    def local_id(self) -> str | None:
        """This front end's node (None until Ray is up)."""
        return self.runtime.node_id

    def is_local(self, node_id: str | None) -> bool:
        return node_id is not None and node_id == self.runtime.node_id

    def alive(self, node_id: str | None) -> bool:
        """Whether Ray counts ``node_id`` alive (blocking: one GCS call)."""
        import ray

        try:
            return any(n["NodeID"] == node_id and n["Alive"] for n in ray.nodes())
        except Exception:
            return True  # cannot tell: do not claim the node is lost

    def agent(self, node_id: str | None) -> Any:
        """The helper actor pinned to ``node_id`` (started on first need, then reused)."""
        agent = self._agents.get(node_id)
        if agent is None:
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            from raykernel.actors.node_agent import RemoteNodeAgent

            agent = RemoteNodeAgent.options(
                name=f"raykernel-agent:{node_id}",
                namespace=self.namespace,
                get_if_exists=True,
                num_cpus=0,
                lifetime="detached" if self.detached else None,
                scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
            ).remote()
            self._agents[node_id] = agent
        return agent

    def warm_up(self, node_id: str | None) -> None:
        """Start the agent of a node a session just landed on (a cold worker takes ~1 s)."""
        if not self.is_local(node_id):
            self.agent(node_id).ping.remote()

    async def interrupt(self, pid: int, node_id: str | None, token: str, timeout: float) -> None:
        """SIGINT for run ``token`` of process ``pid`` (a failure only means the escalation
        path will act)."""
        if self.is_local(node_id):
            with contextlib.suppress(ProcessLookupError):
                request_interrupt(pid, token)
            return
        try:
            await self._ask(self.agent(node_id).interrupt.remote(pid, token), timeout)
        except Exception as exc:
            log.warning("could not interrupt pid %s on node %s: %s", pid, node_id, exc)

    async def tail(self, pid: int, node_id: str | None, token: str) -> str | None:
        """What run ``token`` has printed so far (its last few thousand characters)."""
        if self.is_local(node_id):
            return read_tail(pid, token)
        try:
            return await self._ask(self.agent(node_id).tail.remote(pid, token), AGENT_TIMEOUT)
        except Exception:
            return None

    async def measure(self, pid: int, node_id: str | None) -> dict[str, Any]:
        """Memory and CPU of a busy session's process on another node, read by PID."""
        try:
            return await self._ask(self.agent(node_id).measure.remote(pid), 5.0)
        except Exception:
            return {}

    async def workspace(
        self, node_id: str, root: str, max_file_bytes: int, op: str, args: tuple[Any, ...]
    ) -> dict[str, Any]:
        """``Workspace(root).<op>(*args)`` on ``node_id``; Ray's errors are the caller's to
        translate (it knows which session the operation was for)."""
        ref = self.agent(node_id).workspace.remote(root, max_file_bytes, op, *args)
        return await self._ask(ref, FILE_TIMEOUT)

    @staticmethod
    async def _ask(ref: Any, timeout: float) -> Any:
        return await asyncio.wait_for(asyncio.wrap_future(ref.future()), timeout)


def local_process(pid: int) -> psutil.Process | None:
    """The process ``pid`` of this node, primed for CPU measurement."""
    try:
        process = psutil.Process(pid)
        process.cpu_percent(None)
    except psutil.Error:
        return None
    return process
