"""A deputy's threads reach their tenant's folders and nothing else, even when the code they
run checks nothing (a fooled deputy): the second wall behind ``raykernel.beneath``."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

import pytest

from raykernel.deputy import Deputy
from raykernel.kernel import landlock

pytestmark = pytest.mark.skipif(landlock.abi_version() < 1, reason="no Landlock here")


def _read(path: str) -> str:
    with open(path) as handle:  # no check at all: the deputy's rules are what holds
        return handle.read()


@pytest.fixture
def places(tmp_path: Path) -> tuple[Path, Path, Path]:
    tenant, other = tmp_path / "alice", tmp_path / "bob"
    tenant.mkdir()
    other.mkdir()
    secret = other / "secret.txt"
    secret.write_text("bob's")
    return tenant, other, secret


def test_a_fooled_deputy_reads_no_outside_file_through_a_planted_link(places) -> None:
    tenant, _other, secret = places
    (tenant / "notes.txt").write_text("alice's")
    (tenant / "link.txt").symlink_to(secret)  # what session code can plant in its workspace
    deputy = Deputy([tenant])
    try:
        assert deputy.call(_read, str(tenant / "notes.txt")) == "alice's"
        with pytest.raises(PermissionError):
            deputy.call(_read, str(tenant / "link.txt"))
        with pytest.raises(PermissionError):
            deputy.call(_read, str(secret))
        with pytest.raises(PermissionError):
            deputy.call(_read, os.path.expanduser("~/.bashrc"))
        assert deputy.confinement["by"].startswith("landlock ABI ")
    finally:
        deputy.close()
    # Only its own threads are held: this one still reads what the server user may.
    assert _read(str(secret)) == "bob's"


def test_a_fooled_deputy_writes_and_deletes_only_inside(places) -> None:
    tenant, other, secret = places

    def write(path: str) -> None:
        Path(path).write_text("x")

    deputy = Deputy([tenant])
    try:
        asyncio.run(deputy.run(write, str(tenant / "new.txt")))
        assert (tenant / "new.txt").read_text() == "x"
        with pytest.raises(PermissionError):
            deputy.call(write, str(other / "planted.py"))
        with pytest.raises(PermissionError):
            deputy.call(os.unlink, str(secret))
        with pytest.raises(PermissionError):  # a rename out is a write outside too
            deputy.call(os.replace, str(tenant / "new.txt"), str(other / "moved.txt"))
    finally:
        deputy.close()
    assert not (other / "planted.py").exists() and secret.exists()


def test_every_thread_of_the_pool_is_held(places) -> None:
    tenant, _other, secret = places
    deputy = Deputy([tenant], threads=3)
    barrier = threading.Barrier(3, timeout=10)

    def held() -> str:
        barrier.wait()  # three calls at once: three threads, each started by the pool
        try:
            _read(str(secret))
        except PermissionError:
            return threading.current_thread().name
        return "read it"

    async def three() -> list[str]:
        return list(await asyncio.gather(*(deputy.run(held) for _ in range(3))))

    try:
        names = asyncio.run(three())
    finally:
        deputy.close()
    assert "read it" not in names and len(set(names)) == 3


def test_the_probe_says_what_the_threads_found(places) -> None:
    tenant, _other, secret = places
    deputy = Deputy([tenant])
    try:
        found = deputy.probe([str(secret), str(tenant), str(tenant / "missing")])
    finally:
        deputy.close()
    assert found[str(secret)] == "denied"
    assert found[str(tenant)] == "opened"
    assert found[str(tenant / "missing")].startswith("not there")
