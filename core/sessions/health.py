"""Session health: status, memory, CPU, queue and responsiveness, answered while a session is
busy (from its process, by PID, here or through its node's agent) and never queued behind a run.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import psutil

from raykernel.errors import KernelDied, SessionUnavailable

from .formatting import iso_time
from .handle import ActorDied, SessionHandle
from .nodes import Nodes
from .record import SessionRecord
from .router import SessionRouter


class SessionHealth:
    def __init__(self, router: SessionRouter, nodes: Nodes, hooks: Any = None) -> None:
        self.router = router
        self.nodes = nodes
        self.hooks = hooks

    async def health(self, session_id: str) -> dict[str, Any]:
        """The ``get_kernel_health`` report of a session (plugins' ``health_info`` in ``extra``)."""
        record = await self.router.lookup(session_id)
        self._check_alive(record)
        report: dict[str, Any] = {
            "session_id": session_id,
            "status": record.status,
            "memory_usage": None,
            "cpu_percent": None,
            "uptime": round(time.time() - record.started_at, 3),
            "execution_count": record.execution_count,
            "last_execution_time": iso_time(record.last_execution_time),
            "pid": record.pid,
            "node_id": record.node_id,
            "node_ip": record.node_ip,
            "restart_count": record.restart_count,
            "resources": record.placement.describe(),
            # One run at a time per session: what runs now and how many wait behind it.
            "queue": {"running": record.run_token is not None, "waiting": record.waiting},
        }
        if record.status == "dead":
            report["death_reason"] = record.death_reason
        elif self.nodes.is_local(record.node_id) and record.process is not None:
            # Read by PID: a busy session cannot answer a call, but its process can be measured.
            with contextlib.suppress(psutil.Error), record.process.oneshot():
                report["memory_usage"] = record.process.memory_info().rss
                report["cpu_percent"] = record.process.cpu_percent(None)
        elif record.status == "busy" and record.pid is not None:
            # Busy on another node: that node's agent reads the process by PID.
            report.update(await self.nodes.measure(record.pid, record.node_id))
        elif record.status != "busy":
            # A remote session is measured by asking it; a failure here means it died.
            with contextlib.suppress(KernelDied, SessionUnavailable):
                report.update(await self.router.control(record, _health))
            if record.status == "dead":
                report.update(status="dead", death_reason=record.death_reason)
        extra: dict[str, Any] = {}
        if self.hooks is not None:
            for contribution in self.hooks.health_info(session_id=session_id, health=report):
                if contribution:
                    extra.update(contribution)
        if extra:
            report["extra"] = extra
        return report

    async def responsiveness(self, session_id: str, timeout: float) -> dict[str, Any]:
        """Whether the session answers a ping within ``timeout``, and how fast."""
        record = await self.router.lookup(session_id)
        self._check_alive(record)
        reply: dict[str, Any] = {"session_id": session_id, "status": record.status}
        if record.status == "dead":
            return {**reply, "responsive": False, "response_time": None}
        if record.status == "busy":
            # A busy session answers nothing until its run ends (one thread); its process
            # being alive is what "responsive" can mean then, as with Jupyter's heartbeat.
            return {**reply, "responsive": True, "response_time": None, "busy": True}
        assert record.handle is not None
        started = time.perf_counter()
        try:
            await record.handle.ping(timeout)
        except SessionUnavailable:
            return {**reply, "responsive": False, "response_time": None}
        except ActorDied as exc:
            self.router.mark_dead(record, exc.reason)
            return {**reply, "status": "dead", "responsive": False, "response_time": None}
        return {
            **reply,
            "responsive": True,
            "response_time": round(time.perf_counter() - started, 6),
        }

    def _check_alive(self, record: SessionRecord) -> None:
        """Notice a session killed from outside between calls (local sessions, by PID)."""
        if record.status == "dead" or record.process is None:
            return
        if not self.nodes.is_local(record.node_id):
            return
        try:
            alive = record.process.is_running() and record.process.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            alive = False
        if not alive:
            self.router.mark_dead(record, "its process exited or was killed from outside")


async def _health(handle: SessionHandle) -> dict[str, Any]:
    return await handle.health(10.0)
