"""SessionHost: a session's side of the wall, in its actor's process (no Ray here: the actor is
a thin shell over it, and tests drive it directly).

It owns the session's kernel process (started before anyone claims the session, so a pooled
actor needs no cold start; restarted in place when it dies or will not stop), its identity, the
file operations made for it, and its parts, each a collaborator given what it needs of the
others: how its kernels start (KernelLaunch), its network, installs (run here, with the network
the kernel may lack), state beyond the process, forks, run book and history. It answers while
the kernel is busy: interrupts, the live output tail, health and files never wait behind a run.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from raykernel.deputy import Deputy, deputy_for
from raykernel.errors import (
    InvalidArgument,
    RaykernelError,
    SessionMoved,
    SessionUnavailable,
)
from raykernel.memory import refuse_if_full
from raykernel.protocol import Claim, KernelOp, Network, RunKind
from raykernel.replies import kernel_died_reply, revival_notice, run_error, run_reply
from raykernel.workspace import Workspace, WorkspaceOp, perform

from .egress import SessionNetwork
from .forks import Forks
from .installer import SessionInstalls
from .kernel_client import KernelGone, KernelLaunch, KernelProcess, KernelRefused
from .runbook import BookedRun, Driver, History, RunBook
from .store import CheckpointStore, SessionState
from .upstream_calls import UpstreamCalls, to_kernel


@dataclass
class HostConfig:
    workspace: Path
    store: Path
    max_file_bytes: int = 10_000_000
    max_output_bytes: int = 100_000
    max_image_bytes: int = 1_000_000
    memory_limit: int = 0
    max_processes: int = 0
    plugin_specs: list[str] = field(default_factory=list)
    isolation: str = "confined"
    network: Network = "on"
    # Folders the kernel must not see at all (Ray's session folder, with its sockets).
    hide: list[str] = field(default_factory=list)
    # Folders beyond Python's that the kernel may read (plugins installed from a checkout).
    read: list[str] = field(default_factory=list)
    # Folders put first on the kernel's sys.path (plugins given to the server, not installed).
    python_path: list[str] = field(default_factory=list)
    checkpoint_depth: int = 20
    checkpoint_max_bytes: int = 1 << 30
    # How long a run past its timeout has to stop after SIGINT before its kernel is replaced.
    interrupt_grace: float = 5.0
    # Past this share of the node's memory no session is claimed here (0: no check).
    memory_high_water: float = 0.0


_SECRETS = {"home": "~", "ray_token": "~/.ray/auth_token"}


def _deputy_of(folders: list[str]) -> Deputy:
    """The threads that do a session's file work in the store: made here, with the server
    user's rights, the folders they are confined to must exist first."""
    for folder in folders:
        Path(folder).mkdir(mode=0o700, parents=True, exist_ok=True)
    deputy = deputy_for(*(Path(f) for f in folders))
    # Ray's token and the home it lives in, as the deputy's threads find them.
    found = deputy.probe(os.path.expanduser(path) for path in _SECRETS.values())
    deputy.report = {
        "by": deputy.confinement["by"],
        "probed": dict(zip(_SECRETS, found.values(), strict=True)),
    }
    return deputy


