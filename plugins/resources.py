"""MCP resources: files under outputs/, saved scripts, and each session's summary.

Run results link to the files they create with these URIs (``raykernel://outputs/...``), so a
client can fetch a figure or a CSV without a tool call. On a cluster, files are read on the
node of the caller's active session, like the file tools.

And the MCP prompts that set up the documented workflows.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import Field

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


@hookimpl
def register_prompts(register: Callable[..., Any], app: App) -> None:
    async def analyze_csv(
        path: Annotated[str, Field(description="CSV file in the workspace, e.g. outputs/d.csv")],
        question: Annotated[str, Field(description="What to find out.")] = "Summarize it.",
    ) -> str:
        """Start an analysis session on a CSV file."""
        session = "analysis"
        return (
            f"Analyze the CSV file `{path}` with the raykernel tools. {question}\n\n"
            f"1. create_session with session_id `{session}` and a description of the task, "
            f"then switch_session to it.\n"
            f"2. run_python_code: `import pandas as pd; df = pd.read_csv({path!r}); df.info(); "
            "df.head()` (install_dependencies with ['pandas'] first if the import fails).\n"
            "3. Explore in small steps; end a cell with an expression (e.g. a DataFrame) to see "
            "it as a table, use display(...) for several objects, and plot with matplotlib: "
            "figures come back as images and are saved under outputs/.\n"
            "4. Save reusable code with save_script, and results under outputs/.\n"
            "For anything that may run longer than a minute, pass background: true and follow "
            "it with get_run."
        )

    async def parallel_experiments(
        setup: Annotated[str, Field(description="Code that prepares the shared starting point.")],
        variants: Annotated[str, Field(description="The variants to compare, one per line.")],
    ) -> str:
        """Run experiment variants side by side, from one shared starting point."""
        lines = [v.strip() for v in variants.splitlines() if v.strip()]
        steps = "\n".join(
            f"   - fork_session `base` -> `exp{i}`, then run_python_code in it with "
            f"background: true for: {variant}"
            for i, variant in enumerate(lines, 1)
        )
        return (
            "Compare experiment variants in parallel with raykernel sessions.\n\n"
            "1. create_session `base`, and run this setup there with run_python_code:\n"
            f"```python\n{setup}\n```\n"
            f"2. For each variant:\n{steps}\n"
            "3. Poll each run with get_run (wait: 30) until done; compare the results, and use "
            "transfer_variable to gather values into one session if needed.\n"
            "4. delete_session the experiment sessions when done."
        )

    async def debug_session(
        session_id: Annotated[str, Field(description="The session to look at.")] = "default",
    ) -> str:
        """Find out why a session misbehaves (slow, stuck, crashed, out of memory)."""
        return (
            f"Diagnose session `{session_id}` with the raykernel tools.\n"
            f"1. get_kernel_health {{session_id: {session_id!r}}}: status, memory, CPU, queue.\n"
            f"2. get_history {{session_id: {session_id!r}, last: 10}}: what ran and how it ended.\n"
            "3. If it is busy for too long: interrupt_session (variables are kept).\n"
            "4. If it is dead or keeps crashing: restart_kernel with preserve_state: true, and "
            "check not_preserved in the reply.\n"
            "5. list_variables to see what state it holds."
        )

    register(analyze_csv, title="Analyze a CSV file")
    register(parallel_experiments, title="Parallel experiments")
    register(debug_session, title="Debug a session")
