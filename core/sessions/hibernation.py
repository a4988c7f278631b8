"""Sessions that outlive their processes: hibernation, resumption, and residency.

A hibernated session is an image in the server's store (its picklable variables, its history,
who it is: the snapshot format, written under a temporary name and renamed, so a crash leaves
the live session or a whole image, never half of one) and no process at all. The next call
that needs it resumes it: a fresh actor (from the warm pool when it can) loads the image, and
that call's reply says so. ``max_resident_sessions`` bounds the sessions with processes: a
new or resuming session makes room by hibernating the least recently used idle one.

A session never hibernates while it runs, has runs queued (background ones too) or child
processes alive. Callers hold the session's slot, so two calls racing to resume one session
resume it once.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from raykernel.actors.store import read_manifest, write_snapshot
from raykernel.errors import SessionLimitReached, SessionNotFound, SessionUnavailable
from raykernel.protocol import SessionStatus
from raykernel.settings import Settings

from .capacity import WarmPool
from .cluster import Placement
from .handle import ActorDied, SessionHandle
from .lifecycle import CREATE_TIMEOUT, Lifecycle
from .record import LOCAL, SessionRecord

if TYPE_CHECKING:
    from .directory import Directory

log = logging.getLogger(__name__)

# Places kept free below max_resident_sessions, ahead of need (see keep_room).
ROOM_AHEAD = 2


class Hibernation:
    def __init__(
        self,
        settings: Settings,
        lifecycle: Lifecycle,
        pool: WarmPool,
        sessions: dict[str, SessionRecord],
        directory: Directory | None = None,
    ) -> None:
        self.settings = settings
        self.lifecycle = lifecycle
        self.pool = pool
        self.sessions = sessions
        self.directory = directory
        self._recycling: set[asyncio.Future[None]] = set()
        self._keeping: asyncio.Future[None] | None = None

    def can_hibernate(self, record: SessionRecord) -> bool:
        """Idle: alive, not running, nothing queued (background runs included)."""
        return (
            record.resident
            and record.status == SessionStatus.HEALTHY
            and record.run_token is None
            and record.waiting == 0
        )

    def may_evict(self, record: SessionRecord) -> bool:
        """Idle, and worth hibernating unasked: not the session served by the front end itself
        (one small process, and resuming it would need Ray)."""
        local = record.handle is not None and record.handle.in_process
        return self.can_hibernate(record) and not local

    async def idle_enough(self, record: SessionRecord, seconds: float) -> bool:
        """Whether the session has been idle ``seconds``, as the session itself says (runs
        from other front ends count): the idle watch of every front end asks it."""
        if record.handle is None or not record.resident:
            return False
        if self.directory is None or not self.directory.shared:
            return True
        try:
            idle = await record.handle.idle_for()
        except (ActorDied, SessionUnavailable):
            return False
        if idle is None:
            return False
        record.last_execution_time = max(record.last_execution_time or 0, time.time() - idle)
        return idle > seconds

    async def hibernate(self, record: SessionRecord, wait: bool = False) -> dict[str, Any]:
        """Save the session's image and free its processes (the caller holds its slot); a
        session hibernated already is left as it is. ``wait`` (asked for by a client): after
        the run in progress; else only an idle session. One front end does it: the others
        find it hibernated in the registry."""
        if self.directory is None:
            return await self._hibernate(record, wait)
        async with self.directory.change(record) as ours:
            if ours:
                return await self._hibernate(record, wait)
        if record.status != SessionStatus.HIBERNATED:
            raise SessionUnavailable(
                f"session {record.session_id!r} was being changed by another front end; ask again"
            )
        return await self._hibernate(record)

    async def _hibernate(self, record: SessionRecord, wait: bool = False) -> dict[str, Any]:
        if record.status == SessionStatus.HIBERNATED:
            return {
                "session_id": record.session_id,
                "status": SessionStatus.HIBERNATED,
                "image_bytes": record.image_bytes,
                "not_preserved": {},
            }
        if not (self.can_hibernate(record) or (wait and record.resident and record.handle)):
            raise SessionUnavailable(
                f"session {record.session_id!r} is {record.status} or has runs queued: "
                "it cannot hibernate now"
            )
        assert record.handle is not None
        path = self.lifecycle.image_path(record)
        session = _identity(record)
        started = time.perf_counter()
        handle = record.handle
        report = await handle.hibernate(str(path), session, self.settings.max_timeout, wait)
        if self._recyclable(record) and self.pool.expect():
            record.handle = None
            task = asyncio.ensure_future(self._recycle(handle))
            self._recycling.add(task)
            task.add_done_callback(self._recycling.discard)
        else:
            await self.lifecycle.kill(record)
        record.status = SessionStatus.HIBERNATED
        record.actor_name = None
        record.hibernated_at = time.time()
        record.image_bytes = report["size_bytes"]
        log.info(
            "session %s hibernated (%d bytes) in %.2f s",
            record.qualified,
            report["size_bytes"],
            time.perf_counter() - started,
        )
        return {
            "session_id": record.session_id,
            "status": SessionStatus.HIBERNATED,
            "image_bytes": report["size_bytes"],
            "not_preserved": report["not_preserved"],
        }

    async def make_cold(self, record: SessionRecord) -> None:
        """A new session that holds no process; its first call starts it as a resume would. On
        a cluster it also gets an empty image (who it is, nothing else: not synced, a crash
        loses nothing of it), so that a restarted front end finds it as it finds the
        hibernated ones."""
        size = None
        if self.settings.detached:  # embedded sessions end with the server: none to find
            path = self.lifecycle.image_path(record)
            extra = {"session": {**_identity(record), "cold": True}, "history": {}, "runs": []}
            size = await asyncio.to_thread(
                write_snapshot, path, record.session_id, {}, {}, extra, sync=False
            )
        record.status, record.cold = SessionStatus.HIBERNATED, True
        record.hibernated_at, record.image_bytes = time.time(), size

    async def _recycle(self, handle: SessionHandle) -> None:
        """A fresh kernel in the hibernated session's actor, then into the pool (off the
        hibernation's path: the image is whole already)."""
        try:
            await handle.recycle(CREATE_TIMEOUT)
        except (ActorDied, SessionUnavailable):
            handle.kill()
            self.pool.not_coming()
            return
        if not self.pool.give(handle):  # the pool filled meanwhile
            with contextlib.suppress(ActorDied, SessionUnavailable):
                await handle.shutdown()
            handle.kill()

    def _recyclable(self, record: SessionRecord) -> bool:
        """Its actor can serve another session: the usual placement, and the pool wants
        one."""
        usual = record.placement.is_default
        local = record.handle is not None and record.handle.in_process
        # Among replicas another front end may still hold the actor's handle: it must find
        # the actor gone, never serving another session.
        shared = self.directory is not None and self.directory.shared
        return usual and not local and not shared

    async def resume(self, record: SessionRecord) -> dict[str, Any]:
        """Bring a hibernated session back (the caller holds its slot); what the call that
        resumed it must say. One front end does it: the others adopt the actor it made."""
        if self.directory is None:
            return await self._resume(record)
        async with self.directory.change(record) as ours:
            if ours:
                return await self._resume(record)
        if record.status == SessionStatus.HIBERNATED:
            raise SessionUnavailable(
                f"session {record.session_id!r} is being resumed by another front end; ask again"
            )
        return {}

    async def _resume(self, record: SessionRecord) -> dict[str, Any]:
        await self.make_room(record)
        path = self.lifecycle.image_path(record)
        record.status = SessionStatus.STARTING
        usual = record.placement.is_default
        try:
            # No new actor for the pool now: keep_room's hibernation recycles one into it.
            await self.lifecycle.spawn(record, self.pool.take(refill=False) if usual else None)
            assert record.handle is not None
            if not record.cold:  # a cold session has nothing to load
                report = await record.handle.resume(str(path), self.settings.max_timeout)
        except BaseException:
            await self.lifecycle.kill(record)
            # The image is still there: the next call tries again.
            record.status = SessionStatus.HIBERNATED
            raise
        await asyncio.to_thread(path.unlink, True)
        record.hibernated_at = record.image_bytes = None
        self.keep_room()  # room for the next one, off this call's path
        if record.cold:  # its first start: nothing to say
            record.cold = False
            return {}
        log.info("session %s resumed", record.qualified)
        return {"resumed": True, "not_preserved": report["not_preserved"]}

    def keep_room(self) -> None:
        """Hibernate least recently used idle sessions in the background until ``ROOM_AHEAD``
        places are free: the next new or resuming session then neither waits for a
        hibernation nor finds the pool empty (each hibernated actor is recycled into it)."""
        if self._keeping is None or self._keeping.done():
            self._keeping = asyncio.ensure_future(self._keep_room())

    async def _keep_room(self) -> None:
        try:
            await self._make_room_ahead()
        finally:
            self.pool.refill()  # what recycling did not bring back is started now

    async def _make_room_ahead(self) -> None:
        limit = self.settings.resident_limit
        target = max(1, limit - ROOM_AHEAD)
        while sum(1 for r in self.sessions.values() if r.resident) > target:
            candidates = sorted(
                (r for r in self.sessions.values() if self.may_evict(r)),
                key=lambda r: r.last_used(),
            )
            for candidate in candidates:
                if candidate.slot.try_acquire():
                    try:
                        with contextlib.suppress(SessionUnavailable, ActorDied, SessionNotFound):
                            await self.hibernate(candidate)
                    finally:
                        candidate.slot.release()
                    break
            else:
                return  # nothing idle enough: the caller's own make_room says so if it must

    async def make_room(self, keep: SessionRecord | None = None) -> None:
        """Hibernate least recently used idle sessions until one more fits."""
        limit = self.settings.resident_limit
        while sum(1 for r in self.sessions.values() if r.resident) >= limit:
            candidates = sorted(
                (r for r in self.sessions.values() if r is not keep and self.may_evict(r)),
                key=lambda r: r.last_used(),
            )
            for candidate in candidates:
                if candidate.slot.try_acquire():
                    try:
                        with contextlib.suppress(SessionUnavailable, ActorDied):
                            await self.hibernate(candidate)
                    finally:
                        candidate.slot.release()
                    break
            else:
                raise SessionLimitReached(
                    f"{limit} sessions have processes (max_resident_sessions) and none is idle "
                    "enough to hibernate; try again when a run has finished"
                )

    def forget(self, record: SessionRecord) -> None:
        """A deleted session's image goes with it."""
        self.lifecycle.image_path(record).unlink(missing_ok=True)

    def rediscover(self) -> list[SessionRecord]:
        """Hibernated sessions a previous front end left in the store (blocking: a thread)."""
        found = []
        for path in sorted((self.settings.store / "images").glob("*/*.zip")):
            record = record_from_image(path)
            if record is not None and path == self.lifecycle.image_path(record):
                found.append(record)
        for leftover in (self.settings.store / "images").glob("*/*.partial"):
            leftover.unlink(missing_ok=True)  # a hibernation that did not finish
        return found


