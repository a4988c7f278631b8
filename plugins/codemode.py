"""register_session_tool, unregister_session_tool: a function defined in a session, offered as
an MCP tool of its own (docs/tools.md: Code mode). In the codemode toolset, off by default: the
default tools/list is kept within its 12 KB. The other half of code mode, upstream MCP tools
called from session code, needs no tool: session code imports ``raykernel_tools``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastmcp.dependencies import Depends
from pydantic import Field

from raykernel.api import App, OptionalSessionId, current_app, hints, hookimpl, omittable

ToolName = Annotated[str, Field(description="The new tool's name.", max_length=64)]
Function = Annotated[str, Field(description="A function of the session.", max_length=100)]


async def register_session_tool(
    name: ToolName,
    function: Function,
    session_id: OptionalSessionId = None,
    description: Annotated[
        str | None, Field(max_length=4000), omittable("Instead of the function's docstring.")
    ] = None,
    app: App = Depends(current_app),
) -> dict[str, Any]:
    """Offer a session's function as a tool (schema from its signature, description from its
    docstring; JSON in and out; only you see it; gone with the session)."""
    return await app.session_tools.register(name, function, session_id, description)


async def unregister_session_tool(name: ToolName, app: App = Depends(current_app)) -> dict:
    """Remove a session tool you registered."""
    return await app.session_tools.unregister(name)


@hookimpl
def register_tools(register: Callable[..., Any]) -> None:
    register(
        register_session_tool,
        title="Offer a session function as a tool",
        annotations=hints(read_only=False, destructive=False, idempotent=True, open_world=False),
        toolset="codemode",
    )
    register(
        unregister_session_tool,
        title="Remove a session tool",
        annotations=hints(read_only=False, destructive=True, idempotent=True, open_world=False),
        toolset="codemode",
    )
