"""The actor's side of code mode's channel (see raykernel.kernel.upstream_tools): requests
session code made to the front end (list the servers, a server's tools, call a tool), queued
per run until the front end following that run takes them (``take``, a long poll: it works the
same through a Ray actor and in the front end's own process), and each one's answer handed back
to the kernel.

The kernel runs user code: a request is checked here (its run is the one in progress, its
fields are the ones a request has, its arguments are bounded) before any front end sees it,
and one that fails the check is answered with a refusal at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from raykernel.protocol import KernelOp

from .kernel_client import KernelGone, KernelProcess

OPS = ("servers", "tools", "call")
MAX_PENDING = 64  # per run: session code with more calls in flight waits its answers first
MAX_ARGUMENT_BYTES = 4 << 20
MAX_NAME = 200
ENDED_KEPT = 1000  # runs remembered as over, for a poll that comes late
LOG_ARGUMENT_CHARS = 500

# Sends ``(call id, answer)`` to the kernel.
Reply = Callable[[int, dict[str, Any]], Awaitable[None]]


def to_kernel(kernel: Callable[[], KernelProcess | None]) -> Reply:
    """The ``Reply`` that hands answers to the session's kernel of the moment."""

    async def reply(call_id: int, answer: dict[str, Any]) -> None:
        current = kernel()
        if current is None or not current.alive:
            return  # the run died with its kernel: nothing waits for the answer
        with contextlib.suppress(KernelGone, RuntimeError):
            await current.request(KernelOp.UPSTREAM_REPLY, call_id, answer)

    return reply


class UpstreamCalls:
    def __init__(self, reply: Reply, current: Callable[[], str | None]) -> None:
        self._reply = reply
        self._current = current  # the token of the run in progress
        self._pending: dict[str, list[dict[str, Any]]] = {}
        self._wake: dict[str, asyncio.Event] = {}
        self._asked: dict[int, tuple[str, dict[str, Any]]] = {}
        self._log: dict[str, list[dict[str, Any]]] = {}
        self._ended: OrderedDict[str, None] = OrderedDict()
        self._tasks: set[asyncio.Future[Any]] = set()

    # -- from the kernel ----------------------------------------------------------------------

    def heard(self, message: dict[str, Any]) -> None:
        """An event the kernel sent unasked: a request (see ``asked``), or none of ours."""
        if message.get("event") == "upstream":
            self.asked(message)

    def asked(self, message: dict[str, Any]) -> None:
        """A request event from the kernel; queued for its run's front end, or refused."""
        call_id = message.get("id")
        if not isinstance(call_id, int):
            return  # no id to answer to: not a request of ours
        token = message.get("token")
        refusal = self._check(message, token)
        if refusal is not None:
            self._send(call_id, {"ok": False, "kind": "InvalidArgument", "message": refusal})
            return
        assert isinstance(token, str)
        call = {"id": call_id, "op": message["op"], "asked_at": time.time()}
        for key in ("server", "tool", "arguments"):
            if key in message:
                call[key] = message[key]
        self._asked[call_id] = (token, call)
        self._pending.setdefault(token, []).append(call)
        self._event(token).set()

    def _check(self, message: dict[str, Any], token: Any) -> str | None:
        if not isinstance(token, str) or token != self._current():
            return "raykernel_tools answers only the run in progress"
        op = message.get("op")
        if op not in OPS:
            return f"unknown request {str(op)[:50]!r}"
        # Asked and not answered yet, taken by the front end or not: a kernel writing events
        # of its own must not pile up calls (or consent prompts) in the shared front end.
        if sum(1 for asker, _ in self._asked.values() if asker == token) >= MAX_PENDING:
            return f"more than {MAX_PENDING} upstream calls in flight at once"
        for key in ("server", "tool"):
            value = message.get(key)
            if key in message and (not isinstance(value, str) or len(value) > MAX_NAME):
                return f"{key}: a name of at most {MAX_NAME} characters"
        arguments = message.get("arguments", {})
        if not isinstance(arguments, dict):
            return "arguments: an object"
        try:
            size = len(json.dumps(arguments))
        except (TypeError, ValueError):
            return "arguments: JSON data only"
        if size > MAX_ARGUMENT_BYTES:
            return f"arguments: {size} bytes as JSON, above {MAX_ARGUMENT_BYTES}"
        return None

    def run_ended(self, token: str) -> list[dict[str, Any]]:
        """The run is over: its pollers are woken, what it never got answered is dropped; the
        log of its upstream calls (for its history entry)."""
        self._ended[token] = None
        while len(self._ended) > ENDED_KEPT:
            self._ended.popitem(last=False)
        for call in self._pending.pop(token, []):
            self._asked.pop(call["id"], None)
        for call_id in [i for i, (t, _) in self._asked.items() if t == token]:
            del self._asked[call_id]
        self._event(token).set()
        self._wake.pop(token, None)
        return self._log.pop(token, [])

    # -- from the front end -------------------------------------------------------------------

    async def take(self, token: str, wait: float) -> dict[str, Any]:
        """Run ``token``'s requests not yet taken, once there is one or after ``wait`` s;
        ``ended`` once the run is over (its follower stops asking)."""
        if token not in self._ended and not self._pending.get(token):
            event = self._event(token)
            event.clear()
            try:
                await asyncio.wait_for(event.wait(), wait)
            except TimeoutError:
                pass
        calls = self._pending.pop(token, [])
        return {"calls": calls, "ended": token in self._ended}

    async def answer(
        self, call_id: int, answer: dict[str, Any], log: dict[str, Any] | None = None
    ) -> bool:
        """Hand the front end's answer to the kernel; False when its run is over (or it was
        answered already). ``log``: what the run's history keeps of the call."""
        asked = self._asked.pop(call_id, None)
        if asked is None:
            return False
        token, call = asked
        if log is not None:
            entry = {
                "server": call.get("server"),
                "tool": call.get("tool"),
                "arguments": _short(call.get("arguments")),
                "seconds": round(time.time() - call["asked_at"], 6),
                "ok": bool(answer.get("ok")),
                **log,
            }
            if not answer.get("ok"):
                entry["error"] = f"{answer.get('kind')}: {str(answer.get('message'))[:300]}"
            self._log.setdefault(token, []).append(entry)
        await self._reply(call_id, _bounded(answer))
        return True

    # -- helpers ------------------------------------------------------------------------------

    def _event(self, token: str) -> asyncio.Event:
        event = self._wake.get(token)
        if event is None:
            event = self._wake[token] = asyncio.Event()
        return event

    def _send(self, call_id: int, answer: dict[str, Any]) -> None:
        task = asyncio.ensure_future(self._reply(call_id, answer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _short(arguments: Any) -> str:
    text = json.dumps(arguments, default=str)
    return text if len(text) <= LOG_ARGUMENT_CHARS else text[:LOG_ARGUMENT_CHARS] + "..."


def _bounded(answer: dict[str, Any]) -> dict[str, Any]:
    """Only what an answer has, so a front end's mistake cannot put more on the wire."""
    if answer.get("ok"):
        return {"ok": True, "value": answer.get("value")}
    return {"ok": False, "kind": str(answer.get("kind")), "message": str(answer.get("message"))}
