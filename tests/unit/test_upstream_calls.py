"""Code mode's actor-side queue (kernel/upstream_calls.py) without Ray: the kernel runs user
code, so a request is refused unless its run is the one in progress and it has the fields a
request has; a front end takes a run's requests by long poll and its answers reach the kernel
once; the run's log is what its history keeps."""

from __future__ import annotations

import asyncio
from typing import Any

from raykernel.actors.upstream_calls import MAX_PENDING, UpstreamCalls


def _queue() -> tuple[UpstreamCalls, list[tuple[int, dict[str, Any]]], dict[str, str | None]]:
    sent: list[tuple[int, dict[str, Any]]] = []
    current: dict[str, str | None] = {"token": "run-1"}

    async def reply(call_id: int, answer: dict[str, Any]) -> None:
        sent.append((call_id, answer))

    return UpstreamCalls(reply, lambda: current["token"]), sent, current


def _ask(calls: UpstreamCalls, call_id: int, token: str = "run-1", **fields: Any) -> None:
    message = {"event": "upstream", "id": call_id, "token": token, "op": "call"}
    calls.asked({**message, "server": "calc", "tool": "add", "arguments": {"a": 1}, **fields})


async def test_requests_outside_the_run_in_progress_or_malformed_are_refused() -> None:
    calls, sent, _current = _queue()
    _ask(calls, 1, token="run-0")  # an earlier run's thread
    _ask(calls, 2, op="shell")
    _ask(calls, 3, arguments=["not", "an", "object"])
    _ask(calls, 4, server=7)
    _ask(calls, 5, arguments={"x": object()})
    await asyncio.sleep(0)
    refused = {call_id: answer for call_id, answer in sent}
    assert sorted(refused) == [1, 2, 3, 4, 5]
    assert all(a["ok"] is False and a["kind"] == "InvalidArgument" for a in refused.values())
    assert "run in progress" in refused[1]["message"]
    assert (await calls.take("run-1", 0.01))["calls"] == []


async def test_a_front_end_takes_a_runs_requests_and_answers_each_once() -> None:
    calls, sent, _current = _queue()
    taking = asyncio.ensure_future(calls.take("run-1", 5))
    await asyncio.sleep(0.01)
    _ask(calls, 1)
    batch = await asyncio.wait_for(taking, 1)  # woken by the request, not after 5 s
    assert [c["id"] for c in batch["calls"]] == [1] and not batch["ended"]
    assert await calls.answer(1, {"ok": True, "value": 2}, {"approval": None})
    assert not await calls.answer(1, {"ok": True, "value": 3})  # once
    assert sent == [(1, {"ok": True, "value": 2})]
    log = calls.run_ended("run-1")
    assert [(e["tool"], e["ok"], e["arguments"]) for e in log] == [("add", True, '{"a": 1}')]
    assert (await calls.take("run-1", 5))["ended"]  # at once: the run is over


async def test_a_runs_requests_are_bounded() -> None:
    calls, sent, _current = _queue()
    for call_id in range(MAX_PENDING + 1):
        _ask(calls, call_id)
    await asyncio.sleep(0)
    assert [call_id for call_id, _ in sent] == [MAX_PENDING]
    assert len((await calls.take("run-1", 0))["calls"]) == MAX_PENDING
