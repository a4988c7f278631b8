"""Scripts: saved under the workspace's scripts/, importable as modules from every session of
the same identity."""

import re
from collections.abc import Callable
from typing import Annotated, Any

from fastmcp.dependencies import Depends
from pydantic import Field

from raykernel.api import (
    App,
    ForSession,
    InvalidArgument,
    OptionalSessionId,
    Workspace,
    current_app,
    hints,
    hookimpl,
    tool_result,
)

SCRIPT_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,99}")

ScriptName = Annotated[
    str,
    Field(
        description="A module name (letters, digits, '_'; '.py' optional).",
        max_length=103,
    ),
]
Source = Annotated[str, Field(description="Python source.")]
Arguments = Annotated[
    list[Annotated[str, Field(max_length=4096)]],
    Field(description="Command-line arguments (sys.argv[1:]).", max_length=256),
]


def module_name(name: str) -> str:
    stem = name[:-3] if name.endswith(".py") else name
    if not SCRIPT_NAME.fullmatch(stem):
        raise InvalidArgument(
            f"invalid script name {name!r}: use a Python module name (letters, digits, '_')"
        )
    return stem


async def save_script(
    name: ScriptName,
    content: Source,
    session_id: ForSession = None,
    app: App = Depends(current_app),
) -> dict[str, Any]:
    """Save Python code as scripts/<name>.py, importable as <name> in all your sessions."""
    stem = module_name(name)
    written = await app.files.run(
        app.files_session(session_id), Workspace.write, f"scripts/{stem}.py", content
    )
    return {"script": written["path"], "name": stem, "size": written["size"]}


async def run_script(
    name: ScriptName,
    args: Arguments = [],  # noqa: B006 - pydantic copies defaults
    session_id: OptionalSessionId = None,
    app: App = Depends(current_app),
) -> Any:
    """Run a saved script in a session like %run (as __main__, with sys.argv); its names
    stay."""
    stem = module_name(name)
    session = app.resolve_session(session_id)
    found = await app.files.run(session, Workspace.is_file, f"scripts/{stem}.py")
    if not found["is_file"]:
        raise InvalidArgument(f"no script named {stem!r}; see list_scripts")
    reply = await app.sessions.run_script(
        session, found["path"], list(args), app.settings.max_timeout, progress=True
    )
    return tool_result(reply, app.settings.result_format)


async def list_scripts(
    session_id: ForSession = None, app: App = Depends(current_app)
) -> dict[str, Any]:
    """Saved scripts: name, path, size, modified time."""
    listing = await app.files.run(app.files_session(session_id), Workspace.list, "scripts")
    scripts = [
        {"name": entry["path"].rsplit("/", 1)[-1][:-3], **entry}
        for entry in listing["entries"]
        if entry["type"] == "file" and entry["path"].endswith(".py")
    ]
    return {"scripts": scripts, "total": len(scripts)}


@hookimpl
def register_tools(register: Callable[..., Any]) -> None:
    register(
        save_script,
        title="Save a script",
        annotations=hints(read_only=False, destructive=True, idempotent=True),
        toolset="scripts",
    )
    register(
        run_script,
        title="Run a saved script",
        annotations=hints(read_only=False, destructive=True, open_world=True),
        toolset="scripts",
    )
    register(
        list_scripts,
        title="List saved scripts",
        annotations=hints(read_only=True),
        toolset="scripts",
    )
