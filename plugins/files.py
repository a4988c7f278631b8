"""Workspace file tools. Every path is resolved and must stay inside the workspace; on a cluster,
each operation runs on the node of the session it is for (``app.files``)."""

from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastmcp.dependencies import Depends
from pydantic import Field

from raykernel.api import (
    App,
    ForSession,
    Workspace,
    WorkspacePath,
    current_app,
    hints,
    hookimpl,
)

Folder = Annotated[str, Field(description="Folder, relative to the workspace.")]
Recursive = Annotated[bool, Field(description="Include sub-folders.")]
Content = Annotated[str, Field(description="Text, or base64 (see encoding).")]
Encoding = Annotated[Literal["utf-8", "base64"], Field(description="'base64' for binary content.")]


async def list_files(
    path: Folder = ".",
    recursive: Recursive = False,
    session_id: ForSession = None,
    app: App = Depends(current_app),
) -> dict[str, Any]:
    """List a workspace folder's files (at most 1000 entries)."""
    return await app.files.run(app.files_session(session_id), Workspace.list, path, recursive)


async def read_file(
    path: WorkspacePath, session_id: ForSession = None, app: App = Depends(current_app)
) -> dict[str, Any]:
    """Read a workspace file: UTF-8 text, or base64 for binary files."""
    return await app.files.run(app.files_session(session_id), Workspace.read, path)


async def write_file(
    path: WorkspacePath,
    content: Content,
    encoding: Encoding = "utf-8",
    session_id: ForSession = None,
    app: App = Depends(current_app),
) -> dict[str, Any]:
    """Write a workspace file (folders are made); every session sees it."""
    return await app.files.run(
        app.files_session(session_id), Workspace.write, path, content, encoding
    )


async def delete_file(
    path: WorkspacePath, session_id: ForSession = None, app: App = Depends(current_app)
) -> dict[str, Any]:
    """Delete a workspace file or folder."""
    return await app.files.run(app.files_session(session_id), Workspace.delete, path)


async def get_workspace_info(
    session_id: ForSession = None, app: App = Depends(current_app)
) -> dict[str, Any]:
    """The workspace's path, its outputs/ and scripts/ folders, size and free space."""
    return await app.files.run(app.files_session(session_id), Workspace.info)


@hookimpl
def register_tools(register: Callable[..., Any]) -> None:
    register(
        list_files, title="List workspace files", annotations=hints(read_only=True), toolset="files"
    )
    register(
        read_file, title="Read a workspace file", annotations=hints(read_only=True), toolset="files"
    )
    register(
        write_file,
        title="Write a workspace file",
        annotations=hints(read_only=False, destructive=True, idempotent=True),
        toolset="files",
    )
    register(
        delete_file,
        title="Delete a workspace file",
        annotations=hints(read_only=False, destructive=True, idempotent=True),
        toolset="files",
    )
    register(
        get_workspace_info,
        title="Workspace information",
        annotations=hints(read_only=True),
        toolset="files",
    )
