"""One small actor per node, pinned there: it does for the front end what must happen on the
session's own node while the session may be busy (one thread): delivering SIGINT, measuring the
process, and reading or writing the workspace as that node sees it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psutil
import ray

from raykernel.kernel.interrupts import request_interrupt
from raykernel.kernel.live_output import read_tail
from raykernel.workspace import OPERATIONS, Workspace


class NodeAgent:
    def __init__(self) -> None:
        # Kept between calls: psutil's cpu_percent measures since the previous call.
        self._processes: dict[int, psutil.Process] = {}

    def ping(self) -> bool:
        return True

    def measure(self, pid: int) -> dict[str, Any]:
        """Memory (RSS) and CPU of a session process on this node, read by PID: this answers
        while the session itself is busy running code."""
        process = self._processes.get(pid)
        try:
            if process is None:
                process = self._processes[pid] = psutil.Process(pid)
                process.cpu_percent(None)
            with process.oneshot():
                return {
                    "memory_usage": process.memory_info().rss,
                    "cpu_percent": process.cpu_percent(None),
                }
        except psutil.Error:
            self._processes.pop(pid, None)
            return {"memory_usage": None, "cpu_percent": None}

    def tail(self, pid: int, token: str) -> str | None:
        """The output so far of run ``token`` in session process ``pid`` on this node."""
        return read_tail(pid, token)

    def interrupt(self, pid: int, token: str) -> bool:
        """Ask run ``token`` in process ``pid`` to stop; False if the process is gone."""
        if pid <= 0:  # os.kill(0 or -n, ...) would signal whole process groups
            raise ValueError(f"not a process id: {pid}")
        try:
            request_interrupt(pid, token)
        except ProcessLookupError:
            return False
        return True

    def workspace(self, root: str, max_file_bytes: int, op: str, *args: Any) -> dict[str, Any]:
        """``Workspace(root).<op>(*args)`` on this node; typed errors travel back as they are.
        The same containment checks run here, against this node's filesystem."""
        if op not in OPERATIONS:
            raise ValueError(f"unknown workspace operation {op!r}")
        reply = getattr(Workspace(Path(root), max_file_bytes), op)(*args)
        reply["node_id"] = ray.get_runtime_context().get_node_id()
        return reply


RemoteNodeAgent = ray.remote(NodeAgent)
