"""run_python_code: run code in a session, Jupyter-style."""

import json
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import Field

from raykernel.app import App
from raykernel.arguments import OptionalSessionId
from raykernel.errors import InvalidArgument
from raykernel.hookspecs import hookimpl


def tool_result(reply: dict[str, Any]) -> Any:
    """Structured reply plus text and image content blocks, so both kinds of client see it."""
    from fastmcp.tools import ToolResult
    from mcp_types import ImageContent, TextContent

    images = reply.pop("images", [])
    content: list[Any] = [TextContent(type="text", text=json.dumps(reply, default=str))]
    content += [
        ImageContent(type="image", data=image["data"], mime_type=image["mime_type"])
        for image in images
    ]
    return ToolResult(content=content, structured_content=reply)


@hookimpl
def register_tools(register: Callable[..., Any], app: App) -> None:
    settings = app.settings
    Code = Annotated[str, Field(description="Python code to run.", min_length=1)]
    Timeout = Annotated[
        float | None,
        Field(
            description=f"Seconds before the run is interrupted (default "
            f"{settings.default_timeout:g}, max {settings.max_timeout:g}). The session and its "
            "variables are kept; the code is never re-run.",
            gt=0,
            le=settings.max_timeout,
        ),
    ]

    async def run_python_code(
        code: Code, session_id: OptionalSessionId = None, timeout: Timeout = None
    ) -> Any:
        """Run Python code in a session, like a Jupyter cell: variables persist between calls,
        the value of a trailing expression is returned as `result`, stdout/stderr are captured,
        errors come back with a traceback, and matplotlib figures are saved under outputs/ and
        returned as images."""
        if len(code.encode("utf-8", "surrogatepass")) > settings.max_code_bytes:
            raise InvalidArgument(f"code is larger than {settings.max_code_bytes} bytes")
        session = app.resolve_session(session_id)
        reply = await app.router.execute(session, code, app.timeout_for(timeout))
        return tool_result(reply)

    register(run_python_code, annotations={"destructiveHint": True, "openWorldHint": True})
