"""SessionHandle: a typed facade over one session actor, as ``ray.util.queue.Queue`` is over its
actor. Every call to a session goes through a method here with a real signature, naming the
operation by reference (``SessionHost.interrupt``, ``SessionActor.claim``: a misspelt one fails
where it is written, and a type checker sees it); one place awaits the answer with a timeout
and turns Ray's errors into raykernel's:

* a refusal raised inside the session (a ``RaykernelError``) reaches the caller as it is, even
  through a chained call (a transfer's get feeding its set);
* the actor's death (a crash, its node lost, a kill) is ``ActorDied``, for the router to record
  before it answers with ``KernelDied``;
* no answer in time is ``SessionUnavailable``;
* anything else is an internal fault (``RuntimeError``: logged, masked for clients).

How a call reaches the actor is the handle's transport, chosen once when the handle is made:
``RayTransport`` (a Ray actor, anywhere in the cluster) or ``InProcessTransport`` (the session's
actor object in the front end's own process, embedded mode before Ray; its refs are asyncio
tasks). Both end in ``SessionActor.perform``.

Also the small text forms the router's parts share: an exception's first line, ISO times.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, NoReturn, Protocol

from raykernel import telemetry
from raykernel.actors.host import SessionHost
from raykernel.actors.session_actor import SessionActor, remote_class
from raykernel.errors import RaykernelError, SessionUnavailable
from raykernel.protocol import Claim, KernelOp, RunKind
from raykernel.workspace import WorkspaceOp

ACTOR_NAME_PREFIX = "raykernel-session:"
CONTROL_TIMEOUT = 30.0
# What replacing a kernel may take on a loaded machine (a stop that ends in a new kernel).
CREATE_BUDGET = 120.0


class ActorDied(Exception):
    """The session's actor is gone; ``reason`` is Ray's first line about it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


Operation = Callable[..., Any]  # a method of SessionActor or SessionHost


class Transport(Protocol):
    """How a handle's calls reach its actor."""

    in_process: bool
    # Whether a call given up on (a timeout, a cancelled caller) is cancelled: a Ray call is
    # only a wait for the actor's answer; an in-process call is the session's own work.
    owns_calls: bool

    def send(self, operation: Operation, *args: Any) -> Any: ...

    def future(self, ref: Any) -> asyncio.Future[Any]: ...

    async def settled(self, ref: Any, timeout: float) -> bool: ...

    def kill(self) -> None: ...


class RayTransport:
    in_process = False
    owns_calls = True

    def __init__(self, actor: Any) -> None:
        self.actor = actor

    def send(self, operation: Operation, *args: Any) -> Any:
        return self.actor.perform.remote(operation, *args)

    def future(self, ref: Any) -> asyncio.Future[Any]:
        return asyncio.wrap_future(ref.future())

    async def settled(self, ref: Any, timeout: float) -> bool:
        import ray

        ready, _ = await asyncio.to_thread(ray.wait, [ref], timeout=timeout)
        return bool(ready)

    def kill(self) -> None:
        import ray

        with contextlib.suppress(Exception):
            ray.kill(self.actor, no_restart=True)


class InProcessTransport:
    """A session served by the front end itself, before (or without) Ray: on a laptop most
    people only ever use the "default" session, and Ray (several processes, a few hundred MiB)
    is what a first call would wait for. Its ``SessionActor`` runs on this process's event
    loop and its kernel is this process's child: the same host, kernel and confinement."""

    in_process = True
    owns_calls = False

    def __init__(self, actor: SessionActor) -> None:
        self.actor = actor

    def send(self, operation: Operation, *args: Any) -> asyncio.Future[Any]:
        return asyncio.ensure_future(self._perform(operation, args))

    async def _perform(self, operation: Operation, args: tuple[Any, ...]) -> Any:
        return await self.actor.perform(operation, *[await resolve(arg) for arg in args])

    def future(self, ref: Any) -> asyncio.Future[Any]:
        return ref

    async def settled(self, ref: Any, timeout: float) -> bool:
        done, _ = await asyncio.wait({ref}, timeout=timeout)
        return bool(done)

    def kill(self) -> None:  # its kernel goes with ``shutdown``
        self.send(SessionActor.shutdown)


