"""The session actor: one Ray actor process per session, a thin shell over ``Interpreter``.

It must stay a plain synchronous actor (no ``max_concurrency``, no concurrency groups): then Ray
runs every method on the worker's main thread, which is where SIGINT is delivered, so a run can be
interrupted. It imports nothing of the front end (fastmcp, the router) to stay small.
"""

from __future__ import annotations

import io
import os
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import ray

from raykernel.kernel import containment, display
from raykernel.kernel.interpreter import Interpreter
from raykernel.kernel.interrupts import install_handler
from raykernel.kernel.live_output import LiveTail
from raykernel.pluginmanager import load_session_plugins


class SessionActor:
    def __init__(
        self,
        workspace: str,
        *,
        max_output_bytes: int = 100_000,
        plugin_specs: list[str] | None = None,
        memory_limit: int = 0,
        max_processes: int = 0,
        max_image_bytes: int = 1_000_000,
    ) -> None:
        """Everything a session needs except its identity, which ``claim`` gives it: an actor
        can be started ahead of time (the warm pool) and handed to the next new session."""
        # Before any user import: figures must render off-screen.
        os.environ["MPLBACKEND"] = "Agg"
        os.chdir(workspace)
        scripts = str(Path(workspace) / "scripts")
        if scripts not in sys.path:
            sys.path.insert(0, scripts)
        # input() must fail at once rather than wait forever on the worker's stdin.
        sys.stdin = io.StringIO("")
        hooks = load_session_plugins(plugin_specs).hook if plugin_specs else None
        self.interpreter = Interpreter(
            "",
            Path(workspace),
            max_output_bytes=max_output_bytes,
            hooks=hooks,
            live=LiveTail(),
            max_image_bytes=max_image_bytes,
        )
        display.install(self.interpreter.display)
        self.session_id = ""
        self.placement: dict[str, Any] = {}
        self.description = ""
        self.created_at = time.time()
        self.started_at = time.time()
        self.process = psutil.Process()
        self.process.cpu_percent(None)
        install_handler(self.interpreter.current_token)
        # Own process group: deleting the session can then kill everything user code started,
        # even orphans that left the process tree.
        self.pgid = containment.lead_process_group()
        containment.record_crashes()
        containment.limit_memory(memory_limit)
        self.children = containment.ChildWatch(
            self.process, max_processes, self.interpreter.current_token
        )

    def claim(
        self,
        session_id: str,
        description: str,
        created_at: float,
        site_dir: str | None,
        placement: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Become session ``session_id``; an actor is claimed once, before it runs any code.
        What the session is (id, description, placement) lives here, so that a new front end
        can find it again."""
        if self.session_id:
            raise RuntimeError(f"this actor already serves session {self.session_id!r}")
        self.session_id = session_id
        self.description = description
        self.created_at = created_at
        self.placement = placement or {}
        self.started_at = time.time()
        self.interpreter.session_id = session_id
        if site_dir:
            self.interpreter.use_site_dir(Path(site_dir))
        return self.info()

    def info(self) -> dict[str, Any]:
        context = ray.get_runtime_context()
        return {
            "session_id": self.session_id,
            "description": self.description,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "pid": os.getpid(),
            "node_id": context.get_node_id(),
            "node_ip": ray.util.get_node_ip_address(),
            "pgid": self.pgid,
            "execution_count": self.interpreter.execution_count,
            "last_execution_time": self.interpreter.last_execution_time,
            "placement": self.placement,
        }

    def execute(self, code: str, token: str) -> dict[str, Any]:
        self.children.run_starting()
        killed = self.children.killed
        return self.children.annotate(self.interpreter.execute(code, token), killed)

    def run_script(self, path: str, args: list[str], token: str) -> dict[str, Any]:
        self.children.run_starting()
        killed = self.children.killed
        return self.children.annotate(self.interpreter.run_script(Path(path), args, token), killed)

    def install(
        self, specs: list[str], allow_urls: bool, timeout: float, token: str
    ) -> dict[str, Any]:
        return self.interpreter.install(specs, allow_urls=allow_urls, timeout=timeout, token=token)

    def variables(self) -> list[dict[str, Any]]:
        return self.interpreter.variables()

    def get_history(self, last: int | None) -> list[dict[str, Any]]:
        return self.interpreter.get_history(last)

    def complete(self, code: str, cursor_pos: int | None) -> dict[str, Any]:
        return self.interpreter.complete(code, cursor_pos)

    def inspect(self, code: str, cursor_pos: int | None) -> dict[str, Any]:
        return self.interpreter.inspect(code, cursor_pos)

    def snapshot(self) -> dict[str, Any]:
        return self.interpreter.snapshot()

    def restore(self, snapshot: dict[str, Any]) -> dict[str, Any]:
        """Load a ``snapshot()`` (passed by reference through the object store)."""
        report = self.interpreter.restore(snapshot["blobs"])
        report["not_preserved"].update(snapshot["not_preserved"])
        return report

    def save_snapshot(self, path: str) -> dict[str, Any]:
        return self.interpreter.save_snapshot(Path(path))

    def load_snapshot(self, path: str) -> dict[str, Any]:
        return self.interpreter.load_snapshot(Path(path))

    def get_blob(self, name: str) -> bytes:
        return self.interpreter.get_blob(name)

    def set_blob(self, name: str, blob: bytes) -> str:
        """``blob`` arrives through the object store when passed as another actor's result."""
        return self.interpreter.set_blob(name, blob)

    def ping(self) -> float:
        return time.time()

    def health(self) -> dict[str, Any]:
        with self.process.oneshot():
            return {
                "memory_usage": self.process.memory_info().rss,
                "cpu_percent": self.process.cpu_percent(None),
                "num_children": len(self.process.children(recursive=True)),
            }


RemoteSessionActor = ray.remote(SessionActor)
