"""``raykernel_tools``: upstream MCP tools callable from session code (docs/tools.md: Code mode).

The kernel has no connection to any MCP server (nor, often, a network): a call is an event on
the kernel's socket (``{"event": "upstream", "id", "token", "op", ...}``) that the session's
actor queues and the front end following the run answers; the answer comes back as an
``upstream_reply`` request, which the kernel's reader thread hands to the waiting thread here.
Waiting is in short slices, so an interrupt (the run's timeout, interrupt_session) stops it.

    import raykernel_tools
    raykernel_tools.servers()                   # what this session may call
    help(raykernel_tools.calc)                  # each tool's description and arguments
    raykernel_tools.calc.add(a=1, b=2)          # its structured content (or its text)
"""

from __future__ import annotations

import inspect
import itertools
import sys
import threading
import types
from collections.abc import Callable
from typing import Any

from raykernel import errors

MODULE = "raykernel_tools"
# How often a waiting call looks up from its wait (an interrupt lands between two looks).
WAIT_SLICE = 0.05
# JSON Schema types as the annotations help() shows.
SCHEMA_TYPES = {
    "string": str,
    "integer": int,
    "number": float,
    "boolean": bool,
    "array": list,
    "object": dict,
    "null": type(None),
}


class _Slot:
    __slots__ = ("answer", "done")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.answer: dict[str, Any] = {}


class Channel:
    """Requests from session code to the front end, each answered once; any thread of the
    session's code may ask, during a run."""

    def __init__(
        self, send: Callable[[dict[str, Any]], None], current_token: Callable[[], str | None]
    ) -> None:
        self._send = send
        self._token = current_token
        self._ids = itertools.count(1)
        self._waiting: dict[int, _Slot] = {}
        self._lock = threading.Lock()

    def request(self, op: str, **fields: Any) -> Any:
        token = self._token()
        if token is None:
            raise errors.UpstreamUnavailable(
                "raykernel_tools answers only while the session runs code (a run, or a call "
                "of a session tool)"
            )
        with self._lock:
            call_id = next(self._ids)
            slot = self._waiting[call_id] = _Slot()
        try:
            self._send({"event": "upstream", "id": call_id, "token": token, "op": op, **fields})
            while not slot.done.wait(WAIT_SLICE):
                pass
        finally:
            with self._lock:
                self._waiting.pop(call_id, None)
        answer = slot.answer
        if answer.get("ok"):
            return answer.get("value")
        raise _typed(str(answer.get("kind")), str(answer.get("message")))

    def answer(self, call_id: int, answer: dict[str, Any]) -> None:
        """The front end's answer (the reader thread calls this); a late one is dropped."""
        with self._lock:
            slot = self._waiting.get(call_id)
        if slot is not None:
            slot.answer = answer
            slot.done.set()


def _typed(kind: str, message: str) -> errors.RaykernelError:
    if kind not in errors.kinds() or kind in ("RaykernelError", "FunctionFailed", "NodeFull"):
        return errors.UpstreamToolError(message)
    return errors.from_wire({"kind": kind, "message": message})


class ToolsModule(types.ModuleType):
    """The module session code imports; each server is an attribute, made at first use."""

    def __init__(self, channel: Channel) -> None:
        super().__init__(MODULE, __doc__)
        self._channel = channel
        self._servers: dict[str, types.ModuleType] = {}
        # The typed refusals a call may raise, for ``except raykernel_tools.ToolError``.
        self.ToolError = errors.UpstreamToolError
        self.NotFound = errors.UpstreamNotFound
        self.Unavailable = errors.UpstreamUnavailable
        self.ApprovalRequired = errors.ApprovalRequired
        self.ApprovalDenied = errors.ApprovalDenied

    def servers(self) -> list[dict[str, Any]]:
        """The upstream MCP servers this session may call: ``[{name, tools}]``."""
        return list(self._channel.request("servers"))

    def call(self, server: str, tool: str, **arguments: Any) -> Any:
        """``server``'s ``tool`` with ``arguments``: its structured content, or its text."""
        return self._channel.request("call", server=server, tool=tool, arguments=arguments)

    def __getattr__(self, name: str) -> types.ModuleType:
        if name.startswith("_"):
            raise AttributeError(name)
        found = self._servers.get(name)
        if found is None:
            listing = self._channel.request("tools", server=name)
            found = self._servers[name] = server_module(self, name, listing)
        return found

    def __dir__(self) -> list[str]:
        return sorted({*super().__dir__(), *self._servers})


