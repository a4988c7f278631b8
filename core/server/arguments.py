"""Argument types shared by the built-in tools: limits live in the schema a client sees, and a
value that breaks one is refused with a typed error naming the argument (argument_errors.py)."""

from __future__ import annotations

import unicodedata
from typing import Annotated, Any

from pydantic import AfterValidator, Field, WithJsonSchema

from raykernel.sessions.record import validate_session_id, validate_snapshot_name

SESSION_ID_REGEX = r"^[A-Za-z0-9_.-]{1,64}$"
# An admin may name another identity's session "<owner>/<id>".
QUALIFIED_ID_REGEX = r"^(?:.{1,256}/)?[A-Za-z0-9_.-]{1,64}$"
# The schema shows the pattern (it bounds the length too); the check itself is
# validate_session_id, so that every bad id ("", "../x", ".") gets the same InvalidSessionId
# whichever rule it breaks.
_ID_SCHEMA = {"pattern": QUALIFIED_ID_REGEX}
_NAME_SCHEMA = {"pattern": SESSION_ID_REGEX, "minLength": 1, "maxLength": 64}

_Id = Annotated[str, AfterValidator(validate_session_id), Field(json_schema_extra=_ID_SCHEMA)]


def omittable(description: str, **schema: Any) -> WithJsonSchema:
    """The schema of an optional argument (``X | None = None``) as its value's alone: leaving it
    out is how a client asks for the default (a null is still understood), so the ``null`` every
    such argument would repeat is not shown. ``schema`` defaults to a string's."""
    shown = {"type": "string", **schema, "description": description}
    return WithJsonSchema({key: value for key, value in shown.items() if value is not None})


SessionId = Annotated[_Id, Field(description="A session's id.")]
# Ids a call refers to come from list_sessions: the pattern is shown where an id is chosen.
OptionalSessionId = Annotated[_Id | None, omittable("Omit for your active session.")]
NewSessionId = Annotated[
    _Id | None, omittable("Omit for a generated id.", pattern=QUALIFIED_ID_REGEX)
]
# A file tool acts as the session sees the workspace (its owner's, on its node).
ForSession = Annotated[_Id | None, omittable("Omit for your active session.")]
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
        description="Relative to the workspace, e.g. 'outputs/data.csv'.",
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


# What a client assumes for a hint a tool leaves out (MCP spec, ToolAnnotations).
SPEC_DEFAULTS = {
    "readOnlyHint": False,
    "destructiveHint": True,
    "idempotentHint": False,
    "openWorldHint": True,
}


def hints(
    *,
    read_only: bool,
    destructive: bool = False,
    idempotent: bool = False,
    open_world: bool = False,
) -> dict[str, bool]:
    """The MCP tool annotations that differ from what a client assumes when one is missing
    (the spec's defaults: not read-only, destructive, not idempotent, open world); a read-only
    tool's destructive and idempotent hints mean nothing (the spec), so they are left out."""
    stated = {
        "readOnlyHint": read_only,
        "destructiveHint": destructive,
        "idempotentHint": idempotent,
        "openWorldHint": open_world,
    }
    if read_only:
        del stated["destructiveHint"], stated["idempotentHint"]
    return {hint: value for hint, value in stated.items() if value != SPEC_DEFAULTS[hint]}
