"""SessionRouter: the only road from tools to sessions.

It owns the session table and each session's slot (this front end's operations on it, one at
a time). Runs are booked in the session's own run book, in its actor, where the runs of every
front end meet and run one at a time in order, never interleaved. A run that passes its
timeout (or whose caller goes away) is interrupted with SIGINT and keeps the session's state; if
it does not stop within the grace period, its kernel is replaced and the reply says the state
is lost. User code is never run twice. Actors are reached through their ``SessionHandle``;
starting and killing them is the ``Lifecycle``'s job, and what happens on a session's node is
the ``Nodes``'.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from raykernel import telemetry
from raykernel.actors.store import read_manifest
from raykernel.errors import (
    KernelDied,
    ProtectedSession,
    RunNotFound,
    SessionNotFound,
    SessionUnavailable,
)
from raykernel.protocol import RunKind, SessionStatus
from raykernel.replies import RunReply
from raykernel.settings import Settings

from .capacity import Admission, WarmPool
from .cluster import Nodes, Placement, RayRuntime
from .directory import Directory
from .handle import ActorDied, SessionHandle
from .hibernation import Hibernation
from .lifecycle import EnvironmentTable, Lifecycle
from .record import SessionRecord, split, validate_session_id
from .recovery import Recovery, SessionEvents
from .registry import Registry, RunIndex
from .turns import OnStart, Turns, new_run_id

log = logging.getLogger(__name__)

# How long a listing waits for a session to say it lives.
PROBE_TIMEOUT = 3.0

DEFAULT_SESSION = "default"
# How often a front end among replicas tells the registry it lives (its leases end soon after
# it stops).
BEAT_SECONDS = 5.0
T = TypeVar("T")


class SessionRouter:
    def __init__(
        self,
        settings: Settings,
        runtime: RayRuntime,
        lifecycle: Lifecycle,
        pool: WarmPool,
        nodes: Nodes,
        sessions: dict[str, SessionRecord],
        hooks: Any = None,
        registry: Registry | None = None,
    ) -> None:
        self.settings = settings
        self.runtime = runtime
        self.lifecycle = lifecycle
        self.pool = pool
        self.environments = EnvironmentTable(settings)
        self.nodes = nodes
        self.sessions = sessions
        self.hooks = hooks
        self.metrics = telemetry.Metrics()
        self.registry = registry or Registry.local()
        self.directory = Directory(settings, self.registry, lifecycle, sessions)
        self.run_index = RunIndex(self.registry)
        self.events = SessionEvents(hooks)
        self.recovery = Recovery(
            settings, lifecycle, nodes, self.events, self.metrics, self.directory
        )
        self.hibernation = Hibernation(settings, lifecycle, pool, sessions, self.directory)
        self.admission = Admission(settings, sessions)
        self.turns = Turns(
            self.recovery,
            self.hibernation,
            self.admission,
            self.metrics,
            self._keep,
            moved=self.directory.moved,
            index=self.run_index,
            shared=self.registry.is_shared,
        )
        # Hold a session's slot (resuming it first if it is hibernated): Turns.slot.
        self.slot = self.turns.slot
        self._table_lock = asyncio.Lock()
        self._startup: asyncio.Future[None] | None = None
        self._background: set[asyncio.Future[Any]] = set()
        # Called with the id of every deleted session (the active-session map forgets it).
        self.on_delete: list[Callable[[str], None]] = []

    # -- start and stop -----------------------------------------------------------------------

    @property
    def detached(self) -> bool:
        """Whether sessions outlive this front end (on a cluster)."""
        return self.settings.detached

    def start(self) -> None:
        """Start the default session (and Ray, unless it starts on demand) in the background."""
        if self._startup is None:
            if self.settings.ray_at_launch:
                self.runtime.start()
            self._startup = asyncio.ensure_future(self._start_default())

    async def ready(self) -> None:
        """Wait until start-up is over: the default session exists (and Ray is up, when it
        starts at launch). Whatever needs an actor later waits for Ray itself."""
        if self._startup is None:
            self.start()
        assert self._startup is not None
        await asyncio.shield(self._startup)

    async def _start_default(self) -> None:
        if self.settings.ray_at_launch:
            await self.runtime.ready()
        if self.detached:
            hibernated = await asyncio.to_thread(self.hibernation.rediscover)
            await self.directory.rediscover(hibernated)
            self._keep(asyncio.ensure_future(self._beat()))
        # The local identity's "default" exists from the start (stdio, a laptop); with
        # authentication every identity's is made at its first use.
        if not self.settings.auth_enabled and DEFAULT_SESSION not in self.sessions:
            await self._create(DEFAULT_SESSION, "Default session", None)
        if self.settings.ray_at_launch:
            self.pool.refill()  # else at the first session that needs Ray

    async def _beat(self) -> None:
        """Tell the registry, now and then, that this front end lives."""
        while True:
            await asyncio.sleep(BEAT_SECONDS)
            try:
                await self.directory.beat()
            except Exception as exc:  # the registry restarting: the next beat tells it
                log.warning("registry unreachable: %s", exc)

    async def shutdown(self) -> None:
        """Kill the warm pool and, unless sessions outlive the front end (on a cluster), every
        session this router started."""
        if self.detached and self.runtime.started:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.registry.goodbye(self.directory.holder), 5.0)
        records = [] if self.detached else list(self.sessions.values())
        for record in records:  # sessions die with an embedded server, hibernated ones too
            if record.status == SessionStatus.HIBERNATED:
                self.hibernation.forget(record)
        self.sessions.clear()
        self.pool.close()
        self.run_index.close()
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(
            *(self.lifecycle.kill(record) for record in records), return_exceptions=True
        )

    # -- lookup -------------------------------------------------------------------------------

    def get(self, qualified: str) -> SessionRecord:
        """The record of session ``qualified`` (``SessionNotFound`` if there is none)."""
        validate_session_id(qualified)
        record = self.sessions.get(qualified)
        if record is None:
            raise SessionNotFound(f"session {split(qualified)[1]!r} does not exist")
        return record

    async def lookup(self, qualified: str) -> SessionRecord:
        """``get``, once start-up (and rediscovery) is over; a session another front end made
        is found in the registry; an identity's "default" is made at its first use."""
        await self.ready()
        if qualified not in self.sessions and self.directory.shared:
            validate_session_id(qualified)
            await self.directory.find(qualified)
        if qualified not in self.sessions and split(qualified)[1] == DEFAULT_SESSION:
            await self._create(qualified, "Default session", None)
        return self.get(qualified)

    async def listing(self) -> dict[str, SessionRecord]:
        """Every session, as the registry knows them (other front ends' included), each live
        one asked whether it still lives: a listing never calls a dead session healthy."""
        await self.ready()
        await self.directory.sync()
        records = dict(self.sessions)
        await asyncio.gather(*(self.probe(r) for r in records.values() if r.resident))
        return records

    async def probe(self, record: SessionRecord, timeout: float = PROBE_TIMEOUT) -> None:
        """Ask a live session's actor (it answers while its kernel runs) whether it and its
        kernel live; a death found is recorded, a silence shown as ``unresponsive``."""
        handle = record.handle
        if (
            handle is None
            or record.deleted
            or record.status not in (SessionStatus.HEALTHY, SessionStatus.BUSY)
        ):
            return
        try:
            measured = await handle.measure(timeout)
        except ActorDied as exc:
            if record.handle is handle:
                self.recovery.mark_dead(record, exc.reason, actor_gone=True)
            return
        except SessionUnavailable:
            record.responsive = False
            return
        record.responsive = True
        if not measured.get("alive", True) and record.handle is handle:
            self.recovery.mark_dead(record, measured.get("exit_reason") or "it ended")

    # -- create / delete ----------------------------------------------------------------------

    async def create(
        self,
        session_id: str,
        description: str = "",
        placement: Placement | None = None,
        network: str | list[str] | None = None,
        checkpoint: str | None = None,
        environment: str | None = None,
    ) -> tuple[SessionRecord, bool]:
        """Create a session; an existing id returns ``(record, False)`` unchanged.
        ``environment``: one of the ``environments`` setting's names (refused, with the
        reason, if its interpreter cannot run a kernel)."""
        validate_session_id(session_id)
        found = await self.environments.find(environment) if environment else None
        # After start-up (rediscovery included): an actor being created must not be mistaken
        # for an abandoned one.
        await self.ready()
        return await self._create(session_id, description, placement, network, checkpoint, found)

    async def _create(
        self,
        qualified: str,
        description: str,
        placement: Placement | None,
        network: str | list[str] | None = None,
        checkpoint: str | None = None,
        environment: dict[str, str] | None = None,
    ) -> tuple[SessionRecord, bool]:
        placement = placement or Placement()
        network = network if network is not None else self.settings.session_network
        owner, session_id = split(qualified)
        async with self._table_lock:
            existing = self.sessions.get(qualified)
            if existing is not None:
                return existing, False
            self.admission.admit_session(owner)
            # One actor per id across front ends: the registry says who makes it.
            entry = await self.directory.reserve(qualified)
            if entry is not None:
                found = await self.directory.find(qualified, entry)
                if found is None:
                    raise SessionUnavailable(
                        f"session {session_id!r} is being created elsewhere and did not start"
                    )
                return found, False
            record = SessionRecord(
                session_id,
                description,
                time.time(),
                owner=owner,
                placement=placement,
                network=network,
                checkpoint=checkpoint or self.settings.checkpoint,
                environment=environment,
            )
            self.sessions[qualified] = record
        # Pooled actors have the default placement (any network: a kernel confines itself at
        # its claim); other requests get their own.
        usual = placement.is_default
        local = (
            usual
            and qualified == DEFAULT_SESSION
            and self.settings.local_default
            and environment is None
        )
        # A session with the usual placement and network starts cold: no process until its
        # first call (which takes a pooled actor). One that asks for resources, a node or
        # another network starts now: its placement or its confinement may be refused.
        cold = usual and not local and network == self.settings.session_network
        pooled = self.pool.take() if usual and not local and not cold else None
        try:
            if cold:
                await self.hibernation.make_cold(record)
            else:
                await self.hibernation.make_room(record)
            if local:
                await self.lifecycle.spawn_local(record)
            elif not cold:
                await self.lifecycle.spawn(record, pooled)
        except BaseException:
            self.sessions.pop(qualified, None)
            if pooled is not None and record.handle is None:
                pooled.kill()
            await self.directory.abandon(qualified)
            raise
        await self.directory.created(record)
        self.events.created(qualified, record.info(False))
        return record, True

    async def delete(self, qualified: str) -> SessionRecord:
        """Delete a session: its actor and everything it started are killed."""
        if split(validate_session_id(qualified))[1] == DEFAULT_SESSION:
            raise ProtectedSession("the 'default' session cannot be deleted")
        await self.lookup(qualified)
        async with self._table_lock:
            record = self.get(qualified)
            record.deleted = True
            del self.sessions[qualified]
        await self.directory.removed(qualified)
        await self.lifecycle.kill(record)
        self.hibernation.forget(record)
        shutil.rmtree(self.lifecycle.site_dir(record), ignore_errors=True)
        shutil.rmtree(self.lifecycle.checkpoints_dir(record), ignore_errors=True)
        for callback in self.on_delete:
            callback(qualified)
        self.events.deleted(qualified)
        return record

    # -- running code -------------------------------------------------------------------------

    async def execute(
        self,
        session_id: str,
        code: str,
        timeout: float,
        on_start: OnStart | None = None,
        run_id: str | None = None,
    ) -> RunReply:
        """Run ``code`` in the session, in its turn; interrupted past ``timeout``."""
        record = await self.lookup(session_id)
        return await self.turns.run(record, RunKind.EXECUTE, [code], timeout, on_start, run_id)

    async def book_background(self, session_id: str, code: str, timeout: float) -> dict[str, Any]:
        """Queue ``code`` in the session as a background run; its view (``run_id``)."""
        record = await self.lookup(session_id)
        return await self.turns.book_background(
            record, RunKind.EXECUTE, [code], timeout, new_run_id()
        )

    async def run_view(self, qualified: str, run_id: str, wait: float) -> dict[str, Any]:
        """Run ``run_id`` of the session, once finished or after ``wait`` seconds."""
        record = await self._run_record(qualified, run_id)
        if record.status == SessionStatus.HIBERNATED:
            return self._hibernated_run(record, run_id)
        return await self.control(record, lambda h: h.wait_run(run_id, wait))

    async def cancel_run(self, qualified: str, run_id: str) -> dict[str, Any]:
        """Drop a queued run or stop a running one, whichever front end took it."""
        record = await self._run_record(qualified, run_id)
        if record.status == SessionStatus.HIBERNATED:  # it hibernated with no run in progress
            return {**self._hibernated_run(record, run_id), "cancelled": False}
        grace = self.settings.interrupt_grace
        return await self.control(record, lambda h: h.cancel_run(run_id, grace))

    async def session_runs(self, qualified: str) -> list[dict[str, Any]]:
        """The session's runs (without replies): queued, running, the last finished ones."""
        record = await self.lookup(qualified)
        if record.status == SessionStatus.HIBERNATED:
            return self._image_runs(record)
        if record.handle is None or record.status == SessionStatus.DEAD:
            return []
        return await self.control(record, lambda h: h.runs())

    async def _run_record(self, qualified: str, run_id: str) -> SessionRecord:
        try:
            return await self.lookup(qualified)
        except SessionNotFound:
            raise RunNotFound(f"no run {run_id!r} (its session is gone)") from None

    def _image_runs(self, record: SessionRecord) -> list[dict[str, Any]]:
        try:
            manifest = read_manifest(self.lifecycle.image_path(record))
        except OSError:
            return []
        return list(manifest.get("runs") or [])

    def _hibernated_run(self, record: SessionRecord, run_id: str) -> dict[str, Any]:
        for view in self._image_runs(record):
            if view["run_id"] == run_id:
                return view
        raise RunNotFound(f"no run {run_id!r} in session {record.session_id!r}")

    async def run_script(
        self,
        session_id: str,
        path: Path,
        args: list[str],
        timeout: float,
        on_start: OnStart | None = None,
    ) -> RunReply:
        """Run a saved script in the session, like ``%run``."""
        record = await self.lookup(session_id)
        return await self.turns.run(
            record, RunKind.RUN_SCRIPT, [str(path), args], timeout, on_start
        )

    async def call_function(
        self, session_id: str, payload: bytes, max_result_bytes: int, timeout: float
    ) -> dict[str, Any]:
        """Run a plugin's function in the session, in its turn, like a run (interrupted past
        ``timeout``) but outside its history."""
        record = await self.lookup(session_id)
        args: list[Any] = [payload, max_result_bytes]
        reply: Any = await self.turns.run(record, RunKind.CALL_FUNCTION, args, timeout)
        return reply

    async def install(
        self, session_id: str, specs: list[str], on_start: OnStart | None = None
    ) -> dict[str, Any]:
        """Install packages into the session's own folder, in its turn."""
        record = await self.lookup(session_id)
        settings = self.settings
        args: list[Any] = [
            specs,
            settings.allow_package_urls,
            settings.allow_source_builds,
            settings.install_timeout,
        ]
        # The actor enforces the install timeout on its subprocess; the run's is a backstop.
        reply: Any = await self.turns.run(
            record, RunKind.INSTALL, args, settings.install_timeout + 30, on_start
        )
        return reply

    async def hibernate(self, qualified: str) -> dict[str, Any]:
        """Save a session's state and free its processes, in its turn; the next call resumes
        it."""
        record = await self.lookup(qualified)
        with telemetry.span("raykernel.hibernate", session_id=record.qualified):
            async with self.slot(record, resume=False):
                return await self.hibernation.hibernate(record, wait=True)

    # -- control calls ------------------------------------------------------------------------

    async def call(self, session_id: str, op: Callable[[SessionHandle], Awaitable[T]]) -> T:
        """``op(handle)`` in the session's turn (queued behind any run), e.g.
        ``router.call(sid, SessionHandle.variables)``."""
        record = await self.lookup(session_id)
        name = getattr(op, "__name__", "call")
        with telemetry.span("raykernel.control", session_id=record.qualified, operation=name):
            async with self.slot(record):
                self.require_alive(record)
                return await self.control(record, op)

    async def control(
        self, record: SessionRecord, op: Callable[[SessionHandle], Awaitable[T]]
    ) -> T:
        """``op(handle)`` now (the caller holds the slot); a death on the way is recorded."""
        assert record.handle is not None
        try:
            try:
                return await op(record.handle)
            except ActorDied:
                # Another front end may have hibernated it or given it a new actor.
                if not await self.directory.moved(record) or record.handle is None:
                    raise
                return await op(record.handle)
        except ActorDied as exc:
            self.recovery.mark_dead(record, exc.reason, actor_gone=True)
            raise KernelDied(
                f"session {record.session_id!r} died ({record.death_reason})"
            ) from None
        except SessionUnavailable as exc:
            raise SessionUnavailable(f"session {record.session_id!r}: {exc.message}") from None

    def require_alive(self, record: SessionRecord) -> None:
        """Refuse a control call to a dead session (a run would restart it instead)."""
        if record.status == SessionStatus.DEAD:
            raise KernelDied(f"session {record.session_id!r} is dead ({record.death_reason})")

    async def set_network(self, session_id: str, network: list[str]) -> dict[str, Any]:
        """New destinations for an allow-listed session (its actor's proxy takes them for new
        connections); a hibernated one is resumed first. Its report."""
        record = await self.lookup(session_id)
        async with self.slot(record, urgent=True):
            self.require_alive(record)
            report = await self.control(record, lambda h: h.set_network(network))
        record.network = list(network)
        return report

    async def interrupt(self, session_id: str) -> dict[str, Any]:
        """Interrupt the run in progress, if any, whichever front end sent it; does not wait
        behind it."""
        record = await self.lookup(session_id)
        token = record.run_token
        if token is None and record.handle is not None and record.resident:
            with contextlib.suppress(ActorDied, SessionUnavailable):
                running = [r for r in await record.handle.runs() if r["status"] == "running"]
                token = running[0]["token"] if running else None
        if token is None or record.handle is None:
            return {
                "session_id": record.session_id,
                "interrupted": False,
                "status": record.status,
            }
        await self.recovery.interrupt(record, token)
        return {"session_id": record.session_id, "interrupted": True, "status": record.status}

    async def live_tail(self, record: SessionRecord, token: str) -> str | None:
        """What run ``token`` has printed so far (its last few thousand characters), asked of
        the session's actor (which answers while the run goes on); None once it is over."""
        handle = record.handle
        if handle is None:
            return None
        try:
            return await handle.tail(token, 10.0)
        except (ActorDied, SessionUnavailable):
            return None

    # -- helpers ------------------------------------------------------------------------------

    def _keep(self, task: asyncio.Future[Any]) -> None:
        self._background.add(task)
        task.add_done_callback(self._background.discard)
