"""Fork-and-compare: one call forks a session once per variant, runs every variant in parallel
(each fork is a session of its own, spread over the cluster's nodes like any other), and
answers with each run's reply and, side by side, the values the caller wants to compare. The
forks are deleted afterwards unless asked to keep them (all, or the best by a value)."""

from __future__ import annotations

import asyncio
import contextlib
import math
import uuid
from typing import Any

from raykernel.errors import InvalidArgument, RaykernelError
from raykernel.replies import without_image_data

from .router import SessionRouter
from .session_ids import qualify, split
from .state_moves import StateMoves


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
    ) -> dict[str, Any]:
        """Fork ``qualified`` per variant, run them at once, compare ``compare`` names."""
        if keep == "best" and (best_by is None or best_by not in compare):
            raise InvalidArgument("keep 'best' needs best_by, one of the compare names")
        owner, plain = split(qualified)
        await self.router.lookup(qualified)
        tag = uuid.uuid4().hex[:6]
        forks = [qualify(owner, f"{plain[:40]}-v{i}-{tag}") for i in range(len(variants))]
        made: list[str] = []
        try:
            for fork in forks:  # one at a time: each takes the source's turn for its copy
                await self.moves.fork(qualified, fork)
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
        results = [
            {
                "variant": index,
                "session_id": split(fork)[1],
                "code": code,
                "success": reply["success"],
                "values": found,
                "reply": without_image_data(reply),
            }
            for index, (fork, code, reply, found) in enumerate(
                zip(forks, variants, replies, values, strict=True)
            )
        ]
        kept = self._kept(results, keep, best_by, goal)
        await self._delete([f for f in forks if split(f)[1] not in kept])
        return {
            "session_id": plain,
            "variants": results,
            "compare": {name: [r["values"].get(name) for r in results] for name in compare},
            "kept": sorted(kept),
        }

    async def _values(self, fork: str, names: list[str]) -> dict[str, Any]:
        if not names:
            return {}
        try:
            return await self.router.call(fork, lambda h: h.values(names))
        except RaykernelError as exc:
            return {name: f"<{exc}>" for name in names}

    @staticmethod
    def _kept(results: list[dict[str, Any]], keep: str, best_by: str | None, goal: str) -> set[str]:
        if keep == "all":
            return {r["session_id"] for r in results}
        if keep != "best":
            return set()
        scored = [(r, _number(r["values"].get(best_by or ""))) for r in results if r["success"]]
        scored = [(r, v) for r, v in scored if v is not None]
        if not scored:
            return set()
        pick = max if goal == "max" else min
        best = pick(scored, key=lambda pair: pair[1])[0]
        return {best["session_id"]}

    async def _delete(self, forks: list[str]) -> None:
        for fork in forks:
            with contextlib.suppress(RaykernelError):
                await self.router.delete(fork)


def _number(text: Any) -> float | None:
    try:
        value = float(str(text))
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) else value
