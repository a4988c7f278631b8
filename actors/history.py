"""A session's execution history: what ran, how it ended, when, and the start of its output.

Bounded (the last ``MAX_ENTRIES`` runs, each output cut to ``OUTPUT_CHARS``) so a long-lived
session cannot grow without limit. It is kept by the session's actor, beside its kernel, not in
it: one timeline that a kernel's death, a restart or a restore does not cut (a run that killed
its kernel stays in it, marked ``crashed`` with what was restored after it); hibernation images
and, for sessions that keep checkpoints, the checkpoint store carry it further.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from raykernel.kernel.capture import truncate_text
from raykernel.replies import cell_outputs

MAX_ENTRIES = 500
OUTPUT_CHARS = 2000
CODE_CHARS = 20_000


class History:
    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self._entries: deque[dict[str, Any]] = deque(maxlen=max_entries)
        # Where the timeline is: its last run's count (a new kernel goes on from it, the
        # session's runs are counted here) and when that run ended.
        self.execution_count = 0
        self.last_execution_time: float | None = None

    def record(
        self,
        code: str,
        reply: dict[str, Any],
        started_at: float,
        status: str | None = None,
        upstream: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """Add the run ``reply`` answered (``status``: ``crashed`` for one that killed its
        kernel; ``upstream``: the upstream MCP tools its code called); the entry as kept."""
        error = reply.get("error")
        if status is None:
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
        if upstream:
            self._entries[-1]["upstream_calls"] = upstream
        return self._entries[-1]

    def crashed_then(self, restored: dict[str, Any] | None) -> dict[str, Any] | None:
        """Say, in the last crashed run's entry, what came back after it: the checkpoint's run,
        or nothing. The entry, or None when the last run did not crash."""
        if not self._entries or self._entries[-1]["status"] != "crashed":
            return None
        entry = self._entries[-1]
        entry["restored"] = (
            {"state_preserved": "checkpoint", "to_execution": restored["execution_count"]}
            if restored
            else {"state_preserved": False}
        )
        return entry

    def load(self, entries: list[dict[str, Any]]) -> None:
        """Entries a hibernated session (or the checkpoint store) saved, back in place."""
        self._entries.clear()
        self._entries.extend(entries)

    def note(self, text: str) -> dict[str, Any]:
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
        return self._entries[-1]

    def last(self, count: int | None = None, full: bool = False) -> list[dict[str, Any]]:
        """The last ``count`` entries (all when None); ``full`` keeps their cell outputs."""
        entries = list(self._entries)
        entries = entries if count is None else entries[-count:] if count > 0 else []
        if full:
            return entries
        return [{k: v for k, v in e.items() if k != "cell_outputs"} for e in entries]

    def __len__(self) -> int:
        return len(self._entries)
