"""The stdio wire: fd 0 and fd 1 belong to the MCP protocol, and to nothing else.

At start-up the protocol's descriptors are moved to private ones and fd 0/fd 1 are pointed at
/dev/null and stderr, so Ray's processes, user code and its children inherit harmless ones.
The MCP SDK serves ``sys.stdin.buffer`` and ``sys.stdout.buffer`` when they are not backed by
fd 0/1; we give it:

* a reader that answers every line the SDK would drop silently (it logs them at debug level and
  a client waiting for a reply hangs): a line that is not JSON, nests too deep or holds a lone
  surrogate (-32700 Parse error), a JSON value that is not a JSON-RPC message or a request whose
  id is not a string or an integer (-32600 Invalid Request), a line above the size limit; none
  of it can stop the server. It can also be told to end (SIGTERM) as if stdin had closed;
* a writer that puts each message on the wire whole, so such an answer can never land inside
  another message.

``sys.stdout`` itself writes to stderr: anything in this process that prints (Ray's driver prints
worker deaths) can never reach the wire; only the SDK, holding ``sys.stdout.buffer``, does.
"""

from __future__ import annotations

import io
import json
import logging
import os
import select
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
# As for an HTTP request body (max_request_bytes): one line is one message.
MAX_LINE_BYTES = 16 * 2**20

RequestId = str | int


@dataclass(frozen=True)
class Refusal:
    """Why a line is not served: answered with ``code`` (None: dropped, as for a malformed
    response, which JSON-RPC forbids answering)."""

    code: int | None
    message: str
    request_id: RequestId | None


def _valid_id(value: object) -> bool:
    # MCP narrows JSON-RPC: an id is a string or an integer, never null, a float or a bool.
    return isinstance(value, str | int) and not isinstance(value, bool)


def top_level_id(text: str) -> RequestId | None:
    """The ``id`` member of a JSON object too deep for a recursive parser, found by scanning it
    without recursion (None if there is none, or it is not a valid id)."""
    depth = 0
    index = 0
    expect_key = False
    key: str | None = None
    while index < len(text):
        char = text[index]
        if char == '"':
            end = index + 1
            while end < len(text) and text[end] != '"':
                end += 2 if text[end] == "\\" else 1
            token = text[index : end + 1]
            if depth == 1 and expect_key:
                key, expect_key = token, False
            index = end + 1
            continue
        if char in "{[":
            if depth == 0 and char != "{":
                return None
            depth += 1
            expect_key = depth == 1
        elif char in "}]":
            depth -= 1
        elif char == "," and depth == 1:
            expect_key = True
        elif char == ":" and depth == 1 and key == '"id"':
            end = index + 1
            while end < len(text) and text[end] not in ",}":
                end += 1
            try:
                value = json.loads(text[index + 1 : end])
            except ValueError:
                return None
            return value if _valid_id(value) else None
        index += 1
    return None


def check_line(line: bytes) -> Refusal | None:
    """None if the MCP SDK will accept ``line`` as a JSON-RPC message; else the refusal.

    The SDK's own parser (pydantic's) is run here on the same text, so whatever it would drop
    silently is answered instead. Python's parser runs first: it finds the request id even
    when pydantic's stricter one gives up (deep nesting, lone surrogates), so that the client
    waiting on that id gets its answer."""
    try:
        message = json.loads(line)
    except RecursionError:
        # Too deep to parse, yet the id can still be found among the top-level members.
        found = top_level_id(line.decode("utf-8", errors="replace"))
        return Refusal(PARSE_ERROR, "Parse error: nesting too deep", found)
    except ValueError:
        return Refusal(PARSE_ERROR, "Parse error: not valid JSON", None)
    if not isinstance(message, dict):
        return Refusal(INVALID_REQUEST, "Invalid Request: not a JSON-RPC message object", None)
    request_id = message.get("id")
    # A response (to a request of the server's) is never answered, even a malformed one.
    is_response = "method" not in message and ("result" in message or "error" in message)
    if "id" in message and not _valid_id(request_id):
        if is_response:
            return Refusal(None, "a response with an invalid id", None)
        return Refusal(
            INVALID_REQUEST, "Invalid Request: the id must be a string or an integer", None
        )
    answer_to = None if is_response or not _valid_id(request_id) else request_id
    from mcp_types import jsonrpc_message_adapter
    from pydantic import ValidationError

    text = line.decode("utf-8", errors="replace")  # as the SDK's text reader decodes it
    try:
        jsonrpc_message_adapter.validate_json(text, by_name=False)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False, include_context=False)
        if any(e["type"] == "json_invalid" for e in errors):
            detail = " ".join(e["msg"] for e in errors).lower()
            if "recursion" in detail:
                reason = "nesting too deep"
            elif "escape" in detail or "surrogate" in detail:
                reason = "a string holds an invalid \\u escape (a lone surrogate)"
            else:
                reason = "not valid JSON"
            return Refusal(PARSE_ERROR, f"Parse error: {reason}", answer_to)
        if is_response:
            return Refusal(None, "a malformed response", None)
        return Refusal(INVALID_REQUEST, "Invalid Request: not a valid JSON-RPC message", answer_to)
    except RecursionError:
        return Refusal(PARSE_ERROR, "Parse error: nesting too deep", answer_to)
    return None


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

    def __init__(self, fd: int, writer: WireWriter, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        super().__init__()
        self._fd = fd
        self._writer = writer
        self._max_line = max_line_bytes
        self._pending = bytearray()
        self._leftover = b""
        self._wake_read, self._wake_write = os.pipe()
        self._ended = False
        self._oversize = 0  # bytes of a too-long line thrown away so far

    def readable(self) -> bool:
        return True

    def end(self) -> None:
        """Make the reader return end-of-file, as if the client had closed stdin."""
        os.write(self._wake_write, b"x")

    def _readline(self) -> bytes:
        while b"\n" not in self._pending:
            if self._ended:
                break
            if len(self._pending) > self._max_line:
                # Memory stays bounded: a line past the limit is dropped as it streams in.
                self._oversize += len(self._pending)
                self._pending.clear()
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
        if self._oversize or len(line) > self._max_line:
            size, self._oversize = self._oversize + len(line), 0
            message = f"Invalid Request: a line of {size} bytes is above the limit of "
            self._reply(Refusal(INVALID_REQUEST, message + str(self._max_line), None))
            return b"\n"  # not end of file: the next line is served as usual
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
        refusal = check_line(line)
        if refusal is None:
            return True
        if refusal.code is not None:
            self._reply(refusal)
        return False

    def _reply(self, refusal: Refusal) -> None:
        log.warning("stdio: refused a message: %s", refusal.message)
        error = {
            "jsonrpc": "2.0",
            "id": refusal.request_id,
            "error": {"code": refusal.code, "message": refusal.message},
        }
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


def claim_stdio(max_line_bytes: int = MAX_LINE_BYTES) -> Callable[[], None]:
    """Move the protocol off fd 0/1 and install the checked reader and whole-message writer.
    Returns a function that ends the session as if the client had closed stdin."""
    wire_in, wire_out = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)
    writer = WireWriter(wire_out)
    reader = CheckedReader(wire_in, writer, max_line_bytes)
    sys.stdout = _PrintsToStderr(writer)
    sys.stdin = io.TextIOWrapper(io.BufferedReader(reader), encoding="utf-8", errors="replace")
    return reader.end
