"""The session actor: one Ray actor per session, a thin async shell over ``SessionHost``.

User code does not run here: it runs in the session's kernel process, which the host starts
and which has no Ray in it. The actor is the Ray side of the session (placement, lifecycle,
object-store transfers, installs, file operations on its node) and, being async, answers
interrupts, health, the live output tail and files while the kernel is busy. It imports
nothing of the front end (fastmcp, the router) to stay small.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from raykernel import telemetry
from raykernel.actors.host import HostConfig, SessionHost
from raykernel.errors import InvalidArgument, NodeFull, SessionUnavailable
from raykernel.protocol import Claim, RunKind
from raykernel.settings import default_ray_temp
from raykernel.workspace import WorkspaceOp

log = logging.getLogger(__name__)

Trace = dict[str, str] | None  # a W3C trace context carrier (telemetry.carrier())


def ray_session_dir() -> list[str]:
    """Ray's folder on this node (its processes' sockets): kernels must not see it. Outside
    a Ray worker (a session served by the front end before Ray starts) it is where Ray will
    put it, made now so that it can be covered."""
    try:
        if "ray" not in sys.modules:
            raise LookupError("no Ray in this process")
        from ray._private.worker import global_worker

        return [str(Path(global_worker.node.get_session_dir_path()).parent)]
    except Exception:  # no Ray here yet, or another Ray version: its default place
        root = default_ray_temp()
        root.mkdir(mode=0o755, parents=True, exist_ok=True)
        return [str(root)]


def refuse_hidden(workspace: Path, store: Path, hidden: list[str]) -> None:
    """A workspace or store inside a folder kernels cannot see (Ray's, on this node) would
    kill every kernel at start: say so, naming both, instead."""
    for name, place in (("workspace", workspace), ("state_dir", store)):
        real = Path(os.path.realpath(place))
        for folder in map(Path, hidden):
            if real == folder or real.is_relative_to(folder):
                raise SessionUnavailable(
                    f"the {name} {real} is inside Ray's temp folder {folder} on this node, "
                    "which every session's kernel sees as an empty folder (Ray's sockets are "
                    f"hidden from it): move the {name}, or Ray's temp folder "
                    "(ray start --temp-dir)"
                )


def ray_node() -> dict[str, str | None]:
    """This process's Ray node, if it is a Ray worker (a session served by the front end is
    not one: it says so with no node)."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized() or ray.get_runtime_context().worker.mode != 1:
        return {"node_id": None, "node_ip": None}
    return {
        "node_id": ray.get_runtime_context().get_node_id(),
        "node_ip": ray.util.get_node_ip_address(),
    }


