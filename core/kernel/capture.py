"""What a run leaves behind, captured, and the tail of its output while it runs.

Captured: its output (with a hard cap, so endless printing cannot exhaust memory anywhere) and
the files it creates under outputs/.

The tail, published to the kernel's parent: a kernel is one busy thread while it runs code, so
it cannot answer "what has it printed so far?". Every write of user output is also fed into a
small in-memory tail, and a helper thread publishes that tail (with the run's token, so a reader
never mistakes one run's output for another's) a few times a second, only while a run is in
progress and only when it changed. The session actor keeps the last one, for progress
notifications and for ``get_run`` on background runs, and answers for it while the run goes on.
"""

from __future__ import annotations

import io
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any


class CappedStream(io.TextIOBase):
    """A text stream that keeps the first ``limit`` characters and counts the rest."""

    def __init__(
        self, limit: int, name: str = "<stdout>", mirror: Callable[[str], None] | None = None
    ) -> None:
        super().__init__()
        self._mirror = mirror
        self._limit = limit
        self._parts: list[str] = []
        self._size = 0
        self._dropped = 0
        self._lock = threading.Lock()  # user code may print from its own threads
        self.name = name

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        if self._mirror is not None:  # the live tail sees output past the cap too
            self._mirror(text)
        with self._lock:
            room = self._limit - self._size
            if room > 0:
                kept = text[:room]
                self._parts.append(kept)
                self._size += len(kept)
                self._dropped += len(text) - len(kept)
            else:
                self._dropped += len(text)
        return len(text)

    def flush(self) -> None:
        pass

    @property
    def truncated(self) -> bool:
        return self._dropped > 0

    def getvalue(self) -> str:
        with self._lock:
            text = "".join(self._parts)
            if self._dropped:
                text += f"\n[... output truncated: {self._dropped} more characters ...]\n"
            return text


def truncate_text(text: str, limit: int) -> str:
    """Cut ``text`` to ``limit`` characters, saying how much was dropped."""
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n[... truncated: {len(text) - limit} more characters ...]"


class WriteWatcher:
    """Collects files opened for writing under one folder while a run is in progress.

    An audit hook sees every ``open``/``os.rename`` in the process for the price of a comparison,
    which is far cheaper than walking outputs/ before and after every run.
    """

    _active: WriteWatcher | None = None
    _installed = False

    def __init__(self, folder: Path) -> None:
        self.prefix = str(folder) + os.sep
        self.created: dict[str, None] = {}

    def __enter__(self) -> WriteWatcher:
        if not WriteWatcher._installed:
            sys.addaudithook(WriteWatcher._hook)
            WriteWatcher._installed = True
        WriteWatcher._active = self
        return self

    def __exit__(self, *exc: object) -> None:
        WriteWatcher._active = None

    @staticmethod
    def _hook(event: str, args: tuple[Any, ...]) -> None:
        watcher = WriteWatcher._active
        if watcher is None:
            return
        if event == "open":
            path, mode, flags = args
            writing = (mode and any(c in mode for c in "wax+")) or (
                flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
            )
            if writing:
                watcher._note(path)
        elif event in ("os.rename", "shutil.copyfile", "shutil.copytree"):
            watcher._note(args[1])

    def _note(self, path: object) -> None:
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        if not isinstance(path, str | os.PathLike):
            return
        full = os.path.abspath(path)
        if full.startswith(self.prefix) and full not in self.created:
            if not os.path.exists(full):
                self.created[full] = None

    def files(self, root: Path) -> list[str]:
        return [os.path.relpath(p, root) for p in self.created if os.path.isfile(p)]


TAIL_CHARS = 4000
FLUSH_INTERVAL = 0.25

Publish = Callable[[str, str], None]  # (token, tail)


class LiveTail:
    def __init__(self, publish: Publish, limit: int = TAIL_CHARS) -> None:
        self.publish = publish
        self.limit = limit
        self._chunks: deque[str] = deque()
        self._size = 0
        self._token = ""
        self._dirty = False
        self._lock = threading.Lock()
        self._running = threading.Event()
        self._thread: threading.Thread | None = None

    def feed(self, text: str) -> None:
        """Called on every write of user output: cheap, keeps only the last ``limit`` chars."""
        with self._lock:
            self._chunks.append(text)
            self._size += len(text)
            while self._size - len(self._chunks[0]) >= self.limit:
                self._size -= len(self._chunks.popleft())
            self._dirty = True

    def start(self, token: str) -> None:
        with self._lock:
            self._chunks.clear()
            self._size = 0
            self._token = token
            self._dirty = False
        self._running.set()
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="raykernel-live", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """The run is over (its reply carries the whole output)."""
        self._running.clear()
        with self._lock:
            self._token = ""
            self._dirty = False

    def text(self) -> str:
        with self._lock:
            return "".join(self._chunks)[-self.limit :]

    def _loop(self) -> None:
        while True:
            self._running.wait()
            self._flush()
            time.sleep(FLUSH_INTERVAL)

    def _flush(self) -> None:
        with self._lock:
            if not self._dirty or not self._token:
                return
            token, text = self._token, "".join(self._chunks)[-self.limit :]
            self._dirty = False
        try:
            self.publish(token, text)
        except OSError:
            pass  # the parent is gone; the kernel is about to be
