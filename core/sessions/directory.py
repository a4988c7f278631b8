"""The front end's side of the registry: finding sessions another front end made, making sure a
session id gets one actor whoever races for it, and noticing when a session moved.

Each front end keeps records of the sessions it has met (its table, a cache); the registry says
which actor serves a session now. A record found stale (its actor gone or handed on) is brought
up to date from the registry: adopted to the new actor, marked hibernated, or dropped when the
session was deleted elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from raykernel.actors.registry_actor import Entry
from raykernel.errors import SessionNotFound
from raykernel.protocol import SessionStatus
from raykernel.settings import Settings

from .cluster import Placement
from .handle import ACTOR_NAME_PREFIX, CONTROL_TIMEOUT, SessionHandle, first_line
from .lifecycle import CREATE_TIMEOUT, Lifecycle
from .record import LOCAL, SessionRecord, qualify, split
from .registry import Registry

log = logging.getLogger(__name__)


class Directory:
    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        lifecycle: Lifecycle,
        sessions: dict[str, SessionRecord],
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.lifecycle = lifecycle
        self.sessions = sessions
        # This front end, as the registry knows it (the holder of its leases).
        self.holder = lifecycle.holder
        self.boot: str | None = None  # the registry's, when this front end first met it

    @property
    def shared(self) -> bool:
        """Whether other front ends may serve these sessions too."""
        return self.registry.is_shared

    # -- creating ---------------------------------------------------------------------------

    async def reserve(self, qualified: str) -> Entry | None:
        """Take a new id (None) or the entry of a session that exists or is being made."""
        return await self.registry.reserve(qualified, self.holder)

    async def created(self, record: SessionRecord) -> None:
        """The session this front end reserved has its actor."""
        name = record.handle.name if record.handle is not None else None
        await self.registry.settle(
            record.qualified, self.holder, name, _state(record), record.meta()
        )

    async def abandon(self, qualified: str) -> None:
        """The creation failed: the id is free again."""
        with contextlib.suppress(Exception):
            await self.registry.release(qualified, self.holder)

    # -- finding ----------------------------------------------------------------------------

    async def find(self, qualified: str, entry: Entry | None = None) -> SessionRecord | None:
        """A record for a session the registry knows (made by another front end), adopted to
        its actor or its image; None if there is no such session."""
        if entry is None:
            entry = await self.registry.get(qualified)
        if entry is not None and entry["state"] == "creating":
            entry = await self.registry.wait_settled(qualified, CREATE_TIMEOUT)
        if entry is None:
            return None
        record = await self._record_of(qualified, entry)
        if record is None:
            return None
        known = self.sessions.get(qualified)
        if known is not None:  # found meanwhile by a racing call
            return known
        self.sessions[qualified] = record
        return record

    async def _record_of(self, qualified: str, entry: Entry) -> SessionRecord | None:
        if entry["state"] == "hibernated":
            from .hibernation import record_from_image

            owner, session_id = split(qualified)
            probe = SessionRecord(session_id, "", 0.0, owner=owner)
            path = self.lifecycle.image_path(probe)
            return await asyncio.to_thread(record_from_image, path)
        try:
            handle = await asyncio.to_thread(
                SessionHandle.find, entry["actor"], self.settings.namespace
            )
            info = await handle.info()
        except Exception as exc:  # gone (its node lost): the next run gives it a new actor
            log.info("session %s: its actor %s is gone: %s", qualified, entry["actor"], exc)
            return dead_record(qualified, entry, f"its actor is gone ({first_line(str(exc))})")
        return self.lifecycle.record_of(handle, info)

    async def moved(self, record: SessionRecord) -> bool:
        """After a call found the record's actor gone or handed on: bring the record up to
        date from the registry. True when the session lives elsewhere now (the record points
        there, or says hibernated); False when its own actor simply died. A session deleted
        elsewhere is dropped here: ``SessionNotFound``."""
        if not self.shared:
            return False
        qualified = record.qualified
        entry = await self.registry.wait_settled(qualified, CREATE_TIMEOUT)
        mine = record.actor_name
        if entry is None:
            self._drop(record)
            raise SessionNotFound(f"session {record.session_id!r} was deleted")
        if entry["state"] == "live" and entry["actor"] == mine:
            return False
        found = await self._record_of(qualified, entry)
        if found is None:
            return False
        self._take(record, found)
        return record.handle is not None or record.status == SessionStatus.HIBERNATED

    def _take(self, record: SessionRecord, found: SessionRecord) -> None:
        """``record`` (kept: callers queue on its slot) now describes ``found``."""
        record.handle = found.handle
        for name in (
            "actor_name",
            "pid",
            "kernel_pid",
            "isolation",
            "network",
            "node_id",
            "node_ip",
            "started_at",
            "status",
            "execution_count",
            "last_execution_time",
            "hibernated_at",
            "image_bytes",
            "death_reason",
        ):
            setattr(record, name, getattr(found, name))

    def _drop(self, record: SessionRecord) -> None:
        record.deleted = True
        if self.sessions.get(record.qualified) is record:
            del self.sessions[record.qualified]

    async def sync(self) -> None:
        """The table brought up to date with the registry (a listing): sessions made by other
        front ends adopted, sessions deleted by them dropped."""
        if not self.shared:
            return
        entries = await self.registry.entries()
        for qualified, record in list(self.sessions.items()):
            if qualified not in entries and record.status != SessionStatus.STARTING:
                self._drop(record)
        missing = [q for q in entries if q not in self.sessions]
        await asyncio.gather(*(self.find(q, entries[q]) for q in missing))

    async def removed(self, qualified: str) -> None:
        await self.registry.remove(qualified)

    async def rediscover(self, hibernated: list[SessionRecord]) -> None:
        """At start: every session of the namespace adopted (the registry's, and any it lost:
        actors and images it does not know are registered again); actors nobody needs killed
        (pooled ones of a front end that is gone, duplicates of a settled id)."""
        import ray

        self.boot, alive_list = await self.registry.hello(self.holder)
        alive = set(alive_list)
        names = await asyncio.to_thread(ray.util.list_named_actors)
        names = [n for n in names if n.startswith(ACTOR_NAME_PREFIX)]

        async def look(name: str) -> None:
            try:
                handle = await asyncio.to_thread(SessionHandle.find, name, self.settings.namespace)
                info = await handle.info(CONTROL_TIMEOUT)
            except Exception as exc:
                log.warning("could not adopt %s: %s", name, exc)
                return
            if not info["session_id"]:
                if pool_holder(name) not in alive:  # its front end is gone: nobody takes it
                    handle.kill()
                return
            qualified = qualify(info.get("owner") or LOCAL, info["session_id"])
            record = self.lifecycle.record_of(handle, info)
            await self.registry.adopt(qualified, name, "live", record.meta())
            entry = await self.registry.wait_settled(qualified, CREATE_TIMEOUT)
            if entry is None or entry["state"] == "creating":
                return
            if entry["actor"] != name:
                log.info("killing %s: session %s is served by %s", name, qualified, entry["actor"])
                handle.kill()
                return
            if qualified not in self.sessions:
                self.sessions[qualified] = record
                log.info("adopted session %s", qualified)

        await asyncio.gather(*(look(name) for name in names))
        for record in hibernated:
            entry = await self.registry.adopt(record.qualified, None, "hibernated", record.meta())
            if entry["state"] == "hibernated" and record.qualified not in self.sessions:
                self.sessions[record.qualified] = record
        await self.sync()

    async def beat(self) -> None:
        """Tell the registry this front end lives (its pooled actors are kept); a registry
        that started afresh (its state lost) is told this front end's sessions again."""
        boot, _ = await self.registry.hello(self.holder)
        if boot == self.boot:
            return
        log.warning("the registry started afresh: registering this front end's sessions")
        for qualified, record in list(self.sessions.items()):
            hibernated = record.status == SessionStatus.HIBERNATED
            state = "hibernated" if hibernated else "live"  # the registry's states
            if record.actor_name is not None or state == "hibernated":
                await self.registry.adopt(qualified, record.actor_name, state, record.meta())
        self.boot = boot

    @contextlib.asynccontextmanager
    async def change(self, record: SessionRecord) -> AsyncIterator[bool]:
        """Hold the session's lease while its actor is replaced, hibernated or resumed: yields
        True. A session another front end is changing (or has changed) is waited for and the
        record brought up to date instead: yields False, and the caller looks again."""
        if not self.shared:
            yield True
            return
        qualified = record.qualified
        granted, entry = await self.registry.lease(qualified, self.holder)
        if entry is None:
            self._drop(record)
            raise SessionNotFound(f"session {record.session_id!r} was deleted")
        mine = record.actor_name
        if granted and (entry["actor"] != mine or entry["state"] != _state(record)):
            await self.registry.release(qualified, self.holder)
            granted = False
        if not granted:
            await self.moved(record)
            yield False
            return
        try:
            yield True
        except BaseException:
            await self.registry.release(qualified, self.holder)
            raise
        name = record.handle.name if record.handle is not None else None
        await self.registry.settle(qualified, self.holder, name, _state(record), record.meta())


def dead_record(qualified: str, entry: Entry, reason: str) -> SessionRecord:
    """A session whose actor is gone, rebuilt from what the registry keeps: the next run
    gives it a new actor (its state lost, or its last checkpoint), as after a node loss."""
    owner, session_id = split(qualified)
    meta = entry.get("meta") or {}
    record = SessionRecord(
        session_id,
        meta.get("description", ""),
        meta.get("created_at", 0.0),
        owner=owner,
        network=meta.get("network", "on"),
        placement=Placement(**(meta.get("placement") or {})),
    )
    record.checkpoint = meta.get("checkpoint", "off")
    record.environment = meta.get("environment")
    record.actor_name = entry["actor"]
    record.status = SessionStatus.DEAD
    record.death_reason = reason
    return record


def _state(record: SessionRecord) -> str:
    return SessionStatus.HIBERNATED if record.status == SessionStatus.HIBERNATED else "live"


def pool_holder(name: str) -> str:
    """The front end whose pool an actor was started for (from its name)."""
    return name[len(ACTOR_NAME_PREFIX) :].partition("-")[0]

    # -- changing a session: one front end at a time -----------------------------------------
