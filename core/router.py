"""SessionRouter: the only road from tools to session actors.

It owns the id -> actor table and the bookkeeping that must not depend on a session answering:
whether it is busy, since when, its PID and node. A session runs one call at a time: callers
queue in order on the session's lock, never interleave. A run that passes its timeout (or whose
caller goes away) is interrupted with SIGINT and keeps the session's state; if it does not stop
within the grace period, the actor is killed and restarted and the reply says the state is lost.
User code is never run twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from . import containment
from .errors import (
    KernelDied,
    ProtectedSession,
    RaykernelError,
    SessionLimitReached,
    SessionNotFound,
    SessionUnavailable,
)
from .formatting import first_line, iso_time
from .interrupts import request_interrupt
from .live_output import read_tail
from .placement import Placement
from .ray_runtime import RayRuntime
from .session_actors import ACTOR_NAME_PREFIX, ActorLifecycle
from .session_health import SessionHealth
from .session_ids import validate_session_id
from .settings import Settings
from .slot import Slot
from .state_moves import CONTROL_TIMEOUT, StateMoves
from .warm_pool import WarmPool

log = logging.getLogger(__name__)

DEFAULT_SESSION = "default"
# Called with the record and the run's token once a run has been handed to its session.
OnStart = Callable[["SessionRecord", str], None]


@dataclass
class SessionRecord:
    session_id: str
    description: str
    created_at: float
    handle: Any = None
    pid: int | None = None
    node_id: str | None = None
    node_ip: str | None = None
    started_at: float = field(default_factory=time.time)
    status: str = "starting"  # starting | healthy | busy | dead
    execution_count: int = 0
    last_execution_time: float | None = None
    restart_count: int = 0
    death_reason: str | None = None
    crash_streak: int = 0
    pgid: int | None = None
    deleted: bool = False
    process: psutil.Process | None = None
    slot: Slot = field(default_factory=Slot)
    # Why the actor is being killed on purpose (a restart that cannot wait): the death a run
    # then meets is reported with this cause.
    kill_reason: str | None = None
    # Set while a run whose caller went away is being stopped: the next caller waits for it.
    pending_stop: asyncio.Future[Any] | None = None
    run_token: str | None = None
    # Runs (and installs) waiting for this session while another one runs.
    waiting: int = 0
    placement: Placement = field(default_factory=Placement)

    def summary(self, active: bool) -> dict[str, Any]:
        return {
            "description": self.description,
            "created_at": iso_time(self.created_at),
            "execution_count": self.execution_count,
            "status": self.status,
            "active": active,
            "node_id": self.node_id,
            "node_ip": self.node_ip,
            "resources": self.placement.describe(),
        }


class SessionRouter(ActorLifecycle, SessionHealth, StateMoves):
    def __init__(
        self,
        settings: Settings,
        runtime: RayRuntime,
        *,
        session_plugin_specs: list[str] | None = None,
        hooks: Any = None,
    ) -> None:
        self.settings = settings
        self.runtime = runtime
        self.session_plugin_specs = session_plugin_specs or []
        self.hooks = hooks
        self.sessions: dict[str, SessionRecord] = {}
        self._table_lock = asyncio.Lock()
        self._startup: asyncio.Future[None] | None = None
        self._background: set[asyncio.Future[Any]] = set()
        self.pool = WarmPool(settings.warm_pool_size, self._start_actor)
        self._agents: dict[str | None, Any] = {}
        # Called with the id of every deleted session (the active-session map forgets it).
        self.on_delete: list[Callable[[str], None]] = []

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        """Start Ray and the default session in the background."""
        if self._startup is None:
            self.runtime.start()
            self._startup = asyncio.ensure_future(self._start_default())

    @property
    def detached(self) -> bool:
        """On a cluster, sessions outlive the front end; an embedded Ray dies with it anyway."""
        return bool(self.settings.ray_address)

    async def _start_default(self) -> None:
        await self.runtime.ready()
        if self.detached:
            await self._rediscover()
        if DEFAULT_SESSION not in self.sessions:
            await self._create(DEFAULT_SESSION, "Default session", None)
        self.pool.refill()
        if self.settings.idle_timeout > 0:
            self._keep(asyncio.ensure_future(self._reap_idle()))

    async def _reap_idle(self) -> None:
        """Delete sessions nobody has used for ``idle_timeout`` seconds (never "default", never
        one that is running code)."""
        timeout = self.settings.idle_timeout
        while True:
            await asyncio.sleep(min(30.0, max(timeout / 4, 0.25)))
            now = time.time()
            for record in list(self.sessions.values()):
                last_used = max(record.created_at, record.last_execution_time or 0)
                idle = record.status != "busy" and not record.slot.locked()
                if record.session_id != DEFAULT_SESSION and idle and now - last_used > timeout:
                    log.info(
                        "deleting session %s: idle for %.0f s", record.session_id, now - last_used
                    )
                    with contextlib.suppress(RaykernelError):
                        await self.delete(record.session_id)

    async def _rediscover(self) -> None:
        """Adopt the sessions a previous front end left in this namespace; kill its unclaimed
        pooled actors."""
        import ray

        names = await asyncio.to_thread(ray.util.list_named_actors)
        names = [n for n in names if n.startswith(ACTOR_NAME_PREFIX)]

        async def adopt(name: str) -> None:
            try:
                handle = await asyncio.to_thread(
                    ray.get_actor, name, namespace=self.settings.namespace
                )
                info = await asyncio.wait_for(
                    asyncio.wrap_future(handle.info.remote().future()), CONTROL_TIMEOUT
                )
            except Exception as exc:
                log.warning("could not adopt %s: %s", name, exc)
                return
            if not info["session_id"] or info["session_id"] in self.sessions:
                with contextlib.suppress(Exception):
                    ray.kill(handle, no_restart=True)
                return
            record = SessionRecord(
                info["session_id"],
                info["description"],
                info["created_at"],
                placement=Placement(**info.get("placement") or {}),
            )
            record.last_execution_time = info.get("last_execution_time")
            self._adopt(record, handle, info)
            self.sessions[record.session_id] = record
            log.info("adopted session %s on node %s", record.session_id, record.node_id)

        await asyncio.gather(*(adopt(name) for name in names))

    async def ready(self) -> None:
        if self._startup is None:
            self.start()
        assert self._startup is not None
        await asyncio.shield(self._startup)

    async def shutdown(self) -> None:
        """Kill the warm pool and, unless sessions outlive the front end (on a cluster), every
        session this router started."""
        records = [] if self.detached else list(self.sessions.values())
        self.sessions.clear()
        self.pool.close()
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*(self._kill(record) for record in records), return_exceptions=True)

    # -- lookup -----------------------------------------------------------------------------

    def get(self, session_id: str) -> SessionRecord:
        validate_session_id(session_id)
        record = self.sessions.get(session_id)
        if record is None:
            raise SessionNotFound(f"session {session_id!r} does not exist")
        return record

    async def lookup(self, session_id: str) -> SessionRecord:
        await self.ready()
        return self.get(session_id)

    def is_local(self, record: SessionRecord) -> bool:
        return record.node_id is not None and record.node_id == self.runtime.node_id

    # -- create / delete ----------------------------------------------------------------------

    async def create(
        self, session_id: str, description: str = "", placement: Placement | None = None
    ) -> tuple[SessionRecord, bool]:
        """Create a session; an existing id returns ``(record, False)`` unchanged."""
        validate_session_id(session_id)
        # After start-up (rediscovery included): an actor being created must not be mistaken
        # for an abandoned one.
        await self.ready()
        return await self._create(session_id, description, placement)

    async def _create(
        self, session_id: str, description: str, placement: Placement | None
    ) -> tuple[SessionRecord, bool]:
        placement = placement or Placement()
        async with self._table_lock:
            existing = self.sessions.get(session_id)
            if existing is not None:
                return existing, False
            if len(self.sessions) >= self.settings.max_sessions:
                raise SessionLimitReached(
                    f"{len(self.sessions)} sessions exist, the maximum is "
                    f"{self.settings.max_sessions}; delete one first"
                )
            record = SessionRecord(session_id, description, time.time(), placement=placement)
            self.sessions[session_id] = record
        try:
            await self._spawn(record)
        except BaseException:
            self.sessions.pop(session_id, None)
            raise
        self._notify("session_created", session_id=session_id, info=self._info(record, False))
        return record, True

    async def delete(self, session_id: str) -> SessionRecord:
        if validate_session_id(session_id) == DEFAULT_SESSION:
            raise ProtectedSession("the 'default' session cannot be deleted")
        await self.ready()
        async with self._table_lock:
            record = self.get(session_id)
            record.deleted = True
            del self.sessions[session_id]
        await self._kill(record)
        shutil.rmtree(self._site_dir(session_id), ignore_errors=True)
        for callback in self.on_delete:
            callback(session_id)
        self._notify("session_deleted", session_id=session_id)
        return record

    # -- running code -------------------------------------------------------------------------

    async def execute(
        self, session_id: str, code: str, timeout: float, on_start: OnStart | None = None
    ) -> dict[str, Any]:
        record = await self.lookup(session_id)
        return await self._run(record, "execute", (code,), timeout, on_start)

    async def run_script(
        self,
        session_id: str,
        path: Path,
        args: list[str],
        timeout: float,
        on_start: OnStart | None = None,
    ) -> dict[str, Any]:
        record = await self.lookup(session_id)
        return await self._run(record, "run_script", (str(path), args), timeout, on_start)

    async def install(
        self, session_id: str, specs: list[str], on_start: OnStart | None = None
    ) -> dict[str, Any]:
        record = await self.lookup(session_id)
        args = (specs, self.settings.allow_package_urls, self.settings.install_timeout)
        # The actor enforces the install timeout on its subprocess; the router's is a backstop.
        return await self._run(
            record, "install", args, self.settings.install_timeout + 30, on_start
        )

    async def _run(
        self,
        record: SessionRecord,
        method: str,
        args: tuple[Any, ...],
        timeout: float,
        on_start: OnStart | None = None,
    ) -> dict[str, Any]:
        # Counted so that health can show the queue: runs wait here one behind the other.
        record.waiting += 1
        entered = False
        try:
            async with self._slot(record):
                record.waiting -= 1
                entered = True
                return await self._run_in_slot(record, method, args, timeout, on_start)
        finally:
            if not entered:
                record.waiting -= 1

    async def _run_in_slot(
        self,
        record: SessionRecord,
        method: str,
        args: tuple[Any, ...],
        timeout: float,
        on_start: OnStart | None,
    ) -> dict[str, Any]:
        notice = await self._revive_if_dead(record)
        token = uuid.uuid4().hex
        ref = getattr(record.handle, method).remote(*args, token)
        future = asyncio.wrap_future(ref.future())
        record.status = "busy"
        record.run_token = token
        if on_start is not None:
            on_start(record, token)
        try:
            done, _ = await asyncio.wait({future}, timeout=timeout)
            if done:
                reply = self._collect(record, future)
            else:
                reply = await self._stop(record, future, token, timeout)
        except asyncio.CancelledError:
            # The caller went away: stop its code, and make the next caller wait for that.
            stop = asyncio.ensure_future(self._stop(record, future, token, None))
            record.pending_stop = stop
            self._keep(stop)
            raise
        finally:
            record.run_token = None
            if record.status == "busy":
                record.status = "healthy"
        reply.setdefault("interrupted", False)
        reply.setdefault("restarted", False)
        reply.setdefault("state_preserved", not reply["restarted"])
        if not reply["restarted"] and reply.get("execution_count") is not None:
            record.execution_count = reply["execution_count"]
            record.last_execution_time = time.time()
        if record.status != "dead":
            record.crash_streak = 0
        if notice:
            reply.update(notice)
        return reply

    @contextlib.asynccontextmanager
    async def _slot(
        self,
        record: SessionRecord,
        urgent: bool = False,
        acquiring: asyncio.Future[None] | None = None,
    ) -> AsyncIterator[None]:
        """Hold the session's slot (``acquiring``: an acquisition already under way)."""
        await (acquiring if acquiring is not None else record.slot.acquire(urgent))
        try:
            if record.pending_stop is not None:
                with contextlib.suppress(Exception):
                    await record.pending_stop
                record.pending_stop = None
            if record.deleted:
                raise SessionNotFound(f"session {record.session_id!r} was deleted")
            yield
        finally:
            record.slot.release()

    def _collect(self, record: SessionRecord, future: asyncio.Future[Any]) -> dict[str, Any]:
        import ray

        try:
            return future.result()
        except ray.exceptions.RayActorError as exc:
            return self._died_reply(record, exc)

    async def _stop(
        self,
        record: SessionRecord,
        future: asyncio.Future[Any],
        token: str,
        timeout: float | None,
    ) -> dict[str, Any]:
        """Interrupt the run ``token``; escalate to kill-and-restart if it will not stop."""
        why = f"timed out after {timeout:g} s" if timeout is not None else "was cancelled"
        await self._send_interrupt(record, token)
        done, _ = await asyncio.wait({future}, timeout=self.settings.interrupt_grace)
        if done:
            reply = self._collect(record, future)
            if reply.get("interrupted"):
                reply["error"] = {
                    "ename": "TimeoutError" if timeout is not None else "Cancelled",
                    "evalue": f"execution {why} and was interrupted; "
                    "the session and its variables are kept",
                    "traceback": (reply.get("error") or {}).get("traceback", ""),
                }
                reply["success"] = False
                reply["state_preserved"] = True
            return reply
        log.warning("session %s ignored the interrupt; restarting it", record.session_id)
        await self._respawn(record, "ignored an interrupt")
        return self._synthetic_reply(
            record,
            "TimeoutError" if timeout is not None else "Cancelled",
            f"execution {why} and did not stop when interrupted; the session was restarted "
            "and its state is lost (workspace files are kept)",
            interrupted=True,
            restarted=True,
        )

    def _mark_dead(self, record: SessionRecord, fallback_reason: str) -> None:
        """Record a death and its best-known cause: the note the process left (signal,
        ``os._exit``), else the loss of its node, else ``fallback_reason``."""
        if record.deleted:
            raise SessionNotFound(f"session {record.session_id!r} was deleted while it ran")
        record.status = "dead"
        record.crash_streak += 1
        local = self.is_local(record)
        note = containment.read_crash(record.pid) if local and record.pid else None
        note = record.kill_reason or note
        if note is None and not local and not self.node_alive(record.node_id):
            note = f"session lost with its node {record.node_id} ({record.node_ip})"
        record.death_reason = note or fallback_reason
        log.warning("session %s died: %s", record.session_id, record.death_reason)

    def _died_reply(self, record: SessionRecord, exc: BaseException) -> dict[str, Any]:
        self._mark_dead(record, first_line(str(exc)))
        return self._synthetic_reply(
            record,
            "KernelDied",
            "the session's process died while running this code; its state is lost. "
            f"The next call restarts it. Cause: {record.death_reason}",
            interrupted=False,
            restarted=False,
            state_preserved=False,
        )

    def _synthetic_reply(
        self,
        record: SessionRecord,
        ename: str,
        evalue: str,
        *,
        interrupted: bool,
        restarted: bool,
        state_preserved: bool = False,
    ) -> dict[str, Any]:
        return {
            "success": False,
            "stdout": "",
            "stderr": "",
            "result": None,
            "error": {"ename": ename, "evalue": evalue, "traceback": ""},
            "execution_count": record.execution_count,
            "execution_time": None,
            "session_id": record.session_id,
            "outputs": [],
            "new_files": [],
            "images": [],
            "interrupted": interrupted,
            "restarted": restarted,
            "state_preserved": state_preserved,
        }

    async def _revive_if_dead(self, record: SessionRecord) -> dict[str, Any] | None:
        if record.status != "dead":
            return None
        reason = record.death_reason or "unknown cause"
        if record.crash_streak >= self.settings.max_crash_streak:
            raise SessionUnavailable(
                f"session {record.session_id!r} died {record.crash_streak} times in a row "
                f"(last: {reason}); it stays dead until restart_kernel is called"
            )
        await self._respawn(record, reason)
        return {
            "restarted": True,
            "state_preserved": False,
            "notice": f"session {record.session_id!r} had died ({reason}); it was restarted "
            "before this call, and its earlier state is lost",
        }

    # -- session control ----------------------------------------------------------------------

    async def call(
        self, session_id: str, method: str, *args: Any, timeout: float = CONTROL_TIMEOUT
    ) -> Any:
        """A control call (variables, snapshots, ...), queued behind any run in the session."""
        record = await self.lookup(session_id)
        async with self._slot(record):
            self._require_alive(record)
            ref = getattr(record.handle, method).remote(*args)
            return await self._control(record, ref, timeout)

    def _require_alive(self, record: SessionRecord) -> None:
        if record.status == "dead":
            raise KernelDied(f"session {record.session_id!r} is dead ({record.death_reason})")

    async def _control(
        self, record: SessionRecord, ref: Any, timeout: float = CONTROL_TIMEOUT
    ) -> Any:
        import ray

        try:
            return await asyncio.wait_for(asyncio.wrap_future(ref.future()), timeout)
        except ray.exceptions.RayTaskError as exc:
            # A refusal raised inside the session (a missing variable, an unpicklable value)
            # is typed there and reaches the caller as it is, even through a chained call
            # (a transfer's get feeding its set); anything else is an internal fault.
            cause: BaseException = exc
            while isinstance(cause, ray.exceptions.RayTaskError) and cause.cause is not None:
                cause = cause.cause
            if isinstance(cause, RaykernelError):
                raise cause from None
            raise RuntimeError(f"session {record.session_id!r}: {first_line(str(cause))}") from None
        except ray.exceptions.RayActorError as exc:
            self._mark_dead(record, first_line(str(exc)))
            raise KernelDied(
                f"session {record.session_id!r} died ({record.death_reason})"
            ) from None
        except TimeoutError:
            raise SessionUnavailable(
                f"session {record.session_id!r} did not answer within {timeout:g} s"
            ) from None

    async def interrupt(self, session_id: str) -> dict[str, Any]:
        """Interrupt the run in progress, if any; does not wait behind it."""
        record = await self.lookup(session_id)
        token = record.run_token
        if token is None or record.pid is None:
            return {"session_id": session_id, "interrupted": False, "status": record.status}
        await self._send_interrupt(record, token)
        return {"session_id": session_id, "interrupted": True, "status": record.status}

    async def live_tail(self, record: SessionRecord, token: str) -> str | None:
        """What run ``token`` has printed so far (its last few thousand characters), read from
        the session's node without waiting for the session; None once the run is over."""
        if record.pid is None or record.run_token != token:
            return None
        if self.is_local(record):
            return read_tail(record.pid, token)
        ref = self.node_agent(record.node_id).tail.remote(record.pid, token)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(ref.future()), CONTROL_TIMEOUT)
        except Exception:
            return None

    async def _send_interrupt(self, record: SessionRecord, token: str) -> None:
        """SIGINT for run ``token``: from here for a session on this node, else from the node
        agent on the session's node (failures only mean the escalation path will act)."""
        if record.pid is None:
            return
        if self.is_local(record):
            with contextlib.suppress(ProcessLookupError):
                request_interrupt(record.pid, token)
            return
        try:
            agent = self.node_agent(record.node_id)
            await asyncio.wait_for(
                asyncio.wrap_future(agent.interrupt.remote(record.pid, token).future()),
                self.settings.interrupt_grace,
            )
        except Exception as exc:
            log.warning(
                "could not interrupt %s on node %s: %s", record.session_id, record.node_id, exc
            )

    def node_agent(self, node_id: str | None) -> Any:
        """The interrupt helper pinned to ``node_id`` (started on first need, then reused)."""
        agent = self._agents.get(node_id)
        if agent is None:
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            from raykernel.actors.node_agent import RemoteNodeAgent

            agent = RemoteNodeAgent.options(
                name=f"raykernel-agent:{node_id}",
                namespace=self.settings.namespace,
                get_if_exists=True,
                num_cpus=0,
                lifetime="detached" if self.detached else None,
                scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
            ).remote()
            self._agents[node_id] = agent
        return agent

    def info(self, session_id: str) -> dict[str, Any]:
        return self._info(self.get(session_id), False)

    def _info(self, record: SessionRecord, restarted: bool) -> dict[str, Any]:
        return {
            "session_id": record.session_id,
            "description": record.description,
            "created_at": iso_time(record.created_at),
            "pid": record.pid,
            "node_id": record.node_id,
            "restarted": restarted,
        }

    # -- helpers ------------------------------------------------------------------------------

    def _notify(self, hook: str, **kwargs: Any) -> None:
        if self.hooks is None:
            return
        try:
            getattr(self.hooks, hook)(**kwargs)
        except Exception:
            log.exception("plugin hook %s failed", hook)

    def node_alive(self, node_id: str | None) -> bool:
        import ray

        try:
            return any(n["NodeID"] == node_id and n["Alive"] for n in ray.nodes())
        except Exception:
            return True  # cannot tell: do not claim the node is lost

    def _keep(self, task: asyncio.Future[Any]) -> None:
        self._background.add(task)
        task.add_done_callback(self._background.discard)
