"""Loading plugins: the built-in ones, then the ``raykernel`` entry-point group."""

from __future__ import annotations

import importlib
import logging
from importlib.metadata import entry_points
from typing import Any

import pluggy

from . import hookspecs
from .errors import PluginError

log = logging.getLogger(__name__)

# Built-in plugins the server cannot work without: blocking them is an error.
ESSENTIAL_PLUGINS = frozenset({"sessions"})


def new_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    return pm


def load_object(spec: str) -> Any:
    """Import ``"package.module"`` or ``"package.module:attribute"``."""
    module_name, _, attribute = spec.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in filter(None, attribute.split(".")):
        obj = getattr(obj, part)
    return obj


def builtin_name(spec: str) -> str:
    return spec.rsplit(".", 1)[-1]


def load_front_end_plugins(
    blocked: list[str], allowed: list[str] | None
) -> tuple[pluggy.PluginManager, dict[str, str]]:
    """Register built-in plugins and entry-point plugins; return the manager and the
    ``{plugin name: import spec}`` of every plugin registered (sessions load from the specs)."""
    from raykernel.plugins import DEFAULT_PLUGINS

    essential_blocked = ESSENTIAL_PLUGINS.intersection(blocked)
    if essential_blocked:
        raise PluginError(f"essential plugins cannot be blocked: {sorted(essential_blocked)}")
    pm = new_manager()
    specs: dict[str, str] = {}
    for spec in DEFAULT_PLUGINS:
        name = builtin_name(spec)
        if name in blocked:
            log.info("built-in plugin %s blocked by settings", name)
            continue
        pm.register(load_object(spec), name=name)
        specs[name] = spec
    for ep in entry_points(group=hookspecs.ENTRY_POINT_GROUP):
        if ep.name in blocked or (allowed is not None and ep.name not in allowed):
            log.info("plugin %s (%s) not loaded: blocked or not allowed", ep.name, ep.value)
            continue
        if ep.name in specs:
            raise PluginError(f"plugin name {ep.name!r} ({ep.value}) is already taken")
        try:
            plugin = ep.load()
        except Exception as exc:
            raise PluginError(f"plugin {ep.name!r} ({ep.value}) failed to import: {exc}") from exc
        pm.register(plugin, name=ep.name)
        specs[ep.name] = ep.value
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"plugin implements an unknown hook: {exc}") from exc
    return pm, specs


def session_plugin_specs(pm: pluggy.PluginManager, specs: dict[str, str]) -> list[str]:
    """The import specs of the plugins that implement hooks which run inside sessions: only
    these are imported in session actors, which keeps the actors lean."""
    wanted = []
    for name, spec in specs.items():
        plugin = pm.get_plugin(name)
        callers = pm.get_hookcallers(plugin) or []
        if any(caller.name in hookspecs.SESSION_HOOKS for caller in callers):
            wanted.append(spec)
    return wanted


def load_session_plugins(specs: list[str]) -> pluggy.PluginManager:
    """Inside a session actor: register exactly the plugins the front end named."""
    pm = new_manager()
    for spec in specs:
        pm.register(load_object(spec), name=spec)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"plugin implements an unknown hook: {exc}") from exc
    return pm
