"""One small actor per node, pinned there: it delivers interrupts to session processes on its
node. A busy session cannot take calls (one thread), and SIGINT must come from its own node."""

from __future__ import annotations

import ray

from raykernel.interrupts import request_interrupt


class NodeAgent:
    def ping(self) -> bool:
        return True

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
