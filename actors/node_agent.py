"""One small actor per node, pinned there: it delivers interrupts to session processes on its
node. A busy session cannot take calls (one thread), and SIGINT must come from its own node."""

from __future__ import annotations

from typing import Any

import psutil
import ray

from raykernel.interrupts import request_interrupt


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

    def interrupt(self, pid: int, token: str) -> bool:
        """Ask run ``token`` in process ``pid`` to stop; False if the process is gone."""
        if pid <= 0:  # os.kill(0 or -n, ...) would signal whole process groups
            raise ValueError(f"not a process id: {pid}")
        try:
            request_interrupt(pid, token)
        except ProcessLookupError:
            return False
        return True


RemoteNodeAgent = ray.remote(NodeAgent)
