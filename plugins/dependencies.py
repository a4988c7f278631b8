"""install_dependencies: pip/uv packages into one session's own directory."""

from collections.abc import Callable
from typing import Annotated, Any

from fastmcp.dependencies import Depends
from pydantic import Field

from raykernel.api import App, OptionalSessionId, Sessions, current_app, hints, hookimpl

Packages = Annotated[
    list[Annotated[str, Field(max_length=200)]],
    Field(
        description="Requirements such as 'requests' or 'pandas>=2.2' (no options, URLs).",
        min_length=1,
        max_length=Sessions.MAX_PACKAGES,
    ),
]


async def install_dependencies(
    packages: Packages, session_id: OptionalSessionId = None, app: App = Depends(current_app)
) -> dict[str, Any]:
    """Install packages into one session only (wheels only, unless the server allows
    builds)."""
    # Bad specs are refused before anything reaches the session.
    return await app.sessions.install(session_id, packages, progress=True)


@hookimpl
def register_tools(register: Callable[..., Any]) -> None:
    register(
        install_dependencies,
        title="Install packages",
        annotations=hints(read_only=False, open_world=True),
        toolset="execution",
    )
