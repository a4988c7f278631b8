"""Fork-and-compare: one call forks a session once per variant, runs every variant in parallel
(each fork is a session of its own, spread over the cluster's nodes like any other), and
answers with each run's reply and, side by side, the values the caller wants to compare. The
forks are deleted afterwards unless asked to keep them (all, or the best by a value)."""

from __future__ import annotations

import asyncio
import contextlib
import math
import uuid
from dataclasses import dataclass
from typing import Any

from raykernel.errors import InvalidArgument, RaykernelError
from raykernel.protocol import SessionStatus
from raykernel.replies import without_image_data

from .handle import CONTROL_TIMEOUT, ActorDied, SessionHandle
from .record import SessionRecord
from .router import SessionRouter
from .session_ids import qualify, split
from .state_moves import StateMoves, like


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
