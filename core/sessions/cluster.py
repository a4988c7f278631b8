"""Ray, as the front end sees it: starting or joining it, its nodes, where a session may run.

Starting or joining Ray in the background, so the MCP handshake never waits for it.

A lean local Ray for an embedded server: only the processes one node needs.

``ray.init()`` on a laptop starts eleven processes. An embedded server needs the GCS, the raylet
(with the two agents it starts itself) and Ray's API server; it has no use for the autoscaler's
monitor (one node, nothing to scale), the log monitor (worker output never reaches the driver:
``log_to_driver=False``) or workers prestarted for tasks it never submits. Those cost about
140 MiB, so the head is started here with Ray's own ``RayParams`` (what ``ray start
--no-monitor`` uses), then joined by address. Ray keeps these parameters private: on any other
Ray version this falls back to a plain ``ray.init``, and says so in the log.

The nodes sessions run on: which one is this front end's, and whether one is alive.

Everything that must happen on a session's own node while the session is busy (an interrupt,
a measurement, the live output tail, a file operation) is asked of the session's actor, which
answers while its kernel runs code: no helper actor per node is needed.

Where a session runs: the resources it asks Ray for and which nodes may hold it.

Ray leaves an actor whose request no node can ever satisfy pending forever, silently; so a
request is checked against the cluster's nodes first and refused at once with the reason.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from raykernel.errors import InvalidArgument, RayUnavailable
from raykernel.settings import Settings

log = logging.getLogger(__name__)


class RayRuntime:
    """Owns this process's connection to Ray: started once, shut down once."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.node_id: str | None = None
        self._task: asyncio.Future[None] | None = None
        self._started_here = False
        self._head: LocalHead | None = None
        self._signals_reclaimed = False

    @property
    def started(self) -> bool:
        """Whether this process is connected to Ray (or is connecting)."""
        return self._task is not None and self._task.done() and self._task.exception() is None

    def start(self) -> None:
        """Begin connecting in a worker thread; ``ready()`` waits for it."""
        if self._task is None:
            self._task = asyncio.ensure_future(asyncio.to_thread(self._connect))

    async def ready(self) -> None:
        if self._task is None:
            self.start()
        assert self._task is not None
        try:
            await asyncio.shield(self._task)
        except RayUnavailable:
            raise
        except Exception as exc:  # ray.init raises many types; the client needs one
            raise RayUnavailable(explain_failure(exc, self.settings.ray_address)) from exc
        self._reclaim_signals()

    def _reclaim_signals(self) -> None:
        """Ray's core worker installs a C-level handler for SIGTERM/SIGINT that prints a stack
        and re-raises, killing the process before a graceful shutdown (and Ray's own cleanup) can
        finish. Re-installing the Python-level handlers puts the server's own back in charge."""
        if self._signals_reclaimed or threading.current_thread() is not threading.main_thread():
            return
        self._signals_reclaimed = True
        for signum in (signal.SIGTERM, signal.SIGINT):
            handler = signal.getsignal(signum)
            if handler is not None:
                signal.signal(signum, handler)

    def _connect(self) -> None:
        import ray

        kwargs = init_kwargs(self.settings.namespace, self.settings.dashboard)
        address = self.settings.ray_address
        if ray.is_initialized():
            log.info("Ray already initialized in this process; reusing it")
        elif address:
            log.info("connecting to Ray at %s", address)
            _use_token_if_available()
            kwargs.pop("include_dashboard")  # the cluster's own choice
            ray.init(address=address, **kwargs)
        else:
            self._start_local(kwargs)
        self._refuse_inside_ray_temp()
        self.node_id = ray.get_runtime_context().get_node_id()
        log.info("Ray ready (node %s)", self.node_id)

    def _refuse_inside_ray_temp(self) -> None:
        """Ray's temp folder as this node has it (a cluster's may be anywhere): the workspace
        and state_dir must be outside it (see ``Settings.refuse_inside``)."""
        try:
            from ray._private.worker import global_worker

            temp = Path(global_worker.node.get_session_dir_path()).parent
        except Exception:  # another Ray version: each session actor checks on its node
            return
        try:
            self.settings.refuse_inside(temp)
        except ValueError as exc:
            log.error("%s", exc)
            raise RayUnavailable(str(exc)) from None

    def _start_local(self, kwargs: dict[str, Any]) -> None:
        """A Ray of our own, never another one running on this machine (someone else's, on a
        shared host): the lean head, else what ``ray.init(address="local")`` starts."""
        import ray

        log.info("starting a local Ray")
        head = LocalHead(self.settings.dashboard)
        try:
            address = head.start()
        except Exception as exc:  # another Ray version: its private parameters moved
            head.shutdown()
            log.warning("starting Ray's usual processes (the lean head failed: %s)", exc)
            ray.init(
                address="local",
                num_cpus=os.cpu_count() or 1,
                _system_config={"memory_monitor_refresh_ms": 0},  # see LEAN_SYSTEM_CONFIG
                **kwargs,
            )
        else:
            kwargs.pop("include_dashboard")
            try:
                ray.init(address=address, **kwargs)
            except BaseException:
                head.shutdown()
                raise
            self._head = head
        self._started_here = True

    def shutdown(self) -> None:
        """Disconnect (and stop the local Ray if this runtime started it)."""
        if not self._started_here:
            return
        import ray

        if ray.is_initialized():
            ray.shutdown()
        if self._head is not None:
            self._head.shutdown()
            self._head = None
        self._started_here = False


