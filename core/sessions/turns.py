"""A session's turns: one call at a time, in arrival order.

A call waits for the session's slot (a hibernated session is resumed first, a run whose caller
went away is stopped first), then goes to the session's actor; past its timeout it is
interrupted, and escalated by ``Recovery`` if it will not stop. Each run is traced
(``raykernel.run``: its queue, the actor call, the kernel's time) and counted in the metrics.
User code is never run twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from raykernel import telemetry
from raykernel.errors import SessionNotFound
from raykernel.replies import RunReply

from .admission import Admission
from .handle import SessionHandle
from .hibernation import Hibernation
from .record import SessionRecord
from .recovery import Recovery

# Called with the record and the run's token once a run has been handed to its session.
OnStart = Callable[[SessionRecord, str], None]


class Turns:
    def __init__(
        self,
        recovery: Recovery,
        hibernation: Hibernation,
        admission: Admission,
        metrics: telemetry.Metrics,
        keep: Callable[[asyncio.Future[Any]], None],
    ) -> None:
        self.recovery = recovery
        self.hibernation = hibernation
        self.admission = admission
        self.metrics = metrics
        self._keep = keep  # background work the router waits for at shutdown

    async def run(
        self,
        record: SessionRecord,
        start: Callable[[SessionHandle, str], asyncio.Future[Any]],
        timeout: float,
        on_start: OnStart | None = None,
        operation: str = "execute",
    ) -> RunReply:
        # Counted so that health can show the queue: runs wait here one behind the other.
        with (
            self.admission.run(record.owner),
            telemetry.span(
                "raykernel.run", session_id=record.qualified, operation=operation
            ) as run,
        ):
            record.waiting += 1
            entered = False
            queued = time.time()
            try:
                async with self.slot(record):
                    record.waiting -= 1
                    entered = True
                    telemetry.record_span("raykernel.queue", queued, time.time())
                    started = time.perf_counter()
                    reply = await self._in_slot(record, start, timeout, on_start)
            finally:
                if not entered:
                    record.waiting -= 1
            outcome = run_outcome(reply)
            telemetry.set_attributes(run, outcome=outcome, node_id=record.node_id)
            self.metrics.run(operation, outcome, time.perf_counter() - started)
            return reply

    async def _in_slot(
        self,
        record: SessionRecord,
        start: Callable[[SessionHandle, str], asyncio.Future[Any]],
        timeout: float,
        on_start: OnStart | None,
    ) -> RunReply:
        notice = await self.recovery.revive_if_dead(record)
        if record.resume_notice is not None:
            notice = {**record.resume_notice, **(notice or {})}
            record.resume_notice = None
        handle = record.handle
        assert handle is not None
        token = uuid.uuid4().hex
        call = telemetry.start_span("raykernel.actor_call", session_id=record.qualified)
        with telemetry.use(call):  # the trace context travels with the call
            try:
                future = start(handle, token)
            except BaseException:
                call.end()
                raise
        record.status = "busy"
        record.run_token = token
        if on_start is not None:
            on_start(record, token)
        called = time.time()
        try:
            done, _ = await asyncio.wait({future}, timeout=timeout)
            if done:
                reply = self.recovery.collect(record, handle, future)
            else:
                reply = await self.recovery.stop(record, handle, future, token, timeout)
            answered = time.time()
            kernel_time = reply.get("execution_time")
            if kernel_time is not None:  # as the kernel timed it, ending with the answer
                start_at = max(called, answered - kernel_time)
                telemetry.record_span("raykernel.kernel", start_at, answered, parent=call)
        except asyncio.CancelledError:
            # The caller went away: stop its code, and make the next caller wait for that.
            stop = asyncio.ensure_future(self.recovery.stop(record, handle, future, token, None))
            record.pending_stop = stop
            self._keep(stop)
            raise
        finally:
            call.end()
            record.run_token = None
            if record.status == "busy":
                record.status = "healthy"
        return self.recovery.finish(record, reply, notice)

    @contextlib.asynccontextmanager
    async def slot(
        self,
        record: SessionRecord,
        urgent: bool = False,
        acquiring: asyncio.Future[None] | None = None,
        resume: bool = True,
    ) -> AsyncIterator[None]:
        """Hold the session's slot (``acquiring``: an acquisition already under way), resuming
        it first if it is hibernated (unless ``resume`` is False)."""
        await (acquiring if acquiring is not None else record.slot.acquire(urgent))
        try:
            if record.pending_stop is not None:
                with contextlib.suppress(Exception):
                    await record.pending_stop
                record.pending_stop = None
            if record.deleted:
                raise SessionNotFound(f"session {record.session_id!r} was deleted")
            if resume and record.status == "hibernated":
                record.resume_notice = await self.hibernation.resume(record)
            yield
        finally:
            record.slot.release()


def run_outcome(reply: Any) -> str:
    """How a run ended, for its span and its metric."""
    error = reply.get("error") or {}
    if reply.get("restarted"):
        return "restarted"
    if error.get("ename") == "KernelDied":
        return "kernel_died"
    if reply.get("interrupted"):
        return "interrupted"
    return "ok" if reply.get("success") else "error"
