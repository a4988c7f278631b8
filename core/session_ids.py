"""Session ids (and snapshot names): what a client may choose, checked before anything else."""

from __future__ import annotations

import re

from .errors import InvalidSessionId

SESSION_ID_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def validate_session_id(session_id: object) -> str:
    if not isinstance(session_id, str) or not SESSION_ID_PATTERN.fullmatch(session_id):
        raise InvalidSessionId(
            f"invalid session id {str(session_id)[:80]!r}: use 1-64 letters, digits, '_', '.', '-'"
        )
    if session_id in {".", ".."}:
        raise InvalidSessionId(f"invalid session id {session_id!r}")
    return session_id
