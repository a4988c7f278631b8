"""A session served by the front end itself, before (or without) Ray.

On a laptop most people only ever use the "default" session, and Ray (several processes and a
few hundred MiB) is what a first call would wait for. So in embedded mode the default session's
``SessionActor`` runs in the front end's own process, on its event loop, and its kernel is the
front end's child: the same host, kernel and confinement as in a Ray actor, reached through the
same ``SessionHandle``. Ray starts when something needs an actor (a second session).

``LocalActor`` gives that in-process object the calling convention of a Ray actor handle
(``actor.method.remote(*args)``), and ``LocalRef`` stands for an object ref: an asyncio task.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any


class LocalRef:
    """The pending result of a call to a local actor (what an ``ObjectRef`` is for Ray)."""

    def __init__(self, task: asyncio.Future[Any]) -> None:
        self.task = task


class _Method:
    def __init__(self, actor: Any, name: str) -> None:
        self._call = getattr(actor, name)

    def remote(self, *args: Any) -> LocalRef:
        return LocalRef(asyncio.ensure_future(self._run(args)))

    async def _run(self, args: tuple[Any, ...]) -> Any:
        return await self._call(*[await resolve(arg) for arg in args])


class LocalActor:
    """An actor object living in this process, called like a Ray actor handle."""

    def __init__(self, actor: Any) -> None:
        self.actor = actor

    def __getattr__(self, name: str) -> _Method:
        if name.startswith("_"):
            raise AttributeError(name)
        return _Method(self.actor, name)


async def resolve(value: Any) -> Any:
    """An argument as its receiver needs it: a local ref's value; a Ray ref's, when the
    receiver is local (Ray resolves refs only for its own actors)."""
    if isinstance(value, LocalRef):
        return await value.task
    ray = sys.modules.get("ray")
    if ray is not None and isinstance(value, ray.ObjectRef):
        return await value
    return value