def _use_token_if_available() -> None:
    """Ray turns token auth on by itself for a cluster it finds, never for an explicit address:
    the front end would then fail to join a token cluster (Ray 2.60's default) after a 20 s wait
    even with the token at hand. A token-mode client also joins a cluster without auth, so use
    the token whenever one is there and RAY_AUTH_MODE does not say otherwise."""
    try:
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )
    except ImportError:  # another Ray version: its own rules apply
        return
    maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


AUTH_HINT = (
    "The cluster uses Ray token authentication (on by default since Ray 2.60): give this "
    "process the cluster's token with RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token."
)


def explain_failure(exc: BaseException, address: str | None) -> str:
    """One message for a failed ray.init: where, why (each cause's first line), and the fix
    when anything in the chain speaks of authentication (a missing or wrong cluster token)."""
    reasons: list[str] = []
    texts: list[str] = []
    link: BaseException | None = exc
    while link is not None and len(reasons) < 4:
        text = str(link).strip()
        texts.append(text)
        first = text.splitlines()[0] if text else type(link).__name__
        reasons.append(
            first.replace("Last connection error: Traceback (most recent call last):", "").strip()
        )
        link = link.__cause__ or link.__context__
    message = f"Ray could not be {'reached at ' + address if address else 'started'}: "
    message += "; ".join(reversed(reasons))
    if any("auth" in text.lower() for text in texts):
        message += " " + AUTH_HINT
    return message


# Ray's system config for the lean head: no idle workers started ahead of demand (session
# actors have their own warm pool), and no memory monitor: it picks its victims by the actor's
# own memory, blind to the kernels (the actors' children) that hold it, and would kill an idle
# bystander. The front end's memory guard stops the session that uses the memory instead.
LEAN_SYSTEM_CONFIG = {
    "enable_worker_prestart": False,
    "prestart_worker_first_driver": False,
    "memory_monitor_refresh_ms": 0,
}


class LocalHead:
    """A one-node Ray head owned by this process; ``shutdown`` stops exactly its processes."""

    def __init__(self, dashboard: bool) -> None:
        self.dashboard = dashboard
        self.node: Any = None

    def params(self) -> Any:
        """Ray's parameters for the head."""
        from ray._private.parameter import RayParams

        return RayParams(
            num_cpus=os.cpu_count() or 1,
            include_dashboard=self.dashboard,
            include_log_monitor=False,
            no_monitor=True,
            _system_config=dict(LEAN_SYSTEM_CONFIG),
        )

    def start(self) -> str:
        """Start the head; its address for ``ray.init``."""
        from ray._private.authentication.authentication_token_setup import (
            enable_token_auth_by_default,
            ensure_token_if_auth_enabled,
        )
        from ray._private.node import Node

        params = self.params()
        # What ray.init does before it starts a cluster: the same token rules.
        enable_token_auth_by_default()
        ensure_token_if_auth_enabled(params._system_config, create_token_if_missing=True)
        self.node = Node(
            params, head=True, shutdown_at_exit=False, spawn_reaper=True, ray_init_cluster=True
        )
        return str(self.node.address)

    def shutdown(self) -> None:
        node, self.node = self.node, None
        if node is not None:
            node.kill_all_processes(check_alive=False, allow_graceful=True)


def init_kwargs(namespace: str, dashboard: bool) -> dict[str, Any]:
    """``ray.init`` arguments every connection of this server uses."""
    return {
        "namespace": namespace,
        "include_dashboard": dashboard,
        # Worker output must never reach this process's stdout (the stdio protocol).
        "log_to_driver": False,
        "logging_level": logging.WARNING,
    }


class Nodes:
    def __init__(self, runtime: RayRuntime) -> None:
        self.runtime = runtime

    @property
    def local_id(self) -> str | None:
        """This front end's node (None until Ray is up)."""
        return self.runtime.node_id

    def is_local(self, node_id: str | None) -> bool:
        return node_id is not None and node_id == self.runtime.node_id

    def alive(self, node_id: str | None) -> bool:
        """Whether Ray counts ``node_id`` alive (blocking: one GCS call)."""
        import ray

        try:
            return any(n["NodeID"] == node_id and n["Alive"] for n in ray.nodes())
        except Exception:
            return True  # cannot tell: do not claim the node is lost

    def alive_count(self) -> int:
        """How many nodes Ray counts alive (blocking: one GCS call)."""
        import ray

        return sum(1 for n in ray.nodes() if n["Alive"])


