"""What a tool works with: the App and its services, each an object with its collaborators
passed in. The one road to a session is tool -> App service -> router -> SessionHandle ->
actor -> interpreter.

Built-in tools are module-level functions that receive the App as an argument hidden from
their schema (``app: App = Depends(current_app)``), so they can be imported and called directly
with any App; third-party plugins may do the same, or close over the ``app`` their
``register_tools`` hook is given.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Any

from raykernel.sessions.files import SessionFiles
from raykernel.sessions.health import SessionHealth
from raykernel.sessions.router import SessionRouter
from raykernel.sessions.session_ids import validate_session_id
from raykernel.sessions.state_moves import StateMoves
from raykernel.settings import Settings
from raykernel.workspace import Workspace

from .active import ActiveSessions, caller_key
from .runs import Runs


@dataclass
class App:
    settings: Settings
    router: SessionRouter
    workspace: Workspace
    active: ActiveSessions
    files: SessionFiles
    health: SessionHealth
    moves: StateMoves
    runs: Runs = field(init=False)
    hooks: Any = None

    def __post_init__(self) -> None:
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
        """The calling client's active session."""
        return self.active.get(caller_key())

    def switch_session(self, session_id: str) -> str:
        """Make ``session_id`` the caller's active session; return the previous one."""
        return self.active.set(caller_key(), session_id)

    def timeout_for(self, timeout: float | None) -> float:
        """A run's timeout: the one asked for, else the configured default."""
        return self.settings.default_timeout if timeout is None else timeout


_APPS: weakref.WeakKeyDictionary[Any, App] = weakref.WeakKeyDictionary()


def register_app(server: Any, app: App) -> None:
    """Make ``app`` the App of the tools ``server`` serves."""
    _APPS[server] = app


def app_of(server: Any) -> App:
    """The App behind a server ``build_server`` made."""
    return _APPS[server]


def current_app() -> App:
    """The App of the server handling the current request: a tool's hidden ``app`` argument,
    ``app: App = Depends(current_app)``."""
    from fastmcp.server.dependencies import get_server

    return _APPS[get_server()]