def server_module(
    tools: ToolsModule, server: str, listing: list[dict[str, Any]]
) -> types.ModuleType:
    """A module per server whose functions are its tools: ``help()`` shows each one's
    description and its arguments from the tool's input schema."""
    module = types.ModuleType(f"{MODULE}.{server}", f"Tools of the MCP server {server!r}.")
    for entry in listing:
        name = str(entry["name"])
        attribute = name if name.isidentifier() else _identifier(name)
        setattr(module, attribute, _tool_function(tools, server, entry, attribute))
    # pydoc lists a module's functions only if their module is found under its name.
    sys.modules[module.__name__] = module
    return module


def _identifier(name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c == "_" else "_" for c in name)
    return cleaned if cleaned.isidentifier() else f"_{cleaned}"


def _tool_function(
    tools: ToolsModule, server: str, entry: dict[str, Any], attribute: str
) -> Callable[..., Any]:
    name = str(entry["name"])
    signature = _signature(entry.get("input_schema") or {})

    def tool(*args: Any, **kwargs: Any) -> Any:
        arguments = signature.bind(*args, **kwargs).arguments
        if "kwargs" in arguments and signature.parameters["kwargs"].kind is _VAR_KEYWORD:
            arguments.update(arguments.pop("kwargs"))
        return tools.call(server, name, **arguments)

    tool.__name__ = tool.__qualname__ = attribute
    tool.__module__ = f"{MODULE}.{server}"
    tool.__signature__ = signature  # type: ignore[attr-defined]
    tool.__doc__ = _doc(entry)
    return tool


_VAR_KEYWORD = inspect.Parameter.VAR_KEYWORD


def _signature(schema: dict[str, Any]) -> inspect.Signature:
    properties = schema.get("properties") or {}
    required = set(schema.get("required") or ())
    params = []
    for prop, spec in properties.items():
        if not prop.isidentifier():
            continue  # such an argument goes through **kwargs
        annotation = SCHEMA_TYPES.get(spec.get("type"), inspect.Parameter.empty)
        default = inspect.Parameter.empty if prop in required else spec.get("default")
        params.append(
            inspect.Parameter(
                prop,
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
                default=default,
                annotation=annotation,
            )
        )
    # Required ones first: a signature refuses a required argument after an optional one.
    params.sort(key=lambda p: p.default is not inspect.Parameter.empty)
    if any(not prop.isidentifier() for prop in properties) or schema.get("additionalProperties"):
        params.append(inspect.Parameter("kwargs", _VAR_KEYWORD))
    return inspect.Signature(params)


def _doc(entry: dict[str, Any]) -> str:
    lines = [str(entry.get("description") or "").strip() or "(no description)"]
    schema = entry.get("input_schema") or {}
    required = set(schema.get("required") or ())
    properties = schema.get("properties") or {}
    if properties:
        lines += ["", "Arguments:"]
        for prop, spec in properties.items():
            kind = spec.get("type", "any")
            need = "required" if prop in required else "optional"
            text = f"  {prop} ({kind}, {need})"
            if spec.get("description"):
                text += f": {spec['description']}"
            lines.append(text)
    if entry.get("needs_approval"):
        lines += ["", "Asks the client for consent before it runs (it can do harm)."]
    return "\n".join(lines)


def install(channel: Channel) -> ToolsModule:
    """Make ``import raykernel_tools`` find the module of this kernel."""
    module = ToolsModule(channel)
    sys.modules[MODULE] = module
    return module
