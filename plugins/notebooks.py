"""Notebooks (Jupyter's format, nbformat 4): export a session's history as a .ipynb, run a
notebook's code cells in a session as papermill would, and the export as a resource."""

import base64
from collections.abc import Callable
from pathlib import PurePosixPath
from typing import Annotated, Any

from fastmcp import Context
from fastmcp.dependencies import Depends
from pydantic import Field

from raykernel.api import (
    App,
    FileNotFound,
    InvalidArgument,
    OptionalSessionId,
    Workspace,
    cell_outputs,
    current_app,
    hints,
    hookimpl,
    notebook,
)

NotebookPath = Annotated[
    str,
    Field(
        description="Workspace path of the .ipynb file, e.g. 'outputs/analysis.ipynb'.",
        min_length=1,
        max_length=1024,
        pattern=r"\.ipynb$",
    ),
]
StopOnError = Annotated[
    bool, Field(description="Stop at the first cell that fails (the rest are not run).")
]


async def _cells(app: App, session: str) -> list[dict[str, Any]]:
    entries = await app.sessions.cells(session)
    return [
        {"code": e["code"], "execution_count": e["execution_count"], "outputs": e["cell_outputs"]}
        for e in entries
        if e.get("status") != "note" and "cell_outputs" in e
    ]


def _image_reader(app: App, session: str | None) -> Callable[[str], Any]:
    async def read(path: str) -> str | None:
        try:
            reply = await app.files.run(session, Workspace.read, path)
        except (InvalidArgument, FileNotFound):  # deleted since, or grown past max_file_bytes
            return None
        if reply["encoding"] == "base64":
            return str(reply["content"])
        return base64.b64encode(reply["content"].encode()).decode()

    return read


async def _write(app: App, session: str | None, path: str, book: Any) -> dict[str, Any]:
    import nbformat

    return await app.files.run(session, Workspace.write, path, nbformat.writes(book))


async def session_notebook(app: App, session_id: str | None) -> Any:
    """The session's history as a validated notebook (its images read on its node)."""
    session = app.resolve_session(session_id)
    reader = _image_reader(app, app.files_session(session_id))
    return await notebook(await _cells(app, session), reader)


async def export_notebook(
    path: NotebookPath, session_id: OptionalSessionId = None, app: App = Depends(current_app)
) -> dict[str, Any]:
    """Write the session's history as a Jupyter notebook (.ipynb) in the workspace: one code
    cell per run, in order, with its outputs as Jupyter records them (stdout/stderr streams,
    the value with all its forms, displays and figures with their images inlined, errors
    with their traceback) and execution counts. Opens in JupyterLab and VS Code."""
    session = app.resolve_session(session_id)
    book = await session_notebook(app, session_id)
    written = await _write(app, app.files_session(session_id), path, book)
    kinds = sorted({o["output_type"] for cell in book.cells for o in cell.outputs})
    return {
        "session_id": app.shown(session),
        "path": written["path"],
        "cells": len(book.cells),
        "output_types": kinds,
        "size": written["size"],
    }


async def run_notebook(
    path: NotebookPath,
    ctx: Context,
    session_id: OptionalSessionId = None,
    stop_on_error: StopOnError = True,
    output_path: Annotated[
        str | None,
        Field(
            description="Where to write the executed notebook (default: beside it, "
            "<name>.executed.ipynb).",
            max_length=1024,
            pattern=r"\.ipynb$",
        ),
    ] = None,
    app: App = Depends(current_app),
) -> dict[str, Any]:
    """Run a notebook's code cells in a session, in order, as papermill would: each cell is a
    run (history, execution count), progress is reported per cell, and the executed notebook
    (with every cell's outputs) is written beside the original. The reply lists each cell's
    status."""
    import nbformat

    session = app.resolve_session(session_id)
    files_session = app.files_session(session_id)
    source = await app.files.run(files_session, Workspace.read, path)
    if source["encoding"] != "utf-8":
        raise InvalidArgument(f"{path!r} is not a text file")
    try:
        book = nbformat.reads(source["content"], as_version=4)
    except Exception as exc:
        raise InvalidArgument(f"{path!r} is not a Jupyter notebook: {exc}") from None
    code_cells = [cell for cell in book.cells if cell.cell_type == "code"]
    read_image = _image_reader(app, files_session)
    statuses: list[dict[str, Any]] = []
    failed = False
    for index, cell in enumerate(code_cells):
        await ctx.report_progress(index, len(code_cells), f"cell {index + 1}/{len(code_cells)}")
        if failed or not cell.source.strip():
            cell.outputs, cell.execution_count = [], None
            statuses.append({"cell": index, "status": "skipped" if failed else "empty"})
            continue
        reply = await app.sessions.execute(session, cell.source)
        ran = {"code": cell.source, "execution_count": reply["execution_count"]}
        done = await notebook([{**ran, "outputs": cell_outputs(reply)}], read_image)
        cell.outputs = done.cells[0].outputs
        cell.execution_count = reply["execution_count"]
        status: dict[str, Any] = {"cell": index, "execution_count": reply["execution_count"]}
        if reply["success"]:
            status["status"] = "ok"
        else:
            error = reply["error"] or {}
            status.update(status="error", error=f"{error.get('ename')}: {error.get('evalue')}")
            failed = stop_on_error
        statuses.append(status)
    await ctx.report_progress(len(code_cells), len(code_cells), "done")
    target = output_path or str(PurePosixPath(path).with_suffix("")) + ".executed.ipynb"
    nbformat.validate(book)
    written = await _write(app, files_session, target, book)
    return {
        "session_id": app.shown(session),
        "path": path,
        "output_path": written["path"],
        "success": all(s["status"] in ("ok", "empty") for s in statuses),
        "cells": statuses,
    }


@hookimpl
def register_tools(register: Callable[..., Any]) -> None:
    register(
        export_notebook,
        title="Export a notebook",
        annotations=hints(read_only=False),
        toolset="notebooks",
    )
    register(
        run_notebook,
        title="Run a notebook",
        annotations=hints(read_only=False, open_world=True),
        toolset="notebooks",
    )


@hookimpl
def register_resources(register: Callable[..., Any], app: App) -> None:
    async def notebook_resource(session_id: str) -> str:
        import nbformat

        book = await session_notebook(app, session_id)
        return str(nbformat.writes(book))

    register(
        notebook_resource,
        uri="raykernel://sessions/{session_id}/notebook",
        name="session_notebook",
        title="A session's history as a notebook",
        description="The session's runs as a Jupyter notebook (nbformat 4 JSON), as "
        "export_notebook writes it.",
        mime_type="application/x-ipynb+json",
    )
