"""Session tools: create, switch, list, delete, restart, interrupt."""

import time
import uuid
from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastmcp.dependencies import Depends
from pydantic import AfterValidator, Field

from raykernel.api import (
    App,
    CleanText,
    InvalidArgument,
    NewSessionId,
    OptionalSessionId,
    SessionId,
    current_app,
    hints,
    hookimpl,
    omittable,
)

# Ray's own resources have their own arguments (num_cpus, num_gpus, memory); Ray refuses them
# as custom resource names, so they are refused here, before anything starts.
RAY_RESOURCES = frozenset({"CPU", "GPU", "memory", "object_store_memory"})


def _custom_resource(name: str) -> str:
    if name in RAY_RESOURCES:
        raise InvalidArgument(f"{name!r} has its own argument (num_cpus, num_gpus, memory)")
    return name


ResourceName = Annotated[
    str, AfterValidator(_custom_resource), Field(pattern=r"^[A-Za-z0-9_.:/-]{1,100}$")
]
Description = Annotated[
    str, CleanText, Field(description="What the session is for.", max_length=2000)
]
Resources = Annotated[
    dict[ResourceName, Annotated[float, Field(gt=0, le=1e12)]] | None,
    Field(
        description="Custom Ray resources to reserve, e.g. {'special_hardware': 1}.",
        max_length=32,
    ),
]
NodeId = Annotated[
    str | None,
    Field(
        description="Run on this Ray node (its id, as list_sessions shows).",
        pattern=r"^[0-9a-fA-F]{56}$",
    ),
]
NodeAffinity = Annotated[
    Literal["hard", "soft"], Field(description="'hard': only that node; 'soft': prefer it.")
]
Destinations = list[Annotated[str, Field(max_length=300)]]
Network = Annotated[
    Literal["on", "off"] | Destinations | None,
    Field(max_length=256),
    omittable(
        "'off': no network. A list: only these hosts ('*.' subdomains) or ranges, port "
        "optional, e.g. ['pypi.org', '10.1.0.0/16'].",
        type=None,
        anyOf=[{"enum": ["on", "off"]}, {"type": "array", "items": {"type": "string"}}],
    ),
]
NewNetwork = Annotated[
    Destinations,
    Field(
        description="The destinations from now on, as create_session takes them.",
        max_length=256,
    ),
]
EnvironmentName = Annotated[
    str | None,
    omittable("One of the server's Python environments (its packages; see list_sessions)."),
]
Checkpoint = Annotated[
    Literal["off", "after_run"] | None,
    omittable(
        "'after_run': save what changed after each good run (rewind_session goes back).",
        enum=["off", "after_run"],
    ),
]
PreserveState = Annotated[
    bool, Field(description="Carry picklable variables over to the new process.")
]


async def create_session(
    session_id: NewSessionId = None,
    description: Description = "",
    num_cpus: Annotated[float | None, Field(ge=0, description="CPUs to reserve.")] = None,
    num_gpus: Annotated[float | None, Field(ge=0, description="GPUs to reserve.")] = None,
    memory: Annotated[int | None, Field(ge=0, description="Bytes of memory to reserve.")] = None,
    resources: Resources = None,
    node_id: NodeId = None,
    node_affinity: NodeAffinity = "hard",
    network: Network = None,
    checkpoint: Checkpoint = None,
    environment: EnvironmentName = None,
    app: App = Depends(current_app),
) -> dict[str, Any]:
    """Create an isolated Python session (own process, own variables); an existing id gives
    "exists". It does not become your active session. A placement no node can satisfy is
    refused."""
    session_id = session_id or f"session-{uuid.uuid4().hex[:8]}"
    made = await app.sessions.create(
        session_id,
        description,
        num_cpus=num_cpus,
        num_gpus=num_gpus,
        memory=memory,
        resources=resources,
        node_id=node_id,
        node_affinity=node_affinity,
        network=network,
        checkpoint=checkpoint,
        environment=environment,
    )
    return {
        "session_id": app.shown(made["session_id"]),
        "status": "created" if made["created"] else "exists",
        "description": made["description"],
        "created_at": made["created_at"],
        "node_id": made["node_id"],
        "resources": made["resources"],
        "network": made["network"],
        "checkpoint": made["checkpoint"],
        **({"environment": made["environment"]} if made["environment"] is not None else {}),
        "isolation": made["isolation"],
        "metadata": {"description": made["description"]},
        "timestamp": time.time(),
    }


