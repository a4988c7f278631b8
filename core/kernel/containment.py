"""What a kernel process does to itself so that its failures stay its own: a memory limit
that turns into MemoryError, a process group that holds everything it starts, a bound on its
child processes, and a note of how it died."""

from __future__ import annotations

import contextlib
import faulthandler
import os
import resource
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import psutil

# faulthandler's first line names the fatal signal.
_FATAL = {
    "Segmentation fault": "SIGSEGV",
    "Aborted": "SIGABRT",
    "Bus error": "SIGBUS",
    "Floating-point exception": "SIGFPE",
    "Floating point exception": "SIGFPE",
    "Illegal instruction": "SIGILL",
}


def record_crashes() -> None:
    """Make a fatal signal or ``os._exit`` leave a note on stderr, which the kernel's parent
    keeps the end of and reads after the death."""
    faulthandler.enable(file=sys.__stderr__, all_threads=False)
    real_exit = os._exit

    def _exit(status: int) -> None:
        with contextlib.suppress(Exception):
            os.write(2, f"\nraykernel: os._exit({status})\n".encode())
        real_exit(status)

    _exit.__wrapped__ = real_exit  # type: ignore[attr-defined]
    os._exit = _exit  # type: ignore[assignment]


def death_reason(stderr_tail: str, returncode: int | None) -> str:
    """How a kernel died, from the end of its stderr and its exit status."""
    for line in reversed(stderr_tail.splitlines()):
        if line.startswith("raykernel: os._exit("):
            return f"the code called {line.removeprefix('raykernel: ')}"
        if line.startswith("Fatal Python error:"):
            what = line.split(":", 1)[1].strip()
            name = _FATAL.get(what)
            return f"killed by signal {name} ({what})" if name else f"fatal error: {what}"
    if returncode is not None and returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        hint = " (out of memory?)" if name == "SIGKILL" else ""
        return f"killed by {name}{hint}"
    if returncode is not None:
        return f"the process exited with status {returncode}"
    return "the process ended"


def lead_process_group() -> int:
    """Make this process the leader of a new process group; return the group id."""
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)
    return os.getpgid(0)


def kill_process_group(pgid: int) -> None:
    """Kill every process left in group ``pgid`` (the session's leader is already gone)."""
    for _ in range(20):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            return
        except PermissionError:
            return
        time.sleep(0.05)


def limit_memory(limit: int) -> None:
    """Cap the heap (RLIMIT_DATA): allocations past it raise MemoryError in the user's code,
    long before Ray's node-wide memory monitor would kill the whole process."""
    if limit <= 0:
        return
    used = psutil.Process().memory_info().rss
    limit = max(limit, used + (64 << 20))
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))


class ChildWatch:
    """Bounds the number of processes user code keeps alive: past ``limit``, all of them are
    killed. Scans while code runs (where a runaway starts) and while children remain."""

    def __init__(
        self, process: psutil.Process, limit: int, running: Callable[[], Any], interval: float = 0.2
    ) -> None:
        self.process = process
        self.limit = limit
        self.running = running
        self.interval = interval
        self.killed = 0
        self._seen_children = False
        self._wake = threading.Event()
        if limit > 0:
            threading.Thread(target=self._watch, name="raykernel-childwatch", daemon=True).start()

    def run_starting(self) -> None:
        """Wake the watcher: an idle session's watcher sleeps without polling (a hundred idle
        sessions must cost nothing)."""
        self._wake.set()

    def _watch(self) -> None:
        while True:
            if self.running() is None and not self._seen_children:
                self._wake.wait()
                self._wake.clear()
            time.sleep(self.interval)
            try:
                children = self.process.children(recursive=True)
            except psutil.Error:
                continue
            self._seen_children = bool(children)
            if len(children) > self.limit:
                self._kill(children)

    def _kill(self, children: list[psutil.Process]) -> None:
        # Stop them all first so that none can fork while the others are being killed.
        for child in children:
            with contextlib.suppress(psutil.Error):
                child.suspend()
        for child in children:
            with contextlib.suppress(psutil.Error):
                child.kill()
        psutil.wait_procs(children, timeout=5)
        self.killed += len(children)

    def annotate(self, reply: dict[str, Any], killed_before: int) -> dict[str, Any]:
        killed = self.killed - killed_before
        if killed:
            reply["notice"] = (
                f"{killed} child processes were killed: the session passed its limit of "
                f"{self.limit} processes"
            )
        return reply
