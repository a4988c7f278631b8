"""Messages between a kernel process and its parent (the session actor), over a socketpair.

A frame is a JSON document plus binary attachments: ``{"__blob__": i}`` in the JSON stands for
attachment ``i``, so pickled values (snapshots, transfers) travel as opaque bytes and are never
encoded as text. Nothing here unpickles anything: the parent must never unpickle what a kernel
sends (a crafted pickle would run code outside the sandbox); only a kernel unpickles, inside it.

    frame := u64 json_length, json, u32 blob_count, (u64 blob_length, blob)*
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
from collections.abc import Callable
from typing import Any

_U64 = struct.Struct("!Q")
_U32 = struct.Struct("!I")
BLOB = "__blob__"


def encode(message: Any) -> bytes:
    blobs: list[bytes] = []
    text = json.dumps(_lift(message, blobs), default=str).encode("utf-8", "surrogatepass")
    parts = [_U64.pack(len(text)), text, _U32.pack(len(blobs))]
    for blob in blobs:
        parts += [_U64.pack(len(blob)), blob]
    return b"".join(parts)


def _lift(value: Any, blobs: list[bytes]) -> Any:
    # A function of the module, not a closure: a recursive closure is a reference cycle,
    # which kept every message's attachments (a snapshot's pickles) until a garbage collection.
    if isinstance(value, bytes | bytearray | memoryview):
        blobs.append(bytes(value))
        return {BLOB: len(blobs) - 1}
    if isinstance(value, dict):
        return {str(k): _lift(v, blobs) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_lift(v, blobs) for v in value]
    return value


def _lower(value: Any, blobs: list[bytes]) -> Any:
    if isinstance(value, dict):
        if len(value) == 1 and BLOB in value:
            return blobs[value[BLOB]]
        return {k: _lower(v, blobs) for k, v in value.items()}
    if isinstance(value, list):
        return [_lower(v, blobs) for v in value]
    return value


def send(sock: socket.socket, message: Any) -> None:
    sock.sendall(encode(message))


def receive(sock: socket.socket) -> Any:
    """The next message; ``EOFError`` when the other side has closed."""
    size = _U64.unpack(_exactly(sock, _U64.size))[0]
    text = _exactly(sock, size)
    blobs = [
        _exactly(sock, _U64.unpack(_exactly(sock, _U64.size))[0])
        for _ in range(_U32.unpack(_exactly(sock, _U32.size))[0])
    ]
    return _lower(json.loads(text.decode("utf-8", "surrogatepass")), blobs)


def _exactly(sock: socket.socket, size: int) -> bytes:
    buffer = bytearray(size)
    view = memoryview(buffer)
    while view:
        count = sock.recv_into(view)
        if count == 0:
            raise EOFError("the other side closed the connection")
        view = view[count:]
    return bytes(buffer)


class ProtocolError(Exception):
    """A kernel sent something no kernel of ours sends (too large, not our format)."""


async def areceive(reader: asyncio.StreamReader, max_bytes: int | Callable[[], int]) -> Any:
    """``receive`` for the parent's event loop, refusing a frame above ``max_bytes`` (a kernel
    runs user code: what it sends is bounded and checked before it is trusted with memory).
    A callable ``max_bytes`` is asked once the frame's first bytes arrive: what may come then
    depends on what the parent is waiting for. ``EOFError`` when the kernel has gone."""
    try:
        size = _U64.unpack(await reader.readexactly(_U64.size))[0]
        if callable(max_bytes):
            max_bytes = max_bytes()
        if size > max_bytes:
            raise ProtocolError(f"a message of {size} bytes")
        text = await reader.readexactly(size)
        count = _U32.unpack(await reader.readexactly(_U32.size))[0]
        blobs = []
        for _ in range(count):
            length = _U64.unpack(await reader.readexactly(_U64.size))[0]
            size += length
            if size > max_bytes:
                raise ProtocolError(f"a message of more than {max_bytes} bytes")
            blobs.append(await reader.readexactly(length))
    except (asyncio.IncompleteReadError, ConnectionError) as exc:
        raise EOFError("the kernel closed the connection") from exc
    try:
        return _lower(json.loads(text.decode("utf-8", "surrogatepass")), blobs)
    except (ValueError, RecursionError, IndexError, TypeError) as exc:
        raise ProtocolError(f"not a kernel message: {type(exc).__name__}") from None
