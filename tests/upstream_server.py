"""A small upstream MCP server the code-mode tests start over stdio: ``add`` (read-only),
``drop`` (destructive: its annotations say so), ``fail`` (answers with a tool error) and
``wait`` (sleeps), and ``note``/``read_note`` (state this server process keeps: what one
connection left, the next caller on it reads). ``drop`` appends the name it dropped to the file
named by ``UPSTREAM_DROPPED`` (the tests read it to see whether it ran)."""

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


_NOTE: list[str] = []


@mcp.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False))
def note(text: str) -> str:
    """Keep ``text`` in this server (a stateful server: a login, a cursor, a scratchpad)."""
    _NOTE[:] = [text]
    return "kept"


@mcp.tool(annotations=ToolAnnotations(read_only_hint=True))
def read_note() -> str:
    """What ``note`` kept here last ("" if nothing)."""
    return _NOTE[0] if _NOTE else ""


if __name__ == "__main__":
    mcp.run(show_banner=False)
