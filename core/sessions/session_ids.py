"""Session ids (and snapshot names): what a client may choose, checked before anything else."""

from __future__ import annotations

import re

from raykernel.errors import InvalidArgument, InvalidSessionId

SESSION_ID_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,64}")
RULE = "use 1-64 letters, digits, '_', '.', '-' (not '.' or '..')"


def _valid(name: object) -> bool:
    return (
        isinstance(name, str)
        and bool(SESSION_ID_PATTERN.fullmatch(name))
        and name not in {".", ".."}
    )


def validate_session_id(session_id: object) -> str:
    if not _valid(session_id):
        raise InvalidSessionId(f"invalid session id {str(session_id)[:80]!r}: {RULE}")
    assert isinstance(session_id, str)
    return session_id


def validate_snapshot_name(name: object) -> str:
    if not _valid(name):
        raise InvalidArgument(f"invalid snapshot name {str(name)[:80]!r}: {RULE}")
    assert isinstance(name, str)
    return name
