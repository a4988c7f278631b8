"""Admission: the limits a new session or a new run must fit in (server-wide and per
identity), checked before anything is started."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from raykernel.errors import QuotaExceeded, SessionLimitReached
from raykernel.settings import Settings

from .record import SessionRecord


class Admission:
    def __init__(self, settings: Settings, sessions: dict[str, SessionRecord]) -> None:
        self.settings = settings
        self.sessions = sessions
        self._in_flight: dict[str, int] = {}  # runs running or queued, per identity

    def admit_session(self, owner: str) -> None:
        """Refuse a new session past ``max_sessions`` or the owner's quota."""
        if len(self.sessions) >= self.settings.max_sessions:
            raise SessionLimitReached(
                f"{len(self.sessions)} sessions exist, the maximum is "
                f"{self.settings.max_sessions}; delete one first"
            )
        quota = self.settings.max_sessions_per_identity
        held = sum(1 for record in self.sessions.values() if record.owner == owner)
        if quota is not None and held >= quota:
            raise QuotaExceeded(f"{owner!r} holds {held} sessions, the quota; delete one first")

    @contextlib.contextmanager
    def run(self, owner: str) -> Iterator[None]:
        """Count a run of ``owner``'s, running or queued, while it lasts; refuse one past
        ``max_concurrent_runs_per_identity``."""
        quota = self.settings.max_concurrent_runs_per_identity
        in_flight = self._in_flight.get(owner, 0)
        if quota is not None and in_flight >= quota:
            raise QuotaExceeded(
                f"the sessions of {owner!r} have {in_flight} runs in flight (running or "
                "queued), the quota; wait for one to finish"
            )
        self._in_flight[owner] = in_flight + 1
        try:
            yield
        finally:
            self._in_flight[owner] -= 1
