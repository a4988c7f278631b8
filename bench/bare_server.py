"""The floor: a bare fastmcp server whose run_python_code execs in its own process.

No isolation, no Ray: only what any MCP server must pay per call on a given transport.
"""

from __future__ import annotations

import contextlib
import io
import sys
from typing import Any

from fastmcp import FastMCP

mcp = FastMCP("bare")
_namespace: dict[str, Any] = {}


@mcp.tool
async def run_python_code(code: str) -> dict[str, Any]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(code, _namespace)
    return {"success": True, "stdout": out.getvalue()}


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "http":
        mcp.run(transport="http", host="127.0.0.1", port=int(sys.argv[2]), show_banner=False)
    else:
        mcp.run(transport="stdio", show_banner=False)
