"""install_dependencies: pip/uv packages into one session's own directory."""

from collections.abc import Callable
from typing import Annotated, Any

from fastmcp.dependencies import Depends
from pydantic import Field

from raykernel.actors.installer import MAX_PACKAGES, parse_requirements
from raykernel.errors import SourceBuildRefused
from raykernel.hookspecs import hookimpl
from raykernel.server.app import App, current_app
from raykernel.server.arguments import OptionalSessionId, hints
from raykernel.server.progress import progress_for_request

Packages = Annotated[
    list[Annotated[str, Field(max_length=200)]],
    Field(
        description="Requirements such as 'requests' or 'pandas>=2.2' (no options, URLs).",
        min_length=1,
        max_length=MAX_PACKAGES,
    ),
]


async def install_dependencies(
    packages: Packages, session_id: OptionalSessionId = None, app: App = Depends(current_app)
) -> dict[str, Any]:
    """Install packages into one session only (wheels only, unless the server allows
    builds)."""
    # Refuse bad specs here, before anything reaches a session: a local package must be in the
    # session's workspace (its session checks again).
    session = app.resolve_session(session_id)
    for requirement in parse_requirements(packages, allow_urls=app.settings.allow_package_urls):
        if (requirement.url or "").startswith("file://"):
            app.workspace_of(session).resolve(requirement.url.removeprefix("file://"))
    async with progress_for_request(app.router) as on_start:
        reply = await app.router.install(session, packages, on_start)
    error = reply.get("error") or {}
    if error.get("ename") == "SourceBuildRefused":
        raise SourceBuildRefused(str(error.get("evalue")))
    return reply


@hookimpl
def register_tools(register: Callable[..., Any]) -> None:
    register(
        install_dependencies,
        title="Install packages",
        annotations=hints(read_only=False, open_world=True),
        toolset="execution",
    )
