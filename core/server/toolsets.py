"""Toolsets: named groups of tools, of which clients are offered those the ``toolsets`` setting
picks. Every tool's schema is read by the model in every conversation, so the groups a client
rarely needs stay off until someone turns them on.

A tool of a toolset that is off is hidden by one fastmcp visibility transform: it is not
listed, and calling it is ``ToolNotFound`` like a name no plugin registers. A change at run time
(``enable_toolsets``, ``app.toolsets``, a plugin registering a tool after start) is announced
with ``notifications/tools/list_changed`` to every connected client that keeps an MCP session,
and on the stream of the request that made it.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import re
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

import mcp_types
from fastmcp.server.middleware import Middleware
from fastmcp.server.transforms.visibility import Visibility
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from raykernel.errors import InvalidSetting

log = logging.getLogger(__name__)

# The built-in groups, and what each is for (enable_toolsets names them to the model).
BUILTIN_TOOLSETS: dict[str, str] = {
    "sessions": "create, switch, list, delete sessions; health",
    "execution": "run code, install packages, restart",
    "files": "workspace files",
    "scripts": "saved scripts",
    "introspection": "variables, completion, inspection",
    "runs": "background runs, interrupt",
    "state": "snapshots, fork, transfer, hibernate, rewind, variants, network lists",
    "notebooks": "history, export and run notebooks",
    "datasets": "SQL (DuckDB) over workspace CSV, Parquet and JSON files",
    "codemode": "session functions as tools",
}
# "default": every tool python-mcp-server 0.6.2's clients call (raykernel implements its API),
# in at most 12 KB of tools/list, and every third-party plugin's group.
DEFAULT_BUILTIN = ("sessions", "execution", "files", "scripts", "introspection")
ALL, DEFAULT = "all", "default"

# Connections told about changes; the oldest are forgotten first.
MAX_LISTENERS = 10_000


def toolset_of_plugin(plugin_name: str) -> str:
    """The group of a plugin's tools that declare none: named after the plugin."""
    return re.sub(r"[^A-Za-z0-9_.:-]+", "_", plugin_name).strip("_")[:100] or "plugin"


class _Hidden(Visibility):
    """Marks the tools of the toolsets that are off as disabled: one transform whose set
    changes, instead of a transform added per change."""

    def __init__(self) -> None:
        super().__init__(False, tags=set(), components={"tool"})

    def hide(self, toolsets: set[str]) -> None:
        self.tags = set(toolsets)


