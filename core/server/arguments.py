"""Argument types shared by the built-in tools: limits live in the schema a client sees, and a
value that breaks one is refused with a typed error naming the argument (argument_errors.py)."""

from __future__ import annotations

import unicodedata
from typing import Annotated

from pydantic import AfterValidator, Field

from raykernel.sessions.session_ids import validate_session_id, validate_snapshot_name

SESSION_ID_REGEX = r"^[A-Za-z0-9_.-]{1,64}$"
# An admin may name another identity's session "<owner>/<id>".
QUALIFIED_ID_REGEX = r"^(?:.{1,256}/)?[A-Za-z0-9_.-]{1,64}$"
# The schema shows the pattern; the check itself is validate_session_id, so that every bad id
# ("", "../x", ".") gets the same InvalidSessionId whichever rule it breaks.
_ID_SCHEMA = {"pattern": QUALIFIED_ID_REGEX, "minLength": 1, "maxLength": 321}
_NAME_SCHEMA = {"pattern": SESSION_ID_REGEX, "minLength": 1, "maxLength": 64}

_Id = Annotated[str, AfterValidator(validate_session_id), Field(json_schema_extra=_ID_SCHEMA)]

SessionId = Annotated[_Id, Field(description="Session id: 1-64 letters, digits, '_', '.', '-'.")]
OptionalSessionId = Annotated[
    _Id | None,
    Field(description="Session to use; omit for your active session (see switch_session)."),
]
ForSession = Annotated[
    _Id | None,
    Field(
        description="Act on the workspace as this session sees it (on a cluster: on its node); "
        "omit for your active session."
    ),
]
SnapshotName = Annotated[
    str,
    AfterValidator(validate_snapshot_name),
    Field(
        description="Snapshot name: 1-64 letters, digits, '_', '.', '-'.",
        json_schema_extra=_NAME_SCHEMA,
    ),
]
WorkspacePath = Annotated[
    str,
    Field(
        description="Path relative to the workspace root, e.g. 'outputs/data.csv'.",
        min_length=1,
        max_length=1024,
    ),
]


def clean_text(text: str) -> str:
    """Text that will be shown again (a session's description): control characters (an ESC
    that would drive a terminal, a NUL) are removed; newlines and tabs are kept."""
    return "".join(
        ch for ch in text if ch in "\n\t" or unicodedata.category(ch) not in ("Cc", "Cs")
    )


CleanText = AfterValidator(clean_text)


def hints(
    *,
    read_only: bool,
    destructive: bool = False,
    idempotent: bool = False,
    open_world: bool = False,
) -> dict[str, bool]:
    """All four MCP tool annotations, stated: clients assume the worst for a missing one
    (destructive, not idempotent, open world)."""
    return {
        "readOnlyHint": read_only,
        "destructiveHint": destructive and not read_only,
        "idempotentHint": idempotent or read_only,
        "openWorldHint": open_world,
    }
