"""What a tool plugin gets to work with: the router, the workspace, the settings, the caller."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .active import ActiveSessions, caller_key
from .router import SessionRouter
from .runs import Runs
from .session_files import SessionFiles
from .session_ids import validate_session_id
from .settings import Settings
from .workspace import Workspace


@dataclass
class App:
    settings: Settings
    router: SessionRouter
    workspace: Workspace
    active: ActiveSessions
    hooks: Any = None
    files: SessionFiles = field(init=False)
    runs: Runs = field(init=False)

    def __post_init__(self) -> None:
        self.files = SessionFiles(self.router, self.workspace)
        self.runs = Runs(self.router)

    def resolve_session(self, session_id: str | None) -> str:
        """``session_id`` if given (validated), else the calling client's active session."""
        if session_id is None:
            return self.active.get(caller_key())
        return validate_session_id(session_id)

    def files_session(self, session_id: str | None) -> str | None:
        """Whose node a file tool acts on: ``session_id``, else the caller's active session. In
        embedded mode every session shares this node, so the answer is None (here) and the tool
        need not wait for Ray."""
        if session_id is not None:
            return validate_session_id(session_id)
        return self.active_session() if self.router.detached else None

    def active_session(self) -> str:
        return self.active.get(caller_key())

    def switch_session(self, session_id: str) -> str:
        """Make ``session_id`` the caller's active session; return the previous one."""
        return self.active.set(caller_key(), session_id)

    def timeout_for(self, timeout: float | None) -> float:
        return self.settings.default_timeout if timeout is None else timeout
