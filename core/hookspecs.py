"""Every hook a raykernel plugin can implement.

A plugin is a module (or any object) with functions marked ``@hookimpl`` whose names are the
hook names below. Built-in tools are plugins too (``raykernel.plugins.DEFAULT_PLUGINS``);
third-party plugins are found through the ``raykernel`` entry-point group::

    [project.entry-points.raykernel]
    my_plugin = "my_package.my_plugin"

Where hooks run:

* front end (the MCP server process): ``register_tools``, ``register_resources``,
  ``register_prompts``, ``session_created``, ``session_deleted``, ``health_info``.
* inside each session's kernel process (where its code runs, confined): ``before_execute``,
  ``after_execute``. A plugin that implements these must be importable on every node that runs
  sessions (the kernel may read the folder it is installed in).

Only the arguments a hook implementation names are passed to it (pluggy), so a plugin may
accept a subset of them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from raykernel.server.app import App

PROJECT = "raykernel"
ENTRY_POINT_GROUP = "raykernel"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

FRONT_END_HOOKS = frozenset(
    {
        "register_tools",
        "register_resources",
        "register_prompts",
        "session_created",
        "session_deleted",
        "health_info",
    }
)
SESSION_HOOKS = frozenset({"before_execute", "after_execute"})


@hookspec
def register_tools(register: Callable[..., Any], app: App) -> None:
    """Add MCP tools. Called once, in the front end, when the server is built.

    :param register: ``register(fn, *, name=None, title=None, description=None,
        annotations=None, toolset=None)``. ``fn`` is a plain or async function whose type hints
        become the tool's input schema (use ``typing.Annotated`` with ``pydantic.Field`` for
        limits and descriptions). ``toolset`` is the group the tool is offered with (the
        ``toolsets`` setting picks groups): a built-in one's name, or the plugin's own (None: a
        group named after the plugin). ``register`` may be kept and called after the start: the
        tool is then announced to connected clients. A name already taken by another plugin is
        refused with ``PluginError``.
    :param app: the server's ``App`` (``raykernel.api.App``): ``app.sessions.call_function``
        (run a function in a session's kernel and get its value), ``app.workspace``,
        ``app.files``, ``app.health``, ``app.settings``, ``app.resolve_session(session_id)``
        (the caller's active session when ``session_id`` is None), ``app.identity()``,
        ``app.timeout_for(timeout)``. docs/plugins.md documents them; import only from
        ``raykernel.api``. A tool may instead be a module-level function taking
        ``app: App = Depends(current_app)`` (fastmcp's ``Depends``), as the built-in tools are.

    A tool signals a refusal by raising a ``raykernel.errors.RaykernelError``; its message
    reaches the client. Any other exception is logged and masked as an internal error.
    """


@hookspec
def register_resources(register: Callable[..., Any], app: App) -> None:
    """Add MCP resources and resource templates. Called once, in the front end.

    :param register: ``register(fn, *, uri, name=None, title=None, description=None,
        mime_type=None)``. A ``uri`` with ``{placeholders}`` (``{path*}`` matches across ``/``)
        makes a template whose placeholders are ``fn``'s arguments; ``fn`` returns text,
        bytes, or a list of ``fastmcp.resources.ResourceContent``. A URI already taken is
        refused with ``PluginError``.
    :param app: as for ``register_tools``.
    """


@hookspec
def register_prompts(register: Callable[..., Any], app: App) -> None:
    """Add MCP prompts. Called once, in the front end.

    :param register: ``register(fn, *, name=None, title=None, description=None)``. ``fn``'s
        arguments are the prompt's arguments; it returns the prompt text (or a list of
        ``fastmcp.prompts.Message``). A name already taken is refused with ``PluginError``.
    :param app: as for ``register_tools``.
    """


@hookspec
def session_created(session_id: str, info: dict[str, Any]) -> None:
    """A session is up and ready. Called in the front end after creation or a restart (of its
    kernel or its actor).

    :param session_id: the session's id.
    :param info: ``{session_id, description, created_at, pid, node_id, restarted}``.
    """


@hookspec
def session_deleted(session_id: str) -> None:
    """A session was deleted and its actor killed. Called in the front end."""


@hookspec
def before_execute(session_id: str, code: str) -> None:
    """Code is about to run. Called inside the session's kernel process, before parsing.

    Raise any exception to refuse the run: the client gets ``success: false`` with
    ``error.ename == "ExecutionRefused"`` and the exception text; no code runs.

    :param session_id: the session's id.
    :param code: the code as received (for ``run_script``, not called).
    """


@hookspec
def after_execute(session_id: str, code: str, reply: dict[str, Any]) -> dict[str, Any] | None:
    """Code has run (successfully or not). Called inside the session's kernel process.

    :param reply: the reply that will be sent (``success``, ``stdout``, ``result``, ``error``,
        ...). Treat it as read-only.
    :returns: a dict merged into the reply's ``extras`` field, or None.
    """


@hookspec
def health_info(session_id: str, health: dict[str, Any]) -> dict[str, Any] | None:
    """Contribute to ``get_kernel_health``. Called in the front end.

    :param health: the health report so far (``status``, ``pid``, ``memory_usage``, ...).
    :returns: a dict merged into the report's ``extra`` field, or None.
    """
