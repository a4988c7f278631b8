"""The front end's view of the ``environments`` setting: a name to the interpreter a session's
kernel runs, checked once (its version, and that the kernel's code imports there) before any
session is created in it, so that a bad one is refused at create_session with the reason."""

from __future__ import annotations

import asyncio
from typing import Any

from raykernel.errors import InvalidArgument
from raykernel.kernel.environments import EnvironmentRefused, probe, support_folders
from raykernel.settings import Settings


class EnvironmentTable:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._found: dict[str, dict[str, str]] = {}
        self._lock = asyncio.Lock()

    async def find(self, name: str) -> dict[str, str]:
        """The environment ``name`` as a claim carries it; ``InvalidArgument`` naming the
        configured ones, or saying why this one cannot run a kernel."""
        place = self.settings.environments.get(name)
        if place is None:
            known = ", ".join(sorted(self.settings.environments)) or "none are configured"
            raise InvalidArgument(f"no environment named {name!r} (environments: {known})")
        async with self._lock:
            if name not in self._found:
                self._found[name] = await asyncio.to_thread(self._probe, name, place)
        return self._found[name]

    def _probe(self, name: str, place: str) -> dict[str, Any]:
        first, last, _ = support_folders(self.settings.store / "environment-links")
        try:
            return probe(name, place, first, last).as_dict()
        except EnvironmentRefused as exc:
            raise InvalidArgument(f"environment {name!r}: {exc}") from None
