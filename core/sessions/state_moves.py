"""Moving a session's state: restart with or without it, snapshots on disk, forks, and single
variables between sessions. State travels through Ray's object store or a file the session
writes itself; the front end never unpickles it. Every move takes the sessions' slots, so it
happens between runs, never in the middle of one.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from raykernel.errors import InvalidArgument, KernelDied, SessionUnavailable
from raykernel.protocol import SessionStatus

from .handle import CONTROL_TIMEOUT, ActorDied
from .lifecycle import owner_folder
from .record import SessionRecord
from .router import SessionRouter
from .session_ids import split, validate_session_id, validate_snapshot_name


class StateMoves:
    def __init__(self, router: SessionRouter) -> None:
        self.router = router
        self.settings = router.settings

    def snapshot_dir(self, owner: str) -> Path:
        """Where identity ``owner``'s snapshots are kept (in the server's store: theirs only)."""
        return self.settings.store / "snapshots" / owner_folder(owner)

    def snapshot_path(self, owner: str, name: str) -> Path:
        return self.snapshot_dir(owner) / f"{validate_snapshot_name(name)}.zip"

    def _long(self) -> float:
        return self.settings.max_timeout

    async def snapshot(self, qualified: str, name: str) -> dict[str, Any]:
        """The session writes its own snapshot file (nothing is unpickled in the front end)."""
        owner, session_id = split(qualified)
        path = str(self.snapshot_path(owner, name))
        report = await self.router.call(qualified, lambda h: h.save_snapshot(path, self._long()))
        return {"snapshot": name, "session_id": session_id, **report}

    async def restore_snapshot(self, name: str, qualified: str) -> dict[str, Any]:
        """Load snapshot ``name`` (the caller's own) into a session, created if need be."""
        owner, session_id = split(qualified)
        path = self.snapshot_path(owner, name)
        if not path.is_file():
            raise InvalidArgument(f"no snapshot named {name!r}")
        _record, created = await self.router.create(qualified, f"restored from snapshot {name}")
        report = await self.router.call(
            qualified, lambda h: h.load_snapshot(str(path), self._long())
        )
        return {"snapshot": name, "session_id": session_id, "created": created, **report}

    async def fork(self, session_id: str, new_session_id: str) -> dict[str, Any]:
        """A new session holding a copy of ``session_id``'s picklable state, passed through the
        object store (never through this process)."""
        router = self.router
        source = await router.lookup(session_id)
        validate_session_id(new_session_id)
        if new_session_id in router.sessions:
            raise InvalidArgument(f"session {split(new_session_id)[1]!r} already exists")
        target, _ = await router.create(new_session_id, f"fork of {session_id}", **like(source))
        try:
            async with router.slot(source):
                router.require_alive(source)
                assert source.handle is not None
                snapshot = source.handle.snapshot()
                async with router.slot(target):
                    report = await router.control(
                        target, lambda h: h.restore(snapshot, self._long())
                    )
        except BaseException:
            await router.delete(new_session_id)
            raise
        return {
            "session_id": split(new_session_id)[1],
            "forked_from": split(session_id)[1],
            # run_variants forks the process itself ("cow"); a session of its own must not
            # end with its source's process, so it gets a copy of the state.
            "fork": "copy",
            **report,
        }

    async def transfer(
        self, from_session: str, to_session: str, name: str, as_name: str
    ) -> dict[str, Any]:
        """Copy one variable between sessions through the object store (cloudpickle)."""
        router = self.router
        source = await router.lookup(from_session)
        target = await router.lookup(to_session)
        async with router.slot(source):
            router.require_alive(source)
            assert source.handle is not None
            blob = source.handle.blob(name)
        async with router.slot(target):
            router.require_alive(target)
            type_name = await router.control(
                target, lambda h: h.set_blob(as_name, blob, self._long())
            )
        return {
            "from_session": split(from_session)[1],
            "to_session": split(to_session)[1],
            "name": name,
            "as": as_name,
            "type": type_name,
        }

    async def restart(self, session_id: str, preserve_state: bool) -> dict[str, Any]:
        """Restart a session's process, carrying its picklable state over if asked. A run in
        progress is stopped first, and the restart goes ahead of runs queued behind it."""
        router = self.router
        record = await router.lookup(session_id)
        acquiring = asyncio.ensure_future(record.slot.acquire(urgent=True))
        try:
            stopped = await self._stop_for_restart(record, acquiring)
        except BaseException:
            acquiring.cancel()
            if acquiring.done() and not acquiring.cancelled() and acquiring.exception() is None:
                record.slot.release()
            raise
        async with router.slot(record, acquiring=acquiring):
            snapshot = None
            lost = None
            if preserve_state and record.status == SessionStatus.DEAD:
                lost = f"the session's process was gone ({record.death_reason}): nothing to carry"
            if preserve_state and record.status != SessionStatus.DEAD:
                assert record.handle is not None
                snapshot = record.handle.snapshot()
                # Wait without pulling the (possibly large) snapshot into this process.
                if not await record.handle.settled(snapshot, CONTROL_TIMEOUT):
                    raise SessionUnavailable("the session did not answer the snapshot request")
            await router.recovery.restart(record, "restart requested", restore=False)
            record.crash_streak = 0
            report: dict[str, Any] = {"restored": [], "not_preserved": {"*": lost} if lost else {}}
            if snapshot is not None:
                try:
                    report = await router.control(
                        record, lambda h: h.restore(snapshot, CONTROL_TIMEOUT)
                    )
                except KernelDied:
                    raise
                except Exception as exc:
                    report = {"restored": [], "not_preserved": {"*": f"snapshot failed: {exc}"}}
            return {
                "session_id": record.session_id,
                "status": "restarted",
                "preserve_state": preserve_state,
                "preserved": report["restored"],
                "not_preserved": report["not_preserved"],
                "state_preserved": bool(preserve_state and not report["not_preserved"]),
                "restart_count": record.restart_count,
                "stopped_run": stopped,
            }

    async def _stop_for_restart(
        self, record: SessionRecord, acquiring: asyncio.Future[None]
    ) -> str | None:
        """A restart stops the run in progress first, as Jupyter's does: SIGINT (the run ends
        as interrupted, variables kept for ``preserve_state``), then, if the code ignores it
        for ``interrupt_grace`` seconds, the process is killed. Returns how it stopped."""
        if record.handle is None or not record.resident or record.status == SessionStatus.DEAD:
            return None
        # The session's book knows its run in progress, whichever front end sent it.
        record.kill_reason = "killed by restart_kernel (the code ignored the interrupt)"
        try:
            stopped = await record.handle.stop_current(self.settings.interrupt_grace)
        except (ActorDied, SessionUnavailable):
            stopped = None
        await acquiring
        if stopped != "killed":
            record.kill_reason = None
        return stopped

    async def rewind(self, qualified: str, to_execution: int) -> dict[str, Any]:
        """The namespace as it was after run ``to_execution``, from the session's checkpoints."""
        router = self.router
        record = await router.lookup(qualified)
        if record.checkpoint != "after_run":
            raise InvalidArgument(
                f"session {record.session_id!r} keeps no checkpoints: create it with "
                "checkpoint 'after_run' (or set the server's checkpoint setting)"
            )
        async with router.slot(record):
            router.require_alive(record)
            report = await router.control(
                record, lambda h: h.restore_checkpoint(to_execution, self._long())
            )
            if report is None:
                kept = await router.control(record, lambda h: h.checkpoint_counts())
                raise InvalidArgument(
                    f"no checkpoint after run {to_execution}; the ones kept are after runs "
                    f"{kept or 'none yet'}"
                )
        return {
            "session_id": record.session_id,
            "rewound_to_execution": report["execution_count"],
            "restored": report["restored"],
            "not_preserved": report["not_preserved"],
        }


def like(source: SessionRecord) -> dict[str, Any]:
    """What a copy of ``source`` (a fork, a kept variant) is created with: its placement,
    network, checkpoints and Python environment, as the source has them."""
    return {
        "placement": source.placement,
        "network": source.network,
        "checkpoint": source.checkpoint,
        "environment": source.environment["name"] if source.environment else None,
    }
