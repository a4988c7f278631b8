"""run_python_code (in the foreground with live progress, or in the background), get_run,
cancel_run and list_runs."""

from collections.abc import Callable
from typing import Annotated, Any

from fastmcp.dependencies import Depends
from pydantic import Field

from raykernel.api import (
    App,
    InvalidArgument,
    OptionalSessionId,
    current_app,
    hints,
    hookimpl,
    omittable,
    run_result,
    tool_result,
)

Code = Annotated[str, Field(description="Python code to run.", min_length=1)]
Timeout = Annotated[
    float | None,
    Field(gt=0),
    omittable("Seconds before the run is interrupted.", type="number", exclusiveMinimum=0),
]
Background = Annotated[
    bool,
    Field(description="Return a run_id at once, for get_run (toolset runs) to follow."),
]
RunId = Annotated[str, Field(description="The run_id from a background run.", max_length=64)]
Wait = Annotated[
    float, Field(ge=0, le=300, description="Seconds to wait for the run to finish (0: now).")
]


async def run_python_code(
    code: Code,
    session_id: OptionalSessionId = None,
    timeout: Timeout = None,
    background: Background = False,
    app: App = Depends(current_app),
) -> Any:
    """Run Python code in a session like a Jupyter cell: variables persist, a trailing
    expression's value is `result`, figures come back as images."""
    settings = app.settings
    if timeout is not None and timeout > settings.max_timeout:
        raise InvalidArgument(f"timeout: must be at most {settings.max_timeout:g}")
    if len(code.encode("utf-8", "surrogatepass")) > settings.max_code_bytes:
        raise InvalidArgument(f"code is larger than {settings.max_code_bytes} bytes")
    session = app.resolve_session(session_id)
    if background:
        run = await app.runs.submit(session, code, timeout or settings.max_timeout)
        return {
            "run_id": run["run_id"],
            "session_id": app.shown(session),
            "status": run["status"],
            "next": _follow_up(app),
        }
    reply = await app.sessions.execute(session, code, timeout, progress=True)
    return tool_result(reply, settings.result_format)


def _follow_up(app: App) -> str:
    follow = "get_run {run_id, wait} for its output and result; cancel_run to stop"
    if "runs" in app.toolsets.active:
        return follow
    return "enable_toolsets {toolsets: ['runs']}, then " + follow


async def get_run(run_id: RunId, wait: Wait = 0.0, app: App = Depends(current_app)) -> Any:
    """A background run: queued, running (output so far), done (its reply, as
    run_python_code's) or cancelled."""
    return run_result(await app.runs.get(run_id, app.caller(), wait), app.settings.result_format)


async def cancel_run(run_id: RunId, app: App = Depends(current_app)) -> Any:
    """Stop a background run: a queued one never starts, a running one is interrupted (its
    variables kept)."""
    return run_result(await app.runs.cancel(run_id, app.caller()), app.settings.result_format)


async def list_runs(app: App = Depends(current_app)) -> dict[str, Any]:
    """Recent runs in your sessions, background and foreground, with their status."""
    runs = await app.runs.listing(app.caller())
    return {"runs": runs, "total": len(runs)}


@hookimpl
def register_tools(register: Callable[..., Any]) -> None:
    register(
        run_python_code,
        title="Run Python code",
        annotations=hints(read_only=False, destructive=True, open_world=True),
        toolset="execution",
    )
    register(
        get_run,
        title="Get a background run",
        annotations=hints(read_only=True),
        toolset="runs",
    )
    register(
        cancel_run,
        title="Cancel a background run",
        annotations=hints(read_only=False, destructive=True, idempotent=True),
        toolset="runs",
    )
    register(
        list_runs,
        title="List background runs",
        annotations=hints(read_only=True),
        toolset="runs",
    )
