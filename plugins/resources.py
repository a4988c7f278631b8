"""MCP resources: files under outputs/, saved scripts, and each session's summary.

Run results link to the files they create with these URIs (``raykernel://outputs/...``), so a
client can fetch a figure or a CSV without a tool call. On a cluster, files are read on the
node of the caller's active session, like the file tools.
"""

import mimetypes
from collections.abc import Callable
from typing import Any

from raykernel.api import (
    App,
    FileNotFound,
    InvalidArgument,
    ResourceNotFound,
    Workspace,
    hookimpl,
    resource_uri,
)


@hookimpl
def register_resources(register: Callable[..., Any], app: App) -> None:
    from fastmcp.resources import ResourceContent

    async def read(path: str) -> Any:
        import base64

        session = app.files_session(None)
        try:
            found = (await app.files.run(session, Workspace.is_file, path))["is_file"]
        except (InvalidArgument, FileNotFound):  # outside the workspace, in the store, a bad name
            found = False
        if not found:
            raise ResourceNotFound(f"no file at {path[:300]!r} for this resource")
        reply = await app.files.run(session, Workspace.read, path)
        mime = mimetypes.guess_type(path)[0]
        if reply["encoding"] == "base64":
            data = base64.b64decode(reply["content"])
            return [ResourceContent(data, mime_type=mime or "application/octet-stream")]
        return [ResourceContent(reply["content"], mime_type=mime or "text/plain")]

    async def output_file(path: str) -> Any:
        return await read(f"outputs/{path}")

    async def script(name: str) -> Any:
        stem = name[:-3] if name.endswith(".py") else name
        if not stem.isidentifier():
            raise InvalidArgument(f"invalid script name {name!r}")
        return await read(f"scripts/{stem}.py")

    async def session_summary(session_id: str) -> dict[str, Any]:
        qualified = app.resolve_session(session_id)
        health = await app.health.health(qualified)  # SessionNotFound if there is none
        return {
            "session_id": app.shown(qualified),
            **(await app.session_summary(qualified)),
            "health": health,
            "background_runs": await app.runs.for_session(qualified),
        }

    async def sessions() -> dict[str, Any]:
        return {  # list_sessions' own listing
            name: {**summary, "uri": f"raykernel://sessions/{name}"}
            for name, summary in (await app.session_listing()).items()
        }

    async def outputs() -> dict[str, Any]:
        listing = await app.files.run(app.files_session(None), Workspace.list, "outputs", True)
        return {
            "files": [
                {**entry, "uri": resource_uri(entry["path"])}
                for entry in listing["entries"]
                if entry["type"] == "file"
            ],
            "truncated": listing["truncated"],
        }

    register(
        output_file,
        uri="raykernel://outputs/{path*}",
        name="output_file",
        title="A file under outputs/",
        description="A file sessions wrote under the workspace's outputs/ folder (figures, "
        "tables, data). Run results link here. Each read carries the file's own MIME type.",
        mime_type="application/octet-stream",
    )
    register(
        script,
        uri="raykernel://scripts/{name}",
        name="script",
        title="A saved script",
        description="The source of a script saved with save_script.",
        mime_type="text/x-python",
    )
    register(
        session_summary,
        uri="raykernel://sessions/{session_id}",
        name="session",
        title="A session's summary",
        description="A session's description, status, node, health and background runs.",
        mime_type="application/json",
    )
    register(
        sessions,
        uri="raykernel://sessions",
        name="sessions",
        title="All sessions",
        description="Every session with its status and the URI of its summary.",
        mime_type="application/json",
    )
    register(
        outputs,
        uri="raykernel://outputs",
        name="outputs",
        title="Files under outputs/",
        description="Every file under outputs/ with its URI.",
        mime_type="application/json",
    )
