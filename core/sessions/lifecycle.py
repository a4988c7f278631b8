"""Session actors' lifecycle: starting one (placement, options), giving it its identity,
adopting it into a record, killing it with everything it started, and finding the sessions a
previous front end left on a cluster. The router and the warm pool call it.

The front end's view of the ``environments`` setting: a name to the interpreter a session's
kernel runs, checked once (its version, and that the kernel's code imports there) before any
session is created in it, so that a bad one is refused at create_session with the reason.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

import psutil

from raykernel.actors.environments import EnvironmentRefused, probe, support_folders
from raykernel.errors import InvalidArgument, NodeFull, RaykernelError, SessionUnavailable
from raykernel.kernel import containment
from raykernel.protocol import Claim, SessionStatus
from raykernel.sessions.cluster import Nodes, Placement, actor_options, check_feasible, choose_node
from raykernel.sessions.handle import ACTOR_NAME_PREFIX, SessionHandle, first_line
from raykernel.sessions.record import LOCAL, SessionRecord
from raykernel.settings import Settings, default_ray_temp
from raykernel.workspace import Workspaces

log = logging.getLogger(__name__)

# Creating an actor includes starting a Python worker; on a loaded 2-core machine that can take
# several seconds, and on a cluster scaling up much longer.
CREATE_TIMEOUT = 120.0


class Lifecycle:
    def __init__(
        self,
        settings: Settings,
        nodes: Nodes,
        sessions: dict[str, SessionRecord],
        workspaces: Workspaces,
        session_plugin_specs: list[str] | None = None,
        plugin_paths: list[str] | None = None,
    ) -> None:
        self.settings = settings
        self.nodes = nodes
        self.sessions = sessions  # the router's table, read for spreading sessions over nodes
        self.workspaces = workspaces
        self.session_plugin_specs = session_plugin_specs or []
        self.plugin_paths = plugin_paths or []
        self._isolation_reported = False
        # This front end's name among replicas: its pooled actors carry it, so that another
        # front end's rediscovery leaves them alone while it lives.
        self.holder = uuid.uuid4().hex[:12]

    def site_dir(self, record: SessionRecord) -> Path:
        """Where ``install_dependencies`` puts a session's packages (in the server's store,
        out of every other session's reach)."""
        return self.settings.store / "site" / owner_folder(record.owner) / record.session_id

    def install_cache(self, record: SessionRecord) -> Path:
        """The installer's cache of an identity (``local`` uses the user's own): one identity's
        build, when builds are allowed, must not plant what another's install would take."""
        return self.settings.store / "cache" / owner_folder(record.owner)

    def snapshot_dir(self, owner: str) -> Path:
        """Where identity ``owner``'s snapshots are kept (in the server's store: theirs only)."""
        return self.settings.store / "snapshots" / owner_folder(owner)

    def state_folders(self, owner: str) -> tuple[Path, ...]:
        """Every folder of ``owner``'s in the store that a session's actor writes."""
        store = self.settings.store
        folder = owner_folder(owner)
        return (self.snapshot_dir(owner), store / "images" / folder, store / "checkpoints" / folder)

    def checkpoints_dir(self, record: SessionRecord) -> Path:
        return self.settings.store / "checkpoints" / owner_folder(record.owner) / record.session_id

    def image_path(self, record: SessionRecord) -> Path:
        """Where a hibernated session's image is kept."""
        return (
            self.settings.store / "images" / owner_folder(record.owner) / f"{record.session_id}.zip"
        )

    def _memory_limit(self) -> int:
        limit = self.settings.session_memory_limit
        if limit is None:
            return psutil.virtual_memory().total // 4
        return limit

    def _actor_options(self, placement: Placement) -> dict[str, Any]:
        return actor_options(
            placement,
            self.settings.session_num_cpus,
            self.settings.session_memory,
            self.settings.placement_strategy,
        )

    def _sessions_per_node(self) -> dict[str, int]:
        load: dict[str, int] = {}
        for record in self.sessions.values():
            if record.node_id is not None:
                load[record.node_id] = load.get(record.node_id, 0) + 1
        return load

    def _actor_init(self, network: str | list[str] | None) -> dict[str, Any]:
        return {
            "workspace": str(self.settings.workspace),
            "store": str(self.settings.store),
            "max_file_bytes": self.settings.max_file_bytes,
            "max_output_bytes": self.settings.max_output_bytes,
            "plugin_specs": self.session_plugin_specs,
            "plugin_paths": self.plugin_paths,
            "memory_limit": self._memory_limit(),
            "max_processes": self.settings.max_session_processes,
            "max_image_bytes": self.settings.max_image_bytes,
            "isolation": self.settings.isolation,
            "network": network or self.settings.session_network,
            "checkpoint_depth": self.settings.checkpoint_depth,
            "checkpoint_max_bytes": self.settings.checkpoint_max_bytes,
            "interrupt_grace": self.settings.interrupt_grace,
            "memory_high_water": self.settings.memory_high_water,
            "memory_guard": self._node_guard(),
            "namespace": self.settings.namespace,
        }

    def _node_guard(self) -> dict[str, Any] | None:
        """On a cluster, what each node's memory guard is made with (an embedded server's
        front end watches its one node itself: None)."""
        if not self.settings.detached or not self.settings.memory_high_water:
            return None
        return {
            "high_water": self.settings.memory_high_water,
            "budget": self.settings.session_memory_budget,
            "grace": self.settings.interrupt_grace + 1.0,
        }

    async def start_actor(
        self,
        placement: Placement | None = None,
        network: str | list[str] | None = None,
        avoid: frozenset[str] = frozenset(),
    ) -> SessionHandle:
        """Start a session actor (no identity yet) and its kernel; wait until both are up.
        Ray starts here if it has not yet (on demand). ``avoid``: nodes not to spread to
        (past their memory mark)."""
        await self.nodes.runtime.ready()
        import ray

        placement = placement or Placement()
        strategy = "SPREAD" if avoid else self.settings.placement_strategy
        soft = placement.node_id is not None and placement.node_affinity == "soft"
        spread = placement.node_id is None and strategy == "SPREAD"
        if soft or spread or not placement.is_default:
            nodes = await asyncio.to_thread(ray.nodes)  # one GCS call for both decisions
            nodes = [n for n in nodes if n.get("NodeID") not in avoid]
            if not placement.is_default:
                # Also on restarts: a pinned session whose node is gone must fail now, not hang.
                check_feasible(placement, self._actor_options(placement), nodes)
            if soft or spread:
                placement = choose_node(
                    placement, nodes, self._sessions_per_node(), strategy, self._actor_options
                )
        options: dict[str, Any] = {
            "name": f"{ACTOR_NAME_PREFIX}{self.holder}-{uuid.uuid4().hex}",
            "namespace": self.settings.namespace,
            "max_restarts": 0,
            "max_task_retries": 0,  # never re-run user code
            "lifetime": "detached" if self.settings.detached else None,
            **self._actor_options(placement),
        }
        handle = SessionHandle.start(options, **self._actor_init(network))
        try:
            await handle.ready(CREATE_TIMEOUT)
        except BaseException:
            handle.kill()
            raise
        return handle

    def _report_isolation(self, isolation: dict[str, Any]) -> None:
        """Say once, at start, what confinement kernels get on this machine."""
        if not self._isolation_reported:
            self._isolation_reported = True
            log.info("session isolation: %s", isolation)

    async def spawn_local(self, record: SessionRecord) -> None:
        """Give ``record`` a session actor in this process (embedded mode, no Ray needed)."""
        handle = SessionHandle.start_local(**self._actor_init(record.network))
        try:
            await handle.ready(CREATE_TIMEOUT)
        except BaseException:
            handle.kill()
            raise
        await self.spawn(record, handle)

    async def spawn(self, record: SessionRecord, pooled: SessionHandle | None) -> None:
        """Give ``record`` a ready actor: ``pooled`` if given, else a new one. On a cluster, a
        node past its memory mark refuses the claim (``NodeFull``): a session not pinned there
        is tried on the other nodes, one after the other."""
        avoid: set[str] = set()
        while True:
            try:
                await self._spawn(record, pooled, frozenset(avoid))
                return
            except NodeFull as exc:
                pooled = None
                pinned = record.placement.node_id is not None
                if not self.settings.detached or pinned or exc.node_id in (None, *avoid):
                    raise
                avoid.add(exc.node_id)
                if len(avoid) >= await asyncio.to_thread(self.nodes.alive_count):
                    raise NodeFull(f"every node is past its memory mark ({exc.message})") from None

    async def _spawn(
        self, record: SessionRecord, pooled: SessionHandle | None, avoid: frozenset[str]
    ) -> None:
        handle = pooled
        try:
            if handle is None:
                handle = await self.start_actor(record.placement, record.network, avoid)
            claim = Claim(
                record.session_id,
                record.owner,
                record.description,
                record.created_at,
                str(self.site_dir(record)),
                dataclasses.asdict(record.placement),
                record.network,
                str(self.checkpoints_dir(record)) if record.checkpoint == "after_run" else None,
                str(self.install_cache(record)) if record.owner != LOCAL else None,
                str(self.workspaces.root_of(record.owner)),
                record.execution_count,
                record.environment,
                [str(folder) for folder in self.state_folders(record.owner)],
            )
            info = await handle.claim(claim, CREATE_TIMEOUT)
        except BaseException as exc:
            if handle is not None:
                handle.kill()
            if isinstance(exc, InvalidArgument):  # refused: the network off, here
                raise
            if isinstance(exc, SessionUnavailable):  # no answer in time, or no kernel
                raise SessionUnavailable(
                    f"session {record.session_id!r} did not start: {exc.message}"
                ) from None
            if isinstance(exc, RaykernelError):
                raise
            if isinstance(exc, Exception):
                raise SessionUnavailable(
                    f"session {record.session_id!r} failed to start: {first_line(str(exc))}"
                ) from exc
            raise
        self._report_isolation(info.get("isolation") or {})
        self.adopt(record, handle, info)

    def record_of(self, handle: SessionHandle, info: dict[str, Any]) -> SessionRecord:
        """A record for a claimed actor found in the namespace, from what it says."""
        record = SessionRecord(
            info["session_id"],
            info["description"],
            info["created_at"],
            owner=info.get("owner") or LOCAL,
            placement=Placement(**info.get("placement") or {}),
        )
        record.last_execution_time = info.get("last_execution_time")
        record.checkpoint = info.get("checkpoint", "off")
        self.adopt(record, handle, info)
        return record

    def adopt(self, record: SessionRecord, handle: SessionHandle, info: dict[str, Any]) -> None:
        """Point ``record`` at a ready, claimed actor described by ``info``."""
        record.handle = handle
        record.actor_name = handle.name
        self.refresh(record, info)

    def refresh(self, record: SessionRecord, info: dict[str, Any]) -> None:
        """What the actor says about itself, after it started or its kernel restarted."""
        record.pid = info["pid"]
        record.kernel_pid = info["kernel_pid"]
        record.isolation = info.get("isolation") or {}
        record.python_version = info.get("python_version") or record.python_version
        record.network = info.get("network", record.network)
        record.node_id = info["node_id"]
        record.node_ip = info["node_ip"]
        record.started_at = info["started_at"]
        record.status = SessionStatus.HEALTHY
        record.execution_count = info["execution_count"]
        record.death_reason = None

    async def kill(self, record: SessionRecord) -> None:
        """Kill the session's kernel (and everything it started) and its actor."""
        handle, record.handle = record.handle, None
        record.status = SessionStatus.DEAD
        if handle is None:
            return
        try:
            await handle.shutdown()
        except Exception as exc:  # the actor is gone or hung: at least its processes go
            log.warning("session %s did not shut down: %s", record.session_id, exc)
            if record.kernel_pid and self.nodes.is_local(record.node_id):
                await asyncio.to_thread(containment.kill_process_group, record.kernel_pid)
        handle.kill()
        if record.pid is not None and self.nodes.is_local(record.node_id):
            await asyncio.to_thread(_wait_gone, record.pid)