@dataclass(frozen=True)
class Placement:
    num_cpus: float | None = None
    num_gpus: float | None = None
    memory: int | None = None
    resources: dict[str, float] = field(default_factory=dict)
    node_id: str | None = None
    node_affinity: Literal["hard", "soft"] = "hard"

    @property
    def is_default(self) -> bool:
        return self == Placement()

    def describe(self) -> dict[str, Any]:
        wanted: dict[str, Any] = {
            k: v
            for k, v in (
                ("num_cpus", self.num_cpus),
                ("num_gpus", self.num_gpus),
                ("memory", self.memory),
            )
            if v
        }
        if self.resources:
            wanted["resources"] = dict(self.resources)
        if self.node_id:
            wanted["node_id"] = self.node_id
            wanted["node_affinity"] = self.node_affinity
        return wanted


def actor_options(
    placement: Placement, default_cpus: float, default_memory: int | None, strategy: str
) -> dict[str, Any]:
    """Ray actor options for ``placement``, settings supplying the defaults."""
    options: dict[str, Any] = {
        "num_cpus": placement.num_cpus if placement.num_cpus is not None else default_cpus,
    }
    if placement.num_gpus:
        options["num_gpus"] = placement.num_gpus
    memory = placement.memory or default_memory
    if memory:
        options["memory"] = memory
    if placement.resources:
        options["resources"] = dict(placement.resources)
    if placement.node_id:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(
            placement.node_id, soft=placement.node_affinity == "soft"
        )
    else:
        options["scheduling_strategy"] = strategy
    return options


def requested(options: dict[str, Any]) -> dict[str, float]:
    """The resources Ray actor ``options`` ask for, by Ray's resource names."""
    wanted = {
        "CPU": options.get("num_cpus") or 0,
        "GPU": options.get("num_gpus") or 0,
        "memory": options.get("memory") or 0,
        **options.get("resources", {}),
    }
    return {name: amount for name, amount in wanted.items() if amount}


def fits(options: dict[str, Any], total: dict[str, float]) -> bool:
    """Whether a node with resources ``total`` could ever hold an actor with ``options``."""
    return all(total.get(name, 0) >= amount for name, amount in requested(options).items())


def check_feasible(placement: Placement, options: dict[str, Any], nodes: list[dict]) -> None:
    """Refuse a request that no live node could ever satisfy (``nodes``: ``ray.nodes()``)."""
    wanted = requested(options)
    alive = [n for n in nodes if n.get("Alive")]
    if placement.node_id:
        chosen = [n for n in alive if n["NodeID"] == placement.node_id]
        if not chosen and placement.node_affinity == "hard":
            raise InvalidArgument(f"no live node has id {placement.node_id!r}")
        if chosen and placement.node_affinity == "hard":
            alive = chosen
    if any(fits(options, node.get("Resources", {})) for node in alive):
        return
    raise InvalidArgument(
        f"no node in the cluster can ever provide {wanted} "
        f"(nodes have: {[_summary(n) for n in alive]}); the request was refused, not queued"
    )


def _summary(node: dict) -> dict[str, float]:
    total = node.get("Resources", {})
    return {
        k: v for k, v in total.items() if not k.startswith("node:") and k != "object_store_memory"
    }


def choose_node(
    placement: Placement,
    nodes: list[dict],
    load: dict[str, int],
    strategy: str,
    options_for: Callable[[Placement], dict[str, Any]],
) -> Placement:
    """Resolve where an actor goes, as a hard node affinity when a node is chosen here.

    Measured with Ray 2.60: a soft node affinity may land elsewhere even when the node is up and
    has room, and SPREAD does not alternate reliably. So "soft" means: that node if it is alive
    and could hold the session, else anywhere; and without a node, the SPREAD strategy picks the
    live node (``nodes``) with the fewest sessions (``load``: sessions per node id)."""
    wanted = options_for(dataclasses.replace(placement, node_id=None))
    feasible = [
        n["NodeID"] for n in nodes if n.get("Alive") and fits(wanted, n.get("Resources", {}))
    ]
    if placement.node_id is not None:
        if placement.node_affinity == "hard" or placement.node_id in feasible:
            return dataclasses.replace(placement, node_affinity="hard")
        placement = dataclasses.replace(placement, node_id=None)
    if len(feasible) < 2 or strategy != "SPREAD":
        return placement
    target = min(feasible, key=lambda node_id: (load.get(node_id, 0), node_id))
    return dataclasses.replace(placement, node_id=target, node_affinity="hard")
