"""pytest fixtures for plugin authors, registered through the ``pytest11`` entry point (they
are there as soon as raykernel is installed; ``-p no:raykernel`` turns them off).

    import pytest
    import my_plugin

    @pytest.fixture
    def raykernel_plugins():
        return [my_plugin]

    async def test_my_tool(raykernel_client, tmp_path):   # tmp_path is the workspace
        reply = await raykernel_client.call_tool("my_tool", {...})

* ``raykernel_plugins``: the plugins under test (override it; default none);
* ``raykernel_settings``: ``Settings`` fields for the server (override it; default none);
* ``raykernel_ray``: one local Ray for the whole test session (the lean head), shut down by
  handle at the end; a Ray this process already runs is used and left alone;
* ``raykernel_client``: a real server with those plugins, its workspace the test's ``tmp_path``,
  and a real MCP client (fastmcp's, in memory) connected to it. Needs pytest-asyncio.

Importing this module is cheap: pytest loads it in every run.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture
def raykernel_plugins() -> list[Any]:
    return []


@pytest.fixture
def raykernel_settings() -> dict[str, Any]:
    return {}


@pytest.fixture(scope="session")
def raykernel_ray() -> Iterator[str | None]:
    """The address of the session's local Ray (None when this process already had one)."""
    import ray

    from raykernel.sessions.cluster import LocalHead

    if ray.is_initialized():
        yield None
        return
    head = LocalHead(dashboard=False)
    try:
        address = head.start()
        ray.init(address=address, namespace="raykernel", log_to_driver=False)
    except BaseException:
        head.shutdown()
        raise
    try:
        yield address
    finally:
        ray.shutdown()
        head.shutdown()


try:
    import pytest_asyncio
except ImportError:  # without pytest-asyncio, only the synchronous fixtures exist
    pass
else:

    @pytest.hookimpl(tryfirst=True)
    def pytest_pycollect_makeitem(collector: Any, name: str, obj: object) -> None:
        """An async test that uses ``raykernel_client`` runs under pytest-asyncio in any
        project: in its default mode (strict) only marked tests do, and the documented
        tests failed as written outside this repository."""
        if not inspect.iscoroutinefunction(obj):
            return
        try:
            wanted = inspect.signature(obj).parameters  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return
        marks = getattr(obj, "pytestmark", [])
        if "raykernel_client" in wanted and not any(m.name == "asyncio" for m in marks):
            pytest.mark.asyncio(obj)

    @pytest_asyncio.fixture
    async def raykernel_client(
        raykernel_plugins: list[Any],
        raykernel_settings: dict[str, Any],
        raykernel_ray: str | None,
        tmp_path: Path,
    ) -> AsyncIterator[Any]:
        from raykernel.testing import serve

        async with serve(raykernel_plugins, workspace=tmp_path, **raykernel_settings) as client:
            yield client
