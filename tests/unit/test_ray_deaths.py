"""Every Ray error that means a session's actor is gone is a death (ActorDied, then KernelDied
for the caller), not an internal fault: Ray's own exception classes, as Ray raises them."""

from __future__ import annotations

import pytest
import ray

from raykernel.sessions.handle import ActorDied, _raise_translated

# The raylet's words when its memory monitor kills a worker (Ray 2.60).
OOM = (
    "Task was killed due to the node running low on memory.\n"
    "Memory on the node (IP: 10.0.3.7, ID: 5e2f) where the task (actor ID: 77, name=raykernel-"
    "session:x, pid=4242, memory used=0.05GB) was running was 22.91GB / 24.00GB (0.954583), "
    "which exceeds the memory usage threshold of 0.95. Ray killed this worker (ID: 9a) because "
    "it was the most recently scheduled task."
)


@pytest.mark.parametrize(
    "error",
    [
        ray.exceptions.OutOfMemoryError(OOM),
        ray.exceptions.ActorDiedError(),
        ray.exceptions.ActorUnavailableError("the actor is unavailable", b"\x00" * 16),
        ray.exceptions.WorkerCrashedError(),
        ray.exceptions.NodeDiedError("node 10.0.3.7 died"),
        ray.exceptions.LocalRayletDiedError(),
    ],
    ids=lambda e: type(e).__name__,
)
def test_a_gone_actor_is_a_death(error: Exception) -> None:
    with pytest.raises(ActorDied):
        _raise_translated(error)


def test_rays_memory_monitor_kill_says_which_node_and_how_full() -> None:
    with pytest.raises(ActorDied) as info:
        _raise_translated(ray.exceptions.OutOfMemoryError(OOM))
    reason = info.value.reason
    assert "node 10.0.3.7 ran low on memory" in reason
    assert "22.91GB of 24.00GB" in reason


def test_anything_else_is_still_an_internal_fault() -> None:
    with pytest.raises(RuntimeError):
        _raise_translated(ray.exceptions.RaySystemError("a bug"))
