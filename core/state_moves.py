"""Moving a session's state: restart with or without it, snapshots on disk, forks, and single
variables between sessions. State travels through Ray's object store or a file the session
writes itself; the front end never unpickles it.

A mixin of SessionRouter: it uses the router's slots (one call at a time per session) and
control calls.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import InvalidArgument, KernelDied, SessionUnavailable
from .session_ids import validate_session_id, validate_snapshot_name

if TYPE_CHECKING:
    from .router import SessionRecord, SessionRouter

CONTROL_TIMEOUT = 30.0


class StateMoves:
    def snapshot_path(self: SessionRouter, name: str) -> Path:
        validate_snapshot_name(name)
        return self.settings.workspace / ".raykernel" / "snapshots" / f"{name}.zip"

    async def snapshot(self: SessionRouter, session_id: str, name: str) -> dict[str, Any]:
        """The session writes its own snapshot file (nothing is unpickled in the front end)."""
        path = self.snapshot_path(name)
        report = await self.call(session_id, "save_snapshot", str(path), timeout=self._long())
        return {"snapshot": name, "session_id": session_id, **report}

    async def restore_snapshot(self: SessionRouter, name: str, session_id: str) -> dict[str, Any]:
        path = self.snapshot_path(name)
        if not path.is_file():
            raise InvalidArgument(f"no snapshot named {name!r}")
        _record, created = await self.create(session_id, f"restored from snapshot {name}")
        report = await self.call(session_id, "load_snapshot", str(path), timeout=self._long())
        return {"snapshot": name, "session_id": session_id, "created": created, **report}

    async def fork(self: SessionRouter, session_id: str, new_session_id: str) -> dict[str, Any]:
        """A new session holding a copy of ``session_id``'s picklable state, passed through the
        object store (never through this process)."""
        source = await self.lookup(session_id)
        validate_session_id(new_session_id)
        if new_session_id in self.sessions:
            raise InvalidArgument(f"session {new_session_id!r} already exists")
        target, _ = await self.create(new_session_id, f"fork of {session_id}")
        try:
            async with self._slot(source):
                self._require_alive(source)
                snapshot = source.handle.snapshot.remote()
                async with self._slot(target):
                    ref = target.handle.restore.remote(snapshot)
                    report = await self._control(target, ref, self._long())
        except BaseException:
            await self.delete(new_session_id)
            raise
        return {"session_id": new_session_id, "forked_from": session_id, **report}

    async def transfer(
        self, from_session: str, to_session: str, name: str, as_name: str
    ) -> dict[str, Any]:
        """Copy one variable between sessions through the object store (cloudpickle)."""
        source = await self.lookup(from_session)
        target = await self.lookup(to_session)
        async with self._slot(source):
            self._require_alive(source)
            blob = source.handle.get_blob.remote(name)
        async with self._slot(target):
            self._require_alive(target)
            type_name = await self._control(
                target, target.handle.set_blob.remote(as_name, blob), self._long()
            )
        return {
            "from_session": from_session,
            "to_session": to_session,
            "name": name,
            "as": as_name,
            "type": type_name,
        }

    def _long(self: SessionRouter) -> float:
        return self.settings.max_timeout

    async def restart(self: SessionRouter, session_id: str, preserve_state: bool) -> dict[str, Any]:
        import ray

        record = await self.lookup(session_id)
        acquiring = asyncio.ensure_future(record.slot.acquire(urgent=True))
        try:
            stopped = await self._stop_for_restart(record, acquiring)
        except BaseException:
            acquiring.cancel()
            if acquiring.done() and not acquiring.cancelled() and acquiring.exception() is None:
                record.slot.release()
            raise
        async with self._slot(record, acquiring=acquiring):
            snapshot_ref = None
            lost = None
            if preserve_state and record.status == "dead":
                lost = f"the session's process was gone ({record.death_reason}): nothing to carry"
            if preserve_state and record.status != "dead":
                snapshot_ref = record.handle.snapshot.remote()
                # Wait without pulling the (possibly large) snapshot into this process.
                ready, _ = await asyncio.to_thread(
                    ray.wait, [snapshot_ref], timeout=CONTROL_TIMEOUT
                )
                if not ready:
                    raise SessionUnavailable("the session did not answer the snapshot request")
            await self._respawn(record, "restart requested")
            record.kill_reason = None
            record.crash_streak = 0
            report: dict[str, Any] = {"restored": [], "not_preserved": {"*": lost} if lost else {}}
            if snapshot_ref is not None:
                try:
                    report = await self._control(record, record.handle.restore.remote(snapshot_ref))
                except KernelDied:
                    raise
                except Exception as exc:
                    report = {"restored": [], "not_preserved": {"*": f"snapshot failed: {exc}"}}
            return {
                "session_id": session_id,
                "status": "restarted",
                "preserve_state": preserve_state,
                "preserved": report["restored"],
                "not_preserved": report["not_preserved"],
                "state_preserved": bool(preserve_state and not report["not_preserved"]),
                "restart_count": record.restart_count,
                "stopped_run": stopped,
            }

    async def _stop_for_restart(
        self: SessionRouter, record: SessionRecord, acquiring: asyncio.Future[None]
    ) -> str | None:
        """A restart stops the run in progress first, as Jupyter's does: SIGINT (the run ends
        as interrupted, variables kept for ``preserve_state``), then, if the code ignores it
        for ``interrupt_grace`` seconds, the process is killed. Returns how it stopped."""
        token = record.run_token
        if token is None:
            return None
        await self._send_interrupt(record, token)
        done, _ = await asyncio.wait({acquiring}, timeout=self.settings.interrupt_grace)
        if done:
            return "interrupted"
        record.kill_reason = "killed by restart_kernel (the code ignored the interrupt)"
        await self._kill(record)
        return "killed"
