"""A kernel process seen from its parent (the session actor): starting it with its spec,
asking it to do things, interrupting its run, keeping the tail of its output and of its stderr,
and killing it with everything it started. Plain asyncio, no Ray: tested on its own.

The kernel runs user code: what it sends is data, bounded (``max_message_bytes``) and never
unpickled here, and a kernel that sends what no kernel sends is killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import socket
import sys
from typing import Any

import psutil

from raykernel import errors

from . import wire
from .containment import death_reason

STDERR_TAIL = 8192
START_TIMEOUT = 60.0


class KernelGone(Exception):
    """The kernel process died (or was killed); ``reason`` says how."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class KernelRefused(Exception):
    """The kernel could not be given what its spec asked for (the network off)."""


class KernelProcess:
    def __init__(
        self, spec: dict[str, Any], env: dict[str, str], max_message_bytes: int = 1 << 34
    ) -> None:
        self.spec = spec
        self.env = env
        self.max_message_bytes = max_message_bytes
        self.pid: int | None = None
        self.isolation: dict[str, Any] = {}
        self.exit_reason: str | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._ids = itertools.count(1)
        self._tails: dict[str, str] = {}
        self._stderr = bytearray()
        self._tasks: list[asyncio.Task[None]] = []
        self._gone = asyncio.Event()
        self._process: psutil.Process | None = None

    # -- start and stop -----------------------------------------------------------------------

    async def start(self, timeout: float = START_TIMEOUT) -> dict[str, Any]:
        """Start the kernel and wait until it serves; returns its isolation report. Raises
        ``KernelRefused`` when it cannot be confined as asked, ``KernelGone`` if it dies."""
        parent, child = socket.socketpair()
        try:
            self._proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "raykernel.kernel",
                str(child.fileno()),
                pass_fds=(child.fileno(),),
                stdin=asyncio.subprocess.DEVNULL,
                # Both streams end in one pipe whose end is kept: crash notes live there.
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env=self.env,
                cwd=self.spec["workspace"],
            )
        finally:
            child.close()
        self.pid = self._proc.pid
        reader, self._writer = await asyncio.open_unix_connection(sock=parent)
        self._tasks.append(asyncio.ensure_future(self._drain_stderr()))
        self._writer.write(wire.encode(self.spec))
        await self._writer.drain()
        try:
            first = await asyncio.wait_for(wire.areceive(reader, 1 << 20), timeout)
        except (EOFError, TimeoutError, wire.ProtocolError):
            await self.kill()
            raise KernelGone(await self._reason("the kernel did not start")) from None
        if first.get("event") == "refused":
            await self.kill()
            raise KernelRefused(str(first.get("message")))
        self.isolation = first.get("isolation", {})
        with contextlib.suppress(psutil.Error):
            self._process = psutil.Process(self.pid)
            self._process.cpu_percent(None)
        self._tasks.append(asyncio.ensure_future(self._read(reader)))
        return self.isolation

    @property
    def alive(self) -> bool:
        if self._proc is None or self._gone.is_set():
            return False
        try:  # a kill from outside is seen here before the socket says so
            process = self._process
            return process is None or process.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    async def kill(self, reason: str | None = None) -> None:
        """Kill the kernel and everything it started; return once they are gone."""
        if reason is not None and self.exit_reason is None:
            self.exit_reason = reason
        proc = self._proc
        if proc is None:
            return
        victims = []
        if self._process is not None:
            with contextlib.suppress(psutil.Error):
                victims = self._process.children(recursive=True)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # the kernel leads its own process group
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        for victim in victims:  # children that left the group (setsid) too
            with contextlib.suppress(psutil.Error):
                victim.kill()
        await proc.wait()
        await asyncio.to_thread(psutil.wait_procs, victims, 5)
        self._finish()

    # -- requests -----------------------------------------------------------------------------

    async def request(self, op: str, *args: Any) -> Any:
        """Run ``op`` in the kernel, in its turn; its value, or the raykernel error it raised
        (``RuntimeError`` for anything else); ``KernelGone`` if the kernel dies meanwhile."""
        if not self.alive or self._writer is None:
            raise KernelGone(self.exit_reason or "the kernel is not running")
        request_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            self._writer.write(wire.encode({"id": request_id, "op": op, "args": list(args)}))
            await self._writer.drain()
            reply = await future
        finally:
            self._pending.pop(request_id, None)
        if reply.get("ok"):
            return reply.get("value")
        kind = str(reply.get("kind"))
        error = getattr(errors, kind, None)
        if isinstance(error, type) and issubclass(error, errors.RaykernelError):
            raise error(str(reply.get("message")))
        raise RuntimeError(f"the kernel failed: {reply.get('message')}")

    def interrupt(self, token: str) -> None:
        """Ask the kernel to interrupt run ``token`` (no answer: the run's reply tells)."""
        if self.alive and self._writer is not None:
            self._writer.write(wire.encode({"op": "interrupt", "token": token}))

    def tail(self, token: str) -> str | None:
        """The last output run ``token`` published, if it is running."""
        return self._tails.get(token)

    def forget_tail(self, token: str) -> None:
        self._tails.pop(token, None)

    async def measure(self) -> dict[str, Any]:
        """Whether the kernel lives (and how it died if not), its memory (RSS) and CPU, and
        how many processes it has started."""
        process = self._process
        if process is None or not self.alive:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._gone.wait(), 5)  # its exit status and last words
            return {"alive": False, "exit_reason": self.exit_reason, "memory_usage": None}
        try:
            with process.oneshot():
                return {
                    "alive": True,
                    "memory_usage": process.memory_info().rss,
                    "cpu_percent": process.cpu_percent(None),
                    "num_children": len(process.children(recursive=True)),
                }
        except psutil.Error:
            return {"alive": False, "exit_reason": self.exit_reason, "memory_usage": None}

    async def wait_gone(self) -> str:
        """Wait for the kernel to end; how it ended."""
        await self._gone.wait()
        return self.exit_reason or "the process ended"

    # -- inside ---------------------------------------------------------------------------------

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                message = await wire.areceive(reader, self.max_message_bytes)
                if not isinstance(message, dict):
                    raise wire.ProtocolError("not a message object")
                if message.get("event") == "tail":
                    self._tails = {str(message.get("token")): str(message.get("text"))}
                    continue
                future = self._pending.get(message.get("id"))  # type: ignore[arg-type]
                if future is not None and not future.done():
                    future.set_result(message)
        except EOFError:
            pass
        except wire.ProtocolError as exc:
            self.exit_reason = f"killed: the kernel broke the protocol ({exc})"
            await self.kill()
            return
        reason = await self._reason(None)
        self.exit_reason = self.exit_reason or reason
        self._finish()

    async def _drain_stderr(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        while chunk := await self._proc.stdout.read(4096):
            self._stderr += chunk
            del self._stderr[:-STDERR_TAIL]

    async def _reason(self, fallback: str | None) -> str:
        proc = self._proc
        if proc is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 5)
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(self._tasks[0]), 1)
        text = self._stderr.decode("utf-8", "replace")
        returncode = proc.returncode if proc is not None else None
        if fallback is not None and returncode is None:
            return fallback
        return death_reason(text, returncode)

    def _finish(self) -> None:
        if self._gone.is_set():
            return
        self._gone.set()
        reason = self.exit_reason or "the kernel ended"
        for future in self._pending.values():
            if not future.done():
                future.set_exception(KernelGone(reason))
        if self._writer is not None:
            self._writer.close()
        self._tails.clear()
