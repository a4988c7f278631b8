"""Who is calling: the identity that owns the sessions it creates.

* ``local``: stdio, and HTTP without configured authentication (loopback only: the server's
  own local token, or none with ``auth = "none"``);
* ``token:<name>``: a bearer token from ``auth_tokens`` (``token`` for the single
  ``auth_token``);
* ``jwt:<subject>``: a JWT's ``sub`` claim.

Identities in ``admin_identities`` see and manage every identity's sessions.

Which session a call without ``session_id`` goes to: the caller's active session.

The caller is the MCP session when the protocol keeps one (2025-11-25 and older: stdio, legacy
HTTP, the SDK's ClientSession), else the authenticated identity, else the whole server. fastmcp's
default client speaks the stateless 2026-07-28 protocol, where every request is its own
connection, so its calls share the server-wide (or per-identity) active session.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from raykernel.sessions.record import LOCAL, identity_part, split

from .http_security import is_named_token


def caller_identity() -> str:
    """The identity of the current request (``local`` outside one, or without auth)."""
    from fastmcp.server.dependencies import get_access_token

    try:
        token = get_access_token()
    except RuntimeError:
        return LOCAL
    if token is None:
        return LOCAL
    if is_named_token(token):
        return token.client_id  # the server's own local token, or a named one
    subject = (token.claims or {}).get("sub")
    if subject:
        return f"jwt:{identity_part(str(subject))}"
    return f"jwt-client:{identity_part(str(token.client_id))}"


@dataclass(frozen=True)
class Caller:
    """An identity, and what it may see: its own sessions (all of them when it is admin)."""

    identity: str
    admin: bool = False

    def visible(self, qualified: str) -> bool:
        return self.admin or split(qualified)[0] == self.identity

    def shown(self, qualified: str) -> str:
        """How the caller names a session: its plain id when it is the caller's own."""
        owner, plain = split(qualified)
        return plain if owner == self.identity else qualified


if TYPE_CHECKING:
    from raykernel.sessions.registry import Registry

SERVER_KEY = "server"
MAX_CALLERS = 10_000


def caller_key() -> str:
    """A stable key for whoever is making the current tool call."""
    from fastmcp.server.dependencies import get_access_token, get_context
    from mcp_types.version import MODERN_PROTOCOL_VERSIONS

    try:
        ctx = get_context()
    except RuntimeError:
        return SERVER_KEY
    request = ctx.request_context
    if request is not None and request.protocol_version not in MODERN_PROTOCOL_VERSIONS:
        return "mcp:" + ctx.session_id
    if get_access_token() is not None:
        # By identity, never by a raw claim: a JWT whose subject is "local" or "token:alice"
        # is jwt:local, not the local identity or alice.
        return f"user:{caller_identity()}"
    return SERVER_KEY


class ActiveSessions:
    """caller key -> active session (qualified id), bounded (oldest callers are forgotten
    first); a caller without one uses ``default`` (its identity's "default" session).

    Among replicas the choice lives in the registry (a stateless client's next call may reach
    another front end): ``refresh`` reads the caller's before a call, ``publish`` writes it."""

    def __init__(self, shared: Registry | None = None) -> None:
        self._by_caller: OrderedDict[str, str] = OrderedDict()
        self.shared = shared if shared is not None and shared.is_shared else None

    async def refresh(self, key: str) -> None:
        """The caller's active session as the registry has it (replicas only)."""
        if self.shared is None:
            return
        session_id = await self.shared.active_get(key)
        if session_id is None:
            self._by_caller.pop(key, None)
        else:
            self._by_caller[key] = session_id

    async def publish(self, key: str, session_id: str) -> None:
        if self.shared is not None:
            await self.shared.active_set(key, session_id)

    def get(self, key: str, default: str) -> str:
        session_id = self._by_caller.get(key)
        if session_id is None:
            return default
        self._by_caller.move_to_end(key)
        return session_id

    def set(self, key: str, session_id: str, default: str) -> str:
        previous = self.get(key, default)
        self._by_caller[key] = session_id
        self._by_caller.move_to_end(key)
        while len(self._by_caller) > MAX_CALLERS:
            self._by_caller.popitem(last=False)
        return previous

    def forget_session(self, session_id: str) -> None:
        """A deleted session is nobody's active session any more: they fall back to default."""
        for key in [k for k, v in self._by_caller.items() if v == session_id]:
            del self._by_caller[key]
