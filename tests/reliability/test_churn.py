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

from tests.conftest import call, run

CYCLES = int(os.environ.get("RAYKERNEL_CHURN_CYCLES", "60"))


def _our_temp_files() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob(f"raykernel-*-{os.getuid()}-*")}


def _named_actor_exists(name: str, namespace: str) -> bool:
    try:
        ray.get_actor(name, namespace=namespace)
    except ValueError:
        return False
    return True


async def test_create_delete_churn_returns_to_baseline(client: Client, app, workspace) -> None:
    baseline_files = _our_temp_files()
    pids = []
    for i in range(CYCLES):
        sid = f"churn{i}"
        await call(client, "create_session", session_id=sid)
        reply = await run(client, "import os\nos.getpid()", session_id=sid)
        pids.append(int(reply["result"]))
        await call(client, "delete_session", session_id=sid)
    # Every cycle had a new process (PIDs may be recycled over a long run, not back to back).
    assert all(a != b for a, b in itertools.pairwise(pids))
    leftover = [
        p
        for p in pids
        if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
    ]
    assert leftover == []
    names = [f"raykernel-session:churn{i}" for i in range(CYCLES)]
    assert [n for n in names if _named_actor_exists(n, app.settings.namespace)] == []
    assert _named_actor_exists("raykernel-session:default", app.settings.namespace)
    assert _our_temp_files() <= baseline_files
    assert not any((workspace / ".raykernel" / "site").glob("churn*"))
    assert ray.is_initialized()
