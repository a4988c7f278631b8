"""run_python_code through a real MCP client against real Ray."""

from __future__ import annotations

import asyncio
import base64
import time
from pathlib import Path

import pytest
from fastmcp import Client
from fastmcp.exceptions import ToolError

from tests.helpers import call, call_error, run, text_of


async def test_reply_fields(client: Client, scratch: str) -> None:
    reply = await run(client, "a = 6\nprint('six')\na * 7", session_id=scratch)
    assert reply["success"] is True
    assert reply["stdout"] == "six\n"
    assert reply["stderr"] == ""
    assert reply["result"] == "42"
    assert reply["error"] is None
    assert reply["execution_count"] == 1
    assert reply["execution_time"] >= 0
    assert reply["session_id"] == scratch
    assert reply["outputs"] == [] and reply["new_files"] == []
    assert reply["interrupted"] is False and reply["restarted"] is False


async def test_text_content_carries_the_same_reply(client: Client, scratch: str) -> None:
    result = await client.call_tool("run_python_code", {"code": "'txt'", "session_id": scratch})
    assert text_of(result)["result"] == "'txt'"
    assert text_of(result) == result.structured_content


async def test_sessions_are_isolated(client: Client, scratch: str) -> None:
    await run(client, "x = 'only here'", session_id=scratch)
    other = await run(client, "print('x' in globals())", session_id="default")
    assert other["stdout"] == "False\n"
    mine = await run(client, "print('x' in globals())", session_id=scratch)
    assert mine["stdout"] == "True\n"


async def test_error_reply(client: Client, scratch: str) -> None:
    reply = await run(client, "import json\njson.loads('{')", session_id=scratch)
    assert reply["success"] is False
    assert reply["error"]["ename"] == "JSONDecodeError"
    assert "<cell-1>" in reply["error"]["traceback"]


@pytest.mark.parametrize("spin", ["while True: pass", "import time\ntime.sleep(10**6)"])
async def test_timeout_interrupts_and_keeps_state(client: Client, scratch: str, spin: str) -> None:
    await run(client, "before = 123", session_id=scratch)
    started = time.monotonic()
    reply = await run(client, "partial = 'set'\n" + spin, session_id=scratch, timeout=2)
    elapsed = time.monotonic() - started
    assert elapsed < 6, elapsed
    assert reply["success"] is False
    assert reply["error"]["ename"] == "TimeoutError"
    assert "timed out after 2 s" in reply["error"]["evalue"]
    assert reply["interrupted"] is True
    assert reply["state_preserved"] is True
    assert reply["restarted"] is False
    after = await run(client, "(before, partial)", session_id=scratch)
    assert after["result"] == "(123, 'set')"


async def test_code_that_ignores_interrupts_is_killed_and_restarted(
    client: Client, scratch: str, app
) -> None:
    await run(client, "lost = True", session_id=scratch)
    old_pid = app.router.sessions[scratch].pid
    stubborn = (
        "import time\n"
        "while True:\n"
        "    try:\n"
        "        time.sleep(100)\n"
        "    except KeyboardInterrupt:\n"
        "        pass\n"
    )
    reply = await run(client, stubborn, session_id=scratch, timeout=1)
    assert reply["success"] is False
    assert reply["interrupted"] is True
    assert reply["restarted"] is True
    assert reply["state_preserved"] is False
    assert "restarted" in reply["error"]["evalue"]
    # A new kernel process in the same actor.
    assert app.router.sessions[scratch].kernel_pid != old_pid
    after = await run(client, "'lost' in globals()", session_id=scratch)
    assert after["result"] == "False"
    health = await call(client, "get_kernel_health", session_id=scratch)
    assert health["restart_count"] == 1


async def test_crash_is_reported_then_restarted_with_notice(client: Client, scratch: str) -> None:
    await run(client, "state = 1", session_id=scratch)
    died = await run(client, "import os\nos._exit(1)", session_id=scratch)
    assert died["success"] is False
    assert died["error"]["ename"] == "KernelDied"
    assert died["state_preserved"] is False
    health = await call(client, "get_kernel_health", session_id=scratch)
    assert health["status"] == "dead"
    revived = await run(client, "'state' in globals()", session_id=scratch)
    assert revived["success"] is True
    assert revived["result"] == "False"
    assert revived["restarted"] is True
    assert revived["state_preserved"] is False
    assert "restarted" in revived["notice"]


async def test_figures_come_back_as_files_and_images(
    client: Client, scratch: str, workspace: Path
) -> None:
    result = await client.call_tool(
        "run_python_code",
        {
            "code": "import matplotlib.pyplot as plt\nplt.plot([1, 4, 9])\nplt.title('squares')",
            "session_id": scratch,
        },
    )
    reply = result.structured_content
    assert reply["success"], reply["error"]
    assert reply["outputs"] == [f"outputs/figure_{scratch}_1_1.png"]
    assert (workspace / reply["outputs"][0]).read_bytes()[:4] == b"\x89PNG"
    images = [block for block in result.content if block.type == "image"]
    assert len(images) == 1 and images[0].mime_type == "image/png"
    assert base64.b64decode(images[0].data)[:4] == b"\x89PNG"


