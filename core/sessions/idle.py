"""What happens to sessions nobody uses: after ``idle_timeout`` seconds without a run they are
deleted (never "default", never one that is running or has runs queued)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from raykernel.errors import RaykernelError

from .router import DEFAULT_SESSION, SessionRouter

log = logging.getLogger(__name__)


class IdleWatch:
    def __init__(self, router: SessionRouter) -> None:
        self.router = router
        self.settings = router.settings

    def interval(self) -> float:
        return min(30.0, max(self.settings.idle_timeout / 4, 0.25))

    async def run(self) -> None:
        """Watch for as long as the server lives (nothing to do when ``idle_timeout`` is 0)."""
        if self.settings.idle_timeout <= 0:
            return
        await self.router.ready()
        while True:
            await asyncio.sleep(self.interval())
            await self.sweep(time.time())

    async def sweep(self, now: float) -> None:
        """Delete every session idle for longer than ``idle_timeout``."""
        timeout = self.settings.idle_timeout
        for qualified, record in list(self.router.sessions.items()):
            busy = record.status == "busy" or record.slot.locked() or record.waiting
            if record.session_id == DEFAULT_SESSION or busy:
                continue
            idle_for = now - record.last_used()
            if idle_for > timeout:
                log.info("deleting session %s: idle for %.0f s", qualified, idle_for)
                with contextlib.suppress(RaykernelError):
                    await self.router.delete(qualified)
