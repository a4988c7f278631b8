"""The namespace's registry state: what every front end must agree on about sessions.

One small state per namespace (a named, detached Ray actor on a cluster; an object in the
front end when there is only one): which session ids exist and which actor serves each, who is
changing one right now (creating, hibernating, resuming or replacing it: a lease, so a creation
race or two front ends resuming the same session end with one actor), each caller's active
session, and which session a run id belongs to. It holds names and small strings only; the
sessions' state lives in their actors and in the store.

Why an actor and not Ray's internal key-value store: waiting for a creation under way (20
creators of one id) is an ``asyncio.Event`` here, not polling, and every change is one ordered
call; the KV store is also a private API.

``RegistryActor`` serves it to several front ends: one per namespace, named and detached, so that
every front end (and a restarted one) finds the same one; a single front end keeps a
``RegistryState`` in its own process (see raykernel.sessions.registry, the facade over both).
"""

from __future__ import annotations

import asyncio
import inspect
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

REGISTRY_NAME = "raykernel-registry"
LEASE_SECONDS = 180.0  # longer than starting an actor on a loaded machine
MAX_RUNS = 20_000
MAX_CALLERS = 10_000
FRONT_END_TTL = 60.0  # a front end not heard from for this long is gone
# A lease whose holder (a front end that says hello every few seconds) has been silent this long
# is over: a front end killed in the middle of a change does not block the session for long.
HOLDER_SILENCE = 20.0

Entry = dict[str, Any]  # {"actor": str | None, "state": creating|live|hibernated, "epoch": int}


