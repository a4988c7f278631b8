"""The front end's view of the ``environments`` setting: a name to the interpreter a session's
kernel runs, checked once (its version, and that the kernel's code imports there) before any
session is created in it, so that a bad one is refused at create_session with the reason."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path
from typing import Any

from raykernel.actors.environments import EnvironmentRefused, probe, support_folders
from raykernel.errors import InvalidArgument
from raykernel.settings import Settings, default_ray_temp


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
        first, last, targets = support_folders(self.settings.store / "environment-links")
        scratch = Path(tempfile.mkdtemp(prefix="raykernel-probe-"))
        network = self.settings.session_network
        sandbox = {
            "isolation": self.settings.isolation,
            "network": network if isinstance(network, str) else "off",
            "write": [str(scratch)],
            "read": [*targets, str(Path(first[0]).parent)],
            # Ray's folder on this node, with its sockets, as a kernel has it hidden.
            "hide": [str(p) for p in [default_ray_temp()] if p.exists()],
        }
        try:
            return probe(name, place, first, last, sandbox).as_dict()
        except EnvironmentRefused as exc:
            raise InvalidArgument(f"environment {name!r}: {exc}") from None
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
