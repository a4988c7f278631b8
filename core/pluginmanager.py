"""Loading plugins: the built-in ones, then the ``raykernel`` entry-point group."""

from __future__ import annotations

import importlib
import logging
import sys
import sysconfig
import types
from collections.abc import Sequence
from importlib.metadata import entry_points
from pathlib import Path
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
    blocked: list[str], allowed: list[str] | None, extra: Sequence[Any] = ()
) -> tuple[pluggy.PluginManager, dict[str, str]]:
    """Register built-in plugins, entry-point plugins and ``extra`` ones (modules, objects or
    import specs: plugins that are not installed); return the manager and the ``{plugin name:
    import spec}`` of every plugin registered (sessions load from the specs)."""
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
    for item in extra:
        plugin, spec = _extra_plugin(item)
        if pm.is_registered(plugin):  # installed as an entry point too: once is enough
            log.info("plugin %s is loaded already", spec)
            continue
        if spec in specs:
            raise PluginError(f"plugin name {spec!r} is already taken")
        pm.register(plugin, name=spec)
        specs[spec] = spec
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"plugin implements an unknown hook: {exc}") from exc
    return pm, specs


def _extra_plugin(item: Any) -> tuple[Any, str]:
    """A plugin given directly, and the import spec sessions would load it by."""
    if isinstance(item, str):
        try:
            return load_object(item), item
        except Exception as exc:
            raise PluginError(f"plugin {item!r} failed to import: {exc}") from exc
    return item, spec_of(item)


def spec_of(item: Any) -> str:
    """How a plugin given to the server is named, and imported in sessions."""
    if isinstance(item, str):
        return item
    if isinstance(item, types.ModuleType):
        return item.__name__
    module, qualname = getattr(item, "__module__", None), getattr(item, "__qualname__", None)
    if module and qualname and "<" not in qualname:  # a class or function at module level
        return f"{module}:{qualname}"
    return f"<object {type(item).__name__} at {id(item):#x}>"


def import_root(spec: str) -> str | None:
    """The folder to put on ``sys.path`` so that ``spec`` imports (for a plugin that is not
    installed: sessions' kernels import it by name)."""
    module = sys.modules.get(spec.partition(":")[0])
    origin = getattr(module, "__file__", None)
    if module is None or origin is None:
        return None
    root = Path(origin).resolve().parent
    depth = module.__name__.count(".") + (1 if Path(origin).name == "__init__.py" else 0)
    for _ in range(depth):
        root = root.parent
    # Installed plugins (and raykernel's own) import in a kernel as they are.
    python = {Path(p).resolve() for p in sysconfig.get_paths().values() if p}
    return None if root in python else str(root)


def session_plugin_specs(pm: pluggy.PluginManager, specs: dict[str, str]) -> list[str]:
    """The import specs of the plugins that implement hooks which run inside sessions: only
    these are imported in session actors, which keeps the actors lean."""
    wanted = []
    for name, spec in specs.items():
        plugin = pm.get_plugin(name)
        callers = pm.get_hookcallers(plugin) or []
        if any(caller.name in hookspecs.SESSION_HOOKS for caller in callers):
            if spec.startswith("<object"):
                raise PluginError(
                    f"plugin {spec} implements hooks that run inside sessions, where it must be "
                    "imported by name: pass its module, or a class or object defined at module "
                    "level"
                )
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
