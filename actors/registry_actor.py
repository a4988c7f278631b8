"""The namespace's registry actor: a thin shell over ``RegistryState``, one per namespace,
named and detached, so that every front end (and a restarted one) finds the same one."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from raykernel.sessions.registry_state import REGISTRY_NAME, RegistryState


class RegistryActor(RegistryState):
    """Async: calls are served one at a time on the actor's event loop, in arrival order, and a
    ``wait_settled`` waits without holding anyone up."""

    async def perform(self, method: Callable[..., Any], *args: Any) -> Any:
        """The one entry of this wall: ``method`` is one of ``RegistryState``'s, sent by
        reference (see ``raykernel.sessions.registry``)."""
        if method not in OPERATIONS:
            raise ValueError(f"not an operation of the registry: {method!r}")
        result = method(self, *args)
        return await result if inspect.isawaitable(result) else result


OPERATIONS = frozenset(
    value for name, value in vars(RegistryState).items() if callable(value) and name[0] != "_"
)


def registry_actor(namespace: str) -> Any:
    """The namespace's registry actor, made if no front end has made it yet (blocking)."""
    import ray

    remote = ray.remote(RegistryActor)
    # On the head node: it goes when the cluster goes, not with a worker node.
    return remote.options(
        resources={"node:__internal_head__": 0.001},
        name=REGISTRY_NAME,
        namespace=namespace,
        lifetime="detached",
        get_if_exists=True,
        num_cpus=0,
        max_restarts=-1,  # a lost registry comes back empty; front ends register again
        max_task_retries=0,
        max_concurrency=1000,
    ).remote()
