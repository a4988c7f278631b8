"""Metrics through Ray's own metrics: after a few runs, the node's Prometheus export (Ray's
metrics agent, with ray[default]) has raykernel's sessions gauge and run counters."""

from __future__ import annotations

import asyncio
import re
import time
import urllib.request

import ray
from fastmcp import Client

from tests.helpers import run


def _scrape() -> str:
    node = next(n for n in ray.nodes() if n["Alive"] and n["MetricsExportPort"] > 0)
    url = f"http://{node['NodeManagerAddress']}:{node['MetricsExportPort']}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


def _value(text: str, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def test_runs_and_sessions_reach_rays_metrics_export(client: Client, scratch: str) -> None:
    before = await asyncio.to_thread(_scrape)
    ok_before = _value(before, "ray_raykernel_runs_total", operation="execute", outcome="ok")
    err_before = _value(before, "ray_raykernel_runs_total", operation="execute", outcome="error")
    for _ in range(3):
        await run(client, "1 + 1", session_id=scratch)
    await run(client, "1 / 0", session_id=scratch)
    deadline = time.monotonic() + 60
    text = ""
    while time.monotonic() < deadline:  # Ray's agent exports every 10 s
        text = await asyncio.to_thread(_scrape)
        ok = _value(text, "ray_raykernel_runs_total", operation="execute", outcome="ok")
        err = _value(text, "ray_raykernel_runs_total", operation="execute", outcome="error")
        live = _value(text, "ray_raykernel_sessions", status="healthy")
        if ok - ok_before >= 3 and err - err_before >= 1 and live >= 1:
            break
        await asyncio.sleep(2)
    # At least, not exactly: the first scrape is up to 10 s old, so earlier tests' runs that
    # had not been exported yet count too.
    ok = _value(text, "ray_raykernel_runs_total", operation="execute", outcome="ok")
    assert ok - ok_before >= 3
    errors = _value(text, "ray_raykernel_runs_total", operation="execute", outcome="error")
    assert errors - err_before >= 1
    assert _value(text, "ray_raykernel_sessions", status="healthy") >= 1
    assert re.search(r"^ray_raykernel_run_seconds_bucket\{", text, re.M)
