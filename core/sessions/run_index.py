"""Which session each run id belongs to, told to the registry so that any front end can answer
about any run. Every run is indexed; under load the ids go in batches (one registry call for
many runs, off the run's path), while a background run's id is sent before its caller gets it,
so another front end finds it at once."""

from __future__ import annotations

import asyncio
import logging

from .record import SessionRecord
from .registry import Registry

log = logging.getLogger(__name__)

BATCH_DELAY = 0.05  # seconds a run id may wait to travel with others


class RunIndex:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._pending: list[tuple[str, str]] = []
        self._flushing: asyncio.Future[None] | None = None

    def add(self, record: SessionRecord, run_id: str) -> None:
        """Index ``run_id`` soon."""
        self._pending.append((run_id, record.qualified))
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.ensure_future(self._flush_later())

    async def flush(self) -> None:
        """Index every pending run id now."""
        pending, self._pending = self._pending, []
        if not pending:
            return
        try:
            await self.registry.add_runs(pending)
        except Exception as exc:  # the runs go on; only other front ends cannot find them
            log.warning("%d run ids not indexed: %s", len(pending), exc)

    async def _flush_later(self) -> None:
        await asyncio.sleep(BATCH_DELAY if self.registry.is_shared else 0)
        await self.flush()

    def close(self) -> None:
        if self._flushing is not None:
            self._flushing.cancel()
