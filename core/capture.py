"""Output capture with a hard cap, so endless printing cannot exhaust memory anywhere."""

from __future__ import annotations

import io
import threading
from collections.abc import Callable


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
