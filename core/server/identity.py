"""Who is calling: the identity that owns the sessions it creates.

* ``local``: stdio, and HTTP without configured authentication (loopback only: the server's
  own local token, or none with ``auth = "none"``);
* ``token:<name>``: a bearer token from ``auth_tokens`` (``token`` for the single
  ``auth_token``);
* ``jwt:<subject>``: a JWT's ``sub`` claim.

Identities in ``admin_identities`` see and manage every identity's sessions.
"""

from __future__ import annotations

from dataclasses import dataclass

from raykernel.sessions.record import LOCAL, split


def caller_identity() -> str:
    """The identity of the current request (``local`` outside one, or without auth)."""
    from fastmcp.server.dependencies import get_access_token

    try:
        token = get_access_token()
    except RuntimeError:
        return LOCAL
    if token is None:
        return LOCAL
    if token.client_id == LOCAL or token.client_id.startswith("token"):
        return token.client_id  # the server's own local token, or a named one
    subject = (token.claims or {}).get("sub")
    return f"jwt:{subject}" if subject else f"jwt-client:{token.client_id}"


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
