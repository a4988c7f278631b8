"""Session health: status, memory, CPU, queue and responsiveness, answered while a session is
busy (its actor measures its kernel) and never queued behind a run.

Idleness: what happens to sessions nobody uses: after ``hibernate_after`` seconds without a run they
are hibernated (their state saved, their processes freed; the next call resumes them), and after
``idle_timeout`` seconds they are deleted (never "default"). A session that is running or has
runs queued is never touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from raykernel.errors import KernelDied, RaykernelError, SessionUnavailable
from raykernel.protocol import SessionStatus
from raykernel.sessions.cluster import Nodes
from raykernel.sessions.handle import ActorDied, SessionHandle, iso_time
from raykernel.sessions.record import SessionRecord
from raykernel.sessions.router import DEFAULT_SESSION, SessionRouter


class SessionHealth:
    def __init__(self, router: SessionRouter, nodes: Nodes, hooks: Any = None) -> None:
        self.router = router
        self.nodes = nodes
        self.hooks = hooks

    async def health(self, session_id: str) -> dict[str, Any]:
        """The ``get_kernel_health`` report of a session (plugins' ``health_info`` in ``extra``)."""
        record = await self.router.lookup(session_id)
        local = record.handle is not None and record.handle.in_process
        report: dict[str, Any] = {
            "session_id": record.session_id,
            "status": record.status,
            "memory_usage": None,
            "cpu_percent": None,
            "uptime": round(time.time() - record.started_at, 3),
            "execution_count": record.execution_count,
            "last_execution_time": iso_time(record.last_execution_time),
            "average_execution_time": round(
                record.run_seconds / record.execution_count if record.execution_count else 0.0, 6
            ),
            "pid": record.kernel_pid,  # the kernel's: where the session's code runs
            "actor_pid": record.pid,
            # The embedded "default" session is served by the front end until Ray is needed.
            "ray_actor": not local,
            # Served by this process: this process's node, once Ray is up.
            "node_id": self.nodes.local_id if local else record.node_id,
            "node_ip": record.node_ip,
            "restart_count": record.restart_count,
            "resources": record.placement.describe(),
            # The Python it runs: the server's (environment None) or one of `environments`.
            "environment": record.environment["name"] if record.environment else None,
            "python_version": record.python_version
            or (record.environment["version"] if record.environment else None),
            # One run at a time per session: what runs now and how many wait behind it.
            "queue": {"running": record.run_token is not None, "waiting": record.waiting},
        }
        if record.resident and record.status != SessionStatus.DEAD:
            # Asked of the actor, which answers while its kernel runs code; its run book holds
            # the runs every front end sent.
            with contextlib.suppress(KernelDied, SessionUnavailable):
                booked = await self.router.control(record, _runs)
                report["queue"] = {
                    "running": any(r["status"] == "running" for r in booked),
                    "waiting": record.waiting + sum(r["status"] == "queued" for r in booked),
                }
            measured = await self._measure(record)
            report["memory_usage"] = measured.get("memory_usage")
            report["cpu_percent"] = measured.get("cpu_percent")
            report["actor_memory"] = measured.get("actor_memory")
            if measured.get("network"):  # an allow-list's proxy: what it allows and refused
                report["network"] = measured["network"]
        if record.cold:
            report["ray_actor"] = False
            report["served_by"] = "nothing yet: a cold session, started by its first call"
        elif not report["ray_actor"]:
            report["served_by"] = (
                "the server process (embedded mode: this session is not a Ray actor; Ray starts "
                "when another session needs one)"
            )
        report["status"] = record.shown_status  # as measured just now
        if record.status == SessionStatus.DEAD:
            report.update(status=SessionStatus.DEAD, death_reason=record.death_reason)
        if record.status == SessionStatus.HIBERNATED:
            report.update(
                hibernated_at=iso_time(record.hibernated_at), image_bytes=record.image_bytes
            )
        report["isolation"] = {
            key: record.isolation.get(key)
            for key in ("mode", "files", "network", "processes", "deputy")
        }
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
        if record.status != SessionStatus.DEAD:
            await self._measure(record)
        reply: dict[str, Any] = {"session_id": record.session_id, "status": record.status}
        if record.status == SessionStatus.HIBERNATED:  # it answers, once resumed by the next call
            return {**reply, "responsive": True, "response_time": None, "hibernated": True}
        if record.status == SessionStatus.DEAD:
            return {**reply, "responsive": False, "response_time": None}
        if record.status == SessionStatus.BUSY:
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
            self.router.recovery.mark_dead(record, exc.reason, actor_gone=True)
            return {
                **reply,
                "status": SessionStatus.DEAD,
                "responsive": False,
                "response_time": None,
            }
        return {
            **reply,
            "responsive": True,
            "response_time": round(time.perf_counter() - started, 6),
        }

    async def _measure(self, record: SessionRecord) -> dict[str, Any]:
        """The kernel's memory and CPU; a kernel or actor found dead is recorded as such."""
        if record.handle is None:
            return {}
        try:
            measured = await self.router.control(record, _measure)
        except KernelDied:
            return {}
        except SessionUnavailable:
            record.responsive = False  # shown as "unresponsive", never "healthy"
            return {}
        record.responsive = True
        if not measured.get("alive", True):
            self.router.recovery.mark_dead(record, measured.get("exit_reason") or "it ended")
        return measured


async def _runs(handle: SessionHandle) -> list[dict[str, Any]]:
    return await handle.runs(10.0)


async def _measure(handle: SessionHandle) -> dict[str, Any]:
    return await handle.measure(10.0)


log = logging.getLogger(__name__)


class IdleWatch:
    def __init__(self, router: SessionRouter) -> None:
        self.router = router
        self.settings = router.settings

    def interval(self) -> float:
        limits = [t for t in (self.settings.idle_timeout, self.settings.hibernate_after) if t > 0]
        return min(30.0, max(min(limits) / 4, 0.25))

    async def run(self) -> None:
        """Watch for as long as the server lives (nothing to do when both are 0)."""
        if self.settings.idle_timeout <= 0 and self.settings.hibernate_after <= 0:
            return
        await self.router.ready()
        while True:
            await asyncio.sleep(self.interval())
            if self.settings.hibernate_after > 0:
                await self.hibernate_idle(time.time())
            if self.settings.idle_timeout > 0:
                await self.sweep(time.time())

    async def hibernate_idle(self, now: float) -> None:
        """Hibernate every resident session idle for longer than ``hibernate_after``."""
        hibernation = self.router.hibernation
        for qualified, record in list(self.router.sessions.items()):
            if now - record.last_used() <= self.settings.hibernate_after:
                continue
            if not hibernation.may_evict(record) or not record.slot.try_acquire():
                continue
            try:
                if await hibernation.idle_enough(record, self.settings.hibernate_after):
                    await hibernation.hibernate(record)
            except (RaykernelError, ActorDied) as exc:
                log.info("session %s did not hibernate: %s", qualified, exc)
            finally:
                record.slot.release()

    async def sweep(self, now: float) -> None:
        """Delete every session idle for longer than ``idle_timeout``."""
        timeout = self.settings.idle_timeout
        for qualified, record in list(self.router.sessions.items()):
            busy = record.status == SessionStatus.BUSY or record.slot.locked() or record.waiting
            if record.session_id == DEFAULT_SESSION or busy:
                continue
            idle_for = now - record.last_used()
            if idle_for > timeout and record.resident:  # runs from other front ends count
                if not await self.router.hibernation.idle_enough(record, timeout):
                    continue
            if idle_for > timeout:
                log.info("deleting session %s: idle for %.0f s", qualified, idle_for)
                with contextlib.suppress(RaykernelError):
                    await self.router.delete(qualified)
