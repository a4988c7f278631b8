"""The registry's rules (plain Python, no Ray): an id is reserved once and racing creators wait
for it; one front end at a time changes a session; a lease that outlives its holder passes on;
a deleted session is nobody's active session; run ids are found and bounded."""

from __future__ import annotations

import asyncio
import time

import pytest

from raykernel.actors import registry_actor as registry_state
from raykernel.actors.registry_actor import RegistryState


async def test_an_id_is_reserved_once_and_racers_wait_for_its_actor() -> None:
    state = RegistryState()
    assert state.reserve("a", "fe1") is None  # fe1 makes it
    assert state.reserve("a", "fe2")["state"] == "creating"  # fe2 waits
    waiter = asyncio.ensure_future(state.wait_settled("a", 5.0))
    await asyncio.sleep(0.01)
    assert not waiter.done()
    state.settle("a", "fe1", "actor-1", "live")
    entry = await waiter
    assert entry == {"actor": "actor-1", "state": "live", "epoch": 1}
    assert state.reserve("a", "fe2")["actor"] == "actor-1"


async def test_a_failed_creation_frees_the_id() -> None:
    state = RegistryState()
    assert state.reserve("a", "fe1") is None
    waiter = asyncio.ensure_future(state.wait_settled("a", 5.0))
    await asyncio.sleep(0)
    state.release("a", "fe1")
    assert await waiter is None
    assert state.reserve("a", "fe2") is None  # free again


def test_one_front_end_at_a_time_changes_a_session() -> None:
    state = RegistryState()
    state.reserve("a", "fe1")
    state.settle("a", "fe1", "actor-1", "live")
    granted, entry = state.lease("a", "fe1")
    assert granted and entry is not None and entry["actor"] == "actor-1"
    assert state.lease("a", "fe2")[0] is False
    assert state.lease("a", "fe1")[0] is False  # not re-entrant: two calls of one front end
    assert state.settle("a", "fe2", "actor-2", "live") is None  # not its lease
    assert state.settle("a", "fe1", None, "hibernated")["state"] == "hibernated"
    assert state.lease("a", "fe2")[0] is True


def test_a_lease_outliving_its_holder_passes_on(monkeypatch: pytest.MonkeyPatch) -> None:
    state = RegistryState()
    monkeypatch.setattr(registry_state, "LEASE_SECONDS", 0.0)
    assert state.reserve("a", "dead-front-end") is None
    time.sleep(0.01)
    assert state.reserve("a", "fe2") is None  # the abandoned creation is taken over
    assert state.settle("a", "dead-front-end", "x", "live") is None
    assert state.settle("a", "fe2", "actor-2", "live")["actor"] == "actor-2"


def test_a_deleted_session_is_nobodys_active_session_and_its_runs_are_not_listed() -> None:
    state = RegistryState()
    for sid in ("a", "b"):
        state.reserve(sid, "fe")
        state.settle(sid, "fe", f"actor-{sid}", "live")
    state.active_set("user:x", "a")
    state.add_runs([("run-1", "a"), ("run-2", "b")])
    assert state.run_session("run-1") == "a"
    assert state.runs_of(None) == {"a": ["run-1"], "b": ["run-2"]}
    state.remove("a")
    assert state.active_get("user:x") is None
    assert state.runs_of(None) == {"b": ["run-2"]}
    assert set(state.entries()) == {"b"}


def test_run_ids_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry_state, "MAX_RUNS", 3)
    state = RegistryState()
    state.add_runs([(f"run-{i}", "a") for i in range(5)])
    assert list(state.runs) == ["run-2", "run-3", "run-4"]


def test_adopting_never_overrides_what_the_registry_knows() -> None:
    state = RegistryState()
    state.reserve("a", "fe")
    state.settle("a", "fe", "actor-1", "live")
    assert state.adopt("a", "actor-old")["actor"] == "actor-1"
    assert state.adopt("b", None, "hibernated")["state"] == "hibernated"
