"""Create/delete churn returns actors, processes and temp files to their baseline.

The suite runs RAYKERNEL_CHURN_CYCLES cycles (default 60, to fit CI). The full soak:
    RAYKERNEL_CHURN_CYCLES=1000 .venv/bin/pytest --timeout=1800 tests/reliability/test_churn.py
"""

from __future__ import annotations

import itertools
import os
import tempfile
from pathlib import Path

import psutil
import ray
from fastmcp import Client

from tests.helpers import call, run

CYCLES = int(os.environ.get("RAYKERNEL_CHURN_CYCLES", "60"))


def _temp_files_of_dead_processes() -> list[str]:
    """Kernels' temp folders (raykernel-kernel-<actor pid>-...) whose actor is gone."""
    dead = []
    for path in Path(tempfile.gettempdir()).glob("raykernel-kernel-*-*"):
        pid = int(path.name.split("-")[2])
        if not psutil.pid_exists(pid):
            dead.append(path.name)
    return dead


def _session_actors() -> set[str]:
    return {n for n in ray.util.list_named_actors() if n.startswith("raykernel-session:")}


async def test_create_delete_churn_returns_to_baseline(client: Client, app, workspace) -> None:
    baseline_files = set(_temp_files_of_dead_processes())  # left by other tests' kills
    baseline_actors = len(_session_actors())  # live sessions plus the warm pool
    pids = []
    for i in range(CYCLES):
        sid = f"churn{i}"
        await call(client, "create_session", session_id=sid)
        assert (await run(client, "1 + 1", session_id=sid))["result"] == "2"
        # The kernel's host PID (inside its own PID namespace it is always 2).
        pids.append((await call(client, "get_kernel_health", session_id=sid))["pid"])
        await call(client, "delete_session", session_id=sid)
    # Every cycle had a new process (PIDs may be recycled over a long run, not back to back).
    assert all(a != b for a, b in itertools.pairwise(pids))
    leftover = [
        p
        for p in pids
        if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
    ]
    assert leftover == []
    await app.router.pool.settled()
    assert len(_session_actors()) == baseline_actors
    assert set(_temp_files_of_dead_processes()) <= baseline_files
    assert not any((app.settings.store / "site" / "local").glob("churn*"))
    assert ray.is_initialized()