class RegistryState:
    """The registry's state and rules (plain Python; the actor is a thin shell over it)."""

    def __init__(self) -> None:
        self.sessions: dict[str, Entry] = {}
        self.leases: dict[str, tuple[str, float]] = {}  # qualified -> (holder, until)
        self.settled: dict[str, asyncio.Event] = {}
        self.active: OrderedDict[str, str] = OrderedDict()
        self.runs: OrderedDict[str, str] = OrderedDict()  # run id -> qualified
        self.front_ends: dict[str, float] = {}
        # Changes when the registry starts afresh (its actor restarted, its state lost): front
        # ends that see a new one register their sessions again.
        self.boot = uuid.uuid4().hex

    # -- sessions ---------------------------------------------------------------------------

    def reserve(self, qualified: str, holder: str) -> Entry | None:
        """Take a new session id (None: it is the caller's to create) or the entry of the one
        that exists (or is being created by someone else)."""
        entry = self.sessions.get(qualified)
        if entry is not None and not (entry["state"] == "creating" and self._expired(qualified)):
            return dict(entry)
        self.sessions[qualified] = {"actor": None, "state": "creating", "epoch": 0}
        self._hold(qualified, holder)
        return None

    def lease(self, qualified: str, holder: str) -> tuple[bool, Entry | None]:
        """The right to change a session (hibernate, resume, replace its actor), if nobody
        holds it; with the entry as it is now."""
        entry = self.sessions.get(qualified)
        if entry is None:
            return False, None
        if qualified in self.leases and not self._expired(qualified):
            return False, dict(entry)
        self._hold(qualified, holder)
        return True, dict(entry)

    def settle(
        self,
        qualified: str,
        holder: str,
        actor: str | None,
        state: str,
        meta: dict[str, Any] | None = None,
    ) -> Entry | None:
        """The change is done: the session is ``state`` (live, hibernated) on ``actor``;
        ``meta`` (description, placement...) lets any front end rebuild a session whose actor
        is gone."""
        entry = self.sessions.get(qualified)
        if entry is None or self.leases.get(qualified, (None,))[0] != holder:
            return None  # deleted meanwhile, or the lease expired and passed on
        entry.update(actor=actor, state=state, epoch=entry["epoch"] + 1)
        if meta is not None:
            entry["meta"] = meta
        self._release(qualified)
        return dict(entry)

    def release(self, qualified: str, holder: str) -> None:
        """Give a lease back unchanged (a creation that failed removes its entry)."""
        if self.leases.get(qualified, (None,))[0] != holder:
            return
        entry = self.sessions.get(qualified)
        if entry is not None and entry["state"] == "creating":
            del self.sessions[qualified]
        self._release(qualified)

    def adopt(
        self,
        qualified: str,
        actor: str | None,
        state: str = "live",
        meta: dict[str, Any] | None = None,
    ) -> Entry:
        """Record a session found in the namespace (a front end's rediscovery), unless the
        registry knows it already; the entry that counts."""
        entry = self.sessions.get(qualified)
        if entry is None:
            entry = {"actor": actor, "state": state, "epoch": 0, "meta": meta or {}}
            self.sessions[qualified] = entry
        return dict(entry)

    async def wait_settled(self, qualified: str, timeout: float) -> Entry | None:
        """The entry once nobody is changing it (or after ``timeout``); None if it is gone."""
        deadline = time.monotonic() + timeout
        while qualified in self.leases and not self._expired(qualified):
            event = self.settled.setdefault(qualified, asyncio.Event())
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                await asyncio.wait_for(event.wait(), min(left, 5.0))
            except TimeoutError:
                continue
        entry = self.sessions.get(qualified)
        if entry is not None and entry["state"] == "creating" and self._expired(qualified):
            return None
        return dict(entry) if entry is not None else None

    def get(self, qualified: str) -> Entry | None:
        entry = self.sessions.get(qualified)
        return dict(entry) if entry is not None else None

    def remove(self, qualified: str) -> Entry | None:
        """Forget a session (deleted): nobody adopts it again; nobody keeps it active."""
        entry = self.sessions.pop(qualified, None)
        self._release(qualified)
        for key in [k for k, v in self.active.items() if v == qualified]:
            del self.active[key]
        return entry

    def entries(self) -> dict[str, Entry]:
        return {q: dict(e) for q, e in self.sessions.items() if e["state"] != "creating"}

    # -- callers' active sessions -----------------------------------------------------------

    def active_get(self, key: str) -> str | None:
        return self.active.get(key)

    def active_set(self, key: str, qualified: str) -> None:
        self.active[key] = qualified
        self.active.move_to_end(key)
        while len(self.active) > MAX_CALLERS:
            self.active.popitem(last=False)

    # -- runs -------------------------------------------------------------------------------

    def add_runs(self, runs: list[tuple[str, str]]) -> None:
        for run_id, qualified in runs:
            self.runs[run_id] = qualified
        while len(self.runs) > MAX_RUNS:
            self.runs.popitem(last=False)

    def run_session(self, run_id: str) -> str | None:
        return self.runs.get(run_id)

    def runs_of(self, sessions: list[str] | None) -> dict[str, list[str]]:
        """Run ids by session (of ``sessions``, or all), oldest first."""
        wanted = None if sessions is None else set(sessions)
        found: dict[str, list[str]] = {}
        for run_id, qualified in self.runs.items():
            if (wanted is None or qualified in wanted) and qualified in self.sessions:
                found.setdefault(qualified, []).append(run_id)
        return found

    # -- front ends -------------------------------------------------------------------------

    def hello(self, holder: str) -> tuple[str, list[str]]:
        """A front end says it lives; this registry's boot id and the front ends alive now."""
        now = time.time()
        self.front_ends[holder] = now
        for name, seen in list(self.front_ends.items()):
            if now - seen > FRONT_END_TTL:
                del self.front_ends[name]
        return self.boot, list(self.front_ends)

    def goodbye(self, holder: str) -> None:
        self.front_ends.pop(holder, None)

    # -- helpers ----------------------------------------------------------------------------

    def _hold(self, qualified: str, holder: str) -> None:
        self.leases[qualified] = (holder, time.monotonic() + LEASE_SECONDS)
        self.settled.setdefault(qualified, asyncio.Event()).clear()

    def _release(self, qualified: str) -> None:
        self.leases.pop(qualified, None)
        event = self.settled.pop(qualified, None)
        if event is not None:
            event.set()

    def _expired(self, qualified: str) -> bool:
        lease = self.leases.get(qualified)
        if lease is None or lease[1] < time.monotonic():
            return True
        seen = self.front_ends.get(lease[0])
        return seen is not None and time.time() - seen > HOLDER_SILENCE


class RegistryActor(RegistryState):
    """Async: calls are served one at a time on the actor's event loop, in arrival order, and a
    ``wait_settled`` waits without holding anyone up."""

    async def perform(self, method: Callable[..., Any], *args: Any) -> Any:
        """The one entry of this wall: ``method`` is one of ``RegistryState``'s, sent by
        reference (see ``raykernel.sessions.registry``)."""
        if method not in OPERATIONS:
            raise ValueError(f"not an operation of the registry: {method!r}")
        result = method(self, *args)
        return await result if inspect.isawaitable(result) else result


OPERATIONS = frozenset(
    value for name, value in vars(RegistryState).items() if callable(value) and name[0] != "_"
)


def registry_actor(namespace: str) -> Any:
    """The namespace's registry actor, made if no front end has made it yet (blocking)."""
    import ray

    remote = ray.remote(RegistryActor)
    # On the head node: it goes when the cluster goes, not with a worker node.
    return remote.options(
        resources={"node:__internal_head__": 0.001},
        name=REGISTRY_NAME,
        namespace=namespace,
        lifetime="detached",
        get_if_exists=True,
        num_cpus=0,
        max_restarts=-1,  # a lost registry comes back empty; front ends register again
        max_task_retries=0,
        max_concurrency=1000,
    ).remote()
