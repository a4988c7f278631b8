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

from raykernel.errors import SessionNotFound
from raykernel.sessions.health import SessionHealth
from raykernel.sessions.record import qualify, split, validate_session_id
from raykernel.sessions.router import DEFAULT_SESSION, SessionRouter
from raykernel.sessions.session_files import SessionFiles
from raykernel.sessions.state_moves import StateMoves, Variants
from raykernel.settings import Settings
from raykernel.workspace import LOCAL, Workspace, Workspaces

from .callers import ActiveSessions, Caller, caller_identity, caller_key
from .services import Runs, Sessions
from .session_tools import SessionTools
from .toolsets import Toolsets
from .upstream import Upstreams


@dataclass
class App:
    settings: Settings
    router: SessionRouter
    workspaces: Workspaces
    active: ActiveSessions
    files: SessionFiles
    health: SessionHealth
    moves: StateMoves
    variants: Variants
    runs: Runs = field(init=False)
    sessions: Sessions = field(init=False)
    hooks: Any = None
    # Which groups of tools are offered; set by build_server, which owns the MCP server.
    toolsets: Toolsets = field(init=False)
    # Code mode: the upstream MCP servers session code calls, and the session tools.
    upstreams: Upstreams = field(init=False)
    session_tools: SessionTools = field(init=False)

    def __post_init__(self) -> None:
        self.runs = Runs(self.router)
        self.sessions = Sessions(
            self.settings, self.router, self.resolve_session, self.workspace_of
        )
        self.upstreams = Upstreams(self.settings)

    # -- whose sessions and files ---------------------------------------------------------------

    @property
    def workspace(self) -> Workspace:
        """The calling identity's workspace (``local``: the workspace itself; any other
        identity: its own folder, see ``Workspaces``)."""
        return self.workspaces.of(self.identity())

    def workspace_of(self, qualified: str) -> Workspace:
        """The workspace of the identity that owns session ``qualified``."""
        return self.workspaces.of(split(qualified)[0])

    def identity(self) -> str:
        """The calling identity (``local``, ``token:<name>``, ``jwt:<subject>``)."""
        return caller_identity()

    def is_admin(self, identity: str | None = None) -> bool:
        return (identity or self.identity()) in self.settings.admin_identities

    def resolve_session(self, session_id: str | None) -> str:
        """The qualified id the call is about: ``session_id`` (validated; the caller's own,
        unless an admin names another identity's) or the caller's active session. Another
        identity's session is ``SessionNotFound``, exactly like one that does not exist."""
        identity = self.identity()
        if session_id is None:
            active = self.active.get(caller_key(), qualify(identity, DEFAULT_SESSION))
            # Whoever set it, a caller's active session is one it may see.
            return active if self.visible(active) else qualify(identity, DEFAULT_SESSION)
        own = identity + "/"
        if identity != LOCAL and isinstance(session_id, str) and session_id.startswith(own):
            # The caller's own session, qualified (a service resolving what a tool resolved);
            # what follows is a plain id, never another qualified one (no identity holds "/").
            plain = session_id.removeprefix(own)
            if "/" in plain:
                raise SessionNotFound(f"session {session_id[:120]!r} does not exist")
            return qualify(identity, validate_session_id(plain))
        validate_session_id(session_id)
        if "/" not in session_id:
            return qualify(identity, session_id)
        owner, plain = split(session_id)
        if owner != identity and not self.is_admin(identity):
            raise SessionNotFound(f"session {session_id!r} does not exist")
        return qualify(owner, plain)

    def is_operator(self, identity: str | None = None) -> bool:
        """Whether the caller runs the server: the local identity (stdio, loopback HTTP
        without a token of its own) or an admin."""
        identity = identity or self.identity()
        return identity == LOCAL or self.is_admin(identity)

    def plain_id(self, qualified: str) -> str:
        """A session's id without its owner (``token:alice/analysis``: ``analysis``)."""
        return split(qualified)[1]

    def caller(self) -> Caller:
        identity = self.identity()
        return Caller(identity, self.is_admin(identity))

    def visible(self, qualified: str) -> bool:
        """Whether the caller may see the session ``qualified`` (its own, or it is admin)."""
        return self.caller().visible(qualified)

    def _refuse_unseen(self, qualified: str) -> None:
        """Another identity's session is not found, exactly like one that does not exist."""
        if not self.visible(qualified):
            raise SessionNotFound(f"session {split(qualified)[1]!r} does not exist")

    def shown(self, qualified: str) -> str:
        """How the caller names a session: its plain id when it is the caller's own."""
        return self.caller().shown(qualified)

    def files_session(self, session_id: str | None) -> str | None:
        """Whose node a file tool acts on: ``session_id``, else the caller's active session. In
        embedded mode every session shares this node, so the answer is None (here) and the tool
        need not wait for Ray."""
        if session_id is not None:
            return self.resolve_session(session_id)
        return self.active_session() if self.router.detached else None

    def own_default(self) -> str:
        """The caller's own "default" session (qualified)."""
        return qualify(self.identity(), DEFAULT_SESSION)

    def active_session(self) -> str:
        """The calling client's active session (qualified)."""
        return self.active.get(caller_key(), qualify(self.identity(), DEFAULT_SESSION))

    async def session_listing(self) -> dict[str, dict[str, Any]]:
        """The caller's sessions as every view of them shows them (list_sessions, the
        sessions resource): by shown id, each one's summary; the caller's "default" always
        exists."""
        await self.router.lookup(self.own_default())
        active = self.active_session()
        return {
            self.shown(qualified): record.summary(qualified == active)
            for qualified, record in (await self.router.listing()).items()
            if self.visible(qualified)
        }

    async def session_summary(self, qualified: str) -> dict[str, Any]:
        """One session's summary, as ``session_listing`` shows it (``SessionNotFound`` if
        there is none)."""
        self._refuse_unseen(qualified)
        record = await self.router.lookup(qualified)
        return record.summary(qualified == self.active_session())

    async def switch_session(self, qualified: str) -> str:
        """Make ``qualified`` the caller's active session (for every front end); return the
        previous one. A session that does not exist is ``SessionNotFound``."""
        self._refuse_unseen(qualified)
        await self.router.lookup(qualified)
        default = qualify(self.identity(), DEFAULT_SESSION)
        key = caller_key()
        await self.active.refresh(key)
        previous = self.active.set(key, qualified, default)
        await self.active.publish(key, qualified)
        return previous

    def timeout_for(self, timeout: float | None) -> float:
        """A run's timeout: the one asked for, else the configured default."""
        return self.sessions.timeout_for(timeout)


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
