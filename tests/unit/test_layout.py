"""The layout holds: the folders are the processes. The kernel package runs without Ray, the MCP
front end or the session actor's code; the actor's code imports nothing of the front end; no
module imports another that imports it back; the parts depend on each other one way only
(server -> sessions -> actors -> kernel -> top level); and no operation is found by its name."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

from tests.helpers import REPO

PACKAGES = {"raykernel": REPO / "core", "raykernel.plugins": REPO / "plugins"}
PACKAGES["raykernel.actors"] = REPO / "actors"


def test_the_kernel_imports_neither_ray_nor_fastmcp() -> None:
    modules = sorted(p.stem for p in (REPO / "core" / "kernel").glob("*.py"))
    imports = "; ".join(f"import raykernel.kernel.{m}" for m in modules if m != "__init__")
    probe = (
        f"import sys; {imports}; "
        "heavy = sorted(m for m in ('ray', 'fastmcp', 'mcp', 'mcp_types', 'starlette') "
        "if m in sys.modules); print(','.join(heavy))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert out.stdout.strip() == "", f"raykernel.kernel pulled in: {out.stdout.strip()}"


def _module_name(path: Path) -> str:
    for package, root in sorted(PACKAGES.items(), key=lambda kv: -len(str(kv[1]))):
        if path.is_relative_to(root):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            return ".".join([package, *parts])
    raise AssertionError(path)


def _imports(path: Path, name: str) -> set[str]:
    """raykernel modules ``path`` imports anywhere, except under ``if TYPE_CHECKING:``."""
    tree = ast.parse(path.read_text())
    skipped = {
        id(node)
        for branch in ast.walk(tree)
        if isinstance(branch, ast.If) and "TYPE_CHECKING" in ast.unparse(branch.test)
        for node in ast.walk(branch)
    }
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("raykernel"))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base]) if base else ".".join(anchor)
            if base.startswith("raykernel"):
                found.add(base)
                found.update(f"{base}.{a.name}" for a in node.names)
    return found


def _graph() -> dict[str, set[str]]:
    files = [p for root in PACKAGES.values() for p in root.rglob("*.py")]
    names = {_module_name(p): p for p in files}
    return {n: {m for m in _imports(p, n) if m in names and m != n} for n, p in names.items()}


def test_no_module_imports_another_that_imports_it_back() -> None:
    graph = _graph()
    cycles = []
    for start in graph:
        stack = [(start, [start])]
        seen: set[str] = set()
        while stack:
            node, path = stack.pop()
            for nxt in graph[node]:
                if nxt == start:
                    cycles.append(" -> ".join([*path, start]))
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*path, nxt]))
    assert cycles == []


def _reaching(prefix: str, forbidden: tuple[str, ...]) -> list[str]:
    return sorted(
        f"{module} imports {target}"
        for module, imported in _graph().items()
        if module == prefix or module.startswith(prefix + ".")
        for target in imported
        if any(target == f or target.startswith(f + ".") for f in forbidden)
    )


def test_the_kernel_process_imports_nothing_of_the_actor_or_the_front_end() -> None:
    forbidden = ("raykernel.actors", "raykernel.sessions", "raykernel.server", "raykernel.plugins")
    assert _reaching("raykernel.kernel", forbidden) == []


def test_the_actor_process_imports_nothing_of_the_front_end() -> None:
    forbidden = (
        "raykernel.sessions",
        "raykernel.server",
        "raykernel.plugins",
        "raykernel.api",
        "raykernel.pluginmanager",
    )
    assert _reaching("raykernel.actors", forbidden) == []


# Names an operation is carried in: getattr on one of them is dispatch by string.
OPERATION_NAMES = {"op", "operation", "method", "kind", "command", "request", "action"}


def test_no_operation_is_found_by_its_name() -> None:
    """No ``getattr(obj, op)``, ``getattr(obj, "op_" + op)`` or f-string lookup: operations are
    enums with explicit tables, or methods passed by reference."""
    found = []
    for root in PACKAGES.values():
        for path in root.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if not (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Name)
                    and node.func.id == "getattr"
                    and len(node.args) >= 2
                ):
                    continue
                name = node.args[1]
                computed = isinstance(name, ast.BinOp | ast.JoinedStr) or (
                    isinstance(name, ast.Name) and name.id in OPERATION_NAMES
                )
                if computed:
                    found.append(f"{path.relative_to(REPO)}:{node.lineno}: {ast.unparse(node)}")
    assert found == []


def test_the_parts_depend_one_way() -> None:
    order = ["raykernel.server", "raykernel.sessions", "raykernel.actors", "raykernel.kernel"]
    for module, imported in _graph().items():
        part = next((p for p in order if module.startswith(p + ".")), None)
        if part is None:
            continue
        for target in imported:
            other = next((p for p in order if target.startswith(p + ".")), None)
            if other is not None:
                assert order.index(other) >= order.index(part), f"{module} imports {target}"


def _plugin_files() -> list[Path]:
    return sorted((REPO / "plugins").rglob("*.py"))


def _raykernel_imports(path: Path) -> list[str]:
    """Every raykernel module ``path`` imports, each import as written but resolved (``from
    .x import y`` in raykernel.plugins is raykernel.plugins.x), TYPE_CHECKING ones too."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] == "raykernel"]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base]) if base else ".".join(anchor)
            if base.split(".")[0] != "raykernel":
                continue
            # ``from raykernel import api`` is raykernel.api; ``from raykernel import errors``
            # is raykernel.errors.
            found += [base] if base != "raykernel" else [f"raykernel.{a.name}" for a in node.names]
    return found


