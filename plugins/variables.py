"""list_variables: what a session's namespace holds."""

from collections.abc import Callable
from typing import Any

from fastmcp.dependencies import Depends

from raykernel.api import App, OptionalSessionId, current_app, hints, hookimpl


async def list_variables(
    session_id: OptionalSessionId = None, app: App = Depends(current_app)
) -> dict[str, Any]:
    """A session's variables with their type and a short repr (not modules or _names)."""
    session = app.resolve_session(session_id)
    variables = await app.sessions.variables(session)
    return {"session_id": app.shown(session), "variables": variables, "total": len(variables)}


@hookimpl
def register_tools(register: Callable[..., Any]) -> None:
    register(
        list_variables,
        title="List variables",
        annotations=hints(read_only=True),
        toolset="introspection",
    )
