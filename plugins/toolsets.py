"""enable_toolsets: turn on groups of tools the server does not offer by default (they cost
every conversation's context while on, so most start off)."""

from collections.abc import Callable
from typing import Annotated, Any

from fastmcp.dependencies import Depends
from pydantic import Field

from raykernel.api import (
    App,
    InvalidArgument,
    InvalidSetting,
    NotAllowed,
    current_app,
    hints,
    hookimpl,
)

Names = Annotated[
    list[Annotated[str, Field(max_length=100)]],
    Field(description="Toolset names, or 'all'.", min_length=1, max_length=64),
]


async def enable_toolsets(toolsets: Names, app: App = Depends(current_app)) -> dict[str, Any]:
    if not app.is_operator():
        raise NotAllowed("the tools offered are the server's: only its operator changes them")
    try:
        enabled = await app.toolsets.enable(toolsets)
    except InvalidSetting as exc:  # an argument here, not the server's setting
        raise InvalidArgument(exc.message.removeprefix("toolsets: ")) from None
    return {"enabled": sorted(enabled), "toolsets": app.toolsets.describe()}


@hookimpl
def register_tools(register: Callable[..., Any], app: App) -> None:
    # The model learns here what it may turn on; a plugin's group is listed in the reply.
    enable_toolsets.__doc__ = "Offer more tools to every client: " + "; ".join(
        f"{name} ({what})" for name, what in app.toolsets.off_by_default().items()
    )
    register(
        enable_toolsets,
        title="Offer more tools",
        annotations=hints(read_only=False, idempotent=True),
        toolset="sessions",
    )
