"""Long runs: progress notifications carrying the output tail, background runs followed with
get_run and stopped with cancel_run, the queue in health, and install progress."""

from __future__ import annotations

import asyncio
import time

from fastmcp import Client

from tests.helpers import call, call_error, run

TICKING = (
    "import time\n"
    "for i in range(6):\n"
    "    print(f'step {i}', flush=True)\n"
    "    time.sleep(0.4)\n"
    "'finished'"
)


async def test_progress_notifications_carry_the_output_tail(client: Client, scratch: str) -> None:
    seen: list[tuple[float, str]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, message or ""))

    result = await client.call_tool(
        "run_python_code",
        {"code": TICKING, "session_id": scratch},
        progress_handler=on_progress,
    )
    assert result.structured_content["result"] == "'finished'"
    assert len(seen) >= 2, seen
    assert any("step 2" in message for _, message in seen), seen
    progress = [p for p, _ in seen]
    assert progress == sorted(progress) and len(set(progress)) == len(progress)
    # At most a few per second: the run took ~2.4 s.
    assert len(seen) <= 8, seen


async def test_background_run_is_followed_cancelled_and_queued(
    client: Client, scratch: str
) -> None:
    await run(client, "kept = 'yes'", session_id=scratch)
    started = await call(
        client,
        "run_python_code",
        code="import time\nfor i in range(100):\n    print('tick', i)\n    time.sleep(0.2)",
        session_id=scratch,
        background=True,
    )
    run_id = started["run_id"]
    assert started["status"] in ("queued", "running")
    # A second background run queues behind the first: visible in health.
    queued = await call(
        client, "run_python_code", code="queued_ran = True", session_id=scratch, background=True
    )
    await asyncio.sleep(1.5)
    status = await call(client, "get_run", run_id=run_id)
    assert status["status"] == "running"
    assert "tick" in status["output_so_far"]
    health = await call(client, "get_kernel_health", session_id=scratch)
    assert health["queue"] == {
        "running": True,
        "waiting": 1,
        "background_runs": [
            {"run_id": run_id, "status": "running"},
            {"run_id": queued["run_id"], "status": "queued"},
        ],
    }
    # Cancel the queued one: it never runs. Then the running one: interrupted, state kept.
    dropped = await call(client, "cancel_run", run_id=queued["run_id"])
    assert (dropped["cancelled"], dropped["was"], dropped["status"]) == (
        True,
        "queued",
        "cancelled",
    )
    stopped = await call(client, "cancel_run", run_id=run_id)
    assert (stopped["cancelled"], stopped["was"]) == (True, "running")
    assert stopped["reply"]["interrupted"] is True
    assert stopped["reply"]["state_preserved"] is True
    check = await run(client, "(kept, 'queued_ran' in globals())", session_id=scratch)
    assert check["result"] == "('yes', False)"
    again = await call(client, "cancel_run", run_id=run_id)
    assert again["cancelled"] is False


async def test_background_run_result_with_wait(client: Client, scratch: str) -> None:
    started = await call(
        client,
        "run_python_code",
        code="import time\ntime.sleep(1)\nprint('out')\n40 + 2",
        session_id=scratch,
        background=True,
    )
    began = time.monotonic()
    done = await call(client, "get_run", run_id=started["run_id"], wait=30)
    assert time.monotonic() - began < 15
    assert done["status"] == "done"
    assert done["reply"]["result"] == "42" and done["reply"]["stdout"] == "out\n"
    listed = await call(client, "list_runs")
    assert started["run_id"] in {r["run_id"] for r in listed["runs"]}
    assert (await call_error(client, "get_run", run_id="run-nope")).startswith("RunNotFound:")
    error = await call_error(
        client, "run_python_code", code="1", session_id="no-such", background=True
    )
    assert error.startswith("SessionNotFound:")