def cluster_addresses() -> list[str]:
    """The addresses of the cluster's nodes (its GCS, raylets, object stores): an allow-listed
    session reaches them only if its list names them. None outside a Ray worker."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized() or ray.get_runtime_context().worker.mode != 1:
        return []
    try:
        return sorted({node["NodeManagerAddress"] for node in ray.nodes() if node.get("Alive")})
    except Exception:
        return []


def package_dirs(plugin_specs: list[str]) -> list[str]:
    """Where the session plugins' modules live (an editable install is outside site-packages),
    for the kernel to read them."""
    import importlib.util

    dirs = []
    for spec in plugin_specs:
        found = importlib.util.find_spec(spec.partition(":")[0].split(".")[0])
        for location in (found.submodule_search_locations or []) if found else []:
            dirs.append(str(location))
        if found is not None and found.origin and not found.submodule_search_locations:
            dirs.append(str(Path(found.origin).parent))
    return dirs


class SessionActor:
    def __init__(
        self,
        workspace: str,
        store: str,
        *,
        max_file_bytes: int = 10_000_000,
        max_output_bytes: int = 100_000,
        plugin_specs: list[str] | None = None,
        plugin_paths: list[str] | None = None,
        memory_limit: int = 0,
        max_processes: int = 0,
        max_image_bytes: int = 1_000_000,
        isolation: str = "confined",
        network: str | list[str] = "on",
        checkpoint_depth: int = 20,
        checkpoint_max_bytes: int = 1 << 30,
        interrupt_grace: float = 5.0,
        memory_high_water: float = 0.0,
        memory_guard: dict[str, Any] | None = None,
        namespace: str = "raykernel",
    ) -> None:
        """Everything a session needs except its identity, which ``claim`` gives it: an actor
        can be started ahead of time (the warm pool) and handed to the next new session."""
        plugin_specs = plugin_specs or []
        hidden = ray_session_dir()
        refuse_hidden(Path(workspace), Path(store), hidden)
        self.host = SessionHost(
            HostConfig(
                workspace=Path(workspace),
                store=Path(store),
                max_file_bytes=max_file_bytes,
                max_output_bytes=max_output_bytes,
                max_image_bytes=max_image_bytes,
                memory_limit=memory_limit,
                max_processes=max_processes,
                plugin_specs=plugin_specs,
                isolation=isolation,
                network=network,
                hide=hidden,
                read=[*package_dirs(plugin_specs), *(plugin_paths or [])],
                python_path=plugin_paths or [],
                checkpoint_depth=checkpoint_depth,
                checkpoint_max_bytes=checkpoint_max_bytes,
                interrupt_grace=interrupt_grace,
                memory_high_water=memory_high_water,
            )
        )
        # On a cluster, the node's memory guard to register with (see memory_guard); None when
        # the front end watches (an embedded server: one node).
        self.memory_guard = memory_guard
        self.namespace = namespace
        self._guarded: asyncio.Future[None] | None = None
        self.process = psutil.Process()
        telemetry.configure_from_env()

    async def ready(self) -> None:
        """Spawn the kernel process, which waits for the claim's spec."""
        await self.host.prepare()

    async def claim(self, claim: Claim) -> dict[str, Any]:
        """Become session ``claim.session_id``; an actor is claimed once, before it runs any
        code. What the session is lives here, so that a new front end can find it again."""
        self.host.net.cluster_nodes = cluster_addresses()
        try:
            await self.host.claim(claim)
        except NodeFull as exc:
            exc.node_id = ray_node()["node_id"]  # for the front end to place it elsewhere
            raise
        if self.memory_guard is not None:
            self._guarded = asyncio.ensure_future(self._register_with_guard(claim))
        return await self.info()

    async def _register_with_guard(self, claim: Claim) -> None:
        """On a cluster: keep this session known to its node's memory guard (one actor per
        node, made by the first session there). The call is held by the guard and made again,
        so a guard that restarted learns of the session anew."""
        import ray

        from raykernel.actors.memory_guard import node_guard

        myself = ray.get_runtime_context().current_actor
        key = f"{claim.owner}/{claim.session_id}"
        while True:
            try:
                guard = await asyncio.to_thread(node_guard, self.memory_guard, self.namespace)
                await guard.watch.remote(key, claim.owner, myself)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("session %s: its node's memory guard: %s", key, exc)
                await asyncio.sleep(5.0)

    async def info(self) -> dict[str, Any]:
        return {**(await self.host.info()), "pid": os.getpid(), **ray_node()}

    def _continued(self, trace: Trace, operation: str) -> Any:
        """This side of a traced call: a span in the caller's trace (exported when this
        process is configured to export)."""
        return telemetry.continued(
            trace,
            f"raykernel.actor.{operation}",
            session_id=self.host.session_id,
            node_id=ray_node()["node_id"],
        )

    async def book_run(
        self,
        run_id: str,
        kind: RunKind,
        args: list[Any],
        timeout: float,
        background: bool = False,
        trace: Trace = None,
    ) -> dict[str, Any]:
        with self._continued(trace, kind):
            return self.host.book_run(run_id, kind, args, timeout, background)

    async def restart_kernel(self, reason: str) -> dict[str, Any]:
        async with self.host.book.exclusive():  # between runs, whichever front end sent them
            await self.host.restart_kernel(reason)
        return await self.info()

    async def workspace(self, op: WorkspaceOp, args: list[Any]) -> dict[str, Any]:
        reply = await self.host.workspace(op, args)
        reply["node_id"] = ray_node()["node_id"]
        return reply

    async def measure(self) -> dict[str, Any]:
        report = await self.host.measure()
        report["actor_memory"] = self.process.memory_info().rss
        return report

    async def perform(self, operation: Callable[..., Any], *args: Any) -> Any:
        """The one entry of this wall: ``operation`` is a method of ``SessionActor`` or of
        ``SessionHost`` (the function itself, sent by reference: a misspelt one is an
        AttributeError where the front end names it, never a string to look up here)."""
        if operation in ACTOR_OPERATIONS:
            result = operation(self, *args)
        elif operation in HOST_OPERATIONS:
            result = operation(self.host, *args)
        else:
            raise InvalidArgument(f"not an operation of a session: {operation!r}")
        return await result if inspect.isawaitable(result) else result

    async def ping(self) -> float:
        import time

        return time.time()

    async def recycle(self) -> None:
        self._stop_guarding()
        await self.host.recycle()

    def _stop_guarding(self) -> None:
        if self._guarded is not None:
            self._guarded.cancel()
            self._guarded = None

    async def shutdown(self) -> None:
        self._stop_guarding()
        await self.host.shutdown()


def _operations(cls: type, leave_out: set[str]) -> frozenset[Callable[..., Any]]:
    return frozenset(
        value
        for name, value in vars(cls).items()
        if callable(value) and not name.startswith("_") and name not in leave_out
    )


# What ``perform`` may call: the actor's own operations, and the host's that the actor does not
# wrap (a host method the actor has a method of the same name for is reached through the actor's).
# A run reaches the kernel only through the run book (``book_run``), and the kernel is started
# only by ``ready`` and ``claim``: the host's run starts and kernel starts are not operations.
RUN_AND_KERNEL_STARTS = {"execute", "run_script", "call_function", "install", "start", "prepare"}
ACTOR_OPERATIONS = _operations(SessionActor, {"perform"})
HOST_OPERATIONS = _operations(SessionHost, set(vars(SessionActor)) | RUN_AND_KERNEL_STARTS)


def remote_class() -> Any:
    """The actor class. Its methods are async: Ray serves them concurrently on the actor's
    event loop, so an interrupt or a health check is answered while a run awaits its kernel.
    Made on first use, so that a front end that never starts Ray never imports it."""
    global _remote
    if _remote is None:
        import ray

        _remote = ray.remote(SessionActor)
    return _remote


_remote: Any = None
