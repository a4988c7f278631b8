"""A small upstream MCP server the code-mode tests start over stdio: ``add`` (read-only),
``drop`` (destructive: its annotations say so), ``fail`` (answers with a tool error) and
``wait`` (sleeps). ``drop`` appends the name it dropped to the file named by
``UPSTREAM_DROPPED`` (the tests read it to see whether it ran)."""

from __future__ import annotations

import os
import time

from fastmcp import FastMCP
from mcp_types import ToolAnnotations

mcp = FastMCP("upstream")


@mcp.tool(annotations=ToolAnnotations(read_only_hint=True, destructive_hint=False))
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@mcp.tool(annotations=ToolAnnotations(destructive_hint=True))
def drop(table: str) -> dict:
    """Drop a table (it cannot be undone)."""
    with open(os.environ["UPSTREAM_DROPPED"], "a") as out:
        out.write(table + "\n")
    return {"dropped": table}


@mcp.tool(annotations=ToolAnnotations(read_only_hint=True))
def fail(reason: str) -> str:
    """Always fails, with ``reason``."""
    raise ValueError(reason)


@mcp.tool(annotations=ToolAnnotations(read_only_hint=True))
def wait(seconds: float) -> float:
    """Sleep ``seconds``, then answer them."""
    time.sleep(seconds)
    return seconds


if __name__ == "__main__":
    mcp.run(show_banner=False)
