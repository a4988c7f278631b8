"""Session actors' lifecycle: starting one (placement, options), giving it its identity,
adopting it into a record, restarting it, and killing it with everything it started.

A mixin of SessionRouter, like StateMoves: it uses the router's settings, warm pool, runtime
and node agents.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

from . import containment
from .errors import RaykernelError, SessionUnavailable
from .formatting import first_line
from .interrupts import clear_token_file
from .live_output import clear_live_file
from .placement import Placement, actor_options, check_feasible, choose_node

if TYPE_CHECKING:
    from .router import SessionRecord, SessionRouter

log = logging.getLogger(__name__)

ACTOR_NAME_PREFIX = "raykernel-session:"
# Creating an actor includes starting a Python worker; on a loaded 2-core machine that can take
# several seconds, and on a cluster scaling up much longer.
CREATE_TIMEOUT = 120.0


class ActorLifecycle:
    def _memory_limit(self: SessionRouter) -> int:
        limit = self.settings.session_memory_limit
        if limit is None:
            return psutil.virtual_memory().total // 4
        return limit

    def _site_dir(self: SessionRouter, session_id: str) -> Path:
        return self.settings.workspace / ".raykernel" / "site" / session_id

    def _actor_options(self: SessionRouter, placement: Placement) -> dict[str, Any]:
        return actor_options(
            placement,
            self.settings.session_num_cpus,
            self.settings.session_memory,
            self.settings.placement_strategy,
        )

    def _sessions_per_node(self: SessionRouter) -> dict[str, int]:
        load: dict[str, int] = {}
        for record in self.sessions.values():
            if record.node_id is not None:
                load[record.node_id] = load.get(record.node_id, 0) + 1
        return load

    async def _start_actor(self: SessionRouter, placement: Placement | None = None) -> Any:
        """Start a session actor (no identity yet) and wait until it is ready."""
        import ray

        from raykernel.actors.session_actor import RemoteSessionActor

        placement = placement or Placement()
        strategy = self.settings.placement_strategy
        soft = placement.node_id is not None and placement.node_affinity == "soft"
        spread = placement.node_id is None and strategy == "SPREAD"
        if soft or spread or not placement.is_default:
            nodes = await asyncio.to_thread(ray.nodes)  # one GCS call for both decisions
            if not placement.is_default:
                # Also on restarts: a pinned session whose node is gone must fail now, not hang.
                check_feasible(placement, self._actor_options(placement), nodes)
            if soft or spread:
                placement = choose_node(
                    placement, nodes, self._sessions_per_node(), strategy, self._actor_options
                )
        options: dict[str, Any] = {
            "name": ACTOR_NAME_PREFIX + uuid.uuid4().hex,
            "namespace": self.settings.namespace,
            "max_restarts": 0,
            "max_task_retries": 0,  # never re-run user code
            "lifetime": "detached" if self.detached else None,
            **self._actor_options(placement),
        }
        handle = RemoteSessionActor.options(**options).remote(
            str(self.settings.workspace),
            max_output_bytes=self.settings.max_output_bytes,
            plugin_specs=self.session_plugin_specs,
            memory_limit=self._memory_limit(),
            max_processes=self.settings.max_session_processes,
            max_image_bytes=self.settings.max_image_bytes,
        )
        try:
            await asyncio.wait_for(
                asyncio.wrap_future(handle.ping.remote().future()), CREATE_TIMEOUT
            )
        except BaseException:
            with contextlib.suppress(Exception):
                ray.kill(handle, no_restart=True)
            raise
        return handle

    async def _spawn(self: SessionRouter, record: SessionRecord) -> None:
        """Give ``record`` a ready actor: a pooled one if there is one, else a new one."""
        import ray

        # Pooled actors have the default placement; other requests get an actor of their own.
        handle = self.pool.take() if record.placement.is_default else None
        try:
            if handle is None:
                handle = await self._start_actor(record.placement)
            claim = handle.claim.remote(
                record.session_id,
                record.description,
                record.created_at,
                str(self._site_dir(record.session_id)),
                dataclasses.asdict(record.placement),
            )
            info = await asyncio.wait_for(asyncio.wrap_future(claim.future()), CREATE_TIMEOUT)
        except BaseException as exc:
            if handle is not None:
                with contextlib.suppress(Exception):
                    ray.kill(handle, no_restart=True)
            if isinstance(exc, RaykernelError):
                raise
            if isinstance(exc, TimeoutError):
                raise SessionUnavailable(
                    f"session {record.session_id!r} did not start within {CREATE_TIMEOUT:g} s"
                ) from None
            if isinstance(exc, Exception):
                raise SessionUnavailable(
                    f"session {record.session_id!r} failed to start: {first_line(str(exc))}"
                ) from exc
            raise
        self._adopt(record, handle, info)

    def _adopt(
        self: SessionRouter, record: SessionRecord, handle: Any, info: dict[str, Any]
    ) -> None:
        """Point ``record`` at a ready, claimed actor described by ``info``; a session on
        another node gets that node's interrupt agent started now (a cold worker takes ~1 s)."""
        record.handle = handle
        record.pid = info["pid"]
        record.node_id = info["node_id"]
        record.node_ip = info["node_ip"]
        record.pgid = info["pgid"] if info["pgid"] == info["pid"] else None
        record.started_at = info["started_at"]
        record.status = "healthy"
        record.execution_count = info["execution_count"]
        record.death_reason = None
        record.process = None
        if not self.is_local(record):
            self.node_agent(record.node_id).ping.remote()  # warm it up
        if self.is_local(record):
            with contextlib.suppress(psutil.Error):
                record.process = psutil.Process(record.pid)
                record.process.cpu_percent(None)

    async def _respawn(self: SessionRouter, record: SessionRecord, reason: str) -> None:
        log.info("restarting session %s: %s", record.session_id, reason)
        await self._kill(record)
        record.restart_count += 1
        record.status = "starting"
        await self._spawn(record)
        self._notify("session_created", session_id=record.session_id, info=self._info(record, True))

    async def _kill(self: SessionRouter, record: SessionRecord) -> None:
        """Kill the actor and everything it started; return once its processes are gone."""
        processes = self._terminate(record)
        if processes:
            await asyncio.to_thread(_wait_gone, processes)
        if record.pgid is not None and self.is_local(record):
            # Orphans that left the process tree but not the session's process group.
            await asyncio.to_thread(containment.kill_process_group, record.pgid)

    def _terminate(self: SessionRouter, record: SessionRecord) -> list[psutil.Process]:
        """Ask Ray to kill the actor and kill its children now (no waiting); return the
        processes to reap. The process group is killed once the actor has gone: killing it
        first would race Ray's own kill and be reported as an unexpected worker death."""
        import ray

        if record.handle is None:
            return []
        processes: list[psutil.Process] = []
        if record.process is not None:
            processes.append(record.process)
            with contextlib.suppress(psutil.Error):
                processes += record.process.children(recursive=True)
        with contextlib.suppress(Exception):
            ray.kill(record.handle, no_restart=True)
        record.handle = None
        record.status = "dead"
        if record.pid is not None and self.is_local(record):
            for child in processes[1:]:
                with contextlib.suppress(psutil.Error):
                    child.kill()
            clear_token_file(record.pid)
            clear_live_file(record.pid)
            containment.read_crash(record.pid)  # removes the note
        return processes


def _wait_gone(processes: list[psutil.Process], timeout: float = 10.0) -> None:
    """Reap ``processes``, killing again any that survived (a child forked meanwhile)."""
    _, alive = psutil.wait_procs(processes, timeout=timeout)
    for process in alive:
        with contextlib.suppress(psutil.Error):
            process.kill()
