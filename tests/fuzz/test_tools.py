"""Schema-driven fuzzing of every tool through a real MCP client (fastmcp's, in memory, against
the real server and real Ray). For every reply: a success or a typed refusal, never internal
text; after every call, the server answers and a canary session still holds its secret.

Budget: RAYKERNEL_FUZZ_EXAMPLES valid and as many broken calls per tool (default 8, a fixed
seed, so CI runs the same calls every time). A longer run:

    RAYKERNEL_FUZZ_EXAMPLES=200 RAYKERNEL_FUZZ_LOG=fuzz.jsonl .venv/bin/pytest tests/fuzz
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections import Counter
from typing import Any

import pytest
from fastmcp import Client

from raykernel import errors
from tests.fuzz.strategies import (
    BUDGET,
    FUZZ_SESSIONS,
    NO_VALID_CALLS,
    OUTCOMES,
    broken_arguments,
    examples,
    valid_arguments,
)
from tests.helpers import call, run

pytestmark = pytest.mark.fuzz

KINDS = {
    name
    for name, cls in vars(errors).items()
    if isinstance(cls, type) and issubclass(cls, errors.RaykernelError)
}
TYPED = re.compile(r"^([A-Z][A-Za-z]+): .")
# What must never reach a client: pydantic's wording, internal wrapper names, tracebacks, and
# fastmcp's mask for an unexpected exception (which means a bug, not a refusal).
INTERNAL = re.compile(
    r"validation error for|errors\.pydantic\.dev|call\[|Traceback \(most recent|"
    r"Error calling tool|input_value=|type=\w+_\w+|RayTaskError|RayActorError",
)


@pytest.fixture(scope="module")
async def canary(server: Any) -> dict[str, str]:
    """A session the fuzz never names: its secret must survive everything."""
    secret = uuid.uuid4().hex
    async with Client(server) as client:
        await call(client, "create_session", session_id="fuzz-canary")
        await run(client, f"secret = {secret!r}", session_id="fuzz-canary")
        for sid in FUZZ_SESSIONS[:2]:
            await call(client, "create_session", session_id=sid)
    yield {"session_id": "fuzz-canary", "secret": secret}
    async with Client(server) as client:
        listing = await call(client, "list_sessions")
        for sid in listing["sessions"]:
            if sid != "default":
                await client.call_tool("delete_session", {"session_id": sid})


async def _tools(server: Any) -> list[Any]:
    async with Client(server) as client:
        return await client.list_tools()


def _classify(result: Any) -> str:
    """'ok', or the error's kind; fails on anything untyped or internal."""
    if not result.is_error:
        return "ok"
    text = result.content[0].text if result.content else ""
    assert not INTERNAL.search(text), text
    match = TYPED.match(text)
    assert match, f"untyped error: {text!r}"
    assert match.group(1) in KINDS, f"unknown kind: {text!r}"
    return match.group(1)


def _log(tool: str, arguments: dict[str, Any], outcome: str, result: Any) -> None:
    """With RAYKERNEL_FUZZ_LOG=file, one JSON line per call: what was sent, what came back."""
    path = os.environ.get("RAYKERNEL_FUZZ_LOG")
    if not path:
        return
    text = result.content[0].text if result.content else ""
    line = {"tool": tool, "arguments": arguments, "outcome": outcome, "reply": text[:300]}
    with open(path, "a", encoding="utf-8") as log:
        log.write(json.dumps(line, default=str) + "\n")


async def _check_alive(client: Client, canary: dict[str, str]) -> None:
    assert (await call(client, "ping"))["status"] == "ok"
    held = await run(client, "secret", session_id=canary["session_id"])
    assert held["result"] == repr(canary["secret"]), held


@pytest.mark.parametrize("variant", ["valid", "broken"])
async def test_every_tool_gives_a_result_or_a_typed_error(
    server: Any, canary: dict[str, str], variant: str
) -> None:
    tools = await _tools(server)
    assert len(tools) >= 30
    called: Counter[str] = Counter()
    async with Client(server) as client:
        for tool in tools:
            if variant == "valid" and tool.name in NO_VALID_CALLS:
                continue
            for sid in FUZZ_SESSIONS[:2]:  # earlier calls may have deleted them
                await call(client, "create_session", session_id=sid)
            strategy = (valid_arguments if variant == "valid" else broken_arguments)(
                tool.input_schema
            )
            for arguments in examples(strategy, BUDGET):
                result = await client.call_tool(tool.name, arguments, raise_on_error=False)
                try:
                    outcome = _classify(result)
                except AssertionError as exc:
                    shown = json.dumps(arguments, default=str)[:500]
                    raise AssertionError(f"{tool.name}({shown}): {exc}") from None
                OUTCOMES[f"{variant}/{outcome}"] += 1
                _log(tool.name, arguments, outcome, result)
                called[tool.name] += 1
                await _check_alive(client, canary)
    # Small schemas give fewer distinct examples than the budget, but every tool is called.
    skipped = NO_VALID_CALLS if variant == "valid" else set()
    assert set(called) == {tool.name for tool in tools} - skipped
