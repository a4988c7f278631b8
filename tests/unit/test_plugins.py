"""Plugin machinery and the meta-tests that keep hooks documented and exercised."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest
from fastmcp import FastMCP

from raykernel import hookspecs
from raykernel.errors import PluginError
from raykernel.pluginmanager import load_front_end_plugins, load_session_plugins
from raykernel.plugins import DEFAULT_PLUGINS
from raykernel.server.build import Registrar

REPO = Path(__file__).resolve().parents[2]
HOOKS = sorted(
    name for name, fn in vars(hookspecs).items() if callable(fn) and hasattr(fn, "raykernel_spec")
)


def test_hooks_are_split_between_front_end_and_sessions() -> None:
    assert set(HOOKS) == hookspecs.FRONT_END_HOOKS | hookspecs.SESSION_HOOKS
    assert not hookspecs.FRONT_END_HOOKS & hookspecs.SESSION_HOOKS


@pytest.mark.parametrize("name", HOOKS)
def test_every_hook_is_documented(name: str) -> None:
    doc = inspect.getdoc(getattr(hookspecs, name))
    assert doc and len(doc) > 40, f"hook {name} needs a docstring saying when it is called"
    assert "Called" in doc or "called" in doc


def test_the_plugin_pages_hook_list_matches_hookspecs() -> None:
    page = (REPO / "docs" / "plugins.md").read_text()
    section = re.split(r"^## \d+\. Hooks$", page, maxsplit=1, flags=re.M)[1].split("\n## ", 1)[0]
    listed = sorted(re.findall(r"^\| `(\w+)`", section, flags=re.M))
    assert listed == HOOKS


def test_example_plugin_implements_every_hook() -> None:
    """The example plugin is driven end to end in tests/transports/test_plugin.py, so every
    hook it implements is exercised there; it must implement all of them."""
    source = (REPO / "examples/raykernel-plugin-example/raykernel_example_plugin.py").read_text()
    implemented = {
        node.name
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.FunctionDef)
        and any(getattr(d, "id", None) == "hookimpl" for d in node.decorator_list)
    }
    assert implemented == set(HOOKS)


def test_builtin_plugins_register_like_third_party_ones() -> None:
    pm, specs = load_front_end_plugins(blocked=[], allowed=[])
    assert list(specs.values()) == list(DEFAULT_PLUGINS)
    for spec in DEFAULT_PLUGINS:
        assert pm.get_plugin(spec.rsplit(".", 1)[-1]) is not None


async def test_blocking_a_plugin_removes_its_tools(tmp_path: Path) -> None:
    from raykernel.server.build import build_server
    from raykernel.settings import Settings

    mcp, _app = build_server(Settings(workspace=tmp_path, blocked_plugins=["files"], config=None))
    # Without middleware: listing tools through it would start Ray in the background, and
    # leave that start running in this process after the test.
    names = {tool.name for tool in await mcp.list_tools(run_middleware=False)}
    assert "run_python_code" in names
    assert not names & {"read_file", "write_file", "list_files", "delete_file"}


def test_essential_plugins_cannot_be_blocked() -> None:
    with pytest.raises(PluginError, match="essential"):
        load_front_end_plugins(blocked=["sessions"], allowed=[])


def test_tool_name_clash_is_refused_with_both_plugins_named() -> None:
    registry = Registrar(FastMCP("t"))

    async def run_python_code(code: str) -> str:
        return code

    registry.tools_for("execution")(run_python_code)
    with pytest.raises(PluginError, match=r"'thief'.*'run_python_code'.*'execution'"):
        registry.tools_for("thief")(run_python_code)


def test_misspelled_hook_fails_loudly() -> None:
    with pytest.raises(PluginError, match="before_exectue"):
        load_session_plugins(["tests.unit.misspelled_plugin"])


def test_the_plugin_api_page_lists_exactly_what_raykernel_api_exports() -> None:
    import raykernel.api

    page = (REPO / "docs" / "plugins.md").read_text()
    reference = page[page.index(". Reference: what `raykernel.api` exports\n") :]
    documented = set(re.findall(r"`([A-Za-z_]+)`", reference)) - {"raykernel"}
    documented = {name for name in documented if hasattr(raykernel.api, name) or name[0].isupper()}
    assert documented == set(raykernel.api.__all__)


def test_the_example_plugin_imports_only_the_plugin_api() -> None:
    root = Path(__file__).parents[2] / "examples" / "raykernel-plugin-example"
    for path in root.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("raykernel"):
                assert node.module in ("raykernel.api", "raykernel.testing"), (path, node.module)
