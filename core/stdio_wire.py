"""The stdio wire: fd 0 and fd 1 belong to the MCP protocol, and to nothing else.

At start-up the protocol's descriptors are moved to private ones and fd 0/fd 1 are pointed at
/dev/null and stderr, so Ray's processes, user code and its children inherit harmless ones.
The MCP SDK serves ``sys.stdin.buffer`` and ``sys.stdout.buffer`` when they are not backed by
fd 0/1; we give it:

* a reader that answers a line that is not JSON (-32700 Parse error) or not a JSON-RPC message
  (-32600 Invalid Request) itself, as JSON-RPC requires, instead of the SDK dropping it silently,
  and that can be told to end (SIGTERM) as if the client had closed stdin;
* a writer that puts each message on the wire whole, so such an answer can never land inside
  another message.

``sys.stdout`` itself writes to stderr: anything in this process that prints (Ray's driver prints
worker deaths) can never reach the wire; only the SDK, holding ``sys.stdout.buffer``, does.
"""

from __future__ import annotations

import io
import json
import os
import select
import sys
import threading
from collections.abc import Callable
from typing import Any


class WireWriter(io.BufferedIOBase):
    """Writes to the wire only on flush (the SDK flushes once per message)."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self._fd = fd
        self._pending = bytearray()
        self._queued: list[bytes] = []
        self._lock = threading.Lock()

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        with self._lock:
            self._pending += bytes(data)
        return len(data)

    def flush(self) -> None:
        with self._lock:
            data = bytes(self._pending) + b"".join(self._queued)
            self._pending.clear()
            self._queued.clear()
            self._write_all(data)

    def inject(self, line: bytes) -> None:
        """Write a whole line now, or right after the message being written."""
        with self._lock:
            if self._pending:
                self._queued.append(line)
            else:
                self._write_all(line)

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]


class CheckedReader(io.RawIOBase):
    """Passes through lines that are JSON-RPC messages; answers the others with an error."""

    def __init__(self, fd: int, writer: WireWriter) -> None:
        super().__init__()
        self._fd = fd
        self._writer = writer
        self._pending = bytearray()
        self._leftover = b""
        self._wake_read, self._wake_write = os.pipe()
        self._ended = False

    def readable(self) -> bool:
        return True

    def end(self) -> None:
        """Make the reader return end-of-file, as if the client had closed stdin."""
        os.write(self._wake_write, b"x")

    def _readline(self) -> bytes:
        while b"\n" not in self._pending:
            if self._ended:
                break
            ready, _, _ = select.select([self._fd, self._wake_read], [], [])
            if self._wake_read in ready:
                self._ended = True
                self._pending.clear()
                break
            chunk = os.read(self._fd, 65536)
            if not chunk:
                self._ended = True
                break
            self._pending += chunk
        end = self._pending.find(b"\n") + 1 or len(self._pending)
        line = bytes(self._pending[:end])
        del self._pending[:end]
        return line

    def readinto(self, buffer: Any) -> int:
        while not self._leftover:
            line = self._readline()
            if not line:
                return 0
            if self._accept(line):
                self._leftover = line
        size = min(len(buffer), len(self._leftover))
        buffer[:size] = self._leftover[:size]
        self._leftover = self._leftover[size:]
        return size

    def _accept(self, line: bytes) -> bool:
        if not line.strip():
            return False
        try:
            message = json.loads(line)
        except ValueError:
            self._reply_error(-32700, "Parse error", None)
            return False
        from mcp_types import jsonrpc_message_adapter
        from pydantic import ValidationError

        try:
            jsonrpc_message_adapter.validate_python(message, by_name=False)
        except ValidationError:
            request_id = message.get("id") if isinstance(message, dict) else None
            if not isinstance(request_id, str | int) or isinstance(request_id, bool):
                request_id = None
            self._reply_error(-32600, "Invalid Request", request_id)
            return False
        return True

    def _reply_error(self, code: int, message: str, request_id: str | int | None) -> None:
        error = {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}
        self._writer.inject(json.dumps(error).encode() + b"\n")


class _PrintsToStderr(io.TextIOBase):
    """``sys.stdout`` for everything but the SDK: text goes to stderr, ``buffer`` is the wire."""

    def __init__(self, wire: WireWriter) -> None:
        super().__init__()
        self.buffer = wire

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def claim_stdio() -> Callable[[], None]:
    """Move the protocol off fd 0/1 and install the checked reader and whole-message writer.
    Returns a function that ends the session as if the client had closed stdin."""
    wire_in, wire_out = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)
    writer = WireWriter(wire_out)
    reader = CheckedReader(wire_in, writer)
    sys.stdout = _PrintsToStderr(writer)
    sys.stdin = io.TextIOWrapper(io.BufferedReader(reader), encoding="utf-8", errors="replace")
    return reader.end
