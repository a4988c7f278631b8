"""Session tools (code mode's other direction): a function defined in a warm session, offered
to MCP clients as a tool of its own (docs/tools.md: Code mode).

Its input schema comes from the function's signature (each annotation through pydantic, in the
session's kernel) and its description from its docstring; calling it runs the function in that
session, queued like a run, JSON in and out (``app.sessions.call_function``). A session tool
belongs to the identity that registered it: only that identity sees it in ``tools/list`` and
may call it (for anyone else it does not exist: ``ToolNotFound``), admins included. It lives
as long as the session does: gone when the session is deleted, kept through hibernation (the
function is in the namespace the image carries). The registrations live in the front end that
made them (a restarted front end has none).
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from fastmcp.exceptions import NotFoundError
from fastmcp.server.middleware import Middleware
from fastmcp.tools import Tool
from fastmcp.tools.base import ToolResult
from mcp_types import TextContent, ToolAnnotations
from pydantic import Field

from raykernel.errors import InvalidArgument, RaykernelError, ToolNotFound
from raykernel.kernel.functions import call_named, describe_function

from .callers import caller_identity
from .typed_errors import tool_error

if TYPE_CHECKING:
    from .app import App

TOOL_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
FUNCTION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,99}")
MAX_DESCRIPTION = 4000
MAX_PER_IDENTITY = 100
# A fastmcp client unwraps ``{"result": value}`` into ``value`` by this mark.
OUTPUT_SCHEMA = {
    "type": "object",
    "properties": {"result": {}},
    "required": ["result"],
    "x-fastmcp-wrap-result": True,
}


class SessionTool(Tool):
    """A tool whose body is a function of a session."""

    owner: str = Field(exclude=True)
    session: str = Field(exclude=True)
    function: str = Field(exclude=True)
    # The App's session service (given, not imported: the App holds these tools).
    sessions: Any = Field(exclude=True)

    async def run(self, arguments: dict[str, Any]) -> ToolResult:
        try:
            value = await self.sessions.call_function(
                self.session, call_named, self.function, arguments
            )
        except RaykernelError as exc:
            raise tool_error(exc) from None
        return ToolResult(
            content=[TextContent(type="text", text=json.dumps(value))],
            structured_content={"result": value},
        )


class SessionTools:
    """The session tools of every identity, by name."""

    def __init__(self, app: App, server: Any) -> None:
        self.app = app
        self.server = server
        self.tools: dict[str, SessionTool] = {}

    def visible(self, name: str, identity: str) -> bool:
        tool = self.tools.get(name)
        return tool is None or tool.owner == identity

    async def register(
        self, name: str, function: str, session_id: str | None, description: str | None
    ) -> dict[str, Any]:
        app = self.app
        if not TOOL_NAME.fullmatch(name):
            raise InvalidArgument(
                f"name: {name[:80]!r} is not a tool name (1-64 of A-Z a-z 0-9 _ . -)"
            )
        if not FUNCTION_NAME.fullmatch(function):
            raise InvalidArgument(f"function: {function[:80]!r} is not a Python name")
        identity = app.identity()
        qualified = app.resolve_session(session_id)
        mine = [t for t in self.tools.values() if t.owner == identity and t.name != name]
        if len(mine) >= MAX_PER_IDENTITY:
            raise InvalidArgument(f"at most {MAX_PER_IDENTITY} session tools per identity")
        existing = self.tools.get(name)
        if existing is not None and existing.owner != identity:
            raise InvalidArgument(f"name: a tool named {name!r} exists; choose another name")
        spec = await app.sessions.call_function(qualified, describe_function, function)
        text = description or spec["description"] or f"{function} in session {app.shown(qualified)}"
        tool = SessionTool(
            name=name,
            description=text[:MAX_DESCRIPTION],
            parameters=spec["parameters"],
            output_schema=OUTPUT_SCHEMA,
            annotations=ToolAnnotations(open_world_hint=False),
            owner=identity,
            session=qualified,
            function=function,
            sessions=app.sessions,
        )
        if existing is not None:  # the owner's own: replaced
            self.server.local_provider.remove_tool(name)
        try:
            self.server.add_tool(tool)
        except ValueError:
            if existing is not None:
                self.server.add_tool(existing)
            raise InvalidArgument(
                f"name: a tool named {name!r} exists; choose another name"
            ) from None
        self.tools[name] = tool
        await app.toolsets.notify()
        return {
            "name": name,
            "session_id": app.shown(qualified),
            "function": function,
            "input_schema": spec["parameters"],
        }

    async def unregister(self, name: str) -> dict[str, Any]:
        tool = self.tools.get(name)
        if tool is None or tool.owner != self.app.identity():
            raise ToolNotFound(f"no session tool named {name[:100]!r}")
        self._remove(name)
        await self.app.toolsets.notify()
        return {"name": name, "unregistered": True}

    def listing(self, identity: str) -> list[dict[str, str]]:
        return [
            {
                "name": t.name,
                "session_id": self.app.caller().shown(t.session),
                "function": t.function,
            }
            for t in self.tools.values()
            if t.owner == identity
        ]

    def session_deleted(self, qualified: str) -> None:
        """The session's tools go with it (a router ``on_delete`` callback)."""
        gone = [name for name, tool in self.tools.items() if tool.session == qualified]
        for name in gone:
            self._remove(name)
        if gone:
            self.app.toolsets.announce()

    def _remove(self, name: str) -> None:
        self.tools.pop(name, None)
        try:
            self.server.local_provider.remove_tool(name)
        except (KeyError, NotFoundError):
            pass


class SessionToolVisibility(Middleware):
    """Another identity's session tools are not listed, and are unknown when called."""

    def __init__(self, tools: SessionTools) -> None:
        self.tools = tools

    async def on_list_tools(self, context: Any, call_next: Any) -> Any:
        listed = await call_next(context)
        if not self.tools.tools:
            return listed
        identity = caller_identity()
        return [tool for tool in listed if self.tools.visible(tool.name, identity)]

    async def on_call_tool(self, context: Any, call_next: Any) -> Any:
        if not self.tools.visible(str(context.message.name), caller_identity()):
            raise NotFoundError(f"Unknown tool: {context.message.name}")
        return await call_next(context)
