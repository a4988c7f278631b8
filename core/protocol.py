"""What crosses the process walls, named once: the operations a session's actor asks of its
kernel (``KernelOp``, the kernel's explicit table answers them), the kinds of runs the actor's
run book takes (``RunKind``) and who a session's actor becomes (``Claim``). Both sides import
these; a misspelt operation is an ``AttributeError`` where it is written, not a refusal in
another process.

Plain Python (the kernel imports it too): no Ray, no front end.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

# A session's network: "on", "off", or the destinations it may reach (see
# raykernel.actors.egress).
Network = str | list[str]


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


@dataclass
class Claim:
    """Who a fresh host becomes: the session it serves, and where its own files go."""

    session_id: str
    owner: str
    description: str
    created_at: float
    site_dir: str
    placement: dict[str, Any]
    network: Network
    checkpoints_dir: str | None = None
    # The installer's cache for this identity (None: the installer's own, the user's).
    install_cache: str | None = None
    # The identity's workspace (None: the server's, as the local identity has it).
    workspace: str | None = None
    # The last execution count the front end saw: a new actor's timeline goes on from it.
    execution_count: int = 0
    # The session's Python environment (actors.environments.Environment.as_dict); None: the
    # server's.
    environment: dict[str, str] | None = None
    # The owner's folders in the server's store that this session's actor reads and writes
    # (its snapshots, hibernation images, checkpoints): the only ones its deputy may touch.
    state_folders: list[str] = field(default_factory=list)
