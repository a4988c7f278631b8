"""Background runs: ``run_python_code {background: true}`` answers at once with a run id, so a
long job never meets a client's request timeout; ``get_run`` and ``cancel_run`` follow it.

A run lives in its session's run book (in the session's actor), not in a front end: it queues
there behind whatever runs (from any front end), is interrupted the same way, is never re-run,
and finishes if the front end that took it dies. The registry says which session a run id
belongs to, so any front end answers about any run; a hibernated session's finished runs are
read from its image.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from raykernel.errors import NotFound, RunNotFound
from raykernel.sessions.router import SessionRouter

from .identity import Caller

ACTIVE = ("queued", "running")


class Runs:
    def __init__(self, router: SessionRouter) -> None:
        self.router = router

    async def submit(self, session_id: str, code: str, timeout: float) -> dict[str, Any]:
        """Queue ``code`` in the session; the run's view (``run_id``, ``status``)."""
        return await self.router.submit(session_id, code, timeout)

    async def get(self, run_id: str, caller: Caller, wait: float = 0.0) -> dict[str, Any]:
        qualified = await self._session_of(run_id, caller)
        view = await self.router.run_view(qualified, run_id, wait)
        return shaped(view, caller.shown(qualified))

    async def cancel(self, run_id: str, caller: Caller) -> dict[str, Any]:
        """Stop a queued run before it starts, or interrupt a running one (state kept; a run
        that ignores the interrupt gets its session's kernel replaced, and the reply says
        so)."""
        qualified = await self._session_of(run_id, caller)
        view = await self.router.cancel_run(qualified, run_id)
        return shaped(view, caller.shown(qualified))

    async def for_session(self, qualified: str) -> list[dict[str, str]]:
        """The session's queued and running background runs."""
        try:
            views = await self.router.session_runs(qualified)
        except NotFound:
            return []
        return [
            {"run_id": v["run_id"], "status": v["status"]}
            for v in views
            if v["status"] in ACTIVE and v.get("background")
        ]

    async def listing(self, caller: Caller) -> list[dict[str, Any]]:
        """Recent runs in the caller's sessions (background and foreground, any front end)."""
        by_session = await self.router.registry.runs_of(None)
        visible = [q for q in by_session if caller.visible(q)]
        views = await asyncio.gather(
            *(self.router.session_runs(q) for q in visible), return_exceptions=True
        )
        listing = []
        for qualified, found in zip(visible, views, strict=True):
            if isinstance(found, BaseException):
                continue
            ids = set(by_session[qualified])
            for view in found:
                if view["run_id"] in ids:
                    listing.append(
                        {
                            "run_id": view["run_id"],
                            "session_id": caller.shown(qualified),
                            "status": view["status"],
                            "background": view.get("background", False),
                            "submitted_at": view["submitted_at"],
                        }
                    )
        listing.sort(key=lambda v: v["submitted_at"])
        return listing

    async def _session_of(self, run_id: str, caller: Caller) -> str:
        qualified = await self.router.registry.run_session(run_id)
        if qualified is None or not caller.visible(qualified):
            raise RunNotFound(f"no run {run_id!r}")
        return qualified


def shaped(view: dict[str, Any], session_id: str) -> dict[str, Any]:
    """A run's view as clients see it: no internal token; its reply with every flag."""
    shown: dict[str, Any] = {
        "run_id": view["run_id"],
        "session_id": session_id,
        "status": view["status"],
        "submitted_at": view["submitted_at"],
        "started_at": view["started_at"],
        "finished_at": view["finished_at"],
    }
    if view["status"] == "running":
        shown["output_so_far"] = view.get("output_so_far") or ""
        shown["running_for"] = round(time.time() - (view["started_at"] or time.time()), 3)
    reply = view.get("reply")
    if reply is not None:
        reply = dict(reply)
        reply.pop("kernel_died", None)
        reply.setdefault("interrupted", False)
        reply.setdefault("restarted", False)
        reply.setdefault("state_preserved", not reply["restarted"])
        shown["reply"] = reply
    for key in ("cancelled", "was"):
        if key in view:
            shown[key] = view[key]
    return shown
