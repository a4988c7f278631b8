"""What tools/list costs a client, per toolset (issue 26): every conversation pays for it.

    .venv/bin/python bench/tools.py

Builds the server in this process (no Ray: only the "default" session's kernel starts), lists
its tools with fastmcp's Client as a client receives them, and prints one row per toolset, for
the default and for `all`: tools,
bytes of the listing's JSON (the wire's names), ~tokens at 4 bytes a token, and the ratio to
`all` and to the 36.7 KB that the 36 tools of the release before toolsets cost.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path
from typing import Any

from fastmcp import Client

from raykernel.server.build import build_server
from raykernel.settings import Settings

BASELINE_BYTES = 36_700  # 36 tools before toolsets (issue 26's measure)


async def listing(workspace: str, toolsets: str) -> list[dict[str, Any]]:
    mcp, _app = build_server(Settings(workspace=Path(workspace), config=None, toolsets=toolsets))
    async with Client(mcp) as client:
        tools = await client.list_tools()
    return [tool.model_dump(mode="json", exclude_none=True, by_alias=True) for tool in tools]


async def main() -> None:
    with tempfile.TemporaryDirectory(prefix="raykernel-bench-") as workspace:
        _mcp, app = build_server(Settings(workspace=Path(workspace), config=None))
        groups = sorted(app.toolsets.groups)
        rows = {name: await listing(workspace, name) for name in ["default", "all", *groups]}
    every = len(json.dumps(rows["all"]))
    print("| toolset | tools | bytes | ~tokens | vs all | vs 36.7 KB |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, tools in rows.items():
        size = len(json.dumps(tools))
        print(
            f"| {name} | {len(tools)} | {size:,} | {size // 4:,} | {size / every:.2f} "
            f"| {size / BASELINE_BYTES:.2f} |"
        )


if __name__ == "__main__":
    asyncio.run(main())
