"""Health tools: answered from the router's bookkeeping and the process, never queued behind
a running cell."""

import shutil
from collections.abc import Callable
from typing import Annotated, Any

import psutil
from fastmcp.dependencies import Depends
from pydantic import Field

from raykernel.api import App, OptionalSessionId, __version__, current_app, hints, hookimpl

Wait = Annotated[float, Field(gt=0, le=60, description="Seconds to wait.")]


async def get_kernel_health(
    session_id: OptionalSessionId = None, app: App = Depends(current_app)
) -> dict[str, Any]:
    """A session's status, memory, CPU, uptime, runs, PID and node (answers while it runs)."""
    session = app.resolve_session(session_id)
    report = await app.health.health(session)
    report["queue"]["background_runs"] = await app.runs.for_session(session)
    return {**report, **_seed_health(report, app)}


def _seed_health(report: dict[str, Any], app: App) -> dict[str, Any]:
    """What python-mcp-server 0.6.2 answered besides raykernel's own keys."""
    memory = report.get("memory_usage")
    usage = shutil.disk_usage(app.workspace.root)
    return {
        "kernel_process": {
            "pid": report.get("pid"),
            "memory_mb": round(memory / 2**20, 2) if memory else None,
            "cpu_percent": report.get("cpu_percent"),
        },
        "metadata": {},
        "system": {
            "system_memory_mb": round(psutil.virtual_memory().available / 2**20, 2),
            "system_cpu_percent": psutil.cpu_percent(None),
            "disk_free_gb": round(usage.free / 2**30, 2),
        },
    }


async def check_kernel_responsiveness(
    session_id: OptionalSessionId = None, timeout: Wait = 5.0, app: App = Depends(current_app)
) -> dict[str, Any]:
    """Whether a session answers, and how fast (a busy one does, with busy: true)."""
    reply = await app.health.responsiveness(app.resolve_session(session_id), timeout)
    return {**reply, "timeout": timeout}


async def ping() -> dict[str, Any]:
    """Check that the server is up (does not wait for Ray)."""
    return {"status": "ok", "ok": True, "server": "raykernel", "version": __version__}


@hookimpl
def register_tools(register: Callable[..., Any]) -> None:
    register(
        get_kernel_health,
        title="Session health",
        annotations=hints(read_only=True),
        toolset="sessions",
    )
    register(
        check_kernel_responsiveness,
        title="Check a session answers",
        annotations=hints(read_only=True),
        toolset="sessions",
    )
    register(ping, title="Ping the server", annotations=hints(read_only=True), toolset="sessions")
