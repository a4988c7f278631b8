"""What crosses the process walls, named once: the operations a session's actor asks of its
kernel (``KernelOp``, the kernel's explicit table answers them) and the kinds of runs the
actor's run book takes (``RunKind``). Both sides import these; a misspelt operation is an
``AttributeError`` where it is written, not a refusal in another process.

Plain Python (the kernel imports it too): no Ray, no front end.
"""

from __future__ import annotations

from enum import StrEnum


class KernelOp(StrEnum):
    """A request to the kernel process. Most run on its main thread, one at a time, in order;
    ``INTERRUPT``, ``PING`` and ``UPSTREAM_REPLY`` are answered by its reader thread at once
    (a run may be in progress); ``FORK`` makes a copy of the kernel (see raykernel.actors.forks)."""

    EXECUTE = "execute"
    RUN_SCRIPT = "run_script"
    CALL_FUNCTION = "call_function"
    ACTIVATE_SITE = "activate_site"
    VARIABLES = "variables"
    COMPLETE = "complete"
    INSPECT = "inspect"
    SNAPSHOT = "snapshot"
    RESTORE = "restore"
    GET_BLOB = "get_blob"
    SET_BLOB = "set_blob"
    CHECKPOINT = "checkpoint"
    FORGET_CHECKPOINTS = "forget_checkpoints"
    REWIND = "rewind"
    VALUES = "values"
    FORK = "fork"
    INTERRUPT = "interrupt"
    PING = "ping"
    UPSTREAM_REPLY = "upstream_reply"


class RunKind(StrEnum):
    """A run in a session's run book (one queue per session, in its actor)."""

    EXECUTE = "execute"
    RUN_SCRIPT = "run_script"
    CALL_FUNCTION = "call_function"
    INSTALL = "install"


class SessionStatus(StrEnum):
    """A session as the front end knows it. ``COLD`` and ``UNRESPONSIVE`` are only shown
    (listings, health): a cold session is HIBERNATED with nothing to load, an unresponsive one
    HEALTHY or BUSY whose actor did not answer its last probe."""

    STARTING = "starting"
    HEALTHY = "healthy"
    BUSY = "busy"
    DEAD = "dead"
    HIBERNATED = "hibernated"
    COLD = "cold"
    UNRESPONSIVE = "unresponsive"