async def test_new_files_lists_what_the_run_created(client: Client, scratch: str) -> None:
    code = (
        "import pandas as pd\n"
        f"pd.DataFrame({{'a': [1, 2]}}).to_csv('outputs/{scratch}.csv', index=False)\n"
        f"open('outputs/{scratch}.txt', 'w').write('hi')"
    )
    reply = await run(client, code, session_id=scratch)
    assert reply["success"], reply["error"]
    assert sorted(reply["new_files"]) == [f"outputs/{scratch}.csv", f"outputs/{scratch}.txt"]
    again = await run(
        client, f"open('outputs/{scratch}.txt', 'w').write('again')", session_id=scratch
    )
    assert again["new_files"] == []


@pytest.mark.parametrize(
    ("arguments", "fragment"),
    [
        ({"code": 42}, "code"),
        ({}, "code"),
        ({"code": "x = 1", "timeout": -1}, "timeout"),
        ({"code": "x = 1", "timeout": 10**9}, "timeout"),
        ({"code": "x = 1", "timeout": "soon"}, "timeout"),
        ({"code": "x = 1", "session_id": 7}, "session_id"),
        ({"code": ""}, "code"),
    ],
)
async def test_bad_arguments_are_refused_and_nothing_runs(
    client: Client, scratch: str, arguments: dict, fragment: str
) -> None:
    arguments = {"session_id": scratch, **arguments}
    with pytest.raises(ToolError) as info:
        await client.call_tool("run_python_code", arguments)
    assert fragment in str(info.value)
    health = await call(client, "get_kernel_health", session_id=scratch)
    assert health["execution_count"] == 0
    assert "x" not in {
        v["name"] for v in (await call(client, "list_variables", session_id=scratch))["variables"]
    }


async def test_huge_code_is_refused_before_it_runs(client: Client, scratch: str) -> None:
    code = "ran = True\n" + "#" * 10_000_000
    error = await call_error(client, "run_python_code", code=code, session_id=scratch)
    assert error.startswith("InvalidArgument:")
    assert (await call(client, "get_kernel_health", session_id=scratch))["execution_count"] == 0


async def test_concurrent_calls_on_one_session_run_in_order(client: Client, scratch: str) -> None:
    await run(client, "log = []", session_id=scratch)
    codes = [f"import time\nlog.append({i})\ntime.sleep(0.05)\nlog.append({i})" for i in range(6)]
    replies = await asyncio.gather(*(run(client, c, session_id=scratch) for c in codes))
    assert all(r["success"] for r in replies)
    log = (await run(client, "log", session_id=scratch))["result"]
    pairs = eval(log)
    # Never interleaved: each run's two appends are adjacent.
    assert all(pairs[i] == pairs[i + 1] for i in range(0, len(pairs), 2))
    assert sorted(pairs[::2]) == list(range(6))


async def test_other_sessions_answer_while_one_spins(client: Client, scratch: str) -> None:
    await run(client, "None", session_id=scratch)  # started (a new session is cold)
    spinning = asyncio.ensure_future(run(client, "while True: pass", session_id=scratch, timeout=4))
    await asyncio.sleep(0.5)
    started = time.monotonic()
    quick = await run(client, "1 + 1", session_id="default")
    assert quick["result"] == "2"
    assert time.monotonic() - started < 2
    health = await call(client, "get_kernel_health", session_id=scratch)
    assert health["status"] == "busy"
    assert health["memory_usage"] > 0
    responsive = await call(client, "check_kernel_responsiveness", session_id=scratch)
    assert responsive["busy"] is True
    assert (await spinning)["interrupted"] is True


async def test_interrupt_session_stops_a_run_from_another_call(
    client: Client, scratch: str
) -> None:
    await run(client, "kept = 'yes'", session_id=scratch)
    running = asyncio.ensure_future(
        run(client, "import time\ntime.sleep(10**6)", session_id=scratch, timeout=60)
    )
    await asyncio.sleep(0.8)
    reply = await call(client, "interrupt_session", session_id=scratch)
    assert reply["interrupted"] is True
    stopped = await asyncio.wait_for(running, 10)
    assert stopped["interrupted"] is True
    assert stopped["error"]["ename"] == "KeyboardInterrupt"
    assert (await run(client, "kept", session_id=scratch))["result"] == "'yes'"
    idle = await call(client, "interrupt_session", session_id=scratch)
    assert idle["interrupted"] is False
