"""When a session will not stop or dies: escalating, recording how, and bringing it back.

A kernel that dies (a segfault, ``os._exit``, the OOM killer) or ignores an interrupt is
replaced in place by its actor: a new kernel process, the same actor, a fraction of a second.
An actor that dies (its node lost, killed from outside) is replaced by a new actor. Either way
the session's state is lost and the next reply says so; user code is never run again, and a
session that dies ``max_crash_streak`` times in a row stays dead until ``restart_kernel``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from raykernel.errors import SessionNotFound, SessionUnavailable
from raykernel.replies import RunReply, failed_reply
from raykernel.settings import Settings
from raykernel.telemetry import Metrics

from .handle import ActorDied, SessionHandle
from .lifecycle import CREATE_TIMEOUT, Lifecycle
from .nodes import Nodes
from .record import SessionRecord

log = logging.getLogger(__name__)

Notify = Callable[..., None]


class Recovery:
    def __init__(
        self,
        settings: Settings,
        lifecycle: Lifecycle,
        nodes: Nodes,
        notify: Notify,
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        self.lifecycle = lifecycle
        self.nodes = nodes
        self.notify = notify
        self.metrics = metrics or Metrics()

    def mark_dead(self, record: SessionRecord, reason: str, actor_gone: bool = False) -> None:
        """Record a death and its best-known cause: a kill on purpose, else the loss of the
        actor's node, else ``reason`` (the kernel's exit: its signal, its ``os._exit``)."""
        if record.deleted:
            raise SessionNotFound(f"session {record.session_id!r} was deleted while it ran")
        record.status = "dead"
        record.crash_streak += 1
        note = record.kill_reason
        if note is None and actor_gone and not self.nodes.alive(record.node_id):
            note = f"session lost with its node {record.node_id} ({record.node_ip})"
        record.death_reason = note or reason
        log.warning("session %s died: %s", record.session_id, record.death_reason)

    def collect(
        self, record: SessionRecord, handle: SessionHandle, future: asyncio.Future[Any]
    ) -> RunReply:
        """A finished run's reply; the death of its actor, recorded, if it died under it."""
        try:
            return handle.run_outcome(future)
        except ActorDied as exc:
            return self.died_reply(record, exc.reason, actor_gone=True)

    def finish(
        self, record: SessionRecord, reply: RunReply, notice: dict[str, Any] | None
    ) -> RunReply:
        """A run's reply made whole: a kernel death under it recorded, the flags every reply
        carries, the session's counters, and ``notice`` (a revival's or a resumption's)."""
        died = reply.pop("kernel_died", None)  # type: ignore[misc]
        if died is not None:
            reply = self.died_reply(record, str(died), actor_gone=False)
        reply.setdefault("interrupted", False)
        reply.setdefault("restarted", False)
        reply.setdefault("state_preserved", not reply["restarted"])
        if not reply["restarted"] and reply.get("execution_count") is not None:
            record.execution_count = reply["execution_count"]
            record.last_execution_time = time.time()
            record.run_seconds += reply.get("execution_time") or 0.0
        if record.status != "dead":
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

    async def stop(
        self,
        record: SessionRecord,
        handle: SessionHandle,
        future: asyncio.Future[Any],
        token: str,
        timeout: float | None,
    ) -> RunReply:
        """Interrupt run ``token`` (past its ``timeout``, or its caller gone); if it will not
        stop within ``interrupt_grace``, restart the session's kernel and say the state is
        lost."""
        why = f"timed out after {timeout:g} s" if timeout is not None else "was cancelled"
        ename = "TimeoutError" if timeout is not None else "Cancelled"
        await self.interrupt(record, token)
        done, _ = await asyncio.wait({future}, timeout=self.settings.interrupt_grace)
        if done:
            reply = self.collect(record, handle, future)
            if reply.get("interrupted"):
                reply["error"] = {
                    "ename": ename,
                    "evalue": f"execution {why} and was interrupted; "
                    "the session and its variables are kept",
                    "traceback": (reply.get("error") or {}).get("traceback", ""),
                }
                reply["success"] = False
                reply["state_preserved"] = True
            return reply
        log.warning("session %s ignored the interrupt; restarting it", record.session_id)
        record.kill_reason = "its code ignored an interrupt"
        restored = await self.restart(record, "ignored an interrupt")
        if restored is None:
            return failed_reply(
                record.session_id,
                record.execution_count,
                ename,
                f"execution {why} and did not stop when interrupted; the session was "
                "restarted and its state is lost (workspace files are kept)",
                interrupted=True,
                restarted=True,
            )
        count = restored["execution_count"]
        reply = failed_reply(
            record.session_id,
            record.execution_count,
            ename,
            f"execution {why} and did not stop when interrupted; the session was restarted "
            f"with its state as of run {count} (its last checkpoint)",
            interrupted=True,
            restarted=True,
        )
        reply["state_preserved"] = "checkpoint"  # type: ignore[typeddict-item]
        reply["restored_to_execution"] = count  # type: ignore[typeddict-unknown-key]
        reply["not_preserved"] = restored["not_preserved"]  # type: ignore[typeddict-unknown-key]
        return reply

    def died_reply(self, record: SessionRecord, reason: str, actor_gone: bool) -> RunReply:
        """The reply of a run whose session died under it."""
        self.mark_dead(record, reason, actor_gone)
        return failed_reply(
            record.session_id,
            record.execution_count,
            "KernelDied",
            "the session's process died while running this code; its state is lost. "
            f"The next call restarts it. Cause: {record.death_reason}",
            interrupted=False,
            restarted=False,
        )

    async def revive_if_dead(self, record: SessionRecord) -> dict[str, Any] | None:
        """Bring a dead session back before a run; the notice that run's reply must carry."""
        if record.status != "dead":
            return None
        reason = record.death_reason or "unknown cause"
        if record.crash_streak >= self.settings.max_crash_streak:
            raise SessionUnavailable(
                f"session {record.session_id!r} died {record.crash_streak} times in a row "
                f"(last: {reason}); it stays dead until restart_kernel is called"
            )
        restored = await self.restart(record, reason)
        if restored is not None:
            count = restored["execution_count"]
            return {
                "restarted": True,
                "state_preserved": "checkpoint",
                "restored_to_execution": count,
                "not_preserved": restored["not_preserved"],
                "notice": f"session {record.session_id!r} had died ({reason}); it was restarted "
                f"before this call with its state as of run {count} (its last checkpoint)",
            }
        return {
            "restarted": True,
            "state_preserved": False,
            "notice": f"session {record.session_id!r} had died ({reason}); it was restarted "
            "before this call, and its earlier state is lost",
        }

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
                self.notify("session_created", session_id=record.session_id, info=record.info(True))
                return
        await self.respawn(record, reason)

    async def respawn(self, record: SessionRecord, reason: str) -> None:
        """Replace a session's actor by a new one (state lost), keeping its id and place."""
        log.info("new actor for session %s: %s", record.session_id, reason)
        await self.lifecycle.kill(record)
        record.status = "starting"
        await self.lifecycle.spawn(record, None)
        record.kill_reason = None
        self.notify("session_created", session_id=record.session_id, info=record.info(True))