async def resolve(value: Any) -> Any:
    """An argument as an in-process receiver needs it: a local ref's value; a Ray ref's (Ray
    resolves refs only for its own actors)."""
    if isinstance(value, asyncio.Future):
        return await value
    ray = sys.modules.get("ray")
    if ray is not None and isinstance(value, ray.ObjectRef):
        return await value
    return value


class SessionHandle:
    def __init__(self, transport: Transport, name: str | None = None) -> None:
        self._transport = transport
        # The actor's name in the namespace (what the registry records); None when local.
        self.name = name

    # -- lifecycle ----------------------------------------------------------------------------

    @classmethod
    def start(cls, options: dict[str, Any], **init: Any) -> SessionHandle:
        """Start a session actor (no identity yet); ``ready`` waits for it."""
        actor = remote_class().options(**options).remote(**init)
        return cls(RayTransport(actor), options.get("name"))

    @classmethod
    def start_local(cls, **init: Any) -> SessionHandle:
        """A session actor in this process, its kernel this process's child (no Ray)."""
        return cls(InProcessTransport(SessionActor(**init)))

    @property
    def in_process(self) -> bool:
        """Whether the session is served by this process rather than by a Ray actor."""
        return self._transport.in_process

    @classmethod
    def find(cls, name: str, namespace: str) -> SessionHandle:
        """The handle of the named actor (blocking: call it in a thread)."""
        import ray

        return cls(RayTransport(ray.get_actor(name, namespace=namespace)), name)

    async def ready(self, timeout: float) -> None:
        """Wait until the actor is up, its kernel process spawned (it is confined at claim)."""
        await self._call(SessionActor.ready, timeout=timeout)

    async def claim(self, claim: Claim, timeout: float) -> dict[str, Any]:
        """Give a fresh actor its identity; returns ``info()``."""
        return await self._call(SessionActor.claim, claim, timeout=timeout)

    async def info(self, timeout: float = CONTROL_TIMEOUT) -> dict[str, Any]:
        """Who the session is and where it runs (id, owner, pids, node, placement, counts)."""
        return await self._call(SessionActor.info, timeout=timeout)

    async def shutdown(self, timeout: float = 10.0) -> None:
        """Kill the kernel and everything it started, and clean up (the actor stays)."""
        await self._call(SessionActor.shutdown, timeout=timeout)

    async def recycle(self, timeout: float) -> dict[str, Any]:
        """Make the actor a fresh, unclaimed one (its session is hibernated elsewhere)."""
        return await self._call(SessionActor.recycle, timeout=timeout)

    def kill(self) -> None:
        """Kill the actor now (not restarted; nothing waits for it)."""
        self._transport.kill()

    # -- runs: booked in the session (its queue), followed by id from any front end ------------

    async def book_run(
        self,
        run_id: str,
        kind: RunKind,
        args: list[Any],
        timeout: float,
        background: bool = False,
        call_timeout: float = CONTROL_TIMEOUT,
    ) -> dict[str, Any]:
        """Queue a run in the session (``kind``: execute, run_script, call_function, install);
        the same ``run_id`` again is the same run. Its view (``token``, ``status``)."""
        return await self._call(
            SessionActor.book_run,
            run_id,
            kind,
            args,
            timeout,
            background,
            telemetry.carrier(),
            timeout=call_timeout,
        )

    async def wait_run(self, run_id: str, wait: float) -> dict[str, Any]:
        """Run ``run_id``'s view once finished (with its ``reply``) or after ``wait`` s."""
        return await self._call(SessionHost.wait_run, run_id, wait, timeout=wait + CONTROL_TIMEOUT)

    async def cancel_run(self, run_id: str, grace: float) -> dict[str, Any]:
        """Drop a queued run or stop a running one; its view, ``cancelled`` and ``was``."""
        return await self._call(SessionHost.cancel_run, run_id, timeout=grace + CREATE_BUDGET)

    async def upstream_calls(self, token: str, wait: float) -> dict[str, Any]:
        """Run ``token``'s requests of upstream MCP tools not yet taken (code mode), once
        there is one or after ``wait`` s: ``{calls, ended}``."""
        ref = self._transport.send(SessionHost.upstream_calls, token, wait)
        return await self._await(ref, wait + CONTROL_TIMEOUT)

    async def answer_upstream(
        self, call_id: int, answer: dict[str, Any], log: dict[str, Any] | None = None
    ) -> bool:
        """The answer to one of those requests, for the kernel (False: its run is over)."""
        ref = self._transport.send(SessionHost.answer_upstream, call_id, answer, log)
        return await self._await(ref, CONTROL_TIMEOUT)

    async def runs(self, timeout: float = CONTROL_TIMEOUT) -> list[dict[str, Any]]:
        """The session's runs (queued, running, and the last finished ones), without replies."""
        return await self._call(SessionHost.runs, timeout=timeout)

    async def stop_current(self, grace: float) -> str | None:
        """Stop the run in progress, whoever sent it (for a restart): how it stopped."""
        return await self._call(SessionHost.stop_current, timeout=grace + CREATE_BUDGET)

    async def revive(self, timeout: float) -> dict[str, Any] | None:
        """A dead kernel replaced (once, whoever asks first); the notice, or None."""
        return await self._call(SessionHost.revive, timeout=timeout)

    async def reopen(self, timeout: float = CONTROL_TIMEOUT) -> bool:
        """Serve again after a hibernation that never finished (its front end died)."""
        return await self._call(SessionHost.reopen, timeout=timeout)

    async def idle_for(self, timeout: float = CONTROL_TIMEOUT) -> float | None:
        """Seconds since the session's last run ended, from any front end (None: busy)."""
        return await self._call(SessionHost.idle_for, timeout=timeout)

    async def interrupt(self, token: str, timeout: float = CONTROL_TIMEOUT) -> bool:
        """Interrupt run ``token`` (answered while the session is busy)."""
        return await self._call(SessionHost.interrupt, token, timeout=timeout)

    async def tail(self, token: str, timeout: float = CONTROL_TIMEOUT) -> str | None:
        """What run ``token`` has printed so far (answered while it runs)."""
        return await self._call(SessionHost.tail, token, timeout=timeout)

    async def restart_kernel(self, reason: str, timeout: float) -> dict[str, Any]:
        """A new kernel process in place of the old one (state lost); returns ``info()``."""
        return await self._call(SessionActor.restart_kernel, reason, timeout=timeout)

    async def kill_kernel(self, reason: str, timeout: float) -> None:
        """Kill the kernel and what it started (the run in progress ends as a death)."""
        await self._call(SessionHost.kill_kernel, reason, timeout=timeout)

    async def set_network(self, network: list[str], timeout: float = CONTROL_TIMEOUT) -> dict:
        """New destinations for an allow-listed session's proxy; its network report."""
        return await self._call(SessionHost.set_network, network, timeout=timeout)

    async def memory_report(self, timeout: float = 5.0) -> dict[str, Any]:
        """The kernel's host PID and whether it runs code (for the node's memory guard)."""
        return await self._call(SessionHost.memory_report, timeout=timeout)

    async def memory_stop(self, reason: str, timeout: float = 5.0) -> bool:
        """Stop the run in progress: the node is low on memory ``because`` of this."""
        return await self._call(SessionHost.memory_stop, reason, timeout=timeout)

    async def memory_kill(self, reason: str, timeout: float = 30.0) -> None:
        """Kill the kernel: the node is low on memory, and nothing runs to stop."""
        await self._call(SessionHost.memory_kill, reason, timeout=timeout)

    async def measure(self, timeout: float = CONTROL_TIMEOUT) -> dict[str, Any]:
        """The kernel's liveness, memory and CPU (answered while it runs)."""
        return await self._call(SessionActor.measure, timeout=timeout)

    async def workspace(
        self, op: WorkspaceOp, args: tuple[Any, ...], timeout: float = 60.0
    ) -> dict[str, Any]:
        """A file operation on the workspace as the session's node sees it."""
        return await self._call(SessionActor.workspace, op, list(args), timeout=timeout)

    # -- control calls: run by the kernel, in its turn ----------------------------------------

    async def variables(self, timeout: float = CONTROL_TIMEOUT) -> list[dict[str, Any]]:
        """User-defined names with type and a short repr."""
        return await self._call(SessionHost.call, KernelOp.VARIABLES, timeout=timeout)

    async def history(
        self, last: int | None, timeout: float = CONTROL_TIMEOUT
    ) -> list[dict[str, Any]]:
        """The last ``last`` runs (all kept when None)."""
        return await self._call(SessionHost.history_entries, last, timeout=timeout)

    async def cells(self, timeout: float = CONTROL_TIMEOUT) -> list[dict[str, Any]]:
        """The whole history with each run's notebook outputs (for export_notebook)."""
        return await self._call(SessionHost.history_entries, None, True, timeout=timeout)

    async def complete(
        self, code: str, cursor_pos: int | None, timeout: float = CONTROL_TIMEOUT
    ) -> dict[str, Any]:
        """Completions at the cursor from the live namespace."""
        return await self._call(
            SessionHost.call, KernelOp.COMPLETE, code, cursor_pos, timeout=timeout
        )

    async def inspect(
        self, code: str, cursor_pos: int | None, timeout: float = CONTROL_TIMEOUT
    ) -> dict[str, Any]:
        """What the name at the cursor is (nothing is called)."""
        return await self._call(
            SessionHost.call, KernelOp.INSPECT, code, cursor_pos, timeout=timeout
        )

    def snapshot(self) -> Any:
        """A ref to the session's picklable state (it stays in the object store)."""
        return self._transport.send(SessionHost.call, KernelOp.SNAPSHOT)

    async def restore(self, snapshot: Any, timeout: float) -> dict[str, Any]:
        """Load a ``snapshot()`` ref into this session."""
        return await self._call(SessionHost.restore, await _argument(snapshot), timeout=timeout)

    async def fork_kernel(self, count: int, timeout: float) -> str:
        """``count`` copy-on-write forks of the session's kernel, held by its actor."""
        return await self._call(SessionHost.fork_kernel, count, timeout=timeout)

    async def run_forks(
        self, set_id: str, variants: list[str], timeout: float, compare: list[str], wait: float
    ) -> list[dict[str, Any]]:
        """Variant ``i`` in fork ``i`` of set ``set_id``, all at once."""
        return await self._call(
            SessionHost.run_forks, set_id, variants, timeout, compare, timeout=wait
        )

    def fork_snapshot(self, set_id: str, index: int) -> Any:
        """A ref to fork ``index``'s picklable state (for ``restore`` of a new session)."""
        return self._transport.send(SessionHost.fork_snapshot, set_id, index)

    async def drop_forks(self, set_id: str, timeout: float = CONTROL_TIMEOUT) -> None:
        await self._call(SessionHost.drop_forks, set_id, timeout=timeout)

    async def save_snapshot(self, path: str, timeout: float) -> dict[str, Any]:
        """The session writes its own snapshot file."""
        return await self._call(SessionHost.save_snapshot, path, timeout=timeout)

    async def load_snapshot(self, path: str, timeout: float) -> dict[str, Any]:
        """The session reads a snapshot file into its namespace."""
        return await self._call(SessionHost.load_snapshot, path, timeout=timeout)

    def blob(self, name: str) -> Any:
        """A ref to one variable, pickled (for ``set_blob`` of another session)."""
        return self._transport.send(SessionHost.call, KernelOp.GET_BLOB, name)

    async def set_blob(self, name: str, blob: Any, timeout: float) -> str:
        """Set ``name`` from a ``blob()`` ref; returns the value's type name."""
        blob = await _argument(blob)
        return await self._call(SessionHost.call, KernelOp.SET_BLOB, name, blob, timeout=timeout)

    async def hibernate(
        self, path: str, session: dict[str, Any], timeout: float, wait: bool = False
    ) -> dict[str, Any]:
        """Write the session's image to ``path`` (then its processes may go); ``wait``: after
        the run in progress, else only if idle."""
        return await self._call(SessionHost.hibernate, path, session, wait, timeout=timeout)

    async def resume(self, path: str, timeout: float) -> dict[str, Any]:
        """Load a hibernated session's image into this (fresh) session."""
        return await self._call(SessionHost.resume, path, timeout=timeout)

    async def restore_checkpoint(self, count: int | None, timeout: float) -> dict[str, Any] | None:
        """Load checkpoint ``count`` (the latest: None); None when there is none."""
        return await self._call(SessionHost.restore_checkpoint, count, timeout=timeout)

    async def checkpoint_counts(self, timeout: float = CONTROL_TIMEOUT) -> list[int]:
        """The runs whose state a checkpoint keeps."""
        return await self._call(SessionHost.checkpoint_counts, timeout=timeout)

    async def values(self, names: list[str], timeout: float = CONTROL_TIMEOUT) -> dict[str, Any]:
        """Short reprs of ``names`` in the session."""
        return await self._call(SessionHost.call, KernelOp.VALUES, names, timeout=timeout)

    async def ping(self, timeout: float = CONTROL_TIMEOUT) -> float:
        """The actor's clock (it answers even while the kernel is busy)."""
        return await self._call(SessionActor.ping, timeout=timeout)

    async def settled(self, ref: Any, timeout: float) -> bool:
        """Whether ``ref`` (this handle's ``snapshot()``) is ready, without pulling it here."""
        return await self._transport.settled(ref, timeout)

    async def _call(self, operation: Operation, *args: Any, timeout: float) -> Any:
        """``operation`` (a method of SessionActor or SessionHost) in the session, awaited."""
        return await self._await(self._transport.send(operation, *args), timeout)

    async def _await(self, ref: Any, timeout: float) -> Any:
        """The one place a session's answer is awaited."""
        future = self._transport.future(ref)
        owned = self._transport.owns_calls
        try:
            done, _ = await asyncio.wait({future}, timeout=timeout)
        except asyncio.CancelledError:
            if owned:
                future.cancel()
            raise
        if not done:
            if owned:
                future.cancel()
            raise SessionUnavailable(f"the session did not answer within {timeout:g} s")
        return _translated(future)


