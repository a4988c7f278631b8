"""What a session did and what its names are: get_history, code_completion, inspect_object.
Answered by the session from its live namespace (queued behind a run in progress)."""

from collections.abc import Callable
from typing import Annotated, Any

from fastmcp.dependencies import Depends
from pydantic import Field

from raykernel.api import (
    App,
    InvalidArgument,
    OptionalSessionId,
    current_app,
    hints,
    hookimpl,
    omittable,
)

SourceCode = Annotated[
    str,
    Field(
        description="Code as typed so far, e.g. 'df.gro'.",
        max_length=100_000,
    ),
]
CursorPos = Annotated[
    int | None,
    Field(ge=0),
    omittable("Cursor offset (default: the end).", type="integer", minimum=0),
]
Last = Annotated[
    int | None, Field(ge=1, le=500, description="Only the last N runs (default: all kept).")
]


def _cursor(code: str, cursor_pos: int | None) -> int | None:
    if cursor_pos is not None and cursor_pos > len(code):
        raise InvalidArgument(f"cursor_pos {cursor_pos} is past the end of the code ({len(code)})")
    return cursor_pos


async def get_history(
    session_id: OptionalSessionId = None, last: Last = None, app: App = Depends(current_app)
) -> dict[str, Any]:
    """A session's runs: code, status, start, duration, the start of their output."""
    session = app.resolve_session(session_id)
    entries = await app.sessions.history(session, last)
    return {"session_id": app.shown(session), "entries": entries, "total": len(entries)}


async def code_completion(
    code: SourceCode,
    cursor_pos: CursorPos = None,
    session_id: OptionalSessionId = None,
    app: App = Depends(current_app),
) -> dict[str, Any]:
    """Completions at the cursor from the session's live names; matches replace
    code[cursor_start:cursor_end]."""
    session = app.resolve_session(session_id)
    cursor = _cursor(code, cursor_pos)
    reply = await app.sessions.complete(session, code, cursor)
    # status and metadata (Jupyter's types): as python-mcp-server 0.6.2 answered.
    types = [
        {"start": reply["cursor_start"], "end": reply["cursor_end"], **m} for m in reply["matches"]
    ]
    return {
        "session_id": app.shown(session),
        **reply,
        "status": "ok",
        "metadata": {"_jupyter_types_experimental": types},
    }


async def inspect_object(
    code: SourceCode,
    cursor_pos: CursorPos = None,
    session_id: OptionalSessionId = None,
    app: App = Depends(current_app),
) -> dict[str, Any]:
    """The name at the cursor in the session: type, signatures, docstring (nothing is run)."""
    session = app.resolve_session(session_id)
    cursor = _cursor(code, cursor_pos)
    reply = await app.sessions.inspect(session, code, cursor)
    # status, data (a MIME bundle) and metadata: Jupyter's inspect reply, as the seed sent it.
    text = "\n".join(filter(None, [*reply.get("signatures", []), reply.get("docstring")]))
    return {
        "session_id": app.shown(session),
        **reply,
        "status": "ok",
        "data": {"text/plain": text} if reply.get("found") else {},
        "metadata": {},
    }


@hookimpl
def register_tools(register: Callable[..., Any]) -> None:
    register(
        get_history,
        title="Execution history",
        annotations=hints(read_only=True),
        toolset="notebooks",
    )
    register(
        code_completion,
        title="Complete code",
        annotations=hints(read_only=True),
        toolset="introspection",
    )
    register(
        inspect_object,
        title="Inspect an object",
        annotations=hints(read_only=True),
        toolset="introspection",
    )
