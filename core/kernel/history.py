"""A session's execution history: what ran, how it ended, when, and the start of its output.

Bounded (the last ``MAX_ENTRIES`` runs, each output cut to ``OUTPUT_CHARS``) so a long-lived
session cannot grow without limit. It lives in the session: it survives a front-end restart on a
cluster, and it starts over when the session itself is restarted.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from raykernel.notebooks import cell_outputs

from .capture import truncate_text

MAX_ENTRIES = 500
OUTPUT_CHARS = 2000
CODE_CHARS = 20_000


class History:
    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self._entries: deque[dict[str, Any]] = deque(maxlen=max_entries)

    def record(self, code: str, reply: dict[str, Any], started_at: float) -> None:
        error = reply.get("error")
        if reply.get("interrupted"):
            status = "interrupted"
        elif error:
            status = "error"
        else:
            status = "ok"
        self._entries.append(
            {
                "execution_count": reply.get("execution_count"),
                "code": truncate_text(code, CODE_CHARS),
                "status": status,
                "started_at": started_at,
                "execution_time": reply.get("execution_time"),
                "stdout": truncate_text(reply.get("stdout") or "", OUTPUT_CHARS),
                "stderr": truncate_text(reply.get("stderr") or "", OUTPUT_CHARS),
                "result": truncate_text(reply["result"], OUTPUT_CHARS)
                if reply.get("result") is not None
                else None,
                "error": f"{error['ename']}: {truncate_text(error['evalue'], 500)}"
                if error
                else None,
                "outputs": list(reply.get("outputs") or []),
                # What Jupyter would have recorded (export_notebook), kept apart from the
                # short view that get_history shows.
                "cell_outputs": cell_outputs(reply),
            }
        )

    def load(self, entries: list[dict[str, Any]]) -> None:
        """Entries a hibernated session saved, back in place."""
        self._entries.clear()
        self._entries.extend(entries)

    def note(self, text: str) -> None:
        """Something that happened to the session between runs (a rewind)."""
        self._entries.append(
            {
                "execution_count": None,
                "code": "",
                "status": "note",
                "started_at": time.time(),
                "execution_time": 0.0,
                "stdout": text,
                "stderr": "",
                "result": None,
                "error": None,
                "outputs": [],
            }
        )

    def last(self, count: int | None = None, full: bool = False) -> list[dict[str, Any]]:
        """The last ``count`` entries (all when None); ``full`` keeps their cell outputs."""
        entries = list(self._entries)
        entries = entries if count is None else entries[-count:] if count > 0 else []
        if full:
            return entries
        return [{k: v for k, v in e.items() if k != "cell_outputs"} for e in entries]

    def __len__(self) -> int:
        return len(self._entries)
