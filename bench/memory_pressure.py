"""Issue 27's scenario at full scale (not part of the tests: it fills the machine).

A bystander session holds a secret; N hog sessions each fill GIB GiB at once, through the
official MCP SDK over stdio, with the server's default settings. Together they pass what the
machine has. Printed: each hog's reply, the bystander's secret afterwards, every session's
listed status, and whether each answers.

    .venv/bin/python bench/memory_pressure.py            # 5 hogs of 4.5 GiB (a 24 GiB machine)
    .venv/bin/python bench/memory_pressure.py --hogs 3 --gib 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

FILL = "import numpy as np\nfilled = np.ones(int({gib} * 2**30) // 8)\nfilled.nbytes"


async def call(session: ClientSession, tool: str, **arguments: object) -> dict:
    result = await session.call_tool(tool, arguments)
    if result.is_error:
        return {"tool_error": result.content[0].text}
    return result.structured_content or json.loads(result.content[0].text)


async def main(hogs: int, gib: float) -> int:
    workspace = Path(tempfile.mkdtemp(prefix="raykernel-pressure-"))
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "raykernel", "--workspace", str(workspace)]
    )
    names = [f"hog{i}" for i in range(1, hogs + 1)]
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        for sid in ["bystander", *names]:
            await call(session, "create_session", session_id=sid)
        await call(session, "run_python_code", code="secret = 'kept-77'", session_id="bystander")
        started = time.monotonic()
        replies = await asyncio.gather(
            *(
                call(session, "run_python_code", code=FILL.format(gib=gib), session_id=sid)
                for sid in names
            )
        )
        elapsed = time.monotonic() - started
        print(f"{hogs} hogs of {gib} GiB each, all at once: {elapsed:.1f} s")
        print("| session | reply |")
        print("| --- | --- |")
        for sid, reply in zip(names, replies, strict=True):
            if "tool_error" in reply:
                text = reply["tool_error"]
            elif reply.get("success"):
                text = f"ok: {reply.get('result')} bytes held"
            else:
                error = reply.get("error") or {}
                text = f"{error.get('ename')}: {str(error.get('evalue'))[:160]}"
            print(f"| {sid} | {text} |")
        secret = await call(session, "run_python_code", code="secret", session_id="bystander")
        print(f"bystander's secret afterwards: {secret.get('result')}")
        listed = (await call(session, "list_sessions"))["sessions"]
        print("listed:", {sid: listed[sid]["status"] for sid in ["bystander", *names]})
        answers = {}
        for sid in ["bystander", *names]:
            reply = await call(session, "run_python_code", code="1 + 1", session_id=sid)
            answers[sid] = reply.get("result") or reply.get("tool_error")
        print("each answers 1 + 1:", answers)
        ok = secret.get("result") == "'kept-77'" and all(v == "2" for v in answers.values())
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hogs", type=int, default=5)
    parser.add_argument("--gib", type=float, default=4.5)
    options = parser.parse_args()
    raise SystemExit(asyncio.run(main(options.hogs, options.gib)))
