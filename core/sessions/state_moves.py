"""Moving a session's state: restart with or without it, snapshots on disk, forks, and single
variables between sessions. State travels through Ray's object store or a file the session
writes itself; the front end never unpickles it. Every move takes the sessions' slots, so it
happens between runs, never in the middle of one.

Fork-and-compare: one call forks a session once per variant, runs every variant in parallel
(each fork is a session of its own, spread over the cluster's nodes like any other), and
answers with each run's reply and, side by side, the values the caller wants to compare. The
forks are deleted afterwards unless asked to keep them (all, or the best by a value).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raykernel.errors import (
    InvalidArgument,
    KernelDied,
    NotAllowed,
    RaykernelError,
    SessionUnavailable,
)
from raykernel.protocol import SessionStatus
from raykernel.replies import without_image_data
from raykernel.sessions.handle import CONTROL_TIMEOUT, ActorDied, SessionHandle
from raykernel.sessions.record import (
    SessionRecord,
    qualify,
    split,
    validate_session_id,
    validate_snapshot_name,
)
from raykernel.sessions.router import SessionRouter


class StateMoves:
    def __init__(self, router: SessionRouter) -> None:
        self.router = router
        self.settings = router.settings

    def snapshot_dir(self, owner: str) -> Path:
        return self.router.lifecycle.snapshot_dir(owner)

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

    def _one_identity(self, source: str, target: str, what: str) -> None:
        """A pickle stays with its identity: unpickling one identity's bytes in another's
        kernel would run the first identity's code there (a pickle's ``__reduce__``), with the
        second one's files and tokens. Refused unless the server opts in."""
        owner, other = split(source)[0], split(target)[0]
        if owner != other and not self.settings.allow_pickles_across_identities:
            raise NotAllowed(
                f"{what} from a session of {owner} to one of {other}: a pickle can carry code, "
                "so values move only between one identity's sessions (the server's setting "
                "allow_pickles_across_identities allows it, for identities that trust each "
                "other); nothing was moved"
            )

    async def fork(self, session_id: str, new_session_id: str) -> dict[str, Any]:
        """A new session holding a copy of ``session_id``'s picklable state, passed through the
        object store (never through this process)."""
        router = self.router
        self._one_identity(session_id, new_session_id, "fork_session")
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
        self._one_identity(from_session, to_session, "transfer_variable")
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


