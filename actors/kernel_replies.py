"""What a kernel answers, parsed before the actor acts on it.

The kernel runs user code, and the actor beside it runs with more rights (the server user's, and
Ray's token): a reply is input, like a client's request. Each operation's reply has one shape
here, checked strictly (pydantic, no coercion): a checkpoint's digests are 64 hex characters,
its pickles bytes, its names strings; a run's reply has the types the front end reads. What the
actor keeps itself it never takes from the kernel: a run's execution count is the one the actor
numbered it with. Text bounded by the session's output limit is cut here too, whatever the
kernel did. A reply of another shape is a ``ProtocolViolation``: the kernel client ends the
kernel, nothing is written, and the session is told as for any death of its process.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, StringConstraints, TypeAdapter, ValidationError

from raykernel.protocol import KernelOp

# A content address in a session's checkpoint store: the sha256 of a pickle, in hex. It
# becomes a file name there, so nothing else may pass.
Digest = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
# A name in the kernel's namespace (text in a manifest, never a path).
Name = Annotated[str, StringConstraints(min_length=1, max_length=4096)]
Note = Annotated[str, StringConstraints(max_length=65536)]

_STRICT = ConfigDict(strict=True, extra="allow")


class ProtocolViolation(Exception):
    """A kernel answered with what no kernel of ours sends."""


class _Changes(BaseModel):
    model_config = _STRICT
    names: dict[Name, Digest]
    blobs: dict[Digest, bytes]
    not_preserved: dict[Name, Note]


class _Snapshot(BaseModel):
    model_config = _STRICT
    blobs: dict[Name, bytes]
    not_preserved: dict[Name, Note]


class _Restored(BaseModel):
    model_config = _STRICT
    restored: list[Name]
    not_preserved: dict[Name, Note]


class _Error(BaseModel):
    model_config = _STRICT
    ename: str
    evalue: str
    traceback: str


class _Image(BaseModel):
    model_config = _STRICT
    path: str
    mime_type: str | None = None
    data: str | None = None


class _Run(BaseModel):
    model_config = _STRICT
    success: bool
    stdout: str
    stderr: str
    result: str | None
    result_data: dict[str, Any]
    displays: list[dict[str, Any]]
    error: _Error | None
    images: list[_Image]
    new_files: list[str]
    outputs: list[str]
    interrupted: bool


class _Function(BaseModel):
    model_config = _STRICT
    success: bool
    interrupted: bool
    error: dict[str, Any] | None
    value_json: str | None = None


_SHAPES: dict[KernelOp, TypeAdapter[Any] | type[BaseModel]] = {
    KernelOp.EXECUTE: _Run,
    KernelOp.RUN_SCRIPT: _Run,
    KernelOp.CALL_FUNCTION: _Function,
    KernelOp.CHECKPOINT: _Changes,
    KernelOp.SNAPSHOT: _Snapshot,
    KernelOp.RESTORE: _Restored,
    KernelOp.REWIND: _Restored,
    KernelOp.GET_BLOB: TypeAdapter(bytes, config=ConfigDict(strict=True)),
    KernelOp.SET_BLOB: TypeAdapter(Annotated[str, StringConstraints(max_length=1000)]),
    KernelOp.VARIABLES: TypeAdapter(list[dict[str, Any]], config=ConfigDict(strict=True)),
    KernelOp.COMPLETE: TypeAdapter(dict[str, Any], config=ConfigDict(strict=True)),
    KernelOp.INSPECT: TypeAdapter(dict[str, Any], config=ConfigDict(strict=True)),
    KernelOp.VALUES: TypeAdapter(dict[str, str | None], config=ConfigDict(strict=True)),
    KernelOp.FORK: TypeAdapter(int, config=ConfigDict(strict=True)),
}


def parse(op: KernelOp, value: Any, limits: Limits) -> Any:
    """``value`` as operation ``op`` answers it, checked (and text cut to ``limits``); the
    value itself, so that what the actor passes on is what the kernel sent, less its excess.
    Raises ``ProtocolViolation``."""
    shape = _SHAPES.get(op)
    if shape is None:
        return value
    try:
        if isinstance(shape, TypeAdapter):
            shape.validate_python(value)
        else:
            shape.model_validate(value)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])[:80] or "the reply"
        raise ProtocolViolation(f"{op.value}: {where}: {first['msg']}") from None
    if op is KernelOp.CHECKPOINT:
        unnamed = set(value["blobs"]) - set(value["names"].values())
        if unnamed:  # a pickle no name refers to: nothing of ours hands such a thing over
            raise ProtocolViolation(f"checkpoint: {len(unnamed)} pickles that no name has")
    if op in (KernelOp.EXECUTE, KernelOp.RUN_SCRIPT):
        for stream in ("stdout", "stderr"):
            value[stream] = limits.cut(value[stream])
        if value["result"] is not None:
            value["result"] = limits.cut(value["result"])
    return value


class Limits:
    """How much text of a run the actor keeps: the session's output limit (the kernel cuts its
    own output there, with a note, so a little more passes), and the live tail's size."""

    # The kernel's live tail is 4000 characters (raykernel.kernel.capture.TAIL_CHARS): the
    # actor keeps a little more, and a tail far longer is no kernel of ours.
    TAIL_CHARS = 16_000
    MAX_TAIL_EVENT = 1 << 20

    def __init__(self, max_output_bytes: int = 100_000) -> None:
        self.max_chars = max(int(max_output_bytes), 0) + 4096

    def cut(self, text: str) -> str:
        if len(text) <= self.max_chars:
            return text
        dropped = len(text) - self.max_chars
        return text[: self.max_chars] + f"\n[... truncated: {dropped} more characters ...]"

    def tail(self, text: str) -> str:
        return text[-self.TAIL_CHARS :]
