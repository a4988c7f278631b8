"""What the front end knows about one session, answered without asking the session: its
actor, process and node, whether it is busy and since when, its queue, how it last died.

Session ids (and snapshot names): what a client may choose, checked before anything else.

Sessions belong to identities. Inside the server a session is named by its *qualified* id:
the plain id for the local identity (stdio, unauthenticated loopback HTTP), else
``<owner>/<id>`` (``token:alice/analysis``, ``jwt:4f2a.../default``). Each identity sees only
its own sessions under their plain ids; an admin may name another identity's session with its
qualified id.

A session's slot in this front end: one of this front end's operations on the session at a
time, in arrival order, with a way to the front. Runs are ordered in one place only, the
session's run book in its actor, where the runs of every front end meet; the slot is held just
long enough to bring the session back if it must be and to book a run there, and for the
operations that are this front end's own (a control call, a snapshot or transfer, a hibernation,
a restart). An ``asyncio.Lock`` is fair too, but cannot let a restart go first:
``restart_kernel`` stops the run in progress and takes the slot next, as Jupyter's restart
does, so the runs booked after it meet the new process.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from raykernel.errors import InvalidArgument, InvalidSessionId
from raykernel.protocol import SessionStatus
from raykernel.sessions.cluster import Placement
from raykernel.sessions.handle import SessionHandle, iso_time
from raykernel.workspace import LOCAL as LOCAL  # the identity without authentication

SESSION_ID_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,64}")
RULE = "use 1-64 letters, digits, '_', '.', '-' (not '.' or '..')"
# The identities server/callers.py makes: token, token:<name>, jwt:<subject>, jwt-client:<id>.
# None holds a "/" (a JWT's subject has its own escaped: see ``identity_part``), so a qualified
# id splits at its one separator and no identity can name ids that extend another's.
OWNER_PATTERN = re.compile(r"token(:[A-Za-z0-9_.@-]{1,64})?|jwt(-client)?:[^\x00-\x1f/]{1,200}")


def identity_part(text: str) -> str:
    """``text`` (a JWT's subject or client id) as a part of an identity: ``%`` and ``/``
    escaped as in a URL, everything else as it is (``auth0|42`` stays ``auth0|42``)."""
    return text.replace("%", "%25").replace("/", "%2F")


def _valid(name: object) -> bool:
    return (
        isinstance(name, str)
        and bool(SESSION_ID_PATTERN.fullmatch(name))
        and name not in {".", ".."}
    )


def validate_session_id(session_id: object) -> str:
    """A plain session id, or a qualified one (``<owner>/<id>``: one separator, no more)."""
    if isinstance(session_id, str) and "/" in session_id:
        owner, _, plain = session_id.partition("/")
        if OWNER_PATTERN.fullmatch(owner) and _valid(plain):
            return session_id
    elif _valid(session_id):
        assert isinstance(session_id, str)
        return session_id
    raise InvalidSessionId(f"invalid session id {str(session_id)[:80]!r}: {RULE}")


def validate_snapshot_name(name: object) -> str:
    if not _valid(name):
        raise InvalidArgument(f"invalid snapshot name {str(name)[:80]!r}: {RULE}")
    assert isinstance(name, str)
    return name


def qualify(owner: str, session_id: str) -> str:
    """The qualified id of ``owner``'s session ``session_id``."""
    return session_id if owner == LOCAL else f"{owner}/{session_id}"


def split(qualified: str) -> tuple[str, str]:
    """``(owner, plain id)`` of a qualified id (split at its one separator: an owner holds
    none)."""
    owner, sep, plain = qualified.partition("/")
    if not sep:
        return LOCAL, qualified
    if "/" in plain:
        raise InvalidSessionId(f"invalid session id {qualified[:80]!r}: one '/' at most")
    return owner, plain


class Slot:
    def __init__(self) -> None:
        self._held = False
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._urgent: deque[asyncio.Future[None]] = deque()

    def locked(self) -> bool:
        return self._held

    @property
    def waiting(self) -> int:
        return sum(1 for f in (*self._urgent, *self._waiters) if not f.done())

    def try_acquire(self) -> bool:
        """Take the slot now if nobody holds it or waits for it."""
        if self._held or self.waiting:
            return False
        self._held = True
        return True

    async def acquire(self, urgent: bool = False) -> None:
        if not self._held and not self._urgent and not (self._waiters and not urgent):
            self._held = True
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue = self._urgent if urgent else self._waiters
        queue.append(future)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release()  # handed over just as the waiter gave up: pass it on
            raise
        finally:
            if future in queue:
                queue.remove(future)

    def release(self) -> None:
        for queue in (self._urgent, self._waiters):
            while queue:
                future = queue.popleft()
                if not future.done():
                    future.set_result(None)  # the slot passes directly to the next holder
                    return
        self._held = False


@dataclass
class SessionRecord:
    session_id: str
    description: str
    created_at: float
    handle: SessionHandle | None = None
    # The name of the actor this record last knew (kept after it died): what the registry
    # is compared with, to tell a session that moved from one whose actor died.
    actor_name: str | None = None
    owner: str = "local"
    network: str | list[str] = "on"  # "on", "off" or the destinations it may reach
    pid: int | None = None  # the actor's
    kernel_pid: int | None = None  # the kernel's, where user code runs
    isolation: dict[str, Any] = field(default_factory=dict)
    node_id: str | None = None
    node_ip: str | None = None
    started_at: float = field(default_factory=time.time)
    status: SessionStatus = SessionStatus.STARTING
    execution_count: int = 0
    last_execution_time: float | None = None
    run_seconds: float = 0.0  # the runs' execution times added up (for their average)
    restart_count: int = 0
    death_reason: str | None = None
    crash_streak: int = 0
    deleted: bool = False
    slot: Slot = field(default_factory=Slot)
    # Why the actor is being killed on purpose (a restart that cannot wait): the death a run
    # then meets is reported with this cause.
    kill_reason: str | None = None
    # Set while a run whose caller went away is being stopped: the next caller waits for it.
    pending_stop: asyncio.Future[Any] | None = None
    run_token: str | None = None
    # Runs (and installs) waiting here to be booked in the session (briefly: the queue is the
    # session's own), and runs of this front end's callers booked and not finished.
    waiting: int = 0
    following: int = 0
    checkpoint: str = "off"  # off | after_run
    hibernated_at: float | None = None
    image_bytes: int | None = None
    # What the run that resumed a hibernated session must say about it.
    resume_notice: dict[str, Any] | None = None
    # False when its actor did not answer the last liveness probe in time (see listing).
    responsive: bool = True
    # Created and never started: it holds no process, only an empty image; its first call
    # starts it (from the warm pool), as it would resume a hibernated session.
    cold: bool = False
    # Its own Python environment (environments.Environment.as_dict), None: the server's; the
    # Python version its kernel reported.
    environment: dict[str, str] | None = None
    python_version: str | None = None
    placement: Placement = field(default_factory=Placement)

    @property
    def qualified(self) -> str:
        """The session's id in the router's table (its owner's prefix unless local)."""
        return qualify(self.owner, self.session_id)

    @property
    def resident(self) -> bool:
        """It has live processes (not hibernated, not being torn down)."""
        return self.handle is not None and self.status != SessionStatus.HIBERNATED

    def summary(self, active: bool) -> dict[str, Any]:
        hibernated = {}
        if self.status == SessionStatus.HIBERNATED and not self.cold:
            hibernated = {
                "hibernated_at": iso_time(self.hibernated_at),
                "image_bytes": self.image_bytes,
            }
        return {
            **hibernated,
            "description": self.description,
            "created_at": iso_time(self.created_at),
            "execution_count": self.execution_count,
            "status": self.shown_status,
            "active": active,
            "node_id": self.node_id,
            "node_ip": self.node_ip,
            "resources": self.placement.describe(),
            "network": self.network,
            "owner": self.owner,
            "environment": self.environment["name"] if self.environment else None,
            "python_version": self.python_version
            or (self.environment["version"] if self.environment else None),
        }

    @property
    def shown_status(self) -> SessionStatus:
        """The status a listing gives: a live session whose actor did not answer is
        ``unresponsive``, never ``healthy``."""
        if self.status in (SessionStatus.HEALTHY, SessionStatus.BUSY) and not self.responsive:
            return SessionStatus.UNRESPONSIVE
        if self.status == SessionStatus.HIBERNATED and self.cold:
            return SessionStatus.COLD
        return self.status

    def info(self, restarted: bool) -> dict[str, Any]:
        """What the ``session_created`` hook is told."""
        return {
            "session_id": self.qualified,
            "owner": self.owner,
            "description": self.description,
            "created_at": iso_time(self.created_at),
            "pid": self.kernel_pid,
            "node_id": self.node_id,
            "restarted": restarted,
        }

    def meta(self) -> dict[str, Any]:
        """What the registry keeps of the session, to rebuild it without its actor."""
        return {
            "description": self.description,
            "created_at": self.created_at,
            "placement": dataclasses.asdict(self.placement),
            "network": self.network,
            "checkpoint": self.checkpoint,
            "environment": self.environment,
        }

    def last_used(self) -> float:
        return max(self.created_at, self.last_execution_time or 0)
