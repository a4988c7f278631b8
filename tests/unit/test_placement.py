"""Placement decisions, as pure functions over what ray.nodes() reports."""

from __future__ import annotations

import pytest

from raykernel.errors import InvalidArgument
from raykernel.sessions.cluster import Placement, actor_options, check_feasible, choose_node

A, B, C = "aa" * 28, "bb" * 28, "cc" * 28  # Ray node ids are 56 hex digits
NODES = [
    {"NodeID": A, "Alive": True, "Resources": {"CPU": 2.0, "memory": 8e9}},
    {"NodeID": B, "Alive": True, "Resources": {"CPU": 1.0, "memory": 8e9, "special": 1.0}},
    {"NodeID": C, "Alive": False, "Resources": {"CPU": 64.0, "GPU": 8.0}},
]


def options(placement: Placement) -> dict:
    return actor_options(placement, 0.0, None, "SPREAD")


def test_spread_picks_the_least_loaded_live_node() -> None:
    chosen = choose_node(Placement(), NODES, {A: 3, B: 1}, "SPREAD", options)
    assert (chosen.node_id, chosen.node_affinity) == (B, "hard")
    assert choose_node(Placement(), NODES, {}, "DEFAULT", options) == Placement()


def test_soft_affinity_prefers_its_node_while_it_can_hold_the_session() -> None:
    soft = Placement(node_id=B, node_affinity="soft")
    assert choose_node(soft, NODES, {B: 9}, "SPREAD", options).node_id == B
    lost = Placement(node_id=C, node_affinity="soft")  # a dead node: anywhere else
    assert choose_node(lost, NODES, {A: 1}, "SPREAD", options).node_id == B


@pytest.mark.parametrize(
    "placement",
    [
        Placement(num_gpus=1),
        Placement(resources={"nope": 1}),
        Placement(num_cpus=4),
        Placement(node_id=C),
        Placement(node_id=B, resources={"special": 2}),
    ],
)
def test_impossible_requests_are_refused(placement: Placement) -> None:
    with pytest.raises(InvalidArgument, match="no"):
        check_feasible(placement, options(placement), NODES)


def test_possible_requests_pass() -> None:
    for placement in (
        Placement(num_cpus=2),
        Placement(resources={"special": 1}),
        Placement(node_id=A, num_cpus=1),
    ):
        check_feasible(placement, options(placement), NODES)
