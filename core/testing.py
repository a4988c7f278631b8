"""A test kit for plugin authors: a real server with your plugin, and a real MCP client.

    from raykernel.testing import serve

    async def test_my_tool(tmp_path):
        async with serve(plugins=[my_plugin], workspace=tmp_path) as client:
            reply = await client.call_tool("my_tool", {...})
            assert reply.structured_content == {...}

``serve`` builds the server in this process (sessions in real kernels, Ray started when a
second session needs it, stopped at the end) and connects fastmcp's ``Client`` to it in memory.
``serve_stdio`` starts ``raykernel`` as a subprocess and speaks stdio to it, as Claude Desktop
would. Neither installs your plugin: it is loaded from the module you pass (it must be
importable by name, and kernels import it by name if it has hooks that run in sessions).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any


@contextlib.asynccontextmanager
async def serve(
    plugins: Sequence[Any] = (), *, workspace: str | Path | None = None, **settings: Any
) -> AsyncIterator[Any]:
    """A connected ``fastmcp.Client`` to a server with ``plugins`` loaded (modules, objects or
    import specs) and ``settings`` (``Settings`` fields, e.g. ``isolation="process"``). Without
    a ``workspace`` a temporary one is made and removed."""
    from fastmcp import Client

    from raykernel.server.build import build_server
    from raykernel.settings import Settings

    with contextlib.ExitStack() as stack:
        if workspace is None:
            workspace = stack.enter_context(tempfile.TemporaryDirectory(prefix="raykernel-"))
        config = Settings(workspace=Path(workspace), config=None, **settings)
        mcp, _app = build_server(config, plugins)
        async with Client(mcp) as client:
            yield client


@contextlib.asynccontextmanager
async def serve_stdio(
    plugins: Sequence[str] = (), *, workspace: str | Path, **settings: Any
) -> AsyncIterator[Any]:
    """Like ``serve``, with the server a ``raykernel`` subprocess over stdio. ``plugins`` are
    import specs (``"my_module"``); the folders they import from are put on its PYTHONPATH.
    Its log goes to ``<workspace>/server.log``."""
    from fastmcp import Client
    from fastmcp.client.transports import StdioTransport

    from raykernel.pluginmanager import import_root, load_object

    roots = []
    for spec in plugins:
        load_object(spec)  # fails here, with the import error, rather than in the server
        root = import_root(spec)
        if root is not None:
            roots.append(root)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAYKERNEL_")}
    env["PYTHONPATH"] = os.pathsep.join([*roots, *filter(None, [env.get("PYTHONPATH")])])
    env["RAYKERNEL_PLUGINS"] = json.dumps(list(plugins))
    for key, value in settings.items():
        env[f"RAYKERNEL_{key.upper()}"] = value if isinstance(value, str) else json.dumps(value)
    transport = StdioTransport(
        command=sys.executable,
        args=["-m", "raykernel", "--workspace", str(workspace)],
        env=env,
        keep_alive=False,
        log_file=Path(workspace) / "server.log",
    )
    async with Client(transport) as client:
        yield client
