"""Code mode's front-end side: the upstream MCP servers session code calls through
``raykernel_tools`` (docs/tools.md: Code mode).

The front end holds the connections (fastmcp Clients, one per identity and server: a stateful
server keeps nothing of one identity's for another; opened at first use and kept until the
server stops), never the kernel: a session with ``network: "off"`` calls them too, and a call
is made as the session's owner, within the servers that identity may use
(``mcp_server_access``). A tool that can do harm (``destructiveHint``, or listed in
``mcp_approval``) runs only with the client's consent, asked with MCP elicitation during the
run (allow once, always for this session, deny); a client that cannot be asked gets a typed
refusal (``ApprovalRequired``) and nothing runs. Every call is a ``raykernel.upstream`` span
in the run's trace, and an entry of the run's history.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import fnmatch
import json
import logging
from typing import Any

from raykernel import telemetry
from raykernel.errors import (
    ApprovalDenied,
    ApprovalRequired,
    RaykernelError,
    UpstreamNotFound,
    UpstreamToolError,
    UpstreamUnavailable,
)
from raykernel.sessions.record import LOCAL, SessionRecord
from raykernel.settings import Settings

log = logging.getLogger(__name__)

ALL = "*"
CONNECT_TIMEOUT = 60.0
# How much of a call's arguments the consent question shows.
SHOWN_ARGUMENTS = 1000
ALLOW_ONCE, ALLOW_ALWAYS, DENY = "allow_once", "allow_always", "deny"


class _Connection:
    """One upstream server's client, entered in a task of its own (anyio's scopes must be left
    by the task that entered them) and kept open until ``close``."""

    def __init__(self, name: str, config: dict[str, Any]) -> None:
        self.name = name
        self.config = config
        self.client: Any = None
        self._ready: asyncio.Future[None] | None = None
        self._stop = asyncio.Event()
        self._task: asyncio.Future[None] | None = None

    async def open(self) -> Any:
        if self._ready is None:
            self._ready = asyncio.get_running_loop().create_future()
            # No request's context in the task that holds the connection: it outlives them.
            loop = asyncio.get_running_loop()
            self._task = loop.create_task(self._hold(), context=contextvars.Context())
        try:
            await asyncio.wait_for(asyncio.shield(self._ready), CONNECT_TIMEOUT)
        except TimeoutError:
            raise UpstreamUnavailable(
                f"MCP server {self.name!r} did not answer within {CONNECT_TIMEOUT:g} s"
            ) from None
        return self.client

    async def _hold(self) -> None:
        assert self._ready is not None
        try:
            self.client = _client(self.config)
            async with self.client:
                self._ready.set_result(None)
                await self._stop.wait()
        except Exception as exc:
            log.warning("upstream MCP server %s: %s", self.name, exc)
            if not self._ready.done():
                self._ready.set_exception(
                    UpstreamUnavailable(f"MCP server {self.name!r} could not be reached: {exc}")
                )

    @property
    def broken(self) -> bool:
        """It failed or ended: the next call opens it again."""
        return self._task is not None and self._task.done()

    async def close(self) -> None:
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, 10)


def _client(config: dict[str, Any]) -> Any:
    from fastmcp import Client
    from fastmcp.client.transports import StdioTransport, StreamableHttpTransport

    if "command" in config:
        transport: Any = StdioTransport(
            command=str(config["command"]),
            args=[str(a) for a in config.get("args") or []],
            env={str(k): str(v) for k, v in (config.get("env") or {}).items()} or None,
            cwd=config.get("cwd"),
            keep_alive=True,
        )
    else:
        transport = StreamableHttpTransport(
            str(config["url"]),
            headers={str(k): str(v) for k, v in (config.get("headers") or {}).items()},
        )
    return Client(transport)


class Upstreams:
    """The upstream servers, their tools, who may call them, and the consents given."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # By (identity, server): a stateful upstream server keeps what one identity's session
        # left there (a note, a login) for whoever calls next on the same connection, so no
        # two identities share one.
        self._connections: dict[tuple[str, str], _Connection] = {}
        self._tools: dict[tuple[str, str], dict[str, Any]] = {}
        # (session, server, tool) the client allowed for the rest of the session's life.
        self._always: set[tuple[str, str, str]] = set()

    # -- who may call what --------------------------------------------------------------------

    def allowed(self, identity: str) -> list[str]:
        """The servers ``identity``'s sessions may call."""
        listed = self.settings.mcp_server_access.get(identity)
        if listed is None:
            listed = [ALL] if identity == LOCAL else []
        servers = self.settings.mcp_servers
        if ALL in listed:
            return sorted(servers)
        return sorted(name for name in listed if name in servers)

    def _server(self, identity: str, name: str) -> str:
        if name not in self.allowed(identity):
            known = ", ".join(self.allowed(identity)) or "none"
            raise UpstreamNotFound(
                f"no MCP server {name!r} for this session (it may call: {known})"
            )
        return name

    def needs_approval(self, server: str, tool: Any) -> bool:
        annotations = getattr(tool, "annotations", None)
        # The spec's defaults: a tool that does not say it is read-only or harmless may destroy.
        read_only = getattr(annotations, "read_only_hint", None) is True
        if not read_only and getattr(annotations, "destructive_hint", None) is not False:
            return True
        name = f"{server}.{tool.name}"
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in self.settings.mcp_approval)

    # -- connections --------------------------------------------------------------------------

    async def _client(self, identity: str, server: str) -> Any:
        key = (identity, server)
        connection = self._connections.get(key)
        if connection is None or connection.broken:
            connection = _Connection(server, self.settings.mcp_servers[server])
            self._connections[key] = connection
            self._tools.pop(key, None)
        return await connection.open()

    async def tools(self, identity: str, server: str) -> dict[str, Any]:
        """``server``'s tools by name, on ``identity``'s connection (listed once per
        connection)."""
        key = (identity, server)
        listed = self._tools.get(key)
        if listed is None:
            client = await self._client(identity, server)
            try:
                found = await client.list_tools()
            except Exception as exc:
                raise UpstreamUnavailable(f"MCP server {server!r}: {exc}") from None
            listed = self._tools[key] = {tool.name: tool for tool in found}
        return listed

    async def close(self) -> None:
        connections, self._connections = list(self._connections.values()), {}
        await asyncio.gather(*(c.close() for c in connections), return_exceptions=True)

    def forget_session(self, qualified: str) -> None:
        self._always = {key for key in self._always if key[0] != qualified}

    # -- the broker's answer (sessions.turns.UpstreamBroker) ------------------------------------

    async def answer(
        self, record: SessionRecord, call: dict[str, Any], interactive: bool
    ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        op = call.get("op")
        noted: dict[str, Any] = {}
        try:
            if op == "servers":
                value: Any = [
                    {"name": name, "transport": _transport(self.settings.mcp_servers[name])}
                    for name in self.allowed(record.owner)
                ]
            elif op == "tools":
                value = await self._listing(record.owner, str(call.get("server")))
            else:
                value = await self._call(record, call, interactive, noted)
            answer = {"ok": True, "value": value}
        except RaykernelError as exc:
            answer = {"ok": False, "kind": exc.kind, "message": exc.message}
        except Exception as exc:  # an upstream's fault must not end the run's follower
            log.warning("upstream request %s failed", op, exc_info=True)
            answer = {"ok": False, "kind": "UpstreamUnavailable", "message": str(exc)[:2000]}
        return answer, (noted if op == "call" else None)

    async def _listing(self, identity: str, server: str) -> list[dict[str, Any]]:
        tools = await self.tools(identity, self._server(identity, server))
        return [
            {
                "name": tool.name,
                "description": tool.description or "",
                "input_schema": tool.input_schema or {},
                "needs_approval": self.needs_approval(server, tool),
            }
            for tool in tools.values()
        ]

    async def _call(
        self, record: SessionRecord, call: dict[str, Any], interactive: bool, noted: dict[str, Any]
    ) -> Any:
        server = self._server(record.owner, str(call.get("server")))
        name = str(call.get("tool"))
        arguments = call.get("arguments") or {}
        with telemetry.span(
            "raykernel.upstream", session_id=record.qualified, server=server, tool=name
        ) as span:
            try:
                tool = (await self.tools(record.owner, server)).get(name)
                if tool is None:
                    raise UpstreamNotFound(f"MCP server {server!r} has no tool {name!r}")
                if self.needs_approval(server, tool):
                    noted["approval"] = await self._approve(
                        record, server, name, arguments, interactive
                    )
                value = await self._invoke(record.owner, server, tool, arguments)
            except RaykernelError as exc:
                telemetry.set_attributes(span, outcome=exc.kind, approval=noted.get("approval"))
                raise
            telemetry.set_attributes(span, outcome="ok", approval=noted.get("approval"))
            return value

    async def _invoke(
        self, identity: str, server: str, tool: Any, arguments: dict[str, Any]
    ) -> Any:
        client = await self._client(identity, server)
        try:
            result = await client.call_tool(tool.name, arguments, raise_on_error=False)
        except Exception as exc:
            raise UpstreamUnavailable(f"MCP server {server!r}: {exc}") from None
        text = "\n".join(
            block.text for block in result.content if getattr(block, "type", "") == "text"
        )
        if result.is_error:
            raise UpstreamToolError(f"{server}.{tool.name}: {text[:4000] or 'failed'}")
        structured = result.structured_content
        if structured is None:
            return text
        schema = tool.output_schema or {}
        if schema.get("x-fastmcp-wrap-result") and set(structured) == {"result"}:
            return structured["result"]  # a fastmcp tool's non-object value, unwrapped
        return structured

    async def _approve(
        self,
        record: SessionRecord,
        server: str,
        tool: str,
        arguments: dict[str, Any],
        interactive: bool,
    ) -> str:
        """The client's consent to this call ("once", "always"), or a typed refusal."""
        key = (record.qualified, server, tool)
        if key in self._always:
            return "always"
        context = _elicitor() if interactive else None
        if context is None:
            raise ApprovalRequired(
                f"{server}.{tool} can do harm and needs the client's consent, which this "
                "client cannot be asked for (MCP elicitation, on a connection that keeps an "
                "MCP session, during a foreground run); nothing was called"
            )
        shown = json.dumps(arguments, default=str)
        if len(shown) > SHOWN_ARGUMENTS:
            # Cut, but every argument named: a harmless first one must not hide the rest.
            keys = ", ".join(map(str, arguments))[:SHOWN_ARGUMENTS]
            shown = f"{shown[:SHOWN_ARGUMENTS]}... (arguments: {keys})"
        message = (
            f"session {record.session_id!r} wants to call {server}.{tool} with {shown}: "
            "allow once, always for this session, or deny?"
        )
        try:
            result = await context.elicit(message, response_type=[ALLOW_ONCE, ALLOW_ALWAYS, DENY])
        except Exception as exc:
            raise ApprovalRequired(
                f"{server}.{tool} needs the client's consent, and asking failed ({exc}); "
                "nothing was called"
            ) from None
        choice = getattr(result, "data", None) if result.action == "accept" else None
        if choice == ALLOW_ALWAYS:
            self._always.add(key)
            return "always"
        if choice == ALLOW_ONCE:
            return "once"
        raise ApprovalDenied(f"the client did not allow {server}.{tool}; nothing was called")


def _transport(config: dict[str, Any]) -> str:
    return "stdio" if "command" in config else "http"


def _elicitor() -> Any:
    """The context of the client request that awaits the run, if its client can be asked."""
    from fastmcp.server.dependencies import get_context
    from mcp_types import ClientCapabilities, ElicitationCapability
    from mcp_types.version import MODERN_PROTOCOL_VERSIONS

    try:
        context = get_context()
        request = context.request_context
        if request is None or request.protocol_version in MODERN_PROTOCOL_VERSIONS:
            return None
        wanted = ClientCapabilities(elicitation=ElicitationCapability())
        if not context.session.check_client_capability(wanted):
            return None
    except (RuntimeError, AttributeError):
        return None
    return context
