"""The nodes sessions run on: which one is this front end's, and whether one is alive.

Everything that must happen on a session's own node while the session is busy (an interrupt,
a measurement, the live output tail, a file operation) is asked of the session's actor, which
answers while its kernel runs code: no helper actor per node is needed.
"""

from __future__ import annotations

from .ray_runtime import RayRuntime


class Nodes:
    def __init__(self, runtime: RayRuntime) -> None:
        self.runtime = runtime

    @property
    def local_id(self) -> str | None:
        """This front end's node (None until Ray is up)."""
        return self.runtime.node_id

    def is_local(self, node_id: str | None) -> bool:
        return node_id is not None and node_id == self.runtime.node_id

    def alive(self, node_id: str | None) -> bool:
        """Whether Ray counts ``node_id`` alive (blocking: one GCS call)."""
        import ray

        try:
            return any(n["NodeID"] == node_id and n["Alive"] for n in ray.nodes())
        except Exception:
            return True  # cannot tell: do not claim the node is lost

    def alive_count(self) -> int:
        """How many nodes Ray counts alive (blocking: one GCS call)."""
        import ray

        return sum(1 for n in ray.nodes() if n["Alive"])
