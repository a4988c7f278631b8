"""MCP progress notifications while code runs, carrying the tail of its output.

Sent only when the client asked for progress (a progress token on the call), at most
``1 / INTERVAL`` per second: when the output changed, or every ``HEARTBEAT`` seconds as a sign
of life (clients that reset their request timeout on progress then never give up on a run that
is merely quiet).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from raykernel.sessions.record import SessionRecord
from raykernel.sessions.router import OnStart, SessionRouter

log = logging.getLogger(__name__)

INTERVAL = 0.5
HEARTBEAT = 5.0
MESSAGE_CHARS = 1000

Report = Callable[[float, str], Awaitable[None]]


class ProgressPump:
    def __init__(self, router: SessionRouter, report: Report) -> None:
        self.router = router
        self.report = report
        self.task: asyncio.Future[None] | None = None

    def on_start(self, record: SessionRecord, token: str) -> None:
        self.task = asyncio.ensure_future(self._loop(record, token, time.monotonic()))

    async def _loop(self, record: SessionRecord, token: str, started: float) -> None:
        last_text: str | None = None
        last_sent = started
        while True:
            await asyncio.sleep(INTERVAL)
            # Until the run's call ends (``stop``): nothing while it waits in the queue.
            tail = await self.router.live_tail(record, token)
            now = time.monotonic()
            changed = bool(tail) and tail != last_text
            if not changed and now - last_sent < HEARTBEAT:
                continue
            elapsed = now - started
            text = (tail or "")[-MESSAGE_CHARS:]
            message = text if changed else f"running for {elapsed:.0f} s"
            try:
                await self.report(round(elapsed, 3), message)
            except Exception as exc:  # the client went away; the run goes on
                log.debug("progress notification failed: %s", exc)
                return
            last_sent = now
            if changed:
                last_text = tail

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()


def _progress_report() -> Report | None:
    """The current request's progress reporter, if the client sent a progress token."""
    from fastmcp.server.dependencies import get_context

    try:
        context = get_context()
        meta: dict[str, Any] = context.request_context.meta or {}  # type: ignore[union-attr]
    except Exception:
        return None
    if meta.get("progressToken") is None:
        return None

    async def report(progress: float, message: str) -> None:
        await context.report_progress(progress=progress, message=message)

    return report


@contextlib.asynccontextmanager
async def progress_for_request(router: SessionRouter) -> AsyncIterator[OnStart | None]:
    """Within the block, pass the yielded callback as a run's ``on_start``; None when the
    client did not ask for progress."""
    report = _progress_report()
    if report is None:
        yield None
        return
    pump = ProgressPump(router, report)
    try:
        yield pump.on_start
    finally:
        pump.stop()
