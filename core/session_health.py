"""Session health: status, memory, CPU, queue and responsiveness, answered while a session is
busy (from its process, by PID, here or through its node's agent) and never queued behind a run.

A mixin of SessionRouter, like StateMoves.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any

import psutil

from .errors import SessionUnavailable
from .formatting import first_line, iso_time

if TYPE_CHECKING:
    from .router import SessionRecord, SessionRouter


class SessionHealth:
    async def health(self: SessionRouter, session_id: str) -> dict[str, Any]:
        record = await self.lookup(session_id)
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
        elif self.is_local(record) and record.process is not None:
            # Read by PID: a busy session cannot answer a call, but its process can be measured.
            with contextlib.suppress(psutil.Error), record.process.oneshot():
                report["memory_usage"] = record.process.memory_info().rss
                report["cpu_percent"] = record.process.cpu_percent(None)
        elif record.status == "busy" and record.pid is not None:
            # Busy on another node: that node's agent reads the process by PID.
            with contextlib.suppress(Exception):
                measure = self.node_agent(record.node_id).measure.remote(record.pid)
                report.update(await asyncio.wait_for(asyncio.wrap_future(measure.future()), 5.0))
        elif record.status != "busy":
            # A remote session is measured by asking it; a failure here means it died.
            with contextlib.suppress(SessionUnavailable):
                report.update(await self._control(record, record.handle.health.remote(), 10.0))
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

    async def responsiveness(
        self: SessionRouter, session_id: str, timeout: float
    ) -> dict[str, Any]:
        record = await self.lookup(session_id)
        self._check_alive(record)
        reply: dict[str, Any] = {"session_id": session_id, "status": record.status}
        if record.status == "dead":
            return {**reply, "responsive": False, "response_time": None}
        if record.status == "busy":
            # A busy session answers nothing until its run ends (one thread); its process
            # being alive is what "responsive" can mean then, as with Jupyter's heartbeat.
            return {**reply, "responsive": True, "response_time": None, "busy": True}
        import ray

        started = time.perf_counter()
        try:
            await asyncio.wait_for(
                asyncio.wrap_future(record.handle.ping.remote().future()), timeout
            )
        except TimeoutError:
            return {**reply, "responsive": False, "response_time": None}
        except ray.exceptions.RayActorError as exc:
            self._mark_dead(record, first_line(str(exc)))
            return {**reply, "status": "dead", "responsive": False, "response_time": None}
        return {
            **reply,
            "responsive": True,
            "response_time": round(time.perf_counter() - started, 6),
        }

    def _check_alive(self: SessionRouter, record: SessionRecord) -> None:
        """Notice a session killed from outside between calls (local sessions, by PID)."""
        if record.status == "dead" or not self.is_local(record) or record.process is None:
            return
        try:
            alive = record.process.is_running() and record.process.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            alive = False
        if not alive:
            self._mark_dead(record, "its process exited or was killed from outside")
