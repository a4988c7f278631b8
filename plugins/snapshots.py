"""Moving state: snapshots to disk, forks, and single variables between sessions."""

import time
from collections.abc import Callable
from typing import Annotated, Any

from fastmcp.dependencies import Depends
from pydantic import Field

from raykernel.api import (
    App,
    OptionalSessionId,
    SessionId,
    SnapshotName,
    current_app,
    hints,
    hookimpl,
)

VariableName = Annotated[
    str,
    Field(
        description="A variable name in the session.",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        max_length=200,
    ),
]
TargetName = Annotated[
    VariableName | None,
    Field(alias="as", description="Name in the target session (default: the same)."),
]


async def snapshot_session(
    session_id: OptionalSessionId = None,
    name: SnapshotName | None = None,
    app: App = Depends(current_app),
) -> dict[str, Any]:
    """Save a session's variables to disk (in the server's store, yours only). What
    cloudpickle cannot carry (open files, locks, generators) is named in not_preserved.
    Restore later with restore_session, even after a server restart."""
    session = app.resolve_session(session_id)
    name = name or f"{app.plain_id(session)}-{time.strftime('%Y%m%d-%H%M%S')}"
    return await app.moves.snapshot(session, name)


async def restore_session(
    snapshot: SnapshotName, session_id: OptionalSessionId = None, app: App = Depends(current_app)
) -> dict[str, Any]:
    """Load a snapshot's variables into a session (created if it does not exist; default:
    your active session). Existing variables with other names are kept."""
    return await app.moves.restore_snapshot(snapshot, app.resolve_session(session_id))


async def list_snapshots(app: App = Depends(current_app)) -> dict[str, Any]:
    """List your saved snapshots."""
    folder = app.moves.snapshot_dir(app.identity())
    rows = (
        [
            {
                "snapshot": p.stem,
                "size_bytes": p.stat().st_size,
                "modified": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(p.stat().st_mtime)),
            }
            for p in sorted(folder.glob("*.zip"))
        ]
        if folder.is_dir()
        else []
    )
    return {"snapshots": rows, "total": len(rows)}


async def fork_session(
    session_id: SessionId, new_session_id: SessionId, app: App = Depends(current_app)
) -> dict[str, Any]:
    """Create a new session holding a copy of a live session's variables, for parallel
    experiments from one starting point. The two are independent afterwards."""
    source, target = app.resolve_session(session_id), app.resolve_session(new_session_id)
    return await app.moves.fork(source, target)


async def transfer_variable(
    from_session: SessionId,
    to_session: SessionId,
    name: VariableName,
    as_name: TargetName = None,
    app: App = Depends(current_app),
) -> dict[str, Any]:
    """Copy one variable from a session to another through Ray's object store, without
    files (works across machines)."""
    source, target = app.resolve_session(from_session), app.resolve_session(to_session)
    return await app.moves.transfer(source, target, name, as_name or name)


async def rewind_session(
    to_execution: Annotated[int, Field(ge=0, description="The run whose state to go back to.")],
    session_id: OptionalSessionId = None,
    app: App = Depends(current_app),
) -> dict[str, Any]:
    """Restore a session's variables as they were after run N, from its checkpoints (a session
    created with checkpoint 'after_run' keeps the last ones). Every variable is replaced;
    the history shows the rewind."""
    return await app.moves.rewind(app.resolve_session(session_id), to_execution)


@hookimpl
def register_tools(register: Callable[..., Any]) -> None:
    register(
        snapshot_session,
        title="Snapshot a session",
        annotations=hints(read_only=False),
        toolset="state",
    )
    register(
        restore_session,
        title="Restore a snapshot",
        annotations=hints(read_only=False, destructive=True),
        toolset="state",
    )
    register(
        list_snapshots, title="List snapshots", annotations=hints(read_only=True), toolset="state"
    )
    register(
        rewind_session,
        title="Rewind a session",
        annotations=hints(read_only=False, destructive=True, idempotent=True),
        toolset="state",
    )
    register(
        fork_session, title="Fork a session", annotations=hints(read_only=False), toolset="state"
    )
    register(
        transfer_variable,
        title="Copy a variable between sessions",
        annotations=hints(read_only=False, destructive=True, idempotent=True),
        toolset="state",
    )