def owner_folder(owner: str) -> str:
    """A folder name for an identity (JWT subjects may hold any character)."""
    if owner == LOCAL:
        return owner
    return "id-" + hashlib.sha256(owner.encode()).hexdigest()[:24]


def _wait_gone(pid: int, timeout: float = 10.0) -> None:
    """Wait for a killed actor's process to exit (Ray kills it asynchronously)."""
    try:
        psutil.Process(pid).wait(timeout)
    except (psutil.Error, psutil.TimeoutExpired):
        pass


class EnvironmentTable:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._found: dict[str, dict[str, str]] = {}
        self._lock = asyncio.Lock()

    async def find(self, name: str) -> dict[str, str]:
        """The environment ``name`` as a claim carries it; ``InvalidArgument`` naming the
        configured ones, or saying why this one cannot run a kernel."""
        place = self.settings.environments.get(name)
        if place is None:
            known = ", ".join(sorted(self.settings.environments)) or "none are configured"
            raise InvalidArgument(f"no environment named {name!r} (environments: {known})")
        async with self._lock:
            if name not in self._found:
                self._found[name] = await asyncio.to_thread(self._probe, name, place)
        return self._found[name]

    def _probe(self, name: str, place: str) -> dict[str, Any]:
        first, last, targets = support_folders(self.settings.store / "environment-links")
        scratch = Path(tempfile.mkdtemp(prefix="raykernel-probe-"))
        network = self.settings.session_network
        sandbox = {
            "isolation": self.settings.isolation,
            "network": network if isinstance(network, str) else "off",
            "write": [str(scratch)],
            "read": [*targets, str(Path(first[0]).parent)],
            # Ray's folder on this node, with its sockets, as a kernel has it hidden.
            "hide": [str(p) for p in [default_ray_temp()] if p.exists()],
        }
        try:
            return probe(name, place, first, last, sandbox).as_dict()
        except EnvironmentRefused as exc:
            raise InvalidArgument(f"environment {name!r}: {exc}") from None
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
