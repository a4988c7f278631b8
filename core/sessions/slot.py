"""A session's slot: one call at a time, in arrival order, with a way to the front.

Runs, installs and control calls queue here in the order they arrive (an ``asyncio.Lock`` is
fair too, but cannot let a restart go first). ``restart_kernel`` stops the run in progress and
takes the slot next, as Jupyter's restart does: runs queued behind it then meet the new process.
"""

from __future__ import annotations

import asyncio
from collections import deque


class Slot:
    def __init__(self) -> None:
        self._held = False
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._urgent: deque[asyncio.Future[None]] = deque()

    def locked(self) -> bool:
        return self._held

    @property
    def waiting(self) -> int:
        return sum(1 for f in (*self._urgent, *self._waiters) if not f.done())

    def try_acquire(self) -> bool:
        """Take the slot now if nobody holds it or waits for it."""
        if self._held or self.waiting:
            return False
        self._held = True
        return True

    async def acquire(self, urgent: bool = False) -> None:
        if not self._held and not self._urgent and not (self._waiters and not urgent):
            self._held = True
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue = self._urgent if urgent else self._waiters
        queue.append(future)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release()  # handed over just as the waiter gave up: pass it on
            raise
        finally:
            if future in queue:
                queue.remove(future)

    def release(self) -> None:
        for queue in (self._urgent, self._waiters):
            while queue:
                future = queue.popleft()
                if not future.done():
                    future.set_result(None)  # the slot passes directly to the next holder
                    return
        self._held = False