def _translated(future: asyncio.Future[Any]) -> Any:
    try:
        return future.result()
    except Exception as exc:
        _raise_translated(exc)


async def _argument(value: Any) -> Any:
    """A ref passed from one session to another: a local one (a session served in this
    process) becomes its value for whichever receiver; a Ray ref stays a ref, so that between
    Ray actors the value goes through the object store, never through this process (a local
    receiver resolves it itself)."""
    if not isinstance(value, asyncio.Future):
        return value
    try:
        return await resolve(value)
    except Exception as exc:
        _raise_translated(exc)


def _raise_translated(exc: Exception) -> NoReturn:
    ray = sys.modules.get("ray")
    if ray is not None and isinstance(exc, ray.exceptions.RayTaskError):
        cause: BaseException = exc
        while isinstance(cause, ray.exceptions.RayTaskError) and cause.cause is not None:
            cause = cause.cause
        if isinstance(cause, RaykernelError):
            raise cause from None
        raise RuntimeError(first_line(str(cause))) from None
    if ray is not None and isinstance(exc, _gone_errors(ray)):
        raise ActorDied(_why_gone(ray, exc)) from None
    if isinstance(exc, RaykernelError):  # raised by a session served in this process
        raise exc
    raise RuntimeError(first_line(str(exc))) from exc


