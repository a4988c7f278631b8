"""Building the fastmcp server from plugins."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import typing
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from fastmcp import FastMCP
from fastmcp.server.middleware import Middleware
from fastmcp.tools import FunctionTool
from fastmcp.utilities.types import NotSet

from raykernel import __version__
from raykernel.errors import PluginError, RaykernelError
from raykernel.pluginmanager import (
    import_root,
    load_front_end_plugins,
    session_plugin_specs,
    spec_of,
)
from raykernel.sessions.capacity import MemoryWatch, WarmPool
from raykernel.sessions.cluster import Nodes, RayRuntime
from raykernel.sessions.health import IdleWatch, SessionHealth
from raykernel.sessions.lifecycle import Lifecycle
from raykernel.sessions.record import LOCAL, SessionRecord
from raykernel.sessions.registry import Registry as SessionRegistry
from raykernel.sessions.router import SessionRouter
from raykernel.sessions.session_files import SessionFiles
from raykernel.sessions.state_moves import StateMoves, Variants
from raykernel.settings import TOOLSET_NAME, Settings
from raykernel.workspace import Workspaces

from .app import App, register_app
from .callers import ActiveSessions, caller_identity, caller_key
from .http_security import auth_provider
from .session_tools import SessionTools, SessionToolVisibility
from .toolsets import ListenForToolChanges, Toolsets, toolset_of_plugin
from .typed_errors import TypedErrors, protocol_error, tool_error

log = logging.getLogger(__name__)

INSTRUCTIONS = """\
Stateful Python sessions. Each session is its own process with its own variables; a session
called "default" always exists. Run code with run_python_code (a trailing expression's value is
returned as `result`); pass session_id to pick a session, or switch_session to change the one
used when session_id is omitted. Files live in the workspace: outputs/ is shared by every session
of the same user, scripts saved with save_script are importable as modules from any of them.
More tools (background runs, snapshots, forks, variants, notebooks): enable_toolsets.
"""


class PluginTool(FunctionTool):
    """A plugin's tool. Its listing leaves out fastmcp's own ``_meta`` (its tags, which hold
    the tool's toolset): no client acts on it, and every conversation would pay for it."""

    def get_meta(self) -> dict[str, Any] | None:  # type: ignore[override]
        meta = super().get_meta()
        meta.pop("fastmcp", None)
        return meta or None


def _drop_null_defaults(schema: dict[str, Any]) -> None:
    """An optional argument is one that is not required: ``"default": null`` on each says it
    again, in every tool's schema."""
    required = set(schema.get("required", ()))
    for name, prop in schema.get("properties", {}).items():
        if name not in required and "default" in prop and prop["default"] is None:
            del prop["default"]


def _returns_any_object(fn: Callable[..., Any]) -> bool:
    """``fn`` says only that it returns a JSON object (``-> dict[str, Any]``): the output schema
    fastmcp would derive from that tells a client nothing, and costs every tools/list."""
    try:
        returns = typing.get_type_hints(fn).get("return")
    except Exception:  # a hint that does not resolve: leave the schema to fastmcp
        return False
    return returns is dict or returns == dict[str, Any]


class Registrar:
    """The ``register`` callbacks handed to the ``register_*`` hooks: each tool name, resource
    URI and prompt name belongs to one plugin, and a second claim is a ``PluginError``. A tool
    belongs to a toolset: the one it declares, else one named after its plugin."""

    def __init__(self, mcp: FastMCP, toolsets: Toolsets | None = None) -> None:
        self.mcp = mcp
        self.toolsets = toolsets or Toolsets(mcp)
        self.owners: dict[tuple[str, str], str] = {}

    def _claim(self, kind: str, key: str, plugin_name: str) -> None:
        owner = self.owners.get((kind, key))
        if owner is not None:
            raise PluginError(
                f"plugin {plugin_name!r} registers {kind} {key!r}, "
                f"which plugin {owner!r} already registered"
            )
        self.owners[(kind, key)] = plugin_name

    def tools_for(self, plugin_name: str) -> Callable[..., Any]:
        def register(
            fn: Callable[..., Any],
            *,
            name: str | None = None,
            title: str | None = None,
            description: str | None = None,
            annotations: dict[str, Any] | None = None,
            toolset: str | None = None,
            hide: tuple[str, ...] = (),
        ) -> None:
            tool_name = name or fn.__name__
            group = toolset or toolset_of_plugin(plugin_name)
            if not TOOLSET_NAME.fullmatch(group):
                raise PluginError(
                    f"plugin {plugin_name!r} puts {tool_name!r} in toolset {group!r}: a toolset "
                    "name is 1-100 letters, digits, '_', '.', ':', '-'"
                )
            self._claim("tool", tool_name, plugin_name)
            tool = PluginTool.from_function(
                _typed_errors(fn),
                name=tool_name,
                title=title,
                description=description,
                annotations=annotations,
                tags={group},
                output_schema=None if _returns_any_object(fn) else NotSet,
            )
            _drop_null_defaults(tool.parameters)
            _hide_arguments(tool.parameters, hide, tool_name)
            self.mcp.add_tool(tool)
            self.toolsets.add_tool(group, tool_name)

        return register

    def resources_for(self, plugin_name: str) -> Callable[..., Any]:
        def register(
            fn: Callable[..., Any],
            *,
            uri: str,
            name: str | None = None,
            title: str | None = None,
            description: str | None = None,
            mime_type: str | None = None,
        ) -> None:
            self._claim("resource", uri, plugin_name)
            self.mcp.resource(
                uri,
                name=name or fn.__name__,
                title=title,
                description=description,
                mime_type=mime_type,
                meta={"plugin": plugin_name},
            )(_typed_errors(fn, protocol_error))

        return register

    def prompts_for(self, plugin_name: str) -> Callable[..., Any]:
        def register(
            fn: Callable[..., Any],
            *,
            name: str | None = None,
            title: str | None = None,
            description: str | None = None,
        ) -> None:
            prompt_name = name or fn.__name__
            self._claim("prompt", prompt_name, plugin_name)
            self.mcp.prompt(
                _typed_errors(fn, protocol_error),
                name=prompt_name,
                title=title,
                description=description,
                meta={"plugin": plugin_name},
            )

        return register


def _typed_errors(
    fn: Callable[..., Any], to_error: Callable[[RaykernelError], Exception] = tool_error
) -> Callable[..., Any]:
    """Let a RaykernelError reach the client as ``Kind: message`` (a tool error result, or a
    JSON-RPC error for resources and prompts); fastmcp masks the rest."""
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return await fn(*args, **kwargs)
            except RaykernelError as exc:
                raise to_error(exc) from None

        return async_wrapper

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except RaykernelError as exc:
            raise to_error(exc) from None

    return wrapper


# Ray's start (import, processes, GIL) slows the MCP handshake if it overlaps it, so it begins
# once the client has listed the tools, or after this many seconds, or at the first tool call.
RAY_START_DELAY = 2.0


class StartRayAfterToolsList(Middleware):
    def __init__(self, router: SessionRouter) -> None:
        self.router = router

    async def on_list_tools(self, context: Any, call_next: Any) -> Any:
        tools = await call_next(context)
        self.router.start()
        return tools


class SharedActiveSession(Middleware):
    """Among replicas, a call that names no session reads the caller's active one from the
    registry first: a stateless client's calls land on any front end."""

    def __init__(self, app: App) -> None:
        self.app = app

    async def on_call_tool(self, context: Any, call_next: Any) -> Any:
        if self.app.active.shared is not None:
            arguments = getattr(context.message, "arguments", None) or {}
            if arguments.get("session_id") is None:
                try:
                    await self.app.router.ready()
                    await self.app.active.refresh(caller_key())
                except RaykernelError:
                    pass  # the tool itself meets it and says so, typed
        return await call_next(context)


def build_server(settings: Settings, plugins: Sequence[Any] = ()) -> tuple[FastMCP, App]:
    """The MCP server with every enabled plugin's tools, and ``plugins`` (modules, objects or
    import specs: plugins that are not installed, for tests and notebooks) besides the
    ``plugins`` setting's."""
    extra = [*settings.plugins, *plugins]
    pm, specs = load_front_end_plugins(settings.blocked_plugins, settings.allowed_plugins, extra)
    in_sessions = session_plugin_specs(pm, specs)
    given = {spec_of(item) for item in extra}
    roots = sorted(filter(None, {import_root(spec) for spec in in_sessions if spec in given}))
    workspaces = Workspaces(
        settings.workspace, settings.identity_workspace, settings.max_file_bytes, settings.store
    )
    runtime = RayRuntime(settings)
    nodes = Nodes(runtime)
    sessions: dict[str, SessionRecord] = {}
    lifecycle = Lifecycle(settings, nodes, sessions, workspaces, in_sessions, roots)
    pool = WarmPool(settings.pool_size, lifecycle.start_actor)
    # Replicas (a cluster) share the namespace's registry actor; one front end keeps its own.
    shared = SessionRegistry.shared(settings.namespace) if settings.detached else None
    router = SessionRouter(
        settings,
        runtime,
        lifecycle,
        pool,
        nodes,
        sessions,
        pm.hook,
        shared or SessionRegistry.local(),
    )
    moves = StateMoves(router)
    app = App(
        settings,
        router,
        workspaces,
        ActiveSessions(shared),
        files=SessionFiles(router, nodes, workspaces, caller_identity),
        health=SessionHealth(router, nodes, pm.hook),
        moves=moves,
        variants=Variants(router, moves),
        hooks=pm.hook,
    )
    router.on_delete.append(app.active.forget_session)
    router.turns.upstream = app.upstreams
    router.on_delete.append(app.upstreams.forget_session)
    idle = IdleWatch(router)
    memory = MemoryWatch(settings, sessions)

    @contextlib.asynccontextmanager
    async def lifespan(server: FastMCP) -> AsyncIterator[dict[str, Any]]:
        workspaces.of(LOCAL)  # its outputs/ and scripts/ made
        timer = asyncio.get_running_loop().call_later(RAY_START_DELAY, router.start)
        if settings.local_default:
            router.start()  # the default session's kernel, at once: it needs no Ray
        watching = asyncio.ensure_future(idle.run())
        counting = asyncio.ensure_future(_count_sessions(router))
        guarding = asyncio.ensure_future(memory.run()) if memory.enabled else None
        try:
            yield {"app": app}
        finally:
            timer.cancel()
            watching.cancel()
            counting.cancel()
            if guarding is not None:
                guarding.cancel()
            await router.shutdown()
            await app.upstreams.close()
            runtime.shutdown()

    mcp = FastMCP(
        name="raykernel",
        version=__version__,
        instructions=INSTRUCTIONS,
        lifespan=lifespan,
        mask_error_details=True,
        on_duplicate="error",
        auth=auth_provider(settings) if settings.transport == "http" else None,
        middleware=[TypedErrors(), StartRayAfterToolsList(router), SharedActiveSession(app)],
    )
    register_app(mcp, app)
    app.toolsets = Toolsets(mcp)
    mcp.add_middleware(ListenForToolChanges(app.toolsets))
    app.session_tools = SessionTools(app, mcp)
    router.on_delete.append(app.session_tools.session_deleted)
    mcp.add_middleware(SessionToolVisibility(app.session_tools))
    components = Registrar(mcp, app.toolsets)
    for hook, register_for in (
        (pm.hook.register_tools, components.tools_for),
        (pm.hook.register_resources, components.resources_for),
        (pm.hook.register_prompts, components.prompts_for),
    ):
        for impl in hook.get_hookimpls():
            _call_hookimpl(impl, register=register_for(impl.plugin_name), app=app)
    app.toolsets.start(settings.toolsets)
    return mcp, app


# How often the sessions gauge is set (Ray's agent exports it every 10 s).
SESSIONS_GAUGE_INTERVAL = 5.0


async def _count_sessions(router: SessionRouter) -> None:
    """Keep the ``raykernel_sessions`` gauge (by status and node) current."""
    while True:
        await asyncio.sleep(SESSIONS_GAUGE_INTERVAL)
        counts: dict[tuple[str, str], int] = {}
        for record in list(router.sessions.values()):
            key = (record.status, record.node_id or router.nodes.local_id or "local")
            counts[key] = counts.get(key, 0) + 1
        router.metrics.sessions(counts)


def _call_hookimpl(impl: Any, **kwargs: Any) -> None:
    """Call one plugin's implementation with the arguments it names (pluggy's rule), so that
    each registration is charged to the plugin that made it."""
    impl.function(**{name: kwargs[name] for name in impl.argnames})


def _hide_arguments(schema: dict[str, Any], names: tuple[str, ...], tool: str) -> None:
    """Arguments not offered where the server runs (``register(..., hide=...)``): out of the
    schema a model reads; each must have a default, which a call then gets."""
    properties = schema.get("properties", {})
    for name in names:
        if name not in properties or name in schema.get("required", []):
            raise PluginError(f"tool {tool!r} cannot hide {name!r}: not an optional argument")
        del properties[name]
