"""Background runs: ``run_python_code {background: true}`` answers at once with a run id, so a
long job never meets a client's request timeout; ``get_run`` and ``cancel_run`` follow it.

A background run is an ordinary run in the router: it queues for its session behind whatever
runs there (a session runs one thing at a time), is interrupted the same way, and is never
re-run. Runs live in this front end: a restarted front end does not know the old ones (their
sessions, on a cluster, do survive).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from raykernel.errors import RaykernelError, RunNotFound
from raykernel.sessions.record import SessionRecord
from raykernel.sessions.router import SessionRouter

from .identity import Caller

MAX_KEPT = 200  # finished runs remembered; the oldest are forgotten first


@dataclass
class Run:
    run_id: str
    session_id: str
    code: str
    submitted_at: float = field(default_factory=time.time)
    status: str = "queued"  # queued | running | done | cancelled
    started_at: float | None = None
    finished_at: float | None = None
    record: SessionRecord | None = None
    token: str | None = None
    task: asyncio.Future[None] | None = None
    reply: dict[str, Any] | None = None


class Runs:
    def __init__(self, router: SessionRouter) -> None:
        self.router = router
        self.runs: dict[str, Run] = {}

    def submit(self, session_id: str, code: str, timeout: float) -> Run:
        run = Run(run_id="run-" + uuid.uuid4().hex[:16], session_id=session_id, code=code)
        self.runs[run.run_id] = run
        run.task = asyncio.ensure_future(self._execute(run, timeout))
        self._forget_old()
        return run

    async def _execute(self, run: Run, timeout: float) -> None:
        def started(record: SessionRecord, token: str) -> None:
            run.status, run.started_at, run.record, run.token = (
                "running",
                time.time(),
                record,
                token,
            )

        try:
            run.reply = await self.router.execute(run.session_id, run.code, timeout, started)
        except RaykernelError as exc:
            run.reply = {
                "success": False,
                "error": {"ename": exc.kind, "evalue": exc.message, "traceback": ""},
            }
        if run.status != "cancelled":
            run.status = "done"
            run.finished_at = time.time()

    async def get(self, run_id: str, caller: Caller, wait: float = 0.0) -> dict[str, Any]:
        run = self._find(run_id, caller)
        if wait > 0 and run.task is not None and not run.task.done():
            await asyncio.wait({run.task}, timeout=wait)
        return await self.view(run, caller)

    async def cancel(self, run_id: str, caller: Caller) -> dict[str, Any]:
        """Stop a queued run before it starts, or interrupt a running one (state kept; a run
        that ignores the interrupt gets its session restarted, and the reply says so)."""
        run = self._find(run_id, caller)
        if run.task is None or run.task.done():
            return {**(await self.view(run, caller)), "cancelled": False}
        was = run.status
        run.status = "cancelled"
        run.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await run.task
        stop = run.record.pending_stop if run.record is not None else None
        if was == "running" and stop is not None:
            with contextlib.suppress(Exception):
                run.reply = await asyncio.shield(stop)
        run.finished_at = time.time()
        return {**(await self.view(run, caller)), "cancelled": True, "was": was}

    async def view(self, run: Run, caller: Caller) -> dict[str, Any]:
        view: dict[str, Any] = {
            "run_id": run.run_id,
            "session_id": caller.shown(run.session_id),
            "status": run.status,
            "submitted_at": run.submitted_at,
            "started_at": run.started_at,
            "finished_at": run.finished_at,
        }
        if run.status == "running" and run.record is not None and run.token is not None:
            view["output_so_far"] = await self.router.live_tail(run.record, run.token) or ""
            view["running_for"] = round(time.time() - (run.started_at or time.time()), 3)
        if run.reply is not None:
            view["reply"] = run.reply
        return view

    def for_session(self, session_id: str) -> list[dict[str, str]]:
        return [
            {"run_id": run.run_id, "status": run.status}
            for run in self.runs.values()
            if run.session_id == session_id and run.status in ("queued", "running")
        ]

    def listing(self, caller: Caller) -> list[dict[str, Any]]:
        return [
            {"run_id": r.run_id, "session_id": caller.shown(r.session_id), "status": r.status}
            for r in self.runs.values()
            if caller.visible(r.session_id)
        ]

    async def close(self) -> None:
        tasks = [run.task for run in self.runs.values() if run.task and not run.task.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _find(self, run_id: str, caller: Caller) -> Run:
        run = self.runs.get(run_id)
        if run is None or not caller.visible(run.session_id):
            raise RunNotFound(f"no run {run_id!r} (runs are kept in memory by this server)")
        return run

    def _forget_old(self) -> None:
        finished = [r for r in self.runs.values() if r.task is not None and r.task.done()]
        for run in finished[: max(0, len(self.runs) - MAX_KEPT)]:
            del self.runs[run.run_id]