class Variants:
    def __init__(self, router: SessionRouter, moves: StateMoves) -> None:
        self.router = router
        self.moves = moves

    async def run(
        self,
        qualified: str,
        variants: list[str],
        timeout: float,
        compare: list[str],
        keep: str = "none",
        best_by: str | None = None,
        goal: str = "max",
        fork: str = "auto",
    ) -> dict[str, Any]:
        """Fork ``qualified`` per variant, run them at once, compare ``compare`` names. The
        forks are copy-on-write forks of the session's process when it is resident and
        idle ("cow"), else (or when ``fork`` is "copy") copies of its picklable state in new
        sessions ("copy")."""
        if keep == "best" and (best_by is None or best_by not in compare):
            raise InvalidArgument("keep 'best' needs best_by, one of the compare names")
        owner, plain = split(qualified)
        source = await self.router.lookup(qualified)
        tag = uuid.uuid4().hex[:6]
        names = [qualify(owner, f"{plain[:40]}-v{i}-{tag}") for i in range(len(variants))]
        choice = Choice(keep, best_by, goal)
        in_place = fork != "copy" and source.status not in (
            SessionStatus.HIBERNATED,
            SessionStatus.DEAD,
        )
        if in_place and source.slot.try_acquire():
            path = "cow"
            rows, kept = await self._forked_in_place(
                source, names, variants, timeout, compare, choice
            )
        else:
            path = "copy"
            rows, kept = await self._copied(qualified, names, variants, timeout, compare, choice)
        results = [
            {
                "variant": index,
                "session_id": split(names[index])[1] if index in kept else None,
                "code": code,
                "success": reply["success"],
                "values": found,
                # The run's own session: the kept one, else none (a fork that is gone).
                "reply": {
                    **without_image_data(reply),
                    "session_id": split(names[index])[1] if index in kept else None,
                },
            }
            for index, (code, (reply, found)) in enumerate(zip(variants, rows, strict=True))
        ]
        return {
            "session_id": plain,
            "fork": path,
            "variants": results,
            "compare": {name: [r["values"].get(name) for r in results] for name in compare},
            "kept": sorted(split(names[i])[1] for i in kept),
        }

    async def _forked_in_place(
        self,
        source: SessionRecord,
        names: list[str],
        variants: list[str],
        timeout: float,
        compare: list[str],
        choice: Choice,
    ) -> tuple[list[Row], set[int]]:
        """The variants in copy-on-write forks of the source's kernel, held by its actor for
        the call (the caller took the source's slot: it stays taken until they are done).
        A kept one becomes a session through the copy path, from its fork."""
        router = self.router
        taken = asyncio.get_running_loop().create_future()
        taken.set_result(None)
        async with router.slot(source, acquiring=taken, resume=False):
            router.require_alive(source)
            set_id = await router.control(
                source, lambda h: h.fork_kernel(len(variants), CONTROL_TIMEOUT)
            )
            assert source.handle is not None
            handle = source.handle
            try:
                wait = timeout + 2 * self.router.settings.interrupt_grace + CONTROL_TIMEOUT
                outcomes = await router.control(
                    source, lambda h: h.run_forks(set_id, variants, timeout, compare, wait)
                )
                rows = [(o["reply"], o["values"]) for o in outcomes]
                kept = choice.pick(rows)
                for index in sorted(kept):
                    await self._keep_fork(handle, set_id, index, names[index], source)
            finally:
                with contextlib.suppress(RaykernelError, ActorDied):
                    await handle.drop_forks(set_id)
        return rows, kept

    async def _keep_fork(
        self, handle: SessionHandle, set_id: str, index: int, name: str, source: SessionRecord
    ) -> None:
        router = self.router
        await router.create(name, f"variant {index} of {source.session_id}", **like(source))
        try:
            target = await router.lookup(name)
            snapshot = handle.fork_snapshot(set_id, index)
            async with router.slot(target):
                await router.control(
                    target, lambda h: h.restore(snapshot, self.router.settings.max_timeout)
                )
        except BaseException:
            with contextlib.suppress(RaykernelError):
                await router.delete(name)
            raise

    async def _copied(
        self,
        qualified: str,
        forks: list[str],
        variants: list[str],
        timeout: float,
        compare: list[str],
        choice: Choice,
    ) -> tuple[list[Row], set[int]]:
        """The variants in sessions of their own, each a copy of the source's state (a
        source hibernated, or busy: each copy waits for its turn)."""
        made: list[str] = []
        lost: list[dict[str, Any]] = []
        try:
            for fork in forks:  # one at a time: each takes the source's turn for its copy
                lost.append((await self.moves.fork(qualified, fork))["not_preserved"])
                made.append(fork)
            replies = await asyncio.gather(
                *(
                    self.router.execute(f, code, timeout)
                    for f, code in zip(forks, variants, strict=True)
                )
            )
            values = await asyncio.gather(*(self._values(f, compare) for f in forks))
        except BaseException:
            await self._delete(made)
            raise
        # What a copy could not carry is said in its variant's reply, not dropped.
        replies = [
            {**reply, "not_preserved": missing} if missing else reply
            for reply, missing in zip(replies, lost, strict=True)
        ]
        rows = list(zip(replies, values, strict=True))
        kept = choice.pick(rows)
        await self._delete([f for i, f in enumerate(forks) if i not in kept])
        return rows, kept

    async def _values(self, fork: str, names: list[str]) -> dict[str, Any]:
        if not names:
            return {}
        try:
            return await self.router.call(fork, lambda h: h.values(names))
        except RaykernelError as exc:
            return {name: f"<{exc}>" for name in names}

    async def _delete(self, forks: list[str]) -> None:
        for fork in forks:
            with contextlib.suppress(RaykernelError):
                await self.router.delete(fork)


Row = tuple[dict[str, Any], dict[str, Any]]  # a variant's reply, its compared values


@dataclass(frozen=True)
class Choice:
    """Which variants to keep: none, all, or the best by one compared value."""

    keep: str
    best_by: str | None
    goal: str

    def pick(self, rows: list[Row]) -> set[int]:
        if self.keep == "all":
            return set(range(len(rows)))
        if self.keep != "best":
            return set()
        scored = [
            (index, _number(values.get(self.best_by or "")))
            for index, (reply, values) in enumerate(rows)
            if reply.get("success")
        ]
        scored = [(index, value) for index, value in scored if value is not None]
        if not scored:
            return set()
        pick = max if self.goal == "max" else min
        return {pick(scored, key=lambda pair: pair[1])[0]}


def _number(text: Any) -> float | None:
    try:
        value = float(str(text))
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) else value
