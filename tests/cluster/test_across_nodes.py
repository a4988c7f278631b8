"""Working with a session on another node than the front end: files through that node,
interrupts and health while it is busy, state moved between nodes, and what a front end needs
to join a cluster that uses Ray's token authentication."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.helpers import cluster_client, create
from tests.helpers import call, call_error, run

pytestmark = pytest.mark.subprocess

UNPICKLABLE = "import threading\nlock = threading.Lock()"


async def test_files_interrupts_and_state_moves_on_another_node(
    cluster: Any, tmp_path: Path
) -> None:
    head_id, worker_id = cluster.head_node.node_id, cluster.worker.node_id
    async with cluster_client(cluster, tmp_path) as client:
        far = await create(client, session_id="far", node_id=worker_id)
        near = await create(client, session_id="near", node_id=head_id)
        assert (far["node_id"], near["node_id"]) == (worker_id, head_id)

        # Files for a session are read and written on its node.
        await run(client, "open('outputs/from_far.txt', 'w').write('far')", session_id="far")
        read = await call(client, "read_file", path="outputs/from_far.txt", session_id="far")
        assert (read["content"], read["node_id"]) == ("far", worker_id)
        wrote = await call(
            client, "write_file", path="outputs/to_far.txt", content="hi", session_id="far"
        )
        assert wrote["node_id"] == worker_id
        assert (await run(client, "open('outputs/to_far.txt').read()", session_id="far"))[
            "result"
        ] == "'hi'"
        listing = await call(client, "list_files", path="outputs", session_id="far")
        assert listing["node_id"] == worker_id
        assert "outputs/to_far.txt" in {e["path"] for e in listing["entries"]}
        error = await call_error(
            client, "write_file", path="../escape.txt", content="x", session_id="far"
        )
        assert error.startswith("PathOutsideWorkspace:")
        assert not (tmp_path.parent / "escape.txt").exists()
        saved = await call(
            client, "save_script", name="far_tool", content="VALUE = 7", session_id="far"
        )
        assert saved["name"] == "far_tool"
        ran = await call(client, "run_script", name="far_tool", session_id="far")
        assert ran["success"] is True
        assert (await run(client, "VALUE", session_id="far"))["result"] == "7"

        # A timeout interrupts a busy loop on the other node; the state is kept.
        await run(client, "kept = 'yes'", session_id="far")
        spun = await run(client, "while True: pass", session_id="far", timeout=2)
        assert spun["interrupted"] is True and spun["restarted"] is False
        # Health of the busy remote session, then interrupt_session from another call.
        sleeping = asyncio.ensure_future(
            run(client, "import time\ntime.sleep(10**6)", session_id="far", timeout=60)
        )
        await asyncio.sleep(1.0)
        health = await call(client, "get_kernel_health", session_id="far")
        assert health["status"] == "busy" and health["memory_usage"] > 0
        assert (await call(client, "interrupt_session", session_id="far"))["interrupted"] is True
        stopped = await asyncio.wait_for(sleeping, 10)
        assert stopped["error"]["ename"] == "KeyboardInterrupt"
        assert (await run(client, "kept", session_id="far"))["result"] == "'yes'"

        # A background run on the other node: its output so far is read there, by the agent.
        started = await call(
            client,
            "run_python_code",
            code="import time\nfor i in range(50):\n    print('far tick', i)\n    time.sleep(0.2)",
            session_id="far",
            background=True,
        )
        await asyncio.sleep(1.5)
        status = await call(client, "get_run", run_id=started["run_id"])
        assert status["status"] == "running" and "far tick" in status["output_so_far"]
        stopped = await call(client, "cancel_run", run_id=started["run_id"])
        assert stopped["reply"]["state_preserved"] is True

        # State moves between the nodes: transfer, fork, snapshot and restore.
        await run(client, "import numpy as np\narr = np.arange(10)", session_id="near")
        moved = await call(
            client,
            "transfer_variable",
            from_session="near",
            to_session="far",
            name="arr",
            **{"as": "got"},
        )
        assert (moved["as"], moved["type"]) == ("got", "ndarray")
        assert (await run(client, "int(got.sum())", session_id="far"))["result"] == "45"

        await run(client, "counter = 1\n" + UNPICKLABLE, session_id="far")
        forked = await call(client, "fork_session", session_id="far", new_session_id="far2")
        assert "counter" in forked["restored"] and "lock" in forked["not_preserved"]
        assert (await run(client, "(counter, kept)", session_id="far2"))["result"] == "(1, 'yes')"
        # Variants on the far node: forks of its kernel there (even what cannot be pickled
        # is in a fork), or, asked for, copies in sessions of their own.
        cow = await call(
            client,
            "run_variants",
            session_id="far",
            variants=["v = (counter, str(type(lock)))"],
            compare=["v"],
        )
        assert cow["fork"] == "cow" and "lock" in cow["compare"]["v"][0]
        copied = await call(
            client,
            "run_variants",
            session_id="far",
            variants=["v = counter + 2", "v = counter + 3"],
            compare=["v"],
            fork="copy",
        )
        assert copied["fork"] == "copy" and copied["compare"]["v"] == ["3", "4"]

        snap = await call(client, "snapshot_session", session_id="far", name="far-snap")
        assert "lock" in snap["not_preserved"] and "got" in snap["saved"]
        restored = await call(client, "restore_session", snapshot="far-snap", session_id="near")
        assert restored["created"] is False and "lock" in restored["not_preserved"]
        assert (await run(client, "(int(got.sum()), counter)", session_id="near"))[
            "result"
        ] == "(45, 1)"


def _cluster_token() -> str:
    token = os.environ.get("RAY_AUTH_TOKEN")
    return token or (Path.home() / ".ray" / "auth_token").read_text().strip()


async def test_front_end_needs_the_cluster_token(cluster: Any, tmp_path: Path) -> None:
    """With token auth on, a front end without the token (or with a wrong one) answers every
    session tool with a RayUnavailable that says how to give it the token; with it, it works."""
    home = tmp_path / "home"  # no ~/.ray/auth_token here
    home.mkdir()
    no_token: dict[str, str | None] = {
        "HOME": str(home),
        "RAY_AUTH_TOKEN": None,
        "RAY_AUTH_TOKEN_PATH": None,
    }
    # RAY_AUTH_MODE unset, as a user would leave it: the front end turns token mode on
    # by itself when it has a token (Ray does so only for clusters it finds, not for an address).
    unset = {**no_token, "RAY_AUTH_MODE": None}
    for label, env in (("missing", no_token), ("wrong", {**unset, "RAY_AUTH_TOKEN": "0" * 32})):
        workspace = tmp_path / label
        workspace.mkdir()
        async with cluster_client(cluster, workspace, **env) as client:
            error = await call_error(client, "list_sessions")
        assert error.startswith("RayUnavailable:"), (label, error)
        assert "RAY_AUTH_TOKEN" in error, (label, error)

    workspace = tmp_path / "right"
    workspace.mkdir()
    started = time.monotonic()
    async with cluster_client(
        cluster, workspace, **{**unset, "RAY_AUTH_TOKEN": _cluster_token()}
    ) as client:
        assert (await run(client, "6 * 7"))["result"] == "42"
        health = await call(client, "get_kernel_health")
    assert health["node_id"] in {cluster.head_node.node_id, cluster.worker.node_id}
    print(f"front end with the token: first result in {time.monotonic() - started:.2f} s")
