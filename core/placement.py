"""Where a session runs: the resources it asks Ray for and which nodes may hold it.

Ray leaves an actor whose request no node can ever satisfy pending forever, silently; so a
request is checked against the cluster's nodes first and refused at once with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import InvalidArgument


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
