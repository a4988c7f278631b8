"""list_variables: what a session's namespace holds."""

from collections.abc import Callable
from typing import Any

from fastmcp.dependencies import Depends

from raykernel.hookspecs import hookimpl
from raykernel.server.app import App, current_app
from raykernel.server.arguments import OptionalSessionId, hints
from raykernel.sessions.handle import SessionHandle


async def list_variables(
    session_id: OptionalSessionId = None, app: App = Depends(current_app)
) -> dict[str, Any]:
    """A session's variables with their type and a short repr (not modules or _names)."""
    session = app.resolve_session(session_id)
    variables = await app.router.call(session, SessionHandle.variables)
    return {"session_id": app.shown(session), "variables": variables, "total": len(variables)}


@hookimpl
def register_tools(register: Callable[..., Any]) -> None:
    register(
        list_variables,
        title="List variables",
        annotations=hints(read_only=True),
        toolset="introspection",
    )
