"""What an upstream MCP call from session code costs (issue 28), against the same tool called
directly by the client.

    .venv/bin/python bench/codemode.py [calls]

The upstream server is tests/upstream_server.py over stdio (its ``add``). Rows, each a p50:

* direct: a fastmcp Client on the upstream server calls ``add`` (what a client pays without
  raykernel, the model's turn aside);
* from code, per call: ``raykernel_tools.calc.add`` in a loop inside one run, timed in the
  kernel (kernel -> actor -> front end -> upstream and back), in the "default" session (its
  actor in the front end's process) and in a session on a Ray actor;
* per run: a run with one upstream call, and an empty run, through raykernel's in-memory
  client (the difference is what one call adds to a run).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from fastmcp import Client
from fastmcp.client.transports import StdioTransport

from raykernel.server.build import build_server
from raykernel.settings import Settings

UPSTREAM = str(Path(__file__).resolve().parent.parent / "tests" / "upstream_server.py")
LOOP = """
import time, raykernel_tools
add = raykernel_tools.calc.add
add(a=0, b=0)
seconds = []
for i in range({calls}):
    started = time.perf_counter()
    add(a=i, b=1)
    seconds.append(time.perf_counter() - started)
seconds
"""


def p50_ms(seconds: list[float]) -> float:
    return statistics.median(seconds) * 1000


async def direct(calls: int, workspace: str) -> float:
    transport = StdioTransport(
        command=sys.executable, args=[UPSTREAM], env={"UPSTREAM_DROPPED": f"{workspace}/d"}
    )
    async with Client(transport) as client:
        await client.call_tool("add", {"a": 0, "b": 0})
        seconds = []
        for i in range(calls):
            started = time.perf_counter()
            await client.call_tool("add", {"a": i, "b": 1})
            seconds.append(time.perf_counter() - started)
    return p50_ms(seconds)


async def timed_runs(client: Client, code: str, session: str, count: int) -> float:
    seconds = []
    for _ in range(count):
        started = time.perf_counter()
        reply = await client.call_tool("run_python_code", {"code": code, "session_id": session})
        assert reply.structured_content["success"], reply.structured_content
        seconds.append(time.perf_counter() - started)
    return p50_ms(seconds)


async def main(calls: int) -> None:
    with tempfile.TemporaryDirectory(prefix="raykernel-bench-") as workspace:
        rows = [
            ("direct: the client calls add on the upstream server", await direct(calls, workspace))
        ]
        settings = Settings(
            workspace=Path(workspace),
            state_dir=Path(f"{workspace}/state"),
            config=None,
            mcp_servers={
                "calc": {
                    "command": sys.executable,
                    "args": [UPSTREAM],
                    "env": {"UPSTREAM_DROPPED": f"{workspace}/d"},
                }
            },
        )
        mcp, _app = build_server(settings)
        async with Client(mcp) as client:
            await client.call_tool("create_session", {"session_id": "ray"})
            for session, where in (("default", "front end's process"), ("ray", "a Ray actor")):
                reply = await client.call_tool(
                    "run_python_code",
                    {"code": LOOP.format(calls=calls), "session_id": session},
                )
                seconds = json.loads(reply.structured_content["result"].replace("'", '"'))
                rows.append((f"from code, per call ({where})", p50_ms(seconds)))
            for session, where in (("default", "front end's process"), ("ray", "a Ray actor")):
                one = "raykernel_tools.calc.add(a=1, b=2)"
                await timed_runs(client, "import raykernel_tools\n" + one, session, 3)
                empty = await timed_runs(client, "1 + 2", session, max(10, calls // 10))
                called = await timed_runs(client, one, session, max(10, calls // 10))
                rows.append((f"a run with no upstream call ({where})", empty))
                rows.append((f"a run with one upstream call ({where})", called))
            await client.call_tool("delete_session", {"session_id": "ray"})
    print(f"| what ({calls} calls) | p50 ms |")
    print("| --- | --- |")
    for what, ms in rows:
        print(f"| {what} | {ms:.2f} |")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 200))
