"""Memory pressure on a node: the session that uses the memory is the one stopped.

Ray's memory monitor sees actors, not their kernels (the kernels are the actors' children), so
on its own it kills whichever actor it likes best, an idle bystander included. A guard per
node does the accounting where a decision can see it: every kernel's whole process tree. When
the node passes its high-water mark (or the sessions together pass ``session_memory_budget``),
it stops the run of the biggest session that is running code (its reply a ``MemoryError``, its
variables kept; its run book replaces the kernel if the code will not stop), then the next,
until the node is back under. Past the critical mark, with no run left to stop, it kills the
biggest kernel and says why. Idle sessions below the critical mark are never touched: they are
not what grows.

The guard is the front end on an embedded server (one node: the machine) and a small actor per
node on a cluster; both feed it the same entries (``Watched``). Plain Python, no Ray.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from .errors import NodeFull

log = logging.getLogger(__name__)

INTERVAL = 0.25  # seconds between looks at the node (Ray's own monitor: 250 ms)
PID_REFRESH = 5.0  # seconds a session's kernel PID is taken as known
# Under the node's own pressure, a session using less than this share of it is not blamed.
BLAME_SHARE = 0.05
# After a stop or a kill, how long memory has to come back before anything else is stopped.
SETTLE = 0.75
_CGROUP = Path("/sys/fs/cgroup")


def node_memory() -> tuple[int, int]:
    """(used, total) bytes of this node as the OOM killer will see it: the cgroup's limit and
    usage when this process runs in one that has a limit (a container), else the machine's
    (used: what is not available)."""
    with contextlib.suppress(OSError, ValueError):
        limit = (_CGROUP / "memory.max").read_text().strip()
        if limit != "max":
            current = int((_CGROUP / "memory.current").read_text())
            inactive = 0
            for line in (_CGROUP / "memory.stat").read_text().splitlines():
                if line.startswith("inactive_file "):
                    inactive = int(line.split()[1])
            return max(current - inactive, 0), int(limit)
    vm = psutil.virtual_memory()
    return vm.total - vm.available, vm.total


def critical_mark(high_water: float) -> float:
    """Halfway from the high-water mark to full: past it, with no run left to stop, the
    biggest kernel is killed, and no session starts on the node (0.925 for the default 0.85,
    below Ray's own 0.95)."""
    return high_water + (1 - high_water) / 2


def refuse_if_full(high_water: float) -> None:
    """A node about to run out of memory (past the guard's critical mark, halfway from its
    high-water mark to full) takes no new, resumed or forked session: it would only be the
    next one stopped. Below that the guard's stops keep the node in hand (a laptop whose
    browser fills it must still start a session). ``high_water`` 0: no check."""
    if not high_water:
        return
    mark = critical_mark(high_water)
    used, total = node_memory()
    if used / total >= mark:
        raise NodeFull(
            f"this node ({socket.gethostname()}) has {used / 2**30:.1f} GiB of "
            f"{total / 2**30:.1f} GiB in use ({used / total:.0%}), past the memory guard's "
            f"critical mark of {mark:.0%}: no session starts here until memory is freed"
        )


def tree_sizes(roots: Iterable[int]) -> dict[int, int]:
    """Resident bytes of each root process with everything it started, in one pass over the
    process table (a session's children count against it)."""
    wanted = set(roots)
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for process in psutil.process_iter(["pid", "ppid", "memory_info"]):
        info = process.info
        if info["memory_info"] is None:
            continue
        rss[info["pid"]] = info["memory_info"].rss
        children.setdefault(info["ppid"], []).append(info["pid"])
    sizes = {}
    for root in wanted:
        if root not in rss:
            continue
        total, stack, seen = 0, [root], set()
        while stack:
            pid = stack.pop()
            if pid in seen:
                continue
            seen.add(pid)
            total += rss.get(pid, 0)
            stack.extend(children.get(pid, ()))
        sizes[root] = total
    return sizes


@dataclass
class Watched:
    """One session as the guard sees it, and what the guard may do to it."""

    key: str  # the session's qualified id
    owner: str
    # Its kernel's host PID and whether it runs code now (asked of its actor).
    report: Callable[[], Awaitable[dict[str, Any]]]
    # Stop the run in progress / kill the kernel, because of this ("node x has ... in use").
    stop: Callable[[str], Awaitable[Any]]
    kill: Callable[[str], Awaitable[Any]]


@dataclass
class _Seen:
    watched: Watched
    pid: int
    running: bool
    size: int = 0


@dataclass
class MemoryGuard:
    """The decisions, given what the node and its sessions use; ``check`` acts on them."""

    high_water: float = 0.85
    budget: int | None = None  # bytes all sessions' kernels may use together on the node
    node: str = "this node"
    grace: float = 3.0  # a stopped session's run book has this long to stop it for good
    # session key -> when its run was stopped (or its kernel killed)
    stopped: dict[str, float] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    _pids: dict[str, dict[str, Any]] = field(default_factory=dict)
    _pids_at: float = -1e9

    @property
    def critical(self) -> float:
        return critical_mark(self.high_water)

    def pressure(self, used: int, total: int, sessions: int) -> tuple[float, str, int]:
        """How full the node is (0..1) by the stricter of its memory and the sessions'
        budget, a sentence saying which, and how big a session must be to be blamed: when
        the node is full of something else (a browser on a laptop), a session using little
        is not the cause, and its runs are left alone."""
        node = used / total if total else 0.0
        share = sessions / self.budget if self.budget else 0.0
        if share > node:
            why = (
                f"the sessions on {self.node} use {_gib(sessions)} together, "
                f"{share:.0%} of their budget of {_gib(self.budget or 0)}"
            )
            return share, why, 0
        why = f"{self.node} has {_gib(used)} of {_gib(total)} in use ({node:.0%})"
        return node, why, int(total * BLAME_SHARE)

    async def check(self, entries: list[Watched]) -> list[str]:
        """Look at the node once; stop or kill what must be. Returns the keys acted on."""
        used, total = node_memory()
        if not entries or (self.budget is None and used / total < self.high_water):
            return []
        now = time.monotonic()
        # The kernels' PIDs change only when a session comes, goes or restarts.
        if now - self._pids_at > PID_REFRESH or {e.key for e in entries} != set(self._pids):
            self._pids = await self._reports(entries)
            self._pids_at = now
        sizes = await asyncio.to_thread(tree_sizes, self._kernel_pids())
        level, why, least = self.pressure(used, total, sum(sizes.values()))
        if level < self.high_water:
            return []
        if any(now - at < SETTLE for at in self.stopped.values()):
            return []  # what was just stopped is giving its memory back
        # Above the mark: who runs code now, asked of each session (and its PID afresh).
        self._pids = await self._reports(entries)
        self._pids_at = now
        sizes = await asyncio.to_thread(tree_sizes, self._kernel_pids())
        ranked = sorted(
            (
                _Seen(entry, report["kernel_pid"], bool(report.get("running")), sizes[pid])
                for entry in entries
                if (report := self._pids.get(entry.key))
                and (pid := report.get("kernel_pid")) in sizes
            ),
            key=lambda s: s.size,
            reverse=True,
        )
        ranked = [s for s in ranked if s.size >= least]
        # A run stopped a moment ago is its run book's to finish (it replaces a kernel whose
        # code will not stop): the next biggest is stopped meanwhile if the node stays full.
        running = [
            s
            for s in ranked
            if s.running and now - self.stopped.get(s.watched.key, -1e9) >= self.grace
        ]
        if running:
            return await self._act("stop", running[0], ranked, why, level, now)
        if level >= self.critical and ranked:
            return await self._act("kill", ranked[0], ranked, why, level, now)
        return []

    async def _act(
        self, action: str, target: _Seen, ranked: list[_Seen], why: str, level: float, now: float
    ) -> list[str]:
        reason = self._reason(target, ranked, why)
        self.stopped[target.watched.key] = now
        self._note(action, target, level)
        act = target.watched.stop if action == "stop" else target.watched.kill
        await _quietly(act(reason))
        return [target.watched.key]

    def _kernel_pids(self) -> list[int]:
        return [int(r["kernel_pid"]) for r in self._pids.values() if r.get("kernel_pid")]

    async def _reports(self, entries: list[Watched]) -> dict[str, dict[str, Any]]:
        """Each session's kernel PID and whether it runs code (sessions that cannot say, or
        have no kernel, are left out)."""
        reports = await asyncio.gather(*(e.report() for e in entries), return_exceptions=True)
        return {
            entry.key: report if isinstance(report, dict) and report.get("kernel_pid") else {}
            for entry, report in zip(entries, reports, strict=True)
        }

    def _reason(self, target: _Seen, ranked: list[_Seen], why: str) -> str:
        """Why, in numbers: the node, this session's use, and the others' (named only when
        they are the same owner's: another tenant's session names are not this one's to see)."""
        others = []
        for item in ranked:
            if item is target:
                continue
            name = item.watched.key if item.watched.owner == target.watched.owner else "another"
            others.append(f"{name} {_gib(item.size)}")
        rest = f"; the others: {', '.join(others[:8])}" if others else ""
        return (
            f"{why}, past the memory guard's high-water mark of {self.high_water:.0%}, and this "
            f"session used the most ({_gib(target.size)}{rest})"
        )

    def _note(self, action: str, target: _Seen, level: float) -> None:
        log.warning(
            "memory guard (%s at %.0f%%): %s session %s (%s)",
            self.node,
            level * 100,
            action,
            target.watched.key,
            _gib(target.size),
        )
        self.events.append({"action": action, "session": target.watched.key, "size": target.size})
        del self.events[:-50]


async def watch(
    guard: MemoryGuard,
    entries: Callable[[], list[Watched]],
    interval: float = INTERVAL,
) -> None:
    """Run ``guard`` forever over what ``entries()`` gives."""
    while True:
        await asyncio.sleep(interval)
        try:
            await guard.check(entries())
        except Exception:  # the watch must outlive any one look at the node
            log.exception("memory guard check failed")


async def _quietly(action: Awaitable[Any]) -> None:
    try:
        await action
    except Exception as exc:
        log.warning("memory guard could not act: %s", exc)


def _gib(size: int) -> str:
    return f"{size / 2**30:.2f} GiB" if size >= 2**30 else f"{size / 2**20:.0f} MiB"
