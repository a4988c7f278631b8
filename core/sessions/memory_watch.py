"""The memory guard of an embedded server: its front end is on the only node (this machine)
and watches every session it serves, the one it hosts itself included (see
``raykernel.memory``). On a cluster each node has a guard actor instead
(``raykernel.actors.memory_guard``)."""

from __future__ import annotations

from raykernel.memory import INTERVAL, MemoryGuard, Watched, watch
from raykernel.protocol import SessionStatus
from raykernel.settings import Settings

from .record import SessionRecord


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
