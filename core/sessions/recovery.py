"""When a session will not stop or dies: escalating, recording how, and bringing it back.

A kernel that dies (a segfault, ``os._exit``, the OOM killer) or ignores an interrupt is
replaced in place by its actor (the session's run book does it, whichever front end is
asking): a new kernel process, the same actor, a fraction of a second.
An actor that dies (its node lost, killed from outside) is replaced by a new actor. Either way
the session's state is lost and the next reply says so; user code is never run again, and a
session that dies ``max_crash_streak`` times in a row stays dead until ``restart_kernel``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from raykernel.errors import SessionNotFound, SessionUnavailable
from raykernel.protocol import SessionStatus
from raykernel.replies import RunReply, kernel_died_reply, revival_notice
from raykernel.settings import Settings
from raykernel.telemetry import Metrics

from .cluster import Nodes
from .handle import ActorDied
from .lifecycle import CREATE_TIMEOUT, Lifecycle
from .record import SessionRecord

if TYPE_CHECKING:
    from .directory import Directory

log = logging.getLogger(__name__)


class SessionEvents:
    """The plugins' session hooks (hookspecs ``session_created``, ``session_deleted``),
    called through pluggy's hook caller, each by its own method: a failing plugin is logged,
    never the caller's failure."""

    def __init__(self, hooks: Any | None) -> None:
        self.hooks = hooks

    def created(self, session_id: str, info: dict[str, Any]) -> None:
        if self.hooks is not None:
            self._safely(self.hooks.session_created, session_id=session_id, info=info)

    def deleted(self, session_id: str) -> None:
        if self.hooks is not None:
            self._safely(self.hooks.session_deleted, session_id=session_id)

    @staticmethod
    def _safely(caller: Callable[..., Any], **kwargs: Any) -> None:
        try:
            caller(**kwargs)
        except Exception:
            log.exception("plugin hook %s failed", getattr(caller, "name", caller))


