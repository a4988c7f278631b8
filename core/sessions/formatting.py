"""Small text forms shared by the router's parts: an exception's first line, ISO times."""

from __future__ import annotations

from datetime import UTC, datetime


def first_line(text: str) -> str:
    return text.strip().splitlines()[0][:500] if text.strip() else "unknown"


def iso_time(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).isoformat()
