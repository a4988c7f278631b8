"""The tail of a run's output while it runs, readable from outside the session's process.

A session is one busy thread while it runs code, so it cannot answer "what has it printed so
far?". Instead, every write is also fed into a small in-memory tail, and a helper thread copies
that tail to a per-process file a few times a second (only while a run is in progress, and only
when something changed). The front end (or the node agent, for a session on another node) reads
the file for progress notifications and for ``get_run`` on background runs. The first line of
the file is the run's token, so a reader never mistakes one run's output for another's.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections import deque
from pathlib import Path

TAIL_CHARS = 4000
FLUSH_INTERVAL = 0.25


def live_file(pid: int) -> Path:
    return Path(tempfile.gettempdir()) / f"raykernel-live-{os.getuid()}-{pid}"


def read_tail(pid: int, token: str | None = None) -> str | None:
    """The output tail of the run in progress in ``pid`` (of run ``token`` only, if given);
    None when no run's output is there."""
    try:
        text = live_file(pid).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    head, _, tail = text.partition("\n")
    if token is not None and head != token:
        return None
    return tail


def clear_live_file(pid: int) -> None:
    """Remove what a session process that was killed mid-run left behind."""
    path = live_file(pid)
    for leftover in (path, path.with_name(path.name + ".tmp")):
        try:
            leftover.unlink()
        except OSError:
            pass


class LiveTail:
    def __init__(self, pid: int | None = None, limit: int = TAIL_CHARS) -> None:
        self.path = live_file(pid if pid is not None else os.getpid())
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
            self._dirty = True
        self._running.set()
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="raykernel-live", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """The run is over (its reply carries the whole output): forget the file."""
        self._running.clear()
        with self._lock:
            self._token = ""
            self._dirty = False
            try:
                self.path.unlink()
            except OSError:
                pass

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
            payload = self._token + "\n" + "".join(self._chunks)[-self.limit :]
            self._dirty = False
            # Under the lock: stop() must not delete the file and then see it written again.
            tmp = self.path.with_name(self.path.name + ".tmp")
            try:
                tmp.write_text(payload, encoding="utf-8", errors="replace")
                os.replace(tmp, self.path)
            except OSError:
                pass
