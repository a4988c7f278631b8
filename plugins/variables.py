"""list_variables: what a session's namespace holds."""

from collections.abc import Callable
from typing import Any

from raykernel.app import App
from raykernel.arguments import OptionalSessionId, hints
from raykernel.hookspecs import hookimpl


@hookimpl
def register_tools(register: Callable[..., Any], app: App) -> None:
    async def list_variables(session_id: OptionalSessionId = None) -> dict[str, Any]:
        """List a session's variables with their type and a short repr (modules and names
        starting with '_' are left out)."""
        session = app.resolve_session(session_id)
        variables = await app.router.call(session, "variables")
        return {"session_id": session, "variables": variables, "total": len(variables)}

    register(list_variables, title="List variables", annotations=hints(read_only=True))
