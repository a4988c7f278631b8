"""What the front end's sessions may take of the machine: actors started ahead, limits, memory.

The warm pool: session actors started ahead of time, so that a new session needs no cold start.

A pooled actor has never run code nor been claimed by a session: it carries no state from
anyone. The pool refills itself in the background after every take.

Admission: the limits a new session or a new run must fit in (server-wide and per
identity), checked before anything is started.

The memory guard of an embedded server: its front end is on the only node (this machine)
and watches every session it serves, the one it hosts itself included (see
``raykernel.memory``). On a cluster each node has a guard actor instead
(``raykernel.actors.memory_guard``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from raykernel.errors import QuotaExceeded, SessionLimitReached
from raykernel.memory import INTERVAL, MemoryGuard, Watched, watch
from raykernel.protocol import SessionStatus
from raykernel.sessions.record import SessionRecord
from raykernel.settings import Settings

log = logging.getLogger(__name__)


class WarmPool:
    def __init__(self, size: int, start_actor: Callable[[], Awaitable[Any]]) -> None:
        self.size = size
        self._start_actor = start_actor
        self._ready: list[Any] = []
        self._starting = 0
        # Recycled actors on their way back (a hibernated session's): no new one is started
        # for a place one of them will take.
        self._expected = 0
        self._tasks: set[asyncio.Future[Any]] = set()
        self._closed = False

    def __len__(self) -> int:
        return len(self._ready)

    def take(self, refill: bool = True) -> Any | None:
        """A ready actor, or None when the pool is empty (or off). ``refill`` False: the
        caller will give one back soon (a resume makes room by hibernating another session,
        whose actor is recycled here) or call ``refill`` itself."""
        handle = self._ready.pop() if self._ready else None
        if refill:
            self.refill()
        return handle

    def expect(self) -> bool:
        """A recycled actor will be given back (``give``, or ``not_coming``) if the pool wants
        one: True when it does."""
        if self._closed or len(self._ready) + self._starting + self._expected >= self.size:
            return False
        self._expected += 1
        return True

    def not_coming(self) -> None:
        """An expected actor will not come (its recycling failed): start one instead."""
        self._expected = max(0, self._expected - 1)
        self.refill()

    def give(self, handle: Any) -> bool:
        """Take back a fresh actor (a hibernated session's, recycled) if the pool has room."""
        self._expected = max(0, self._expected - 1)
        if self._closed or len(self._ready) + self._starting >= self.size:
            return False
        self._ready.append(handle)
        return True

    def refill(self) -> None:
        while not self._closed and len(self._ready) + self._starting + self._expected < self.size:
            self._starting += 1
            task = asyncio.ensure_future(self._add_one())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _add_one(self) -> None:
        try:
            handle = await self._start_actor()
        except Exception:
            if not self._closed:  # while shutting down, Ray going away is expected
                log.warning("could not start a pooled session actor", exc_info=True)
            return
        finally:
            self._starting -= 1
        if self._closed:
            _kill(handle)
        else:
            self._ready.append(handle)

    async def settled(self) -> None:
        """Wait until no pooled actor is starting."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def close(self) -> None:
        """Kill the pooled actors; actors still starting are killed when they are up."""
        self._closed = True
        while self._ready:
            _kill(self._ready.pop())


def _kill(handle: Any) -> None:
    with contextlib.suppress(Exception):
        handle.kill()


class Admission:
    def __init__(self, settings: Settings, sessions: dict[str, SessionRecord]) -> None:
        self.settings = settings
        self.sessions = sessions
        self._in_flight: dict[str, int] = {}  # runs running or queued, per identity

    def admit_session(self, owner: str) -> None:
        """Refuse a new session past ``max_sessions`` or the owner's quota."""
        if len(self.sessions) >= self.settings.max_sessions:
            raise SessionLimitReached(
                f"{len(self.sessions)} sessions exist, the maximum is "
                f"{self.settings.max_sessions}; delete one first"
            )
        quota = self.settings.max_sessions_per_identity
        held = sum(1 for record in self.sessions.values() if record.owner == owner)
        if quota is not None and held >= quota:
            raise QuotaExceeded(f"{owner!r} holds {held} sessions, the quota; delete one first")

    @contextlib.contextmanager
    def run(self, owner: str) -> Iterator[None]:
        """Count a run of ``owner``'s, running or queued, while it lasts; refuse one past
        ``max_concurrent_runs_per_identity``."""
        quota = self.settings.max_concurrent_runs_per_identity
        in_flight = self._in_flight.get(owner, 0)
        if quota is not None and in_flight >= quota:
            raise QuotaExceeded(
                f"the sessions of {owner!r} have {in_flight} runs in flight (running or "
                "queued), the quota; wait for one to finish"
            )
        self._in_flight[owner] = in_flight + 1
        try:
            yield
        finally:
            self._in_flight[owner] -= 1


class MemoryWatch:
    def __init__(self, settings: Settings, sessions: dict[str, SessionRecord]) -> None:
        self.settings = settings
        self.sessions = sessions  # the router's table
        self.guard = MemoryGuard(
            settings.memory_high_water,
            settings.session_memory_budget,
            node="this machine",
            grace=settings.interrupt_grace + 1.0,
        )

    @property
    def enabled(self) -> bool:
        return self.settings.memory_high_water > 0 and not self.settings.detached

    async def run(self) -> None:
        await watch(self.guard, self.entries, INTERVAL)

    def entries(self) -> list[Watched]:
        watched = []
        for record in list(self.sessions.values()):
            handle = record.handle
            if handle is None or not record.resident or record.status == SessionStatus.DEAD:
                continue
            watched.append(
                Watched(
                    record.qualified,
                    record.owner,
                    handle.memory_report,
                    handle.memory_stop,
                    handle.memory_kill,
                )
            )
        return watched
