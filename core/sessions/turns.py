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
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

from raykernel import telemetry
from raykernel.errors import (
    KernelDied,
    RaykernelError,
    SessionMoved,
    SessionNotFound,
    SessionUnavailable,
)
from raykernel.protocol import RunKind, SessionStatus
from raykernel.replies import RunReply, failed_reply

from .capacity import Admission
from .handle import ActorDied, SessionHandle
from .hibernation import Hibernation
from .record import SessionRecord
from .recovery import Recovery
from .registry import RunIndex

# Called with the record and the run's token once a run has been handed to its session.
OnStart = Callable[[SessionRecord, str], None]
# How long one ``wait_run`` call waits for a run's end before it is asked again.
FOLLOW_POLL = 20.0


class UpstreamBroker(Protocol):
    """Who answers session code's requests of upstream MCP tools (code mode): the front end."""

    async def answer(
        self, record: SessionRecord, call: dict[str, Any], interactive: bool
    ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """``(answer, what the run's history keeps of it)``; never raises."""
        ...


def new_run_id() -> str:
    return "run-" + uuid.uuid4().hex[:16]


async def _never_moved(record: SessionRecord) -> bool:
    return False


class Turns:
    def __init__(
        self,
        recovery: Recovery,
        hibernation: Hibernation,
        admission: Admission,
        metrics: telemetry.Metrics,
        keep: Callable[[asyncio.Future[Any]], None],
        moved: Callable[[SessionRecord], Awaitable[bool]] = _never_moved,
        index: RunIndex | None = None,
        shared: bool = False,
    ) -> None:
        # Whether other front ends serve these sessions too (the registry is shared).
        self.shared = shared
        # Whether the session is now served by another actor (then the record points at it).
        self.moved = moved
        # Told every run id booked (the registry indexes them for get_run from any front end).
        self.index = index
        self.recovery = recovery
        self.hibernation = hibernation
        self.admission = admission
        self.metrics = metrics
        self._keep = keep  # background work the router waits for at shutdown
        # Answers the upstream requests of the runs this front end follows (None: no code mode).
        self.upstream: UpstreamBroker | None = None

    async def run(
        self,
        record: SessionRecord,
        kind: RunKind,
        args: list[Any],
        timeout: float,
        on_start: OnStart | None = None,
        run_id: str | None = None,
    ) -> RunReply:
        """Run in the session: booked at once in the session's own queue (where runs from
        every front end meet, and where a run waits: a front end that dies loses none), then
        followed until its reply."""
        with (
            self.admission.run(record.owner),
            telemetry.span("raykernel.run", session_id=record.qualified, operation=kind) as run,
        ):
            record.waiting += 1
            entered = False
            queued = time.time()
            try:
                # The slot is held only to bring the session back if it must be, and to book.
                async with self.slot(record):
                    record.waiting -= 1
                    entered = True
                    telemetry.record_span("raykernel.queue", queued, time.time())
                    started = time.perf_counter()
                    run_id = run_id or new_run_id()
                    notice, view = await self._revive_and_book(record, kind, args, timeout, run_id)
            finally:
                if not entered:
                    record.waiting -= 1
            reply = await self._followed(record, run_id, view, notice, on_start)
            outcome = run_outcome(reply)
            telemetry.set_attributes(run, outcome=outcome, node_id=record.node_id)
            refused = reply.get("network_refused")  # type: ignore[misc]
            if refused:
                telemetry.set_attributes(
                    run, network_refused=refused["count"], network_last_refused=refused["last"]
                )
            self.metrics.run(kind, outcome, time.perf_counter() - started)
            return reply

    async def book_background(
        self, record: SessionRecord, kind: RunKind, args: list[Any], timeout: float, run_id: str
    ) -> dict[str, Any]:
        """Book a background run: the session is brought back first if it needs to be, then
        the run is queued in the session and this returns at once."""
        counted = self.admission.run(record.owner)
        counted.__enter__()  # this front end's quota counts the run until it ends
        try:
            # The slot, held briefly as for any run: never booked into an actor this front end
            # is hibernating.
            async with self.slot(record):
                notice = await self.recovery.revive_if_dead(record)
                if notice:
                    record.resume_notice = {**(record.resume_notice or {}), **notice}
                view = await self._book(record, kind, args, timeout, run_id, background=True)
        except BaseException:
            counted.__exit__(None, None, None)
            raise
        if self.index is not None:  # before the caller has the id: any front end finds it
            self.index.add(record, run_id)
            await self.index.flush()
        token = view["token"]
        self._keep(asyncio.ensure_future(self._count_until_done(record, run_id, token, counted)))
        return view

    async def _count_until_done(
        self,
        record: SessionRecord,
        run_id: str,
        token: str,
        counted: contextlib.AbstractContextManager[None],
    ) -> None:
        """Hold a background run's place in the quota while it runs (the run itself belongs
        to its session: it goes on whatever happens here), and answer its code's upstream
        requests (nobody waits on the client's side: none can be approved there)."""
        handle = record.handle
        serving = self._serving(record, handle, token, interactive=False)
        try:
            while handle is not None:
                view = await handle.wait_run(run_id, FOLLOW_POLL)
                if view["status"] in ("done", "cancelled"):
                    break
        except Exception:
            pass
        finally:
            if serving is not None:
                serving.cancel()
            counted.__exit__(None, None, None)

    def _serving(
        self, record: SessionRecord, handle: SessionHandle | None, token: str, interactive: bool
    ) -> asyncio.Future[None] | None:
        if self.upstream is None or handle is None:
            return None
        return asyncio.ensure_future(self._serve_upstream(record, handle, token, interactive))

    async def _serve_upstream(
        self, record: SessionRecord, handle: SessionHandle, token: str, interactive: bool
    ) -> None:
        """While a run goes on, take its code's upstream requests from its actor (long polls)
        and answer each, several at once (its threads may ask together)."""
        answering: set[asyncio.Future[None]] = set()
        try:
            while True:
                try:
                    batch = await handle.upstream_calls(token, FOLLOW_POLL)
                except (ActorDied, RaykernelError):
                    return  # the run's follower meets the death and says so
                for call in batch["calls"]:
                    task = asyncio.ensure_future(
                        self._answer_upstream(record, handle, call, interactive)
                    )
                    answering.add(task)
                    task.add_done_callback(answering.discard)
                if batch["ended"]:
                    return
        finally:
            for task in answering:
                task.cancel()

    async def _answer_upstream(
        self, record: SessionRecord, handle: SessionHandle, call: dict[str, Any], interactive: bool
    ) -> None:
        assert self.upstream is not None
        answer, log = await self.upstream.answer(record, call, interactive)
        with contextlib.suppress(ActorDied, RaykernelError):
            await handle.answer_upstream(call["id"], answer, log)

    async def _book(
        self,
        record: SessionRecord,
        kind: RunKind,
        args: list[Any],
        timeout: float,
        run_id: str,
        background: bool = False,
    ) -> dict[str, Any]:
        """Queue the run in the session's actor. An actor that handed the session on (another
        front end hibernated or replaced it) has taken nothing: the session is found where it
        is now, and the run booked there."""
        for attempt in (1, 2):
            if (
                record.status == SessionStatus.HIBERNATED
            ):  # hibernated meanwhile by another front end
                notice = await self.hibernation.resume(record)
                record.resume_notice = {**(record.resume_notice or {}), **notice} or None
            handle = record.handle
            if handle is None:
                raise SessionUnavailable(f"session {record.session_id!r} is not running; ask again")
            try:
                return await handle.book_run(run_id, kind, args, timeout, background)
            except (SessionMoved, ActorDied) as exc:
                if attempt == 1 and await self.moved(record):
                    continue  # it lives elsewhere now: booked there
                if attempt == 1 and isinstance(exc, SessionMoved) and await self._reopen(record):
                    continue
                if isinstance(exc, ActorDied):
                    self.recovery.mark_dead(record, exc.reason, actor_gone=True)
                    if attempt == 1:
                        # Nothing ran (the run was not booked): bring the session back now
                        # and book it there; the reply says what was lost.
                        notice = await self.recovery.revive_if_dead(record)
                        record.resume_notice = {**(record.resume_notice or {}), **(notice or {})}
                        continue
                    raise KernelDied(
                        f"session {record.session_id!r} died ({record.death_reason})"
                    ) from None
                raise
        raise AssertionError("unreachable")

    async def _reopen(self, record: SessionRecord) -> bool:
        """An actor that refused a run because it was handed on, while the registry still
        names it: the front end that was hibernating it died before it was done. The actor
        (its kernel, its state) serves again, and the image it wrote is dropped."""
        handle = record.handle
        if not self.shared or handle is None or not await handle.reopen():
            return False
        self.hibernation.forget(record)
        return True

    async def _revive_and_book(
        self, record: SessionRecord, kind: RunKind, args: list[Any], timeout: float, run_id: str
    ) -> tuple[dict[str, Any] | None, dict[str, Any]]:
        """(the notice the reply must carry, the booked run's view)."""
        notice = await self.recovery.revive_if_dead(record)
        view = await self._book(record, kind, args, timeout, run_id)
        if self.index is not None:
            self.index.add(record, run_id)
        if record.resume_notice is not None:  # resumed first, or on the way (see ``_book``)
            notice = {**record.resume_notice, **(notice or {})}
            record.resume_notice = None
        return notice, view

    async def _followed(
        self,
        record: SessionRecord,
        run_id: str,
        view: dict[str, Any],
        notice: dict[str, Any] | None,
        on_start: OnStart | None,
    ) -> RunReply:
        handle = record.handle
        assert handle is not None
        token = view["token"]
        record.following += 1
        record.status = SessionStatus.BUSY
        record.run_token = token
        if on_start is not None:
            on_start(record, token)
        call = telemetry.start_span("raykernel.actor_call", session_id=record.qualified)
        called = time.time()
        serving = self._serving(record, handle, token, interactive=True)
        try:
            try:
                reply = await self._follow(record, handle, run_id)
            except asyncio.CancelledError:
                # The caller went away: stop its code, and make the next caller wait for that.
                stop = asyncio.ensure_future(handle.cancel_run(run_id, self.recovery.grace))
                record.pending_stop = stop
                self._keep(stop)
                raise
            answered = time.time()
            kernel_time = reply.get("execution_time")
            if kernel_time is not None:  # as the kernel timed it, ending with the answer
                start_at = max(called, answered - kernel_time)
                telemetry.record_span("raykernel.kernel", start_at, answered, parent=call)
        finally:
            if serving is not None:
                serving.cancel()
            call.end()
            record.following -= 1
            if record.run_token == token:
                record.run_token = None
            if record.status == SessionStatus.BUSY and not record.following:
                record.status = SessionStatus.HEALTHY
        if reply.get("restarted") and record.handle is handle:
            await self.recovery.refresh(record)  # a new kernel: its pid, its start
        return self.recovery.finish(record, reply, notice)

    async def _follow(self, record: SessionRecord, handle: SessionHandle, run_id: str) -> Any:
        """The run's reply, asked for in long polls (no call stays open for a whole run)."""
        while True:
            try:
                view = await handle.wait_run(run_id, FOLLOW_POLL)
            except ActorDied as exc:
                return self.recovery.died_reply(record, exc.reason, actor_gone=True)
            if view["status"] in ("done", "cancelled"):
                return view.get("reply") or cancelled_reply(record)

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
            if resume and record.status == SessionStatus.HIBERNATED:
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


def cancelled_reply(record: SessionRecord) -> RunReply:
    """The reply of a run cancelled before it started."""
    return failed_reply(
        record.session_id,
        record.execution_count,
        "Cancelled",
        "the run was cancelled before it started; nothing ran",
        interrupted=False,
        restarted=False,
        state_preserved=True,
    )
