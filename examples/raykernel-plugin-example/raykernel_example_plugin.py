"""An example third-party raykernel plugin: one of every hook.

* a tool, ``word_count``, that counts the words of a workspace file (front end);
* a resource template, ``example://words/{path*}``, and a prompt, ``count_words`` (front end);
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
