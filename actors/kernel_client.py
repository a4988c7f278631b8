"""A kernel process seen from its parent (the session actor): starting it with its spec,
asking it to do things, interrupting its run, keeping the tail of its output and of its stderr,
and killing it with everything it started. Plain asyncio, no Ray: tested on its own.

The kernel runs user code: what it sends is data, bounded (``max_message_bytes``) and never
unpickled here, and a kernel that sends what no kernel sends is killed. ``KernelLaunch`` is what
a session's kernels start with.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import shutil
import signal
import socket
import stat
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

from raykernel import errors
from raykernel.kernel import wire
from raykernel.kernel.containment import death_reason
from raykernel.protocol import KernelOp

from .environments import SessionEnvironment
from .kernel_replies import Limits, ProtocolViolation, parse

if TYPE_CHECKING:
    from .host import HostConfig

STDERR_TAIL = 8192
START_TIMEOUT = 60.0
# The largest frame a kernel may send, by what the actor waits for: pickles (a snapshot, a
# checkpoint, a variable) up to ``max_message_bytes``; a run's reply (its text is cut to the
# output limit, but every figure is inlined); any other answer; and, when nothing is asked,
# the events a kernel sends unasked (its output's tail, code mode's calls).
PICKLE_OPS = frozenset({KernelOp.SNAPSHOT, KernelOp.CHECKPOINT, KernelOp.GET_BLOB})
RUN_OPS = frozenset({KernelOp.EXECUTE, KernelOp.RUN_SCRIPT, KernelOp.CALL_FUNCTION})
RUN_REPLY_BYTES = 512 << 20
REPLY_BYTES = 64 << 20
EVENT_BYTES = 16 << 20
# Environment variables no kernel (nor installer) inherits: Ray's (its address, its token
# settings) and the server's own (an auth token, a JWT key).
DROPPED_ENV_PREFIXES = ("RAY_", "RAYKERNEL_")


class KernelGone(Exception):
    """The kernel process died (or was killed); ``reason`` says how."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class KernelRefused(Exception):
    """The kernel could not be given what its spec asked for (the network off)."""


