"""What happens to sessions nobody uses: after ``hibernate_after`` seconds without a run they
are hibernated (their state saved, their processes freed; the next call resumes them), and after
``idle_timeout`` seconds they are deleted (never "default"). A session that is running or has
runs queued is never touched."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from raykernel.errors import RaykernelError
from raykernel.protocol import SessionStatus

from .handle import ActorDied
from .router import DEFAULT_SESSION, SessionRouter

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
