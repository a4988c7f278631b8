"""Argument types shared by the built-in tools: limits live in the schema a client sees."""

from typing import Annotated

from pydantic import Field

SESSION_ID_REGEX = r"^[A-Za-z0-9_.-]{1,64}$"

SessionId = Annotated[
    str,
    Field(
        description="Session id: 1-64 letters, digits, '_', '.', '-'.",
        pattern=SESSION_ID_REGEX,
    ),
]
OptionalSessionId = Annotated[
    str | None,
    Field(
        description="Session to use; omit for your active session (see switch_session).",
        pattern=SESSION_ID_REGEX,
    ),
]
ForSession = Annotated[
    str | None,
    Field(
        description="Act on the workspace as this session sees it (on a cluster: on its node); "
        "omit for your active session.",
        pattern=SESSION_ID_REGEX,
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