def _gone_errors(ray: Any) -> tuple[type[BaseException], ...]:
    """What Ray raises when the actor (or its worker, or its node) is gone: a death, whatever
    the kind. ``OutOfMemoryError`` (its memory monitor killed the worker) is not an actor
    error in Ray's hierarchy, and would otherwise pass for an internal fault."""
    names = (
        "RayActorError",  # ActorDiedError, ActorUnavailableError
        "OutOfMemoryError",
        "WorkerCrashedError",
        "NodeDiedError",
        "LocalRayletDiedError",
    )
    return tuple(getattr(ray.exceptions, name) for name in names if hasattr(ray.exceptions, name))


_OOM_NODE = re.compile(r"IP: ([0-9a-fA-F.:]+)")
_OOM_USED = re.compile(r"was ([0-9.]+ ?[KMGT]i?B) / ([0-9.]+ ?[KMGT]i?B)")


def _why_gone(ray: Any, exc: BaseException) -> str:
    """Ray's reason in one line; for its memory monitor, which node and how full it was."""
    text = str(exc)
    if isinstance(exc, ray.exceptions.OutOfMemoryError) or "running low on memory" in text:
        node = _OOM_NODE.search(text)
        used = _OOM_USED.search(text)
        where = f"node {node.group(1)}" if node else "its node"
        how = f" ({used.group(1)} of {used.group(2)} in use)" if used else ""
        return (
            f"stopped by Ray's memory monitor because {where} ran low on memory{how}; Ray "
            "picks its victim by the actor's own memory, not by its kernel's"
        )
    return first_line(text)


def first_line(text: str) -> str:
    return text.strip().splitlines()[0][:500] if text.strip() else "unknown"


def iso_time(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).isoformat()
