"""The threads that do a tenant's file work, each confined to that tenant's folders.

The front end and the session's actor hold the server user's rights (its home, Ray's token,
every tenant's workspace) and act on paths that session code can influence: the files it
wrote, the links it planted, what its kernel replied. Checking a path before using it is what
``raykernel.beneath`` does; a deputy is the second wall, for the day a check is wrong: the
thread that opens, writes, lists or deletes a tenant's files has given up every folder but
the tenant's own (Landlock, which binds the calling thread and the threads it starts, never
the process's other threads). A fooled deputy still reads neither Ray's token nor another
tenant's files, because its thread cannot open them.

One ``Deputy`` serves one set of folders (an identity's workspace in the front end; a
session's workspace and its owner's folders in the store, in the actor); ``deputy_for``
keeps the front end's, a few at a time. Where Landlock is missing, the work still runs, and
``confinement`` says so (the file tools report it, the isolation report too).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import functools
import os
import sys
import sysconfig
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from .kernel import landlock

T = TypeVar("T")

# Each deputy's own threads: one identity's 300k-file delete must not hold another's calls.
THREADS = 2
# The front end keeps this many identities' deputies; the least recently used goes first.
KEPT = 64


def _python_folders() -> tuple[Path, ...]:
    """What a deputy thread may read besides its tenant's folders: Python's own libraries
    (a lazy import on that thread must work), never the current folder or a home."""
    import raykernel

    found = {sysconfig.get_paths()[key] for key in ("stdlib", "platstdlib", "purelib", "platlib")}
    found |= {os.path.dirname(os.__file__), os.path.dirname(raykernel.__file__)}
    # An editable checkout maps raykernel.plugins and raykernel.actors to folders of its own.
    for module in ("raykernel.plugins", "raykernel.actors"):
        spec = sys.modules.get(module)
        if spec is not None and getattr(spec, "__file__", None):
            found.add(os.path.dirname(spec.__file__))
    return tuple(Path(p) for p in sorted(found) if p and os.path.isdir(p))


class Deputy:
    """Threads confined to ``folders`` (read and write) and Python's libraries (read)."""

    def __init__(self, folders: Iterable[Path], threads: int = THREADS) -> None:
        self.folders = tuple(Path(os.path.realpath(f)) for f in folders)
        self._rules = landlock.Rules(read=_python_folders(), write=self.folders)
        self._outcome: str | None = None
        # What its owner last found it to be (``confinement`` and a probe), for reports.
        self.report: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=threads, thread_name_prefix="raykernel-deputy", initializer=self._confine
        )

    def _confine(self) -> None:
        try:
            abi = landlock.restrict_self(self._rules)
            outcome = f"landlock ABI {abi}"
        except landlock.LandlockUnavailable as exc:
            outcome = f"unavailable: {exc}"
        with self._lock:
            # Every thread of the pool must be confined alike: one that could not be is named.
            if self._outcome is None or self._outcome.startswith("landlock"):
                self._outcome = outcome

    @property
    def confinement(self) -> dict[str, Any]:
        """How this deputy's threads are held (``unknown`` until its first call)."""
        return {
            "by": self._outcome or "unknown",
            "folders": [str(f) for f in self.folders],
        }

    def probe(self, paths: Iterable[str]) -> dict[str, str]:
        """Whether this deputy's threads can open each of ``paths`` (for the isolation report:
        what was tried, not what the rules mean to do)."""

        def opens(path: str) -> str:
            try:
                os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK))
            except PermissionError:
                return "denied"
            except OSError as exc:
                return f"not there ({exc.strerror})"
            return "opened"

        return {path: self.call(opens, path) for path in paths}

    async def run(self, work: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(work, *args))

    def call(self, work: Callable[..., T], *args: Any) -> T:
        """``work(*args)`` on a deputy thread, waited for here (a caller with no event loop)."""
        return self._pool.submit(work, *args).result()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=False)


_kept: collections.OrderedDict[tuple[Path, ...], Deputy] = collections.OrderedDict()
_kept_lock = threading.Lock()


def deputy_for(*folders: Path) -> Deputy:
    """This process's deputy for ``folders``, made on first use (at most ``KEPT`` are kept)."""
    key = tuple(Path(os.path.realpath(f)) for f in folders)
    with _kept_lock:
        found = _kept.get(key)
        if found is None:
            found = _kept[key] = Deputy(key)
            while len(_kept) > KEPT:
                _kept.popitem(last=False)[1].close()
        _kept.move_to_end(key)
        return found
