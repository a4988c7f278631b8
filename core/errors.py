"""The one error hierarchy of raykernel.

Every refusal a client can see is a ``RaykernelError``: the MCP boundary turns it into a tool
error whose text starts with the class name (``SessionNotFound: ...``), so a model can act on the
type. Anything else that escapes a tool is an internal fault: it is logged and masked.

This module imports nothing heavy: session actors import it too.
"""

from __future__ import annotations

from typing import Any


class RaykernelError(Exception):
    """Base of every error raykernel reports to a client on purpose.

    Errors cross process walls (kernel -> actor as data, actor -> front end through Ray's
    pickling) and come out as the same class with the same fields: ``to_wire`` and
    ``from_wire`` for data, ``__reduce__`` for pickles. A subclass whose constructor takes
    more than the message says so in ``fields`` and ``rebuild``."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def kind(self) -> str:
        return type(self).__name__

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"

    def fields(self) -> dict[str, Any]:
        """What this error carries beyond its message (JSON data)."""
        return {}

    @classmethod
    def rebuild(cls, message: str, fields: dict[str, Any]) -> RaykernelError:
        return cls(message)

    def to_wire(self) -> dict[str, Any]:
        return {"kind": self.kind, "message": self.message, "fields": self.fields()}

    def __reduce__(self) -> tuple[Any, ...]:
        return (from_wire, (self.to_wire(),))


def kinds() -> dict[str, type[RaykernelError]]:
    """Every error class of the hierarchy by name (subclasses defined elsewhere too)."""
    found: dict[str, type[RaykernelError]] = {}
    stack: list[type[RaykernelError]] = [RaykernelError]
    while stack:
        cls = stack.pop()
        found.setdefault(cls.__name__, cls)
        stack.extend(cls.__subclasses__())
    return found


def from_wire(data: dict[str, Any]) -> RaykernelError:
    """The error ``to_wire`` described; an unknown kind is a plain ``RaykernelError`` that
    keeps the message (never anything but an error of this hierarchy)."""
    cls = kinds().get(str(data.get("kind")), RaykernelError)
    fields = data.get("fields")
    message = str(data.get("message", ""))
    try:
        return cls.rebuild(message, fields if isinstance(fields, dict) else {})
    except (TypeError, KeyError, ValueError):
        return RaykernelError(f"{data.get('kind')}: {message}")


class InvalidArgument(RaykernelError, ValueError):
    """An argument is malformed or out of range; nothing was changed. A ``ValueError`` too, so
    that an argument validator may raise it and keep its kind."""


class InvalidSessionId(InvalidArgument):
    """A session id does not match the allowed pattern."""


class NotFound(RaykernelError):
    """What the call names does not exist (or is not the caller's to see)."""


class SessionNotFound(NotFound):
    """No session has this id (sessions are never created implicitly)."""


class SessionLimitReached(RaykernelError):
    """Creating one more session would pass ``max_sessions``."""


class QuotaExceeded(RaykernelError):
    """The caller's identity holds as many sessions, or runs in flight, as it may."""


class NodeFull(RaykernelError):
    """The node is past its memory high-water mark (or its sessions past their budget): no
    new, resumed or forked session goes there until memory is freed. ``node_id`` names it."""

    def __init__(self, message: str, node_id: str | None = None) -> None:
        super().__init__(message)
        self.node_id = node_id

    def fields(self) -> dict[str, Any]:
        return {"node_id": self.node_id}

    @classmethod
    def rebuild(cls, message: str, fields: dict[str, Any]) -> RaykernelError:
        return cls(message, fields.get("node_id"))


class ProtectedSession(RaykernelError):
    """The operation is not allowed on this session (``default`` cannot be deleted)."""


class SessionUnavailable(RaykernelError):
    """The session exists but cannot take the call now (dead, being restarted, lost)."""


class KernelDied(SessionUnavailable):
    """The session's process died while (or before) serving the call; its state is gone."""


class RunNotFound(NotFound):
    """No background run has this id (or it was forgotten: only recent runs are kept)."""


class ToolNotFound(NotFound):
    """No tool has this name."""


class ResourceNotFound(NotFound):
    """No resource or resource template matches this URI."""


class PromptNotFound(NotFound):
    """No prompt has this name."""


class FileNotFound(NotFound):
    """No file or folder at this workspace path (another identity's files are never seen)."""


class PathOutsideWorkspace(InvalidArgument):
    """A path resolves outside the workspace, or is otherwise not a safe workspace path."""


class FileTooLarge(InvalidArgument):
    """A file write or read is above the configured size limit."""


class InvalidPackageSpec(InvalidArgument):
    """A package requirement is not a plain name/version requirement."""


class SourceBuildRefused(RaykernelError):
    """A package has no wheel, only a source package whose build would run its own code, and
    source builds are not allowed (``allow_source_builds``); nothing was installed."""


class InvalidSetting(RaykernelError, ValueError):
    """A setting's value is not valid (a ``ValueError`` too, so that a settings validator may
    raise it); the server does not start."""


class NotAllowed(RaykernelError):
    """The caller's identity may not make this change (a server-wide one: the local identity
    and admin identities only)."""


class MissingDependency(RaykernelError):
    """A tool needs an optional package that is not installed where it runs; the message says
    how to install it (``pip install raykernel[<extra>]``)."""


class PluginError(RaykernelError):
    """A plugin could not be loaded or registered (tool name clash, bad hook, blocked core)."""


class RayUnavailable(RaykernelError):
    """Ray could not be started or reached, so no session can run."""


class ExecutionRefused(RaykernelError):
    """A plugin's ``before_execute`` hook refused to run the code."""


class SessionBusy(SessionUnavailable):
    """The session is running code and the caller asked not to wait behind it."""


class FunctionFailed(RaykernelError):
    """A plugin's function raised inside the session, was interrupted or timed out, or
    returned what cannot be sent back (not JSON, or too large); ``ename`` says which."""

    def __init__(self, ename: str, evalue: str, traceback: str = "") -> None:
        super().__init__(f"{ename}: {evalue}")
        self.ename = ename
        self.evalue = evalue
        self.traceback = traceback

    def fields(self) -> dict[str, Any]:
        return {"ename": self.ename, "evalue": self.evalue, "traceback": self.traceback}

    @classmethod
    def rebuild(cls, message: str, fields: dict[str, Any]) -> RaykernelError:
        return cls(str(fields["ename"]), str(fields["evalue"]), str(fields.get("traceback", "")))


class SessionMoved(SessionUnavailable):
    """The session's actor has handed the session on (it hibernated, or another front end gave
    it a new actor): the call was not taken, and the session is found again where it is now."""


class UpstreamNotFound(NotFound):
    """Session code named an upstream MCP server (or a tool of one) that its owner may not use
    or that does not exist (``raykernel_tools.servers()`` lists those it may)."""


class UpstreamUnavailable(RaykernelError):
    """An upstream MCP server could not be reached (it did not start, or its connection
    failed); nothing was called."""


class UpstreamToolError(RaykernelError):
    """An upstream MCP server's tool answered with an error (``isError``); the message is its
    text."""


class ApprovalRequired(RaykernelError):
    """An upstream tool that can do harm needs the client's consent, and the client cannot be
    asked (no elicitation: a 2026-07-28 connection, a client without the capability, a
    background run); nothing was called."""


class ApprovalDenied(RaykernelError):
    """The client declined (or cancelled) the call of an upstream tool; nothing was called."""


def from_kernel(data: dict[str, Any]) -> RaykernelError:
    """``from_wire`` for what a kernel says (it runs user code): a kind that would tell the
    front end something about the session or the server (moved, gone, not allowed, the
    node full) is not believed from there, and comes back as a plain error naming it."""
    error = from_wire(data)
    if isinstance(error, _NOT_FROM_KERNELS):
        return RaykernelError(f"{error.kind}: {error.message}")
    return error


_NOT_FROM_KERNELS: tuple[type[RaykernelError], ...] = (
    SessionUnavailable,  # KernelDied, SessionBusy, SessionMoved too
    SessionNotFound,
    SessionLimitReached,
    QuotaExceeded,
    NodeFull,
    ProtectedSession,
    NotAllowed,
    RayUnavailable,
    InvalidSetting,
    PluginError,
    RunNotFound,
    ToolNotFound,
    ResourceNotFound,
    PromptNotFound,
)
