"""Every error of the hierarchy comes out of a process wall as it went in: the same class, the
same message, the same fields, as data (kernel -> actor) and as a pickle (actor -> front end
through Ray)."""

from __future__ import annotations

import pickle

import cloudpickle
import pytest

from raykernel import errors


def _instances() -> list[errors.RaykernelError]:
    made: list[errors.RaykernelError] = []
    for name, cls in sorted(errors.kinds().items()):
        if cls is errors.FunctionFailed:
            made.append(cls("ZeroDivisionError", "division by zero", "Traceback ..."))
        elif cls is errors.NodeFull:
            made.append(cls("node full", node_id="abc123"))
        else:
            made.append(cls(f"a {name}"))
    return made


@pytest.mark.parametrize("error", _instances(), ids=lambda e: e.kind)
def test_every_error_round_trips(error: errors.RaykernelError) -> None:
    for again in (
        errors.from_wire(error.to_wire()),
        pickle.loads(pickle.dumps(error)),
        cloudpickle.loads(cloudpickle.dumps(error)),
    ):
        assert type(again) is type(error)
        assert again.message == error.message and str(again) == str(error)
        assert again.fields() == error.fields()


def test_the_hierarchy_is_the_module_s() -> None:
    assert {"FunctionFailed", "NodeFull", "SessionNotFound", "KernelDied"} <= set(errors.kinds())
    assert len(errors.kinds()) >= 30


def test_what_is_not_an_error_of_ours_stays_a_plain_one() -> None:
    unknown = errors.from_wire({"kind": "os.system", "message": "rm -rf /"})
    assert type(unknown) is errors.RaykernelError and unknown.message == "rm -rf /"
    broken = errors.from_wire({"kind": "FunctionFailed", "message": "m", "fields": {}})
    assert type(broken) is errors.RaykernelError and "FunctionFailed" in broken.message


def test_a_kernel_cannot_tell_the_front_end_what_only_the_server_knows() -> None:
    moved = errors.SessionMoved("handed on").to_wire()
    told = errors.from_kernel(moved)
    assert type(told) is errors.RaykernelError and told.message == "SessionMoved: handed on"
    full = errors.from_kernel(errors.NodeFull("full", node_id="n1").to_wire())
    assert not isinstance(full, errors.NodeFull)
    refused = errors.from_kernel(errors.PathOutsideWorkspace("../x").to_wire())
    assert type(refused) is errors.PathOutsideWorkspace
