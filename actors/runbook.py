"""A session's runs: the run book that orders them and the history that keeps what ran.

The run book: its runs, one at a time in the order they arrive from whichever front
end, each with its timeout kept here, and their replies kept for any front end to fetch by id.

The book lives beside the kernel (in the session's actor), not in a front end: a front end
that dies takes nothing with it. A run past its timeout (or cancelled) is interrupted; if it
ignores the interrupt for ``grace`` seconds its kernel is replaced, and the reply says the
state is lost (or restored from the last checkpoint). A run is submitted once per id: the same
id again is the same run, never a second one. Plain asyncio: tested without Ray.

The history: what ran, how it ended, when, and the start of its output.

Bounded (the last ``MAX_ENTRIES`` runs, each output cut to ``OUTPUT_CHARS``) so a long-lived
session cannot grow without limit. It is kept by the session's actor, beside its kernel, not in
it: one timeline that a kernel's death, a restart or a restore does not cut (a run that killed
its kernel stays in it, marked ``crashed`` with what was restored after it); hibernation images
and, for sessions that keep checkpoints, the checkpoint store carry it further.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from raykernel.errors import InvalidArgument, RunNotFound
from raykernel.kernel.capture import truncate_text
from raykernel.protocol import RunKind
from raykernel.replies import cell_outputs, failed_reply

log = logging.getLogger(__name__)

KEPT = 200  # finished runs remembered; the oldest are forgotten first
KINDS = tuple(RunKind)


@dataclass
class BookedRun:
    run_id: str
    kind: RunKind
    args: tuple[Any, ...]
    timeout: float
    background: bool = False
    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    status: str = "queued"  # queued | running | done | cancelled
    submitted_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    reply: dict[str, Any] | None = None
    cancel_asked: bool = False
    # Why it is stopped before its end, when it is not a cancel or a timeout: (the error's
    # name, what happened to the execution), e.g. the node's memory guard stopping it.
    stopped_for: tuple[str, str] | None = None
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    # Set to stop the run in progress (a cancel, or ``stopped_for``).
    stop_asked: asyncio.Event = field(default_factory=asyncio.Event)

    def view(self, with_reply: bool = True) -> dict[str, Any]:
        view: dict[str, Any] = {
            "run_id": self.run_id,
            "kind": self.kind,
            "token": self.token,
            "background": self.background,
            "status": self.status,
            "submitted_at": self.submitted_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }
        if with_reply and self.reply is not None:
            view["reply"] = self.reply
        return view


class Driver:
    """What the book needs of its session (the host gives its own methods)."""

    def __init__(
        self,
        start: Callable[[BookedRun], Awaitable[dict[str, Any]]],
        interrupt: Callable[[str], Any],
        replace_kernel: Callable[[str], Awaitable[dict[str, Any] | None]],
        revive: Callable[[], Awaitable[dict[str, Any] | None]],
        execution_count: Callable[[], int],
        session_id: Callable[[], str],
    ) -> None:
        self.start = start  # the run's request to the kernel; its reply
        self.interrupt = interrupt  # SIGINT to run ``token``
        # A new kernel in place of one that ignores an interrupt: a checkpoint's report or None
        self.replace_kernel = replace_kernel
        # A dead kernel brought back before a run: the notice that run's reply carries, or None
        self.revive = revive
        self.execution_count = execution_count
        self.session_id = session_id


class RunBook:
    def __init__(self, driver: Driver, grace: float = 5.0, keep: int = KEPT) -> None:
        self.driver = driver
        self.grace = grace
        self.keep = keep
        self._runs: OrderedDict[str, BookedRun] = OrderedDict()
        self._queue: deque[BookedRun] = deque()
        # Held by the run in progress and by whatever must not meet one (a restart, a
        # hibernation); asyncio's lock is fair, so they take turns in arrival order.
        self._turn = asyncio.Lock()
        self._worker: asyncio.Task[None] | None = None
        self.current: BookedRun | None = None
        self.last_activity = time.time()

    # -- submitting and following ----------------------------------------------------------

    def book(self, run: BookedRun) -> dict[str, Any]:
        """Queue ``run``; a run id seen before is that run (nothing is queued twice)."""
        known = self._runs.get(run.run_id)
        if known is not None:
            return known.view(with_reply=False)
        if run.kind not in KINDS:
            raise InvalidArgument(f"unknown kind of run {run.kind!r}")
        self._runs[run.run_id] = run
        self._queue.append(run)
        self.last_activity = time.time()
        if self._worker is None or self._worker.done():
            self._worker = asyncio.ensure_future(self._work())
        self._forget_old()
        return run.view(with_reply=False)

    def find(self, run_id: str) -> BookedRun:
        run = self._runs.get(run_id)
        if run is None:
            raise RunNotFound(f"no run {run_id!r} in this session")
        return run

    async def wait(self, run_id: str, timeout: float) -> dict[str, Any]:
        """The run's view once it has finished, or as it is after ``timeout`` seconds."""
        run = self.find(run_id)
        if timeout > 0 and not run.finished.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(run.finished.wait(), timeout)
        return run.view()

    async def cancel(self, run_id: str) -> dict[str, Any]:
        """Drop a queued run, or stop a running one (interrupt, then a new kernel after the
        grace period); the run's view with ``cancelled`` and what it ``was``."""
        run = self.find(run_id)
        was = run.status
        if run.finished.is_set():
            return {**run.view(), "cancelled": False}
        run.cancel_asked = True
        if was == "queued":
            with contextlib.suppress(ValueError):
                self._queue.remove(run)
            self._finish(run, None, "cancelled")
        else:
            run.stop_asked.set()
            await run.finished.wait()
        return {**run.view(), "cancelled": True, "was": was}

    def listing(self) -> list[dict[str, Any]]:
        return [run.view(with_reply=False) for run in self._runs.values()]

    @property
    def busy(self) -> bool:
        """A run in progress or queued (a hibernation must wait)."""
        return self.current is not None or bool(self._queue)

    def idle_for(self) -> float | None:
        """Seconds since the last run ended (None while one runs or waits)."""
        if self.busy:
            return None
        return time.time() - self.last_activity

    @contextlib.asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        """Hold the session between runs: no run starts until this ends."""
        async with self._turn:
            yield

    async def stop_current(self) -> str | None:
        """Stop the run in progress for a restart: SIGINT, and after ``grace`` a new kernel.
        Returns how it stopped (None when nothing ran)."""
        run = self.current
        if run is None:
            return None
        self.driver.interrupt(run.token)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(run.finished.wait()), self.grace)
            return "interrupted"
        await self.driver.replace_kernel(
            "killed by restart_kernel (the code ignored the interrupt)"
        )
        await run.finished.wait()
        return "killed"

    def stop_for(self, ename: str, why: str) -> bool:
        """Stop the run in progress as a timeout would (interrupted, its state kept; a new
        kernel if it will not stop), its error ``ename`` and what happened ``why`` ("was
        stopped because ..."). False when no run is in progress."""
        run = self.current
        if run is None or run.finished.is_set():
            return False
        run.stopped_for = (ename, why)
        run.stop_asked.set()
        return True

    def export(self) -> list[dict[str, Any]]:
        """Finished runs, for a hibernated session's image."""
        return [run.view() for run in self._runs.values() if run.finished.is_set()]

    def load(self, views: list[dict[str, Any]]) -> None:
        """Finished runs of the image this session resumed from."""
        for view in views:
            run = BookedRun(view["run_id"], view["kind"], (), 0.0, view.get("background", False))
            run.token = view["token"]
            run.status, run.reply = view["status"], view.get("reply")
            run.submitted_at, run.started_at = view["submitted_at"], view["started_at"]
            run.finished_at = view["finished_at"]
            run.finished.set()
            self._runs.setdefault(run.run_id, run)

    # -- the worker -------------------------------------------------------------------------

    async def _work(self) -> None:
        while self._queue:
            async with self._turn:
                if not self._queue:
                    return
                run = self._queue.popleft()
                self.current = run
                try:
                    reply = await self._execute(run)
                except Exception as exc:  # a fault here must not leave the run hanging
                    log.exception("run %s failed in its session", run.run_id)
                    reply = self._failed(run, "InternalError", f"the run could not finish: {exc}")
                finally:
                    self.current = None
                self._finish(run, reply, "cancelled" if run.cancel_asked else "done")

    async def _execute(self, run: BookedRun) -> dict[str, Any]:
        notice = await self.driver.revive()
        run.status, run.started_at = "running", time.time()
        future = asyncio.ensure_future(self.driver.start(run))
        stopped = asyncio.ensure_future(run.stop_asked.wait())
        try:
            await asyncio.wait(
                {future, stopped}, timeout=run.timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            stopped.cancel()
        if future.done():
            reply = future.result()
        else:
            reply = await self._stop(run, future)
        if notice:
            reply = {**reply, **notice}
        return reply

    async def _stop(self, run: BookedRun, future: asyncio.Future[dict[str, Any]]) -> dict[str, Any]:
        if run.stopped_for is not None:
            ename, why = run.stopped_for
        elif run.cancel_asked:
            ename, why = "Cancelled", "was cancelled"
        else:
            ename, why = "TimeoutError", f"timed out after {run.timeout:g} s"
        self.driver.interrupt(run.token)
        done, _ = await asyncio.wait({future}, timeout=self.grace)
        if done:
            return stopped_reply(future.result(), ename, why)
        log.warning("session %s ignored the interrupt; a new kernel", self.driver.session_id())
        restored = await self.driver.replace_kernel("its code ignored an interrupt")
        with contextlib.suppress(Exception):
            await future  # ends with the old kernel
        reply = self._failed(
            run,
            ename,
            f"execution {why} and did not stop when interrupted; the session was restarted "
            + (
                f"with its state as of run {restored['execution_count']} (its last checkpoint)"
                if restored
                else "and its state is lost (workspace files are kept)"
            ),
            interrupted=True,
            restarted=True,
        )
        if restored:
            reply["state_preserved"] = "checkpoint"
            reply["restored_to_execution"] = restored["execution_count"]
            reply["not_preserved"] = restored["not_preserved"]
        return reply

    def _failed(self, run: BookedRun, ename: str, evalue: str, **flags: bool) -> dict[str, Any]:
        reply: dict[str, Any] = dict(
            failed_reply(
                self.driver.session_id(),
                self.driver.execution_count(),
                ename,
                evalue,
                interrupted=flags.get("interrupted", False),
                restarted=flags.get("restarted", False),
            )
        )
        return reply

    def _finish(self, run: BookedRun, reply: dict[str, Any] | None, status: str) -> None:
        run.reply, run.status, run.finished_at = reply, status, time.time()
        self.last_activity = run.finished_at
        run.finished.set()

    def _forget_old(self) -> None:
        finished = [r for r in self._runs.values() if r.finished.is_set()]
        for run in finished[: max(0, len(self._runs) - self.keep)]:
            del self._runs[run.run_id]


def stopped_reply(reply: dict[str, Any], ename: str, why: str) -> dict[str, Any]:
    """The reply of a run that was interrupted for a reason of ours (``ename``: a timeout, a
    cancel, the memory guard), as that reason; one that ended meanwhile is left as it is."""
    if reply.get("interrupted"):
        traceback = (reply.get("error") or {}).get("traceback", "")
        reply["error"] = {
            "ename": ename,
            "evalue": f"execution {why} and was interrupted; "
            "the session and its variables are kept",
            "traceback": traceback,
        }
        reply["success"] = False
        reply["state_preserved"] = True
    return reply


MAX_ENTRIES = 500
OUTPUT_CHARS = 2000
CODE_CHARS = 20_000


class History:
    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self._entries: deque[dict[str, Any]] = deque(maxlen=max_entries)
        # Where the timeline is: its last run's count (a new kernel goes on from it, the
        # session's runs are counted here) and when that run ended.
        self.execution_count = 0
        self.last_execution_time: float | None = None

    def record(
        self,
        code: str,
        reply: dict[str, Any],
        started_at: float,
        status: str | None = None,
        upstream: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """Add the run ``reply`` answered (``status``: ``crashed`` for one that killed its
        kernel; ``upstream``: the upstream MCP tools its code called); the entry as kept."""
        error = reply.get("error")
        if status is None:
            if reply.get("interrupted"):
                status = "interrupted"
            elif error:
                status = "error"
            else:
                status = "ok"
        self._entries.append(
            {
                "execution_count": reply.get("execution_count"),
                "code": truncate_text(code, CODE_CHARS),
                "status": status,
                "started_at": started_at,
                "execution_time": reply.get("execution_time"),
                "stdout": truncate_text(reply.get("stdout") or "", OUTPUT_CHARS),
                "stderr": truncate_text(reply.get("stderr") or "", OUTPUT_CHARS),
                "result": truncate_text(reply["result"], OUTPUT_CHARS)
                if reply.get("result") is not None
                else None,
                "error": f"{error['ename']}: {truncate_text(error['evalue'], 500)}"
                if error
                else None,
                "outputs": list(reply.get("outputs") or []),
                # What Jupyter would have recorded (export_notebook), kept apart from the
                # short view that get_history shows.
                "cell_outputs": cell_outputs(reply),
            }
        )
        if upstream:
            self._entries[-1]["upstream_calls"] = upstream
        return self._entries[-1]

    def crashed_then(self, restored: dict[str, Any] | None) -> dict[str, Any] | None:
        """Say, in the last crashed run's entry, what came back after it: the checkpoint's run,
        or nothing. The entry, or None when the last run did not crash."""
        if not self._entries or self._entries[-1]["status"] != "crashed":
            return None
        entry = self._entries[-1]
        entry["restored"] = (
            {"state_preserved": "checkpoint", "to_execution": restored["execution_count"]}
            if restored
            else {"state_preserved": False}
        )
        return entry

    def load(self, entries: list[dict[str, Any]]) -> None:
        """Entries a hibernated session (or the checkpoint store) saved, back in place."""
        self._entries.clear()
        self._entries.extend(entries)

    def note(self, text: str) -> dict[str, Any]:
        """Something that happened to the session between runs (a rewind)."""
        self._entries.append(
            {
                "execution_count": None,
                "code": "",
                "status": "note",
                "started_at": time.time(),
                "execution_time": 0.0,
                "stdout": text,
                "stderr": "",
                "result": None,
                "error": None,
                "outputs": [],
            }
        )
        return self._entries[-1]

    def last(self, count: int | None = None, full: bool = False) -> list[dict[str, Any]]:
        """The last ``count`` entries (all when None); ``full`` keeps their cell outputs."""
        entries = list(self._entries)
        entries = entries if count is None else entries[-count:] if count > 0 else []
        if full:
            return entries
        return [{k: v for k, v in e.items() if k != "cell_outputs"} for e in entries]

    def __len__(self) -> int:
        return len(self._entries)