def test_the_built_in_plugins_import_only_the_plugin_api() -> None:
    """A built-in plugin is written as a third-party one would be: raykernel.api only."""
    assert _plugin_files()
    wrong = {
        f"{path.relative_to(REPO)}: {module}"
        for path in _plugin_files()
        for module in _raykernel_imports(path)
        if module != "raykernel.api"
    }
    assert wrong == set()


def test_the_built_in_plugins_do_not_reach_into_the_router() -> None:
    """Plugins use App's services; the router behind them is not theirs to name."""
    for path in _plugin_files():
        source = path.read_text()
        assert not re.search(r"\.\s*router\b", source), path.relative_to(REPO)
        for node in ast.walk(ast.parse(source)):
            assert not (isinstance(node, ast.Attribute) and node.attr == "router"), path
            assert not (isinstance(node, ast.Constant) and node.value == "router"), path


def test_every_operation_named_across_a_wall_exists() -> None:
    """An operation is named by reference (``SessionHost.interrupt``, ``SessionActor.claim``,
    ``RegistryState.lease``, ``Workspace.read``, ``KernelOp.EXECUTE``): a misspelt one fails
    here, statically, before any process is asked for it."""
    from raykernel.actors.host import SessionHost
    from raykernel.actors.registry_actor import RegistryState
    from raykernel.actors.session_actor import SessionActor
    from raykernel.protocol import KernelOp, RunKind
    from raykernel.workspace import Workspace

    walls = {
        c.__name__: c
        for c in (SessionHost, SessionActor, RegistryState, Workspace, KernelOp, RunKind)
    }
    missing, seen = [], 0
    for root in PACKAGES.values():
        for path in root.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if (
                    isinstance(node, ast.Attribute)
                    and isinstance(node.value, ast.Name)
                    and node.value.id in walls
                ):
                    seen += 1
                    if not hasattr(walls[node.value.id], node.attr):
                        missing.append(
                            f"{path.relative_to(REPO)}:{node.lineno}: {ast.unparse(node)}"
                        )
    assert seen > 100  # the walls are crossed this way (not by strings)
    assert missing == []


def test_a_run_reaches_the_kernel_only_through_the_run_book() -> None:
    """The session actor's one entry calls none of the host's run or kernel starts: a run is
    booked (``SessionActor.book_run``), never executed past the session's queue."""
    from raykernel.actors.host import SessionHost
    from raykernel.actors.session_actor import HOST_OPERATIONS

    starts = {SessionHost.execute, SessionHost.run_script, SessionHost.call_function}
    starts |= {SessionHost.install, SessionHost.start, SessionHost.prepare}
    assert starts.isdisjoint(HOST_OPERATIONS)
    assert SessionHost.interrupt in HOST_OPERATIONS and SessionHost.wait_run in HOST_OPERATIONS
