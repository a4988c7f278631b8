"""The kernel process's loop: requests from its parent (the session actor) in, replies out; and
the checkpoints' kernel half.

The main thread runs requests one at a time, in order (user code must run there: that is where
signals are delivered); a reader thread takes requests off the socket as they come, answering
the ones that cannot wait for a run to end (an interrupt, a ping) at once. Everything the kernel
sends is plain data (the wire's JSON and bytes), so its parent never unpickles anything.

Checkpoints: a session's picklable state after each successful run, kept so that a crash costs
at most the run that crashed, and so that a session can be rewound. ``ChangeTracker`` pickles
every name after a run and hands over only the pickles whose content changed since the last
checkpoint (a value mutated in place changes its pickle, so in-place edits are seen too), with
the name -> content-hash map of the whole namespace. The session actor keeps them
(``CheckpointStore``, in raykernel.actors.store).
"""

from __future__ import annotations

import hashlib
import io
import os
import queue
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cloudpickle
import psutil

from raykernel.errors import RaykernelError
from raykernel.protocol import KernelOp

from . import containment, display, upstream_tools, wire
from .capture import LiveTail, truncate_text
from .interpreter import Interpreter, Interrupts

CHECKPOINT_PAUSE = 0.02


class KernelService:
    def __init__(self, sock: socket.socket, spec: dict[str, Any]) -> None:
        self.sock = sock
        self.spec = spec
        self._send_lock = threading.Lock()
        self._work: queue.SimpleQueue[dict[str, Any] | None] = queue.SimpleQueue()
        hooks = None
        if spec.get("plugin_specs"):
            from raykernel.pluginmanager import load_session_plugins

            hooks = load_session_plugins(spec["plugin_specs"]).hook
        workspace = Path(spec["workspace"])
        self.interpreter = Interpreter(
            spec.get("session_id", ""),
            workspace,
            max_output_bytes=spec.get("max_output_bytes", 100_000),
            hooks=hooks,
            site_dir=Path(spec["site_dir"]) if spec.get("site_dir") else None,
            live=LiveTail(self._publish_tail),
            max_image_bytes=spec.get("max_image_bytes", 1_000_000),
        )
        display.install(self.interpreter.display)
        self.upstream = upstream_tools.Channel(self._send, self.interpreter.current_token)
        upstream_tools.install(self.upstream)
        self.interrupts = Interrupts(self.interpreter.current_token)
        self.interrupts.install()
        self.process = psutil.Process()
        self.tracker: ChangeTracker | None = None
        # A copy (see _fork) is no child of its actor: no parent-death signal ends it.
        self.is_copy = False
        # What the main thread answers, one request at a time (as ipykernel's msg_types).
        self.operations: dict[str, Callable[..., Any]] = {
            KernelOp.EXECUTE: self.op_execute,
            KernelOp.RUN_SCRIPT: self.op_run_script,
            KernelOp.CALL_FUNCTION: self.op_call_function,
            KernelOp.ACTIVATE_SITE: self.op_activate_site,
            KernelOp.VARIABLES: self.op_variables,
            KernelOp.COMPLETE: self.op_complete,
            KernelOp.INSPECT: self.op_inspect,
            KernelOp.SNAPSHOT: self.op_snapshot,
            KernelOp.RESTORE: self.op_restore,
            KernelOp.GET_BLOB: self.op_get_blob,
            KernelOp.SET_BLOB: self.op_set_blob,
            KernelOp.CHECKPOINT: self.op_checkpoint,
            KernelOp.FORGET_CHECKPOINTS: self.op_forget_checkpoints,
            KernelOp.REWIND: self.op_rewind,
            KernelOp.VALUES: self.op_values,
        }
        self.children = containment.ChildWatch(
            self.process, spec.get("max_processes", 0), self.interpreter.current_token
        )

    # -- the loop -----------------------------------------------------------------------------

    def serve(self) -> None:
        threading.Thread(target=self._read, name="raykernel-reader", daemon=True).start()
        while True:
            request = self._work.get()
            if request is None:
                return
            self._answer(request)

    def _read(self) -> None:
        while True:
            try:
                request = wire.receive(self.sock)
            except (EOFError, OSError):
                if self.is_copy:  # its actor is gone: nothing it runs may outlive it
                    _exit_now(0)
                self._work.put(None)  # the parent is gone: so is the kernel
                return
            op = request.get("op")
            if op == KernelOp.INTERRUPT:
                self.interrupts.request(request["token"])
            elif op == KernelOp.PING:
                self._send({"id": request.get("id"), "ok": True, "value": time.time()})
            elif op == KernelOp.UPSTREAM_REPLY:  # the run that asked is waiting: not behind it
                call_id, answer = request.get("args", [None, {}])
                self.upstream.answer(call_id, answer)
                self._send({"id": request.get("id"), "ok": True, "value": None})
            else:
                self._work.put(request)

    def _answer(self, request: dict[str, Any]) -> None:
        if request.get("op") == KernelOp.FORK:  # one of two processes returns from here
            self._fork(request)
            return
        method = self.operations.get(str(request.get("op")))
        reply: dict[str, Any] = {"id": request.get("id")}
        try:
            if method is None:
                raise RuntimeError(f"unknown operation {request.get('op')!r}")
            reply.update(ok=True, value=method(*request.get("args", [])))
        except RaykernelError as exc:
            reply.update(ok=False, kind=exc.kind, message=exc.message, error=exc.to_wire())
        except BaseException as exc:  # the kernel must outlive its operations' failures
            detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            reply.update(ok=False, kind="internal", message=detail[:2000])
        self._send(reply)

    def _send(self, message: dict[str, Any]) -> None:
        with self._send_lock:
            wire.send(self.sock, message)

    def _fork(self, request: dict[str, Any]) -> None:
        """A copy-on-write copy of this kernel, between runs: its namespace, its imports and
        its confinement, page by page as either side writes. The copy is a grandchild (its
        parent, in between, ends at once), so that this kernel has no child to reap or to
        count and the copy is no member of its process group; it connects to the actor at
        ``path`` and says ``secret``, and serves there. Its parent answers with its pid."""
        path, secret, stderr = request["args"]
        reply: dict[str, Any] = {"id": request.get("id")}
        try:
            found_r, found_w = os.pipe()
            middle = os.fork()
            if middle == 0:
                os.close(found_r)
                copy = os.fork()
                if copy:
                    os.write(found_w, str(copy).encode())
                    _exit_now(0)
                os.close(found_w)
                self._become_copy(path, secret, stderr)
                return
            os.close(found_w)
            os.waitpid(middle, 0)
            found = os.read(found_r, 32)
            os.close(found_r)
            reply.update(ok=bool(found), value=int(found or 0), kind="internal", message="")
        except OSError as exc:
            reply.update(ok=False, kind="internal", message=f"fork failed: {exc}")
        self._send(reply)

    def _become_copy(self, path: str, secret: str, stderr: str) -> None:
        """In the copy: what it must not share with the kernel it copies is made anew (the
        socket and its lock, the requests queued there, the threads, which a fork does not
        copy, the output tail, the checkpoint tracker, the process group, the random seeds),
        and its crash notes go to a file of its own, not to the other kernel's stderr."""
        try:
            log = os.open(stderr, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.dup2(log, 1)
            os.dup2(log, 2)
            os.close(log)
            self.sock.close()
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.connect(path)
            self._send_lock = threading.Lock()
            self._work = queue.SimpleQueue()
            self.is_copy = True
            containment.lead_process_group()
            self.process = psutil.Process()
            self.interpreter.live = LiveTail(self._publish_tail)
            self.children = containment.ChildWatch(
                self.process, self.spec.get("max_processes", 0), self.interpreter.current_token
            )
            self.tracker = None
            _reseed()
            self._send({"event": "ready", "secret": secret, "pid": os.getpid()})
            threading.Thread(target=self._read, name="raykernel-reader", daemon=True).start()
        except BaseException:
            _exit_now(1)

    def _publish_tail(self, token: str, text: str) -> None:
        self._send({"event": "tail", "token": token, "text": text})

    # -- operations (the main thread runs them, one at a time) ---------------------------------

    def op_execute(self, code: str, token: str, count: int) -> Any:
        self.children.run_starting()
        killed = self.children.killed
        return self.children.annotate(self.interpreter.execute(code, token, count), killed)

    def op_run_script(self, path: str, source: str, args: list[str], token: str, count: int) -> Any:
        self.children.run_starting()
        killed = self.children.killed
        reply = self.interpreter.run_script(path, source, args, token, count)
        return self.children.annotate(reply, killed)

    def op_call_function(self, payload: bytes, max_result_bytes: int, token: str) -> Any:
        return self.interpreter.call_function(payload, token, max_result_bytes)

    def op_activate_site(self) -> None:
        if self.interpreter.site_dir is not None:
            self.interpreter.use_site_dir(self.interpreter.site_dir)

    def op_variables(self) -> Any:
        return self.interpreter.variables()

    def op_complete(self, code: str, cursor_pos: int | None) -> Any:
        return self.interpreter.complete(code, cursor_pos)

    def op_inspect(self, code: str, cursor_pos: int | None) -> Any:
        return self.interpreter.inspect(code, cursor_pos)

    def op_snapshot(self) -> Any:
        return self.interpreter.snapshot()

    def op_restore(self, blobs: dict[str, bytes]) -> Any:
        return self.interpreter.restore(blobs)

    def op_get_blob(self, name: str) -> bytes:
        return self.interpreter.get_blob(name)

    def op_set_blob(self, name: str, blob: bytes) -> str:
        return self.interpreter.set_blob(name, blob)

    def op_checkpoint(self, max_value_bytes: int) -> dict[str, Any]:
        """What changed since the last checkpoint (see ChangeTracker). It waits a
        moment first, unless another request is queued: the run's reply is on its way, and
        on a small machine the pickling would compete with it for the CPU."""
        deadline = time.monotonic() + CHECKPOINT_PAUSE
        while self._work.empty() and time.monotonic() < deadline:
            time.sleep(0.001)
        if self.tracker is None or self.tracker.max_value_bytes != max_value_bytes:
            self.tracker = ChangeTracker(max_value_bytes)
        return {
            "execution_count": self.interpreter.execution_count,
            **self.tracker.changes(self.interpreter.namespace),
        }

    def op_forget_checkpoints(self) -> None:
        if self.tracker is not None:
            self.tracker.forget()

    def op_rewind(self, blobs: dict[str, bytes], count: int) -> dict[str, Any]:
        """The namespace as checkpoint ``count`` had it: every user name replaced."""
        self.interpreter.reset_namespace()
        report = self.interpreter.restore(blobs)
        if self.tracker is not None:
            self.tracker.forget()
        return report

    def op_values(self, names: list[str]) -> dict[str, Any]:
        """Short reprs of ``names`` (missing ones: None), to compare variants."""
        return self.interpreter.values(names)


def _exit_now(status: int) -> None:
    """End this process without a crash note (see containment.record_crashes)."""
    getattr(os._exit, "__wrapped__", os._exit)(status)


def _reseed() -> None:
    """A copy draws its own random numbers (``random`` reseeds itself after a fork; NumPy's
    global generator does not)."""
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        try:
            numpy.random.seed()
        except Exception:  # a broken numpy is the user's, not the fork's
            return


def prepare_process() -> None:
    """What the kernel process does to itself before serving: its own process group (so that
    everything user code starts can be killed with it), crash notes, a stdin that is empty
    (``input()`` fails at once) and figures that render off-screen."""
    os.environ["MPLBACKEND"] = "Agg"
    containment.lead_process_group()
    containment.record_crashes()
    sys.stdin = io.StringIO("")


class ChangeTracker:
    def __init__(self, max_value_bytes: int) -> None:
        self.max_value_bytes = max_value_bytes
        self._hashes: dict[str, str] = {}

    def changes(self, namespace: dict[str, Any]) -> dict[str, Any]:
        """``{names: {name: sha}, blobs: {sha: pickle}, not_preserved: {name: why}}`` with only
        the pickles this tracker has not handed over before."""
        names: dict[str, str] = {}
        blobs: dict[str, bytes] = {}
        failed: dict[str, str] = {}
        for name, value in list(namespace.items()):
            if name.startswith("__") and name.endswith("__"):
                continue
            try:
                blob = cloudpickle.dumps(value)
            except Exception as exc:
                failed[name] = f"{type(exc).__name__}: {truncate_text(str(exc), 200)}"
                continue
            if len(blob) > self.max_value_bytes:
                failed[name] = f"{len(blob)} bytes, above the checkpoint limit per value"
                continue
            digest = hashlib.sha256(blob).hexdigest()
            names[name] = digest
            if self._hashes.get(name) != digest:
                blobs[digest] = blob
        self._hashes = names
        return {"names": names, "blobs": blobs, "not_preserved": failed}

    def forget(self) -> None:
        """The next checkpoint hands over everything (a new store, a restored namespace)."""
        self._hashes = {}