class KernelProcess:
    """One kernel process. ``spawn`` starts the interpreter, which imports what a kernel needs
    and waits, unconfined and running nothing, for its spec; ``start`` sends the spec (who the
    session is, its workspace, its network), and the kernel confines itself and serves. A
    pooled session spawns ahead of time and starts when it is claimed, so the confinement is
    drawn once, for the identity and workspace it serves."""

    def __init__(
        self, env: dict[str, str], max_message_bytes: int = 1 << 34, python: str | None = None
    ) -> None:
        self.env = env
        # The interpreter: the server's, or a session's environment's (see environments).
        self.python = python or sys.executable
        # Another environment's interpreter starts without its site-packages (-S) and adds
        # them once confined (see raykernel.kernel.__main__).
        self.site_after_confine = python is not None
        self.python_info: dict[str, Any] = {}
        self.max_message_bytes = max_message_bytes
        self.spec: dict[str, Any] = {}
        self.pid: int | None = None
        self.isolation: dict[str, Any] = {}
        self.exit_reason: str | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._asked: dict[int, KernelOp] = {}  # what each pending request is
        self.limits = Limits()
        self._ids = itertools.count(1)
        self._tails: dict[str, str] = {}
        self._stderr = bytearray()
        self._tasks: list[asyncio.Task[None]] = []
        self._gone = asyncio.Event()
        self._process: psutil.Process | None = None
        # PID 1 of the kernel's PID namespace (its reaper: see raykernel.kernel.confinement),
        # when it has one.
        self._init_pid: int | None = None
        # A copy of another kernel (see ``adopt``): no child of this process; its crash
        # notes are in a file.
        self._adopted = False
        self._stderr_file: str | None = None
        # Told every other event the kernel sends unasked (session code calling an upstream
        # MCP tool); None: such events are dropped.
        self.on_event: Callable[[dict[str, Any]], None] | None = None

    @classmethod
    def adopt(
        cls,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        pid: int,
        spec: dict[str, Any],
        isolation: dict[str, Any],
        stderr_file: str,
        max_message_bytes: int = 1 << 34,
        source_python: dict[str, Any] | None = None,
    ) -> KernelProcess:
        """A kernel forked from another (copy-on-write), serving on ``reader``/``writer``.
        It is in the other kernel's namespaces and dies with them; killing it kills its
        process group (it leads its own)."""
        kernel = cls({}, max_message_bytes)
        kernel._adopted, kernel._stderr_file = True, stderr_file
        kernel.limits = Limits(spec.get("max_output_bytes", 100_000))
        kernel._reader, kernel._writer = reader, writer
        kernel.pid, kernel.spec, kernel.isolation = pid, spec, dict(isolation)
        kernel.python_info = dict(source_python or {})
        with contextlib.suppress(psutil.Error):
            kernel._process = psutil.Process(pid)
        kernel._tasks.append(asyncio.ensure_future(kernel._read(reader)))
        return kernel

    # -- start and stop -----------------------------------------------------------------------

    async def spawn(self) -> None:
        """Start the interpreter; it waits for ``start``."""
        parent, child = socket.socketpair()
        try:
            self._proc = await asyncio.create_subprocess_exec(
                self.python,
                # -P: no current folder on sys.path (every sys.path entry is readable by the
                # confined kernel, so none may be there by accident).
                "-P",
                # -s: no user site-packages (the kernel's home is its sessions' to write, and
                # a .pth there would run before the kernel confines itself).
                "-s",
                *(["-S"] if self.site_after_confine else []),
                "-m",
                "raykernel.kernel",
                str(child.fileno()),
                pass_fds=(child.fileno(),),
                stdin=asyncio.subprocess.DEVNULL,
                # Both streams end in one pipe whose end is kept: crash notes live there.
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env=self.env,
                # Not the workspace: the spec names it, and it may not be this one.
                cwd=self.env.get("TMPDIR") or None,
            )
        finally:
            child.close()
        self.pid = self._proc.pid
        self._reader, self._writer = await asyncio.open_unix_connection(sock=parent)
        self._tasks.append(asyncio.ensure_future(self._drain_stderr()))

    @property
    def spawned(self) -> bool:
        """Spawned, waiting for its spec, and still alive."""
        return (
            self._proc is not None
            and not self.spec
            and self._proc.returncode is None
            and not self._gone.is_set()
        )

    async def start(self, spec: dict[str, Any], timeout: float = START_TIMEOUT) -> dict[str, Any]:
        """Give the kernel its spec (spawning it first if need be) and wait until it serves;
        returns its isolation report. Raises ``KernelRefused`` when it cannot be confined as
        asked, ``KernelGone`` if it dies."""
        if self._proc is None:
            await self.spawn()
        assert self._writer is not None and self._reader is not None and self._proc is not None
        self.spec = spec
        self.limits = Limits(spec.get("max_output_bytes", 100_000))
        reader = self._reader
        try:
            self._writer.write(wire.encode(spec))
            await self._writer.drain()
            first = await asyncio.wait_for(wire.areceive(reader, 1 << 20), timeout)
        except TimeoutError:
            await self.kill()
            raise KernelGone(f"the kernel did not start within {timeout:g} s") from None
        except (EOFError, ConnectionError, wire.ProtocolError):
            # Its own exit status and last words first: killing it now would hide them.
            reason = await self._reason("the kernel did not start")
            await self.kill()
            raise KernelGone(f"{reason}; its last output: {self._last_lines()}") from None
        if first.get("event") == "refused":
            await self.kill()
            raise KernelRefused(str(first.get("message")))
        self.isolation = first.get("isolation", {})
        self.python_info = first.get("python", {})
        if self.isolation.pop("pid_namespace", False):
            try:
                self._init_pid, self.pid = _namespace_pids(self._proc.pid)
            except (psutil.Error, KernelGone) as exc:
                await self.kill()
                raise KernelGone(f"the kernel did not start: {exc}") from None
        with contextlib.suppress(psutil.Error):
            self._process = psutil.Process(self.pid)
            self._process.cpu_percent(None)
        self._tasks.append(asyncio.ensure_future(self._read(reader)))
        return self.isolation

    @property
    def tree_root(self) -> int | None:
        """The process whose tree is everything this kernel is: its namespace's PID 1 when it
        has one (its forks are there too), else the kernel."""
        return self._init_pid or self.pid

    @property
    def alive(self) -> bool:
        """Started (it has its spec), and not dead."""
        if (self._proc is None and not self._adopted) or not self.spec or self._gone.is_set():
            return False
        try:  # a kill from outside is seen here before the socket says so
            process = self._process
            return process is None or process.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    async def kill(self, reason: str | None = None) -> None:
        """Kill the kernel and everything it started; return once they are gone. An adopted
        fork (no child of this process) is killed by its process group and its tree."""
        if reason is not None and self.exit_reason is None:
            self.exit_reason = reason
        proc = self._proc
        if proc is None and not self._adopted:
            return
        victims = []
        if self._process is not None:
            with contextlib.suppress(psutil.Error):
                victims = [self._process, *self._process.children(recursive=True)]
        if self._init_pid is not None:
            # The namespace's PID 1: Linux kills everything in the namespace with it.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(self._init_pid, signal.SIGKILL)
        group = self.pid or (proc.pid if proc is not None else None)
        if group is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, signal.SIGKILL)  # the kernel leads its own group
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        for victim in victims:  # children that left the group (setsid) too
            with contextlib.suppress(psutil.Error):
                victim.kill()
        if proc is not None:
            await proc.wait()
        await asyncio.to_thread(psutil.wait_procs, victims, 5)
        self._finish()

    # -- requests -----------------------------------------------------------------------------

    async def request(self, op: KernelOp, *args: Any) -> Any:
        """Run ``op`` in the kernel, in its turn; its value, or the raykernel error it raised
        (``RuntimeError`` for anything else); ``KernelGone`` if the kernel dies meanwhile."""
        if not self.alive or self._writer is None:
            raise KernelGone(self.exit_reason or "the kernel is not running")
        op = KernelOp(op)
        request_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        self._asked[request_id] = op
        try:
            message = {"id": request_id, "op": op.value, "args": list(args)}
            self._writer.write(wire.encode(message))
            await self._writer.drain()
            reply = await future
        finally:
            self._pending.pop(request_id, None)
            self._asked.pop(request_id, None)
        if reply.get("ok"):
            try:
                return parse(op, reply.get("value"), self.limits)
            except ProtocolViolation as exc:
                await self._violated(str(exc))
                raise KernelGone(self.exit_reason or str(exc)) from None
        if isinstance(reply.get("error"), dict):  # one of the hierarchy, whole
            raise errors.from_kernel(reply["error"])
        raise RuntimeError(f"the kernel failed: {reply.get('message')}")

    def interrupt(self, token: str) -> None:
        """Ask the kernel to interrupt run ``token`` (no answer: the run's reply tells)."""
        if self.alive and self._writer is not None:
            self._writer.write(wire.encode({"op": KernelOp.INTERRUPT.value, "token": token}))

    async def _violated(self, what: str) -> None:
        """The kernel sent what no kernel sends: it is ended, and nothing it said is used."""
        if self.exit_reason is None:
            self.exit_reason = f"killed: the kernel broke the protocol ({what})"
        await self.kill()

    def _frame_limit(self) -> int:
        """The largest frame that may come now (see ``PICKLE_OPS``)."""
        asked = set(self._asked.values())
        if asked & PICKLE_OPS:
            return self.max_message_bytes
        if asked & RUN_OPS:
            return min(RUN_REPLY_BYTES, self.max_message_bytes)
        return min(REPLY_BYTES if asked else EVENT_BYTES, self.max_message_bytes)

    def tail(self, token: str) -> str | None:
        """The last output run ``token`` published, if it is running."""
        return self._tails.get(token)

    def forget_tail(self, token: str) -> None:
        self._tails.pop(token, None)

    async def measure(self) -> dict[str, Any]:
        """Whether the kernel lives (and how it died if not), its memory (RSS) and CPU, and
        how many processes it has started."""
        process = self._process
        if process is None or not self.alive:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._gone.wait(), 5)  # its exit status and last words
            return {"alive": False, "exit_reason": self.exit_reason, "memory_usage": None}
        try:
            with process.oneshot():
                return {
                    "alive": True,
                    "memory_usage": process.memory_info().rss,
                    "cpu_percent": process.cpu_percent(None),
                    "num_children": len(process.children(recursive=True)),
                }
        except psutil.Error:
            return {"alive": False, "exit_reason": self.exit_reason, "memory_usage": None}

    async def wait_gone(self) -> str:
        """Wait for the kernel to end; how it ended."""
        await self._gone.wait()
        return self.exit_reason or "the process ended"

    # -- inside ---------------------------------------------------------------------------------

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                message = await wire.areceive(reader, self._frame_limit)
                if not isinstance(message, dict):
                    raise wire.ProtocolError("not a message object")
                if message.get("event") == "tail":
                    token, text = message.get("token"), message.get("text")
                    if not isinstance(token, str) or not isinstance(text, str):
                        raise wire.ProtocolError("a tail that is not text")
                    if len(text) > Limits.MAX_TAIL_EVENT:
                        raise wire.ProtocolError(f"a tail of {len(text)} characters")
                    # The front end polls it while the run lasts: never more than a tail.
                    self._tails = {token[:256]: self.limits.tail(text)}
                    continue
                if "event" in message:
                    if self.on_event is not None:
                        self.on_event(message)
                    continue
                future = self._pending.get(message.get("id"))  # type: ignore[arg-type]
                if future is not None and not future.done():
                    future.set_result(message)
        except EOFError:
            pass
        except wire.ProtocolError as exc:
            self.exit_reason = f"killed: the kernel broke the protocol ({exc})"
            await self.kill()
            return
        reason = await self._reason(None)
        self.exit_reason = self.exit_reason or reason
        self._finish()

    async def _drain_stderr(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        while chunk := await self._proc.stdout.read(4096):
            self._stderr += chunk
            del self._stderr[:-STDERR_TAIL]

    async def _reason(self, fallback: str | None) -> str:
        if self._adopted:  # no exit status (not a child of this process): its notes only
            text = await asyncio.to_thread(_tail_of, self._stderr_file)
            return death_reason(text, None)
        proc = self._proc
        if proc is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 5)
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(self._tasks[0]), 1)
        text = self._stderr.decode("utf-8", "replace")
        returncode = proc.returncode if proc is not None else None
        if fallback is not None and returncode is None:
            return fallback
        return death_reason(text, returncode)

    def _last_lines(self, count: int = 6) -> str:
        """The end of what the kernel wrote to stderr, for a death that has no better name."""
        lines = self._stderr.decode("utf-8", "replace").strip().splitlines()[-count:]
        return " | ".join(line.strip() for line in lines) or "(nothing)"

    def _finish(self) -> None:
        if self._gone.is_set():
            return
        self._gone.set()
        reason = self.exit_reason or "the kernel ended"
        for future in self._pending.values():
            if not future.done():
                future.set_exception(KernelGone(reason))
        if self._writer is not None:
            self._writer.close()
        self._tails.clear()


