"""An example third-party raykernel plugin: one of every hook.

* a tool, ``dataframe_summary``, that loads a CSV with pandas inside the caller's session and
  returns its shape and column types (``app.sessions.call_function``);
* a tool, ``word_count``, that counts the words of a workspace file (front end);
* a resource template, ``example://words/{path*}``, and a prompt, ``count_words`` (front end);
* execute hooks (inside every session): refuse code that mentions ``FORBIDDEN_WORD`` and report
  how many lines each run had, under ``extras.example_lines``.
"""

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from raykernel.api import OptionalSessionId, WorkspacePath, hints, hookimpl

FORBIDDEN_WORD = "launch_missiles"
_events: list[Path] = []  # where session events are logged: set when tools are registered


def summarize_csv(namespace: Mapping[str, Any], path: str, max_columns: int) -> dict[str, Any]:
    """Runs inside the session's kernel (with the session's own pandas): only the summary,
    as JSON data, travels back."""
    import pandas as pd

    frame = pd.read_csv(path)
    dtypes = {str(name): str(dtype) for name, dtype in frame.dtypes.items()}
    return {
        "shape": list(frame.shape),
        "dtypes": dict(list(dtypes.items())[:max_columns]),
        "columns_shown": min(len(dtypes), max_columns),
        "frames_in_session": sorted(k for k, v in namespace.items() if isinstance(v, pd.DataFrame)),
    }


@hookimpl
def register_tools(register, app):
    async def dataframe_summary(
        path: WorkspacePath, session_id: OptionalSessionId = None, max_columns: int = 200
    ) -> dict[str, Any]:
        """Load a CSV file of the workspace with pandas in a session, and return its shape, the
        type of each column, and the DataFrames the session already holds."""
        full = str(app.workspace.resolve(path))  # PathOutsideWorkspace for "../x"
        summary = await app.sessions.call_function(session_id, summarize_csv, full, max_columns)
        return {"path": app.workspace.relative(Path(full)), **summary}

    register(dataframe_summary, title="Summarize a CSV", annotations=hints(read_only=True))

    async def word_count(path: str) -> dict[str, Any]:
        """Count the words of a workspace file."""
        text = app.workspace.read(path)["content"]
        return {"path": path, "words": len(text.split())}

    register(
        word_count,
        title="Count words",
        annotations={
            "readOnlyHint": True,
            "destructiveHint": False,
            "idempotentHint": True,
            "openWorldHint": False,
        },
    )
    _events.append(app.workspace.root / "example-plugin-events.log")


@hookimpl
def register_resources(register, app):
    async def words(path: str) -> dict[str, Any]:
        text = app.workspace.read(path)["content"]
        return {"path": path, "words": text.split()[:100]}

    register(words, uri="example://words/{path*}", description="The words of a workspace file.")


@hookimpl
def register_prompts(register, app):
    async def count_words(path: str) -> str:
        """Ask for a word count of a workspace file."""
        return f"Use the word_count tool on {path} and tell me the result."

    register(count_words)


@hookimpl
def before_execute(session_id: str, code: str) -> None:
    if FORBIDDEN_WORD in code:
        raise PermissionError(f"the example plugin refuses code that calls {FORBIDDEN_WORD}")


@hookimpl
def after_execute(session_id: str, code: str, reply: dict) -> dict:
    return {"example_lines": len(code.splitlines())}


def _log(event: str) -> None:
    for path in _events:
        with path.open("a") as handle:
            handle.write(event + "\n")


@hookimpl
def session_created(session_id: str, info: dict) -> None:
    _log(f"created {session_id} restarted={info['restarted']}")


@hookimpl
def session_deleted(session_id: str) -> None:
    _log(f"deleted {session_id}")


@hookimpl
def health_info(session_id: str, health: dict) -> dict:
    return {"example_seen": session_id}
