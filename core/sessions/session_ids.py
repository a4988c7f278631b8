"""Session ids (and snapshot names): what a client may choose, checked before anything else.

Sessions belong to identities. Inside the server a session is named by its *qualified* id:
the plain id for the local identity (stdio, unauthenticated loopback HTTP), else
``<owner>/<id>`` (``token:alice/analysis``, ``jwt:4f2a.../default``). Each identity sees only
its own sessions under their plain ids; an admin may name another identity's session with its
qualified id.
"""

from __future__ import annotations

import re

from raykernel.errors import InvalidArgument, InvalidSessionId
from raykernel.workspace import LOCAL as LOCAL  # the identity without authentication

SESSION_ID_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,64}")
RULE = "use 1-64 letters, digits, '_', '.', '-' (not '.' or '..')"
# The identities server/identity.py makes: token, token:<name>, jwt:<subject>, jwt-client:<id>.
OWNER_PATTERN = re.compile(r"token(:[A-Za-z0-9_.@-]{1,64})?|jwt(-client)?:[^\x00-\x1f]{1,200}")


def _valid(name: object) -> bool:
    return (
        isinstance(name, str)
        and bool(SESSION_ID_PATTERN.fullmatch(name))
        and name not in {".", ".."}
    )


def validate_session_id(session_id: object) -> str:
    """A plain session id, or a qualified one (``<owner>/<id>``)."""
    if isinstance(session_id, str) and "/" in session_id:
        owner, _, plain = session_id.rpartition("/")
        if OWNER_PATTERN.fullmatch(owner) and _valid(plain):
            return session_id
    elif _valid(session_id):
        assert isinstance(session_id, str)
        return session_id
    raise InvalidSessionId(f"invalid session id {str(session_id)[:80]!r}: {RULE}")


def validate_snapshot_name(name: object) -> str:
    if not _valid(name):
        raise InvalidArgument(f"invalid snapshot name {str(name)[:80]!r}: {RULE}")
    assert isinstance(name, str)
    return name


def qualify(owner: str, session_id: str) -> str:
    """The qualified id of ``owner``'s session ``session_id``."""
    return session_id if owner == LOCAL else f"{owner}/{session_id}"


def split(qualified: str) -> tuple[str, str]:
    """``(owner, plain id)`` of a qualified id."""
    owner, _, plain = qualified.rpartition("/")
    return (owner or LOCAL), plain