class Toolsets:
    """Which toolsets are on, and who is told when that changes."""

    def __init__(self, server: Any) -> None:
        self.server = server
        # toolset -> its tools, as the plugins registered them.
        self.groups: dict[str, list[str]] = {}
        self.active: set[str] = set()
        self._hidden = _Hidden()
        server.add_transform(self._hidden)
        self._listeners: OrderedDict[str, Any] = OrderedDict()
        self._notices: set[asyncio.Task[None]] = set()
        self._live = False

    # -- which groups -------------------------------------------------------------------------

    def add_tool(self, toolset: str, tool: str) -> bool:
        """Record a registered tool; whether it is offered (its toolset is on)."""
        self.groups.setdefault(toolset, []).append(tool)
        if not self._live:
            return False
        if toolset in self.active:
            self._schedule_notice()
            return True
        self._apply()  # a new group stays off until asked for
        return False

    def off_by_default(self) -> dict[str, str]:
        """The built-in toolsets that are off unless asked for, each with what it is for."""
        return {
            name: what for name, what in BUILTIN_TOOLSETS.items() if name not in DEFAULT_BUILTIN
        }

    def default(self) -> set[str]:
        third_party = set(self.groups) - set(BUILTIN_TOOLSETS)
        return {*DEFAULT_BUILTIN, *third_party}

    def resolve(self, names: Iterable[str]) -> set[str]:
        """The toolsets ``names`` mean (``all``, ``default`` or names); an unknown name is
        ``InvalidSetting``, naming those there are."""
        chosen: set[str] = set()
        for name in names:
            if name == ALL:
                chosen |= set(self.groups)
            elif name == DEFAULT:
                chosen |= self.default()
            elif name in self.groups:
                chosen.add(name)
            else:
                known = ", ".join(sorted({ALL, DEFAULT, *self.groups}))
                raise InvalidSetting(f"toolsets: no toolset named {name!r} (there are: {known})")
        return chosen

    def start(self, names: Iterable[str]) -> None:
        """Apply the setting once every plugin has registered its tools."""
        self.active = self.resolve(names)
        self._apply()
        self._live = True

    def _apply(self) -> None:
        self._hidden.hide(set(self.groups) - self.active)

    def offered(self) -> list[str]:
        return sorted(tool for group in self.active for tool in self.groups.get(group, []))

    def describe(self) -> dict[str, dict[str, Any]]:
        return {
            name: {"on": name in self.active, "tools": sorted(tools)}
            for name, tools in sorted(self.groups.items())
        }

    async def enable(self, names: Iterable[str]) -> set[str]:
        """Turn toolsets on for every client; the ones that were off."""
        added = self.resolve(names) - self.active
        if added:
            self.active |= added
            self._apply()
            await self.notify()
        return added

    async def disable(self, names: Iterable[str]) -> set[str]:
        """Turn toolsets off for every client; the ones that were on."""
        removed = self.resolve(names) & self.active
        if removed:
            self.active -= removed
            self._apply()
            await self.notify()
        return removed

    # -- telling clients ----------------------------------------------------------------------

    def listen(self, context: Any) -> None:
        """Remember the connection of a request (one with an MCP session: a 2026-07-28 request
        has no channel for a notification that is not its own reply's)."""
        try:
            request = context.request_context
            if request is None or request.protocol_version in MODERN_PROTOCOL_VERSIONS:
                return
            session_id, session = context.session_id, context.session
        except RuntimeError:  # no session (yet)
            return
        self._listeners[session_id] = session
        self._listeners.move_to_end(session_id)
        while len(self._listeners) > MAX_LISTENERS:
            self._listeners.popitem(last=False)

    async def notify(self) -> None:
        """``notifications/tools/list_changed`` to every known connection, and on the current
        request's own stream (the only way to a 2026-07-28 client)."""
        context, current = _current_request()
        for session_id, session in list(self._listeners.items()):
            if session_id == current:
                continue
            try:
                await session.send_notification(mcp_types.ToolListChangedNotification())
            except Exception:  # the connection is gone: forget it
                log.debug("tools/list_changed not delivered to %s", session_id, exc_info=True)
                self._listeners.pop(session_id, None)
        if context is not None:
            await context.send_notification(mcp_types.ToolListChangedNotification())

    def announce(self) -> None:
        """``notify`` every connection soon, from code that cannot await it (a callback):
        outside the current request, whose own stream may be closed by then."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        task = loop.create_task(self.notify(), context=contextvars.Context())
        self._notices.add(task)
        task.add_done_callback(self._notices.discard)

    def _schedule_notice(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop, no server running: nobody to tell
        task = loop.create_task(self.notify())
        self._notices.add(task)  # the loop keeps only a weak reference to a task
        task.add_done_callback(self._notices.discard)


def _current_request() -> tuple[Any, str | None]:
    """The fastmcp context of the request being served (None outside one), and its MCP session
    id (None for a 2026-07-28 request)."""
    from fastmcp.server.dependencies import get_context

    try:
        context = get_context()
    except RuntimeError:
        return None, None
    request = context.request_context
    if request is None:
        return None, None
    if request.protocol_version in MODERN_PROTOCOL_VERSIONS:
        return context, None
    return context, context.session_id


class ListenForToolChanges(Middleware):
    """Remembers each connection that may be told of a change to the tools."""

    def __init__(self, toolsets: Toolsets) -> None:
        self.toolsets = toolsets

    async def on_message(self, context: Any, call_next: Any) -> Any:
        if context.fastmcp_context is not None:
            self.toolsets.listen(context.fastmcp_context)
        return await call_next(context)