class SessionHost:
    def __init__(self, config: HostConfig) -> None:
        self.config = config
        self.created_at = time.time()
        self.started_at = time.time()
        self.kernel: KernelProcess | None = None
        self.kernel_restarts = 0
        self.install_cache: Path | None = None
        self._reviving = asyncio.Lock()
        # Code mode's requests from session code, until the front end answers them.
        self.upstream = UpstreamCalls(to_kernel(lambda: self.kernel), self._current_token)
        self._fresh()

    def _fresh(self) -> None:
        """What an unclaimed host starts with, and a recycled one again: its collaborators,
        each given what it needs of the others."""
        config = self.config
        self.session_id = self.owner = self.description = ""
        self.placement: dict[str, Any] = {}
        # The session's timeline, kept here across kernels (see History).
        self.history = History()
        # Its kernels' temp folder, package folder and environment (see KernelLaunch).
        self.launch = KernelLaunch(config)
        self._workspace = Workspace(config.workspace, config.max_file_bytes, config.store)
        # run_variants' copy-on-write forks of the kernel, while the call lasts.
        self.forks = Forks(self.launch.tmp, config.interrupt_grace)
        self.net = SessionNetwork(
            config.network, self.launch.tmp / "egress.sock", lambda: self.session_id
        )
        driver = Driver(
            start=self._start_run,
            interrupt=self.interrupt,
            replace_kernel=self._replace_kernel,
            revive=self.revive,
            execution_count=lambda: self.history.execution_count,
            session_id=lambda: self.session_id,
        )
        self.book = RunBook(driver, config.interrupt_grace)
        # What it saves and loads beyond its process (see SessionState).
        self.state = SessionState(
            self.call, self.book, self.history, lambda: self.session_id, self.measure
        )
        # Its installs, and those under way; made again when the claim says where they go.
        self.installs = self._new_installs()

    def _new_installs(self) -> SessionInstalls:
        return SessionInstalls(
            self.launch, self.install_cache, self._workspace, lambda: self.kernel
        )

    # -- the kernel -----------------------------------------------------------------------------

    async def prepare(self) -> None:
        """Spawn the kernel process ahead of the claim: it imports what it needs and waits for
        its spec, which only the claim can give (whose workspace, which network)."""
        if self.kernel is None or not self.kernel.spawned:
            kernel = KernelProcess(self.launch.env())
            await kernel.spawn()
            self.kernel = kernel

    def set_network(self, network: list[str]) -> dict[str, Any]:
        """New destinations for an allow-listed session, for its new connections."""
        return self.net.change(network)

    def network_report(self) -> dict[str, Any]:
        return self.net.report()

    async def start(self) -> dict[str, Any]:
        """Start the kernel (again): the one spawned ahead if it waits, else a new one; returns
        its isolation report."""
        self.net.serve()
        kernel = self.kernel
        if kernel is not None and not kernel.spawned:
            await kernel.kill("replaced by a new kernel")
            kernel = None
        self.launch.site_dir.mkdir(parents=True, exist_ok=True)
        kernel = kernel or self.launch.kernel()
        kernel.on_event = self.upstream.heard
        self.kernel = kernel
        spec = self.launch.spec(
            self.session_id, self._workspace.root, self.net.mode, self.net.socket
        )
        try:
            report = await kernel.start(spec)
        except KernelRefused as exc:
            raise InvalidArgument(str(exc)) from None
        except KernelGone as exc:
            raise SessionUnavailable(f"the kernel did not start: {exc.reason}") from None
        self.started_at = time.time()
        return report

    async def restart_kernel(self, reason: str) -> dict[str, Any]:
        """A new kernel process in place of the old one (its state is lost)."""
        if self.kernel is not None:
            await self.kernel.kill(reason)
        self.kernel_restarts += 1
        return await self.start()

    def _running(self) -> KernelProcess:
        if self.kernel is None:
            raise SessionUnavailable("the kernel has not started")
        return self.kernel

    # -- identity -------------------------------------------------------------------------------

    async def claim(self, claim: Claim) -> dict[str, Any]:
        """Become session ``claim.session_id`` of ``claim.owner``; a host is claimed once. The
        kernel spawned ahead of time gets its spec now, and confines itself to it."""
        if self.session_id:
            raise RuntimeError(f"this actor already serves session {self.session_id!r}")
        config = self.config
        refuse_if_full(config.memory_high_water)
        self.state.deputy = await asyncio.to_thread(_deputy_of, claim.state_folders)
        if claim.checkpoints_dir:
            self.state.checkpoints = CheckpointStore(
                Path(claim.checkpoints_dir), config.checkpoint_depth, config.checkpoint_max_bytes
            )
        self.session_id, self.owner = claim.session_id, claim.owner
        self.description, self.created_at = claim.description, claim.created_at
        self.placement = claim.placement
        self.launch.site_dir = Path(claim.site_dir)
        self.install_cache = Path(claim.install_cache) if claim.install_cache else None
        if claim.workspace is not None:
            self._workspace = Workspace(Path(claim.workspace), config.max_file_bytes, config.store)
            await asyncio.to_thread(self._workspace.ensure)
        self.net.network = claim.network
        if claim.environment is not None:
            # The kernel spawned ahead runs the server's Python: this one needs its own.
            await self.launch.environment.use(claim.environment)
            if self.kernel is not None:
                await self.kernel.kill("replaced by the session's environment")
                self.kernel = None
        self.installs = self._new_installs()
        await self.state.go_on(claim.execution_count)
        await self.start()
        return await self.info()

    async def info(self) -> dict[str, Any]:
        kernel = self.kernel
        return {
            "session_id": self.session_id,
            "owner": self.owner,
            "description": self.description,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "kernel_pid": kernel.pid if kernel is not None else None,
            "isolation": {
                **(kernel.isolation if kernel is not None else {}),
                "deputy": self.state.deputy.report if self.state.deputy is not None else None,
            },
            "network": self.net.network,
            "checkpoint": "after_run" if self.state.checkpoints is not None else "off",
            "placement": self.placement,
            "execution_count": self.history.execution_count,
            "last_execution_time": self.history.last_execution_time,
            "environment": self.launch.environment.name,
            "python_version": (kernel.python_info.get("version") if kernel is not None else None),
        }

    # -- runs -----------------------------------------------------------------------------------

    async def execute(self, code: str, token: str) -> dict[str, Any]:
        return await self._run(KernelOp.EXECUTE, (code, token), token, code=code)

    async def run_script(self, path: str, args: list[str], token: str) -> dict[str, Any]:
        """Run the owner's workspace file ``path``: read here once, beneath the workspace's
        root and following no link, when the run starts; that text is what the kernel runs
        and what the history keeps (the kernel never reads the path itself, so a script
        swapped for a link while the session was busy leads nowhere)."""
        try:
            script = await perform(Workspace.script, self._workspace, path)
        except RaykernelError as exc:
            return self._unread(path, exc, token)
        filename, source = script["path"], script["source"]
        return await self._run(
            KernelOp.RUN_SCRIPT, (filename, source, args, token), token, code=source
        )

    def _unread(self, path: str, exc: RaykernelError, token: str) -> dict[str, Any]:
        """A run of a script that could not be read: its reply says why, in the timeline."""
        history = self.history
        history.execution_count += 1
        history.last_execution_time = time.time()
        reply = run_reply(
            self.session_id, history.execution_count, 0.0, error=run_error(exc.kind, exc.message)
        )
        self.state.keep(history.record(f"# run_script {path}", dict(reply), time.time()))
        return dict(reply)

    async def call_function(
        self, payload: bytes, max_result_bytes: int, token: str
    ) -> dict[str, Any]:
        """A plugin's function in the kernel (no history, no count, no checkpoint)."""
        return await self._run(KernelOp.CALL_FUNCTION, (payload, max_result_bytes, token), token)

    # -- the run book: runs in order, from any front end ---------------------------------------

    def book_run(
        self, run_id: str, kind: RunKind, args: list[Any], timeout: float, background: bool
    ) -> dict[str, Any]:
        """Queue a run; its view."""
        if self.state.closed:
            raise SessionMoved(f"session {self.session_id!r} has been handed on")
        return self.book.book(BookedRun(run_id, kind, tuple(args), timeout, background))

    def _start_run(self, run: BookedRun) -> Any:
        starts = {
            RunKind.EXECUTE: self.execute,
            RunKind.RUN_SCRIPT: self.run_script,
            RunKind.CALL_FUNCTION: self.call_function,
            RunKind.INSTALL: self.install,
        }
        return starts[RunKind(run.kind)](*run.args, run.token)

    async def _replace_kernel(self, reason: str) -> dict[str, Any] | None:
        await self.restart_kernel(reason)
        restored = await self.restore_checkpoint(None)
        self.state.keep(self.history.crashed_then(restored))
        return restored

    async def revive(self) -> dict[str, Any] | None:
        """A kernel found dead is replaced (once, whoever asks first) and its last checkpoint
        loaded; the notice the next reply must carry, or None when it was alive."""
        async with self._reviving:
            kernel = self.kernel
            if kernel is None or kernel.alive:
                return None
            reason = kernel.exit_reason or "unknown cause"
            restored = await self._replace_kernel(reason)
        return revival_notice(self.session_id, reason, restored)

    async def _run(
        self, op: KernelOp, args: tuple[Any, ...], token: str, code: str | None = None
    ) -> dict[str, Any]:
        """Run ``op`` in the kernel. A run with ``code`` (execute, run_script) is one of the
        session's timeline: it gets the next execution count (kept here, so a new kernel goes
        on from it), its history entry and, when the session keeps them, a checkpoint."""
        kernel = self._running()
        counted = code is not None
        count = self.history.execution_count + 1 if counted else None
        refused_before = self.net.refused
        started = time.time()
        try:
            reply = await kernel.request(op, *args, *([count] if counted else []))
            if counted and count is not None:
                reply["execution_count"] = count  # the actor numbers runs, not the kernel
                if reply.get("success"):
                    self.state.checkpoint_soon(kernel, count)
            if (refused := self.net.refused_since(refused_before)) is not None:
                # For the run's trace and its reader: what its list refused meanwhile.
                reply["network_refused"] = refused
            status = None
        except KernelGone as exc:
            count_now = count or self.history.execution_count
            reply = {
                **kernel_died_reply(self.session_id, count_now, exc.reason),
                "kernel_died": exc.reason,
            }
            status = "crashed"
        finally:
            kernel.forget_tail(token)
            upstream = self.upstream.run_ended(token)
        if counted and count is not None:
            history = self.history
            history.execution_count = max(history.execution_count, count)
            history.last_execution_time = time.time()
            assert code is not None
            self.state.keep(history.record(code, reply, started, status, upstream))
        return reply

    def _current_token(self) -> str | None:
        """The run in progress, the only one code mode answers (see UpstreamCalls)."""
        run = self.book.current
        return run.token if run is not None else None

    def history_entries(self, last: int | None, full: bool = False) -> list[dict[str, Any]]:
        """The session's history (answered here, never behind a run)."""
        return self.history.last(last, full)

    async def install(
        self, specs: list[str], allow_urls: bool, allow_builds: bool, timeout: float, token: str
    ) -> dict[str, Any]:
        """Install into the session's own folder, for its kernel to import (see SessionInstalls)."""
        return await self.installs.install(specs, allow_urls, allow_builds, timeout, token)

    # -- memory pressure (see raykernel.memory: the node's guard asks and decides) ----------

    def memory_report(self) -> dict[str, Any]:
        """The kernel's host PID and whether it runs code now."""
        kernel = self.kernel
        alive = kernel is not None and kernel.alive
        # The namespace's PID 1 when there is one: its tree holds the kernel and its
        # run_variants forks (grandchildren, reparented there), all the session's memory.
        root = kernel.tree_root if alive and kernel is not None else None
        return {"kernel_pid": root, "running": self.book.current is not None}

    def memory_stop(self, reason: str) -> bool:
        """Stop the run in progress because the node is low on memory: its reply is a
        ``MemoryError`` and the variables stay; code that will not stop gets a new kernel."""
        return self.book.stop_for("MemoryError", f"was stopped because {reason}")

    async def memory_kill(self, reason: str) -> None:
        """Kill the kernel (its state is lost; the next call starts a new one and says so)."""
        if self.kernel is not None:
            await self.kernel.kill(f"killed by the node's memory guard because {reason}")

    def interrupt(self, token: str) -> bool:
        """Stop run (or install) ``token``; answered at once, the run's reply tells the rest."""
        if self.installs.kill(token):
            return True
        if self.kernel is None:
            return False
        self.kernel.interrupt(token)
        return True

    def tail(self, token: str) -> str | None:
        tail = self.installs.tail(token)
        if tail is not None:
            return tail
        return self.kernel.tail(token) if self.kernel is not None else None

    async def wait_run(self, run_id: str, timeout: float) -> dict[str, Any]:
        """Run ``run_id``'s view once finished or after ``timeout`` s (then with its output)."""
        view = await self.book.wait(run_id, timeout)
        if view["status"] == "running":
            view["output_so_far"] = self.tail(view["token"]) or ""
        return view

    async def cancel_run(self, run_id: str) -> dict[str, Any]:
        return await self.book.cancel(run_id)

    def runs(self) -> list[dict[str, Any]]:
        return self.book.listing()

    async def stop_current(self) -> str | None:
        return await self.book.stop_current()

    async def upstream_calls(self, token: str, wait: float) -> dict[str, Any]:
        return await self.upstream.take(token, wait)

    async def answer_upstream(
        self, call_id: int, answer: dict[str, Any], log: dict[str, Any] | None = None
    ) -> bool:
        return await self.upstream.answer(call_id, answer, log)

    def reopen(self) -> bool:
        """Serve again after a hibernation that never finished; whether it was closed."""
        return self.state.reopen()

    async def kill_kernel(self, reason: str) -> None:
        if self.kernel is not None:
            await self.kernel.kill(reason)

    async def restore(self, snapshot: dict[str, Any]) -> dict[str, Any]:
        """Load a ``KernelOp.SNAPSHOT`` (passed by reference through the object store)."""
        report = await self.call(KernelOp.RESTORE, snapshot["blobs"])
        report["not_preserved"].update(snapshot["not_preserved"])
        return report

    async def call(self, op: KernelOp, *args: Any) -> Any:
        """A control operation in the kernel (variables, history, snapshots, transfers...)."""
        try:
            return await self._running().request(op, *args)
        except KernelGone as exc:
            raise SessionUnavailable(f"the session's process died: {exc.reason}") from None

    # -- copy-on-write forks (run_variants) ---------------------------------------------------

    async def fork_kernel(self, count: int) -> str:
        """``count`` copy-on-write forks of the kernel (see forks); the id of the set. The
        caller holds the session's turn: the kernel is between runs."""
        return await self.forks.make(self._running(), count)

    async def run_forks(
        self, set_id: str, variants: list[str], timeout: float, compare: list[str]
    ) -> list[dict[str, Any]]:
        """Variant ``i`` in fork ``i``, all at once: each one's reply and compared values.
        Each is run ``execution_count + 1`` of its own branch; the session's timeline does
        not move."""
        count = self.history.execution_count + 1
        return await self.forks.run(set_id, variants, timeout, count, self.session_id, compare)

    async def fork_snapshot(self, set_id: str, index: int) -> dict[str, Any]:
        """Fork ``index``'s picklable state, as ``call("snapshot")`` gives the kernel's."""
        return await self.forks.snapshot(set_id, index)

    async def drop_forks(self, set_id: str) -> None:
        await self.forks.drop(set_id)

    # -- state beyond the process (see SessionState) -----------------------------------------

    async def save_snapshot(self, path: str) -> dict[str, Any]:
        """Write the kernel's picklable state to ``path``."""
        return await self.state.save_snapshot(path)

    async def load_snapshot(self, path: str) -> dict[str, Any]:
        """Read a snapshot file here and hand its pickles to the kernel to load."""
        return await self.state.load_snapshot(path)

    async def restore_checkpoint(self, count: int | None = None) -> dict[str, Any] | None:
        """Load checkpoint ``count`` (the latest when None) into a fresh namespace; the report,
        or None when there is no checkpoint."""
        return await self.state.restore_checkpoint(count)

    def checkpoint_counts(self) -> list[int]:
        """The runs whose state a checkpoint keeps."""
        return self.state.checkpoint_counts()

    async def hibernate(
        self, path: str, session: dict[str, Any], wait: bool = False
    ) -> dict[str, Any]:
        """Write the session's image (its picklable state, its history, who it is) to
        ``path``, whole or not at all; the caller then frees the processes."""
        return await self.state.hibernate(path, session, wait)

    def idle_for(self) -> float | None:
        """Seconds since the last run ended (None while one runs or waits), whichever front
        end sent it: the idle watch of every front end asks the session itself."""
        return self.book.idle_for()

    async def resume(self, path: str) -> dict[str, Any]:
        """Load an image ``hibernate`` wrote: variables (imports re-done as they unpickle) and
        history; the report names what could not be carried."""
        return await self.state.resume(path)

    async def measure(self) -> dict[str, Any]:
        """The kernel's liveness (and how it died), memory and CPU."""
        kernel = self.kernel
        if kernel is None:
            return {"alive": False, "exit_reason": "the kernel has not started"}
        return {
            "kernel_pid": kernel.pid,
            **(await kernel.measure()),
            "network": self.net.report(),
        }

    async def workspace(self, op: WorkspaceOp, args: list[Any]) -> dict[str, Any]:
        """A file operation on the workspace as this node sees it."""
        return await perform(op, self._workspace, *args)

    async def recycle(self) -> None:
        """Forget the session and become a fresh, unclaimed host (a new kernel process waiting
        for its spec, a new temp folder): a hibernated session's actor can serve the next one."""
        if self.kernel is not None:
            await self.kernel.kill("recycled")
        self.kernel = None
        self.launch.remove()
        await self.forks.close()
        self.net.stop()
        self._fresh()
        await self.prepare()

    async def shutdown(self) -> None:
        """Kill the kernel and what it started, and any install under way; remove the
        kernel's temp folder."""
        self.installs.kill_all()
        await self.forks.close()
        if self.kernel is not None:
            await self.kernel.kill("the session was deleted")
        self.net.stop()
        self.launch.remove()