def _identity(record: SessionRecord) -> dict[str, Any]:
    """Who a session is, as its image keeps it."""
    return {
        "owner": record.owner,
        "description": record.description,
        "created_at": record.created_at,
        "placement": dataclasses.asdict(record.placement),
        "network": record.network,
        "checkpoint": record.checkpoint,
        "restart_count": record.restart_count,
        "environment": record.environment,
        "cold": record.cold
        or (record.execution_count == 0 and record.status == SessionStatus.HIBERNATED),
    }


def record_from_image(path: Path) -> SessionRecord | None:
    """The record of the hibernated session whose image is ``path`` (blocking); None if
    there is no readable image there."""
    try:
        manifest = read_manifest(path)
    except FileNotFoundError:
        return None
    except Exception as exc:  # a torn file cannot be: the image is renamed in whole
        log.warning("cannot read the image %s: %s", path, exc)
        return None
    session = manifest.get("session") or {}
    record = SessionRecord(
        manifest["session_id"],
        session.get("description", ""),
        session.get("created_at", manifest.get("created_at", time.time())),
        owner=session.get("owner") or LOCAL,
        network=session.get("network", "on"),
        placement=Placement(**(session.get("placement") or {})),
    )
    record.checkpoint = session.get("checkpoint", "off")
    record.environment = session.get("environment")
    record.restart_count = session.get("restart_count", 0)
    record.cold = bool(session.get("cold")) and not manifest.get("names")
    record.status = SessionStatus.HIBERNATED
    record.hibernated_at = manifest.get("created_at")
    record.image_bytes = path.stat().st_size
    history = manifest.get("history") or {}
    record.execution_count = history.get("execution_count", 0)
    record.last_execution_time = history.get("last_execution_time")
    return record