class Recovery:
    def __init__(
        self,
        settings: Settings,
        lifecycle: Lifecycle,
        nodes: Nodes,
        events: SessionEvents,
        metrics: Metrics | None = None,
        directory: Directory | None = None,
    ) -> None:
        self.settings = settings
        self.lifecycle = lifecycle
        self.nodes = nodes
        self.events = events
        self.metrics = metrics or Metrics()
        self.directory = directory

    def mark_dead(self, record: SessionRecord, reason: str, actor_gone: bool = False) -> None:
        """Record a death and its best-known cause: a kill on purpose, else the loss of the
        actor's node, else ``reason`` (the kernel's exit: its signal, its ``os._exit``)."""
        if record.deleted:
            raise SessionNotFound(f"session {record.session_id!r} was deleted while it ran")
        record.status = SessionStatus.DEAD
        record.crash_streak += 1
        note = record.kill_reason
        if note is None and actor_gone and not self.nodes.alive(record.node_id):
            note = f"session lost with its node {record.node_id} ({record.node_ip})"
        record.death_reason = note or reason
        log.warning("session %s died: %s", record.session_id, record.death_reason)

    @property
    def grace(self) -> float:
        """How long stopped code has before its kernel is replaced."""
        return self.settings.interrupt_grace

    async def refresh(self, record: SessionRecord) -> None:
        """What the actor says about itself after its kernel was replaced under a run."""
        if record.handle is None:
            return
        record.restart_count += 1
        self.metrics.restart()
        try:
            self.lifecycle.refresh(record, await record.handle.info())
        except (ActorDied, SessionUnavailable) as exc:
            log.warning("session %s did not say how it restarted: %s", record.qualified, exc)

    def finish(
        self, record: SessionRecord, reply: RunReply, notice: dict[str, Any] | None
    ) -> RunReply:
        """A run's reply made whole: a kernel death under it recorded, the flags every reply
        carries, the session's counters, and ``notice`` (a revival's or a resumption's)."""
        died = reply.pop("kernel_died", None)  # type: ignore[misc]
        if died is not None:
            record.execution_count = max(record.execution_count, reply["execution_count"])
            reply = self.died_reply(record, str(died), actor_gone=False)
        reply.setdefault("interrupted", False)
        reply.setdefault("restarted", False)
        reply.setdefault("state_preserved", not reply["restarted"])
        if reply.get("execution_count") is not None:  # one timeline: it only grows
            record.execution_count = max(record.execution_count, reply["execution_count"])
            record.last_execution_time = time.time()
            record.run_seconds += reply.get("execution_time") or 0.0
        if record.status != SessionStatus.DEAD:
            record.crash_streak = 0
        if notice:
            reply.update(notice)  # type: ignore[typeddict-item]
        return reply

    async def interrupt(self, record: SessionRecord, token: str) -> None:
        """Ask the session to interrupt run ``token`` (its actor answers while it runs); a
        failure only means the escalation path will act."""
        handle = record.handle
        if handle is None:
            return
        self.metrics.interrupt()
        try:
            await handle.interrupt(token, self.settings.interrupt_grace)
        except (ActorDied, SessionUnavailable) as exc:
            log.warning("could not interrupt session %s: %s", record.session_id, exc)

    def died_reply(self, record: SessionRecord, reason: str, actor_gone: bool) -> RunReply:
        """The reply of a run whose session died under it (the run took its number in the
        timeline: the next one goes on after it)."""
        self.mark_dead(record, reason, actor_gone)
        if actor_gone:  # the actor that kept the count is gone with it
            record.execution_count += 1
        return kernel_died_reply(record.session_id, record.execution_count, record.death_reason)

    async def revive_if_dead(self, record: SessionRecord) -> dict[str, Any] | None:
        """Bring a dead session back before a run; the notice that run's reply must carry."""
        if record.status != SessionStatus.DEAD:
            return None
        reason = record.death_reason or "unknown cause"
        if record.crash_streak >= self.settings.max_crash_streak:
            raise SessionUnavailable(
                f"session {record.session_id!r} died {record.crash_streak} times in a row "
                f"(last: {reason}); it stays dead until restart_kernel is called"
            )
        handle = record.handle
        if handle is not None:  # its actor lives: a new kernel there, once, whoever asks
            try:
                notice = await handle.revive(CREATE_TIMEOUT)
                self.lifecycle.refresh(record, await handle.info())
            except (ActorDied, SessionUnavailable) as exc:
                log.info("session %s needs a new actor: %s", record.session_id, exc)
            else:
                record.kill_reason = None
                if notice:
                    record.restart_count += 1
                    self.metrics.restart()
                    self.events.created(record.session_id, record.info(True))
                return notice
        restored = await self.restart(record, reason)
        return revival_notice(record.session_id, reason, restored)

    async def restart(
        self, record: SessionRecord, reason: str, restore: bool = True
    ) -> dict[str, Any] | None:
        """A new kernel for the session: in its actor when the actor lives, else in a new
        actor. The state is lost, unless the session keeps checkpoints and ``restore``: then
        the last one is loaded, and its report returned."""
        await self._restart(record, reason)
        if not restore or record.checkpoint != "after_run" or record.handle is None:
            return None
        try:
            return await record.handle.restore_checkpoint(None, CREATE_TIMEOUT)
        except (ActorDied, SessionUnavailable) as exc:
            log.warning("session %s: its checkpoint could not be loaded: %s", record.qualified, exc)
            return None

    async def _restart(self, record: SessionRecord, reason: str) -> None:
        log.info("restarting session %s: %s", record.session_id, reason)
        record.restart_count += 1
        self.metrics.restart()
        handle = record.handle
        if handle is not None:
            try:
                info = await handle.restart_kernel(reason, CREATE_TIMEOUT)
            except (ActorDied, SessionUnavailable) as exc:
                log.info("session %s needs a new actor: %s", record.session_id, exc)
            else:
                self.lifecycle.refresh(record, info)
                record.kill_reason = None
                self.events.created(record.session_id, record.info(True))
                return
        await self.respawn(record, reason)

    async def respawn(self, record: SessionRecord, reason: str) -> None:
        """Replace a session's actor by a new one (state lost), keeping its id and place; one
        front end does it (the others find the new actor in the registry)."""
        if self.directory is None:
            await self._respawn(record, reason)
            return
        async with self.directory.change(record) as ours:
            if ours:
                await self._respawn(record, reason)
                return
        if record.handle is None or record.status in (SessionStatus.DEAD, SessionStatus.STARTING):
            raise SessionUnavailable(
                f"session {record.session_id!r} is being restarted by another front end; ask again"
            )

    async def _respawn(self, record: SessionRecord, reason: str) -> None:
        log.info("new actor for session %s: %s", record.session_id, reason)
        await self.lifecycle.kill(record)
        record.status = SessionStatus.STARTING
        await self.lifecycle.spawn(record, None)
        record.kill_reason = None
        self.events.created(record.session_id, record.info(True))
