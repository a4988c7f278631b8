"""An example third-party raykernel plugin.

* a tool, ``word_count``, that counts the words of a workspace file (front end);
* execute hooks (inside every session): refuse code that mentions ``FORBIDDEN_WORD`` and report
  how many lines each run had, under ``extras.example_lines``.
"""

from pathlib import Path
from typing import Any

from raykernel.hookspecs import hookimpl

FORBIDDEN_WORD = "launch_missiles"
_events: list[Path] = []  # where session events are logged: set when tools are registered


@hookimpl
def register_tools(register, app):
    async def word_count(path: str) -> dict[str, Any]:
        """Count the words of a workspace file."""
        text = app.workspace.read(path)["content"]
        return {"path": path, "words": len(text.split())}

    register(word_count, annotations={"readOnlyHint": True})
    _events.append(app.workspace.root / "example-plugin-events.log")


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