async def create_local_session(
    session_id: NewSessionId = None,
    description: Description = "",
    network: Network = None,
    checkpoint: Checkpoint = None,
    environment: EnvironmentName = None,
    app: App = Depends(current_app),
) -> dict[str, Any]:
    """Create an isolated Python session (own process, own variables); an existing id gives
    "exists". It does not become your active session."""
    # One machine: nothing to place, so the schema offers no placement.
    return await create_session(
        session_id,
        description,
        network=network,
        checkpoint=checkpoint,
        environment=environment,
        app=app,
    )


async def switch_session(session_id: SessionId, app: App = Depends(current_app)) -> dict[str, Any]:
    """Make a session your active one, used by calls that omit session_id."""
    qualified = app.resolve_session(session_id)
    previous = await app.switch_session(qualified)  # SessionNotFound if there is none
    return {
        "previous_session": app.shown(previous),
        "current_session": app.shown(qualified),
        "status": "switched",
        "timestamp": time.time(),
    }


async def list_sessions(app: App = Depends(current_app)) -> dict[str, Any]:
    """Your sessions: description, status, execution count (an admin: everyone's, as
    <owner>/<id>)."""
    sessions = await app.session_listing()
    return {
        "active_session": app.shown(app.active_session()),
        "total_sessions": len(sessions),
        "max_sessions": app.settings.max_sessions_per_identity or app.settings.max_sessions,
        "sessions": sessions,
        "timestamp": time.time(),
    }


async def set_session_network(
    network: NewNetwork, session_id: SessionId, app: App = Depends(current_app)
) -> dict[str, Any]:
    """Change what an allow-listed session may reach (its new connections). A session made
    with network "on" or "off" keeps it."""
    report = await app.sessions.set_network(session_id, list(network))
    return {"session_id": app.shown(app.resolve_session(session_id)), "network": report}


async def delete_session(session_id: SessionId, app: App = Depends(current_app)) -> dict[str, Any]:
    """Delete a session (its files stay). Not "default", which becomes active if this was."""
    qualified = app.resolve_session(session_id)
    was_active = app.active_session() == qualified
    await app.sessions.delete(qualified)
    return {
        "session_id": session_id,
        "status": "deleted",
        "was_active": was_active,
        "active_session": app.shown(app.active_session()),
        "timestamp": time.time(),
    }


async def restart_kernel(
    session_id: OptionalSessionId = None,
    preserve_state: PreserveState = False,
    app: App = Depends(current_app),
) -> dict[str, Any]:
    """Restart a session's process (its run in progress is stopped first)."""
    reply = await app.moves.restart(app.resolve_session(session_id), preserve_state)
    # As python-mcp-server 0.6.2 answered (its clients, and its tests, read these).
    return {
        **reply,
        "restarted": True,
        "preserved_vars": len(reply["preserved"]),
        "restored_vars": len(reply["preserved"]),
        "timestamp": time.time(),
    }


async def hibernate_session(
    session_id: OptionalSessionId = None, app: App = Depends(current_app)
) -> dict[str, Any]:
    """Save a session's variables and history and free its processes; the next call to it
    resumes it (resumed, not_preserved). Not while it runs or has runs queued."""
    return await app.sessions.hibernate(session_id)


async def interrupt_session(
    session_id: OptionalSessionId = None, app: App = Depends(current_app)
) -> dict[str, Any]:
    """Interrupt the code running in a session (Ctrl-C); its variables are kept."""
    return await app.sessions.interrupt(session_id)


@hookimpl
def register_tools(register: Callable[..., Any], app: App) -> None:
    register(
        create_session if app.settings.detached else create_local_session,
        name="create_session",
        title="Create a session",
        annotations=hints(read_only=False, idempotent=True),
        toolset="sessions",
        # Offered where the server has environments to offer.
        hide=() if app.settings.environments else ("environment",),
    )
    register(
        switch_session,
        title="Switch the active session",
        annotations=hints(read_only=False, idempotent=True),
        toolset="sessions",
    )
    register(
        list_sessions, title="List sessions", annotations=hints(read_only=True), toolset="sessions"
    )
    register(
        delete_session,
        title="Delete a session",
        annotations=hints(read_only=False, destructive=True, idempotent=True),
        toolset="sessions",
    )
    register(
        restart_kernel,
        title="Restart a session",
        annotations=hints(read_only=False, destructive=True),
        toolset="execution",
    )
    register(
        hibernate_session,
        title="Hibernate a session",
        annotations=hints(read_only=False, idempotent=True),
        toolset="state",
    )
    register(
        interrupt_session,
        title="Interrupt a running session",
        annotations=hints(read_only=False, idempotent=True),
        toolset="runs",
    )
    register(
        set_session_network,
        title="Change a session's allowed destinations",
        annotations=hints(read_only=False, idempotent=True),
        toolset="state",
    )