def _tail_of(path: str | None) -> str:
    if path is None:
        return ""
    try:  # the kernel can write where the file is: no link, no FIFO is followed
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return ""
    with open(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return ""
        handle.seek(0, os.SEEK_END)
        handle.seek(max(0, handle.tell() - STDERR_TAIL))
        return handle.read().decode("utf-8", "replace")


def _namespace_pids(waiter: int) -> tuple[int, int]:
    """The host's ids of a confined kernel's reaper (PID 1 of its namespace) and of the kernel
    (PID 2), below the waiter the parent started (see raykernel.kernel.confinement). Read when
    the kernel says it is ready: no user code has run yet, so each has exactly the one child the
    jail forked."""
    reaper = psutil.Process(waiter).children()
    kernel = reaper[0].children() if len(reaper) == 1 else []
    if len(kernel) != 1:
        raise KernelGone(f"the kernel's process tree is not the one started ({reaper})")
    return reaper[0].pid, kernel[0].pid


_swept = False


def sweep_stale_temp() -> None:
    """Remove kernels' temp folders whose owner process is gone (a server or an actor killed
    with SIGKILL cannot remove its own), once per process; only this user's, and never one
    whose process id is alive (reused or not)."""
    global _swept
    if _swept:
        return
    _swept = True
    root = Path(tempfile.gettempdir())
    for path in [*root.glob("raykernel-kernel-*-*"), *root.glob("raykernel-links-*-*")]:
        try:
            pid = int(path.name.split("-")[2])
            if path.stat().st_uid != os.getuid() or psutil.pid_exists(pid):
                continue
        except (ValueError, OSError):
            continue
        shutil.rmtree(path, ignore_errors=True)


class KernelLaunch:
    """What a session's kernels start with: a temp folder of their own, the session's
    package folder and Python environment (the claim names them), and the variables and
    spec each kernel is given. Made again when its host is recycled."""

    def __init__(self, config: HostConfig) -> None:
        self.config = config
        # Named with this process's id: a leftover (its actor killed) is recognisable.
        sweep_stale_temp()
        self.tmp = Path(tempfile.mkdtemp(prefix=f"raykernel-kernel-{os.getpid()}-"))
        # The session's packages folder, in the store; the claim names it.
        self.site_dir = self.tmp / "site"
        self.environment = SessionEnvironment()

    @property
    def reads(self) -> list[str]:
        """What its kernels and installs may read beyond Python and the system."""
        return [*self.config.read, *self.environment.reads]

    def kernel(self) -> KernelProcess:
        return KernelProcess(self.env(), python=self.environment.python)

    def env(self) -> dict[str, str]:
        config = self.config
        env = {k: v for k, v in os.environ.items() if not k.startswith(DROPPED_ENV_PREFIXES)}
        self.environment.apply(env)
        if config.python_path:
            env["PYTHONPATH"] = os.pathsep.join(
                [*config.python_path, *filter(None, [env.get("PYTHONPATH")])]
            )
        env["MPLBACKEND"] = "Agg"
        env["PYTHONNOUSERSITE"] = "1"  # see KernelProcess.spawn's -s
        env["TMPDIR"] = str(self._folder("tmp"))
        if config.isolation == "confined":
            # The kernel cannot reach the real home: caches and configs get a private one.
            env["HOME"] = str(self._folder("home"))
            env["XDG_CACHE_HOME"] = str(self._folder("cache"))
            env["MPLCONFIGDIR"] = str(self._folder("mpl"))
        return env

    def spec(self, session_id: str, workspace: Path, network: str, proxy: Path) -> dict[str, Any]:
        config = self.config
        return {
            "workspace": str(workspace),
            "session_id": session_id,
            "site_dir": str(self.site_dir),
            "max_output_bytes": config.max_output_bytes,
            "max_image_bytes": config.max_image_bytes,
            "memory_limit": config.memory_limit,
            "max_processes": config.max_processes,
            "plugin_specs": config.plugin_specs,
            "isolation": config.isolation,
            "network": network,
            "proxy": str(proxy),
            "write": [str(workspace), str(self.site_dir), str(self.tmp)],
            "read": self.reads,
            "hide": config.hide,
            "shm_bytes": config.memory_limit or None,
        }

    def _folder(self, name: str) -> Path:
        folder = self.tmp / name
        folder.mkdir(exist_ok=True)
        return folder

    def remove(self) -> None:
        """Remove its temp folder and the environment's links."""
        self.environment.drop()
        shutil.rmtree(self.tmp, ignore_errors=True)
