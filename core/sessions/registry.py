"""A typed facade over the namespace's registry (``RegistryState``, in
raykernel.actors.registry_actor): in this process when one front end serves the namespace, the
namespace's registry actor when front ends are replicas.

The run index: which session each run id belongs to, told to the registry so that any front
end can answer about any run. Every run is indexed; under load the ids go in batches (one
registry call for many runs, off the run's path), while a background run's id is sent before
its caller gets it, so another front end finds it at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from raykernel.actors.registry_actor import Entry, RegistryState
from raykernel.sessions.record import SessionRecord


class Registry:
    """A typed facade over the registry: a ``RegistryState`` in this process (one front end),
    or the namespace's registry actor (a cluster, where front ends are replicas)."""

    def __init__(self, state: RegistryState | None = None, namespace: str | None = None) -> None:
        self._state = state
        self._namespace = namespace
        self._actor: Any = None

    @classmethod
    def local(cls) -> Registry:
        return cls(RegistryState())

    @classmethod
    def shared(cls, namespace: str) -> Registry:
        """The namespace's registry actor, started by whichever front end comes first."""
        return cls(namespace=namespace)

    @property
    def is_shared(self) -> bool:
        return self._state is None

    async def _call(self, method: Callable[..., Any], *args: Any) -> Any:
        """``method`` (one of ``RegistryState``'s, by reference) on the registry."""
        if self._state is not None:
            result = method(self._state, *args)
            return await result if asyncio.iscoroutine(result) else result
        if self._actor is None:
            self._actor = await asyncio.to_thread(self._connect)
        return await self._actor.perform.remote(method, *args)

    def _connect(self) -> Any:
        from raykernel.actors.registry_actor import registry_actor

        return registry_actor(self._namespace or "raykernel")

    async def reserve(self, qualified: str, holder: str) -> Entry | None:
        return await self._call(RegistryState.reserve, qualified, holder)

    async def lease(self, qualified: str, holder: str) -> tuple[bool, Entry | None]:
        granted, entry = await self._call(RegistryState.lease, qualified, holder)
        return bool(granted), entry

    async def settle(
        self,
        qualified: str,
        holder: str,
        actor: str | None,
        state: str,
        meta: dict[str, Any] | None = None,
    ) -> Entry | None:
        return await self._call(RegistryState.settle, qualified, holder, actor, state, meta)

    async def release(self, qualified: str, holder: str) -> None:
        await self._call(RegistryState.release, qualified, holder)

    async def adopt(
        self,
        qualified: str,
        actor: str | None,
        state: str = "live",
        meta: dict[str, Any] | None = None,
    ) -> Entry:
        return await self._call(RegistryState.adopt, qualified, actor, state, meta)

    async def wait_settled(self, qualified: str, timeout: float) -> Entry | None:
        return await self._call(RegistryState.wait_settled, qualified, timeout)

    async def get(self, qualified: str) -> Entry | None:
        return await self._call(RegistryState.get, qualified)

    async def remove(self, qualified: str) -> Entry | None:
        return await self._call(RegistryState.remove, qualified)

    async def entries(self) -> dict[str, Entry]:
        return await self._call(RegistryState.entries)

    async def active_get(self, key: str) -> str | None:
        return await self._call(RegistryState.active_get, key)

    async def active_set(self, key: str, qualified: str) -> None:
        await self._call(RegistryState.active_set, key, qualified)

    async def add_runs(self, runs: list[tuple[str, str]]) -> None:
        await self._call(RegistryState.add_runs, runs)

    async def run_session(self, run_id: str) -> str | None:
        return await self._call(RegistryState.run_session, run_id)

    async def runs_of(self, sessions: list[str] | None) -> dict[str, list[str]]:
        return await self._call(RegistryState.runs_of, sessions)

    async def hello(self, holder: str) -> tuple[str, list[str]]:
        boot, alive = await self._call(RegistryState.hello, holder)
        return boot, list(alive)

    async def goodbye(self, holder: str) -> None:
        await self._call(RegistryState.goodbye, holder)


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
