"""The tail of a run's output while it runs, published to the kernel's parent.

A kernel is one busy thread while it runs code, so it cannot answer "what has it printed so
far?". Every write of user output is also fed into a small in-memory tail, and a helper thread
publishes that tail (with the run's token, so a reader never mistakes one run's output for
another's) a few times a second, only while a run is in progress and only when it changed. The
session actor keeps the last one, for progress notifications and for ``get_run`` on background
runs, and answers for it while the run goes on.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

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
