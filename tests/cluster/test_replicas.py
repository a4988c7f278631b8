"""Front ends as replicas: two HTTP front ends joined to one cluster (ray.cluster_utils, token
auth on) and namespace serve the same sessions. Clients alternate between them with the
stateless protocol, and a 2025-11-25 client stays on one; creation races across both end with
one actor; a front end killed with SIGKILL in the middle of runs loses none of them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastmcp import Client

from raykernel.server.http_security import token_hash
from tests.helpers import HttpServer, call, call_error, http_server_process, run

pytestmark = pytest.mark.subprocess

TOKENS = {"alice": "alice-secret", "bob": "bob-secret"}
PREFIX = "raykernel-session:"


@contextlib.contextmanager
def front_ends(cluster: Any, workspace: Path, **env: str) -> Iterator[list[HttpServer]]:
    """Two front ends of one namespace, started one after the other."""
    env = {"RAYKERNEL_RAY_ADDRESS": cluster.address, "RAYKERNEL_WARM_POOL_SIZE": "0", **env}
    with (
        http_server_process(workspace, "front-a.log", **env) as a,
        http_server_process(workspace, "front-b.log", **env) as b,
    ):
        yield [a, b]


def session_actors(cluster: Any) -> dict[str, list[str]]:
    """Session id -> names of the actors that claim it (this test's own Ray connection)."""
    import ray

    ray.init(address=cluster.address, namespace="raykernel", log_to_driver=False)
    try:
        claims: dict[str, list[str]] = {}
        for name in ray.util.list_named_actors():
            if name.startswith(PREFIX):
                info = ray.get(ray.get_actor(name).info.remote(), timeout=60)
                claims.setdefault(info["session_id"], []).append(name)
        return claims
    finally:
        ray.shutdown()


async def test_two_front_ends_serve_the_same_sessions(cluster: Any, tmp_path: Path) -> None:
    hashes = json.dumps({name: token_hash(token) for name, token in TOKENS.items()})
    with front_ends(cluster, tmp_path, RAYKERNEL_AUTH_TOKENS=hashes) as [(a, *_), (b, *_)]:
        async with (
            Client(a, auth=TOKENS["alice"]) as alice_a,
            Client(b, auth=TOKENS["alice"]) as alice_b,
            Client(b, auth=TOKENS["bob"]) as bob_b,
            Client(b, auth=TOKENS["alice"], mode="legacy") as pinned,
        ):
            # Made on A, used on B (and back), state kept across them.
            await call(alice_a, "create_session", session_id="shared")
            await run(alice_a, "x = 20", session_id="shared")
            assert (await run(alice_b, "x += 1; x", session_id="shared"))["result"] == "21"
            assert (await run(alice_a, "x * 2", session_id="shared"))["result"] == "42"
            listing = await call(alice_b, "list_sessions")
            assert "shared" in listing["sessions"]

            # The active session chosen on A is the active one on B (stateless: per identity);
            # the pinned 2025-11-25 client keeps its own.
            await call(alice_a, "switch_session", session_id="shared")
            assert (await run(alice_b, "x"))["session_id"] == "shared"
            assert (await run(pinned, "1"))["session_id"] == "default"
            await call(pinned, "switch_session", session_id="shared")
            assert (await run(pinned, "x"))["result"] == "21"

            # Ownership holds on every front end: bob does not see alice's session.
            assert "SessionNotFound" in await call_error(
                bob_b, "run_python_code", code="x", session_id="shared"
            )
            assert "shared" not in (await call(bob_b, "list_sessions"))["sessions"]

            # A background run taken by A is followed, and its reply fetched, on B; a run
            # queued behind it from B runs after it, once.
            started = await call(
                alice_a,
                "run_python_code",
                code="import time\ntime.sleep(2)\nlog = ['bg']",
                session_id="shared",
                background=True,
            )
            queued = await call(
                alice_b,
                "run_python_code",
                code="log.append('after')",
                session_id="shared",
                background=True,
            )
            done = await call(alice_b, "get_run", run_id=started["run_id"], wait=60)
            assert done["status"] == "done" and done["reply"]["success"] is True
            after = await call(alice_a, "get_run", run_id=queued["run_id"], wait=60)
            assert after["reply"]["success"] is True
            assert (await run(alice_a, "log", session_id="shared"))["result"] == "['bg', 'after']"
            assert "RunNotFound" in await call_error(bob_b, "get_run", run_id=started["run_id"])
            runs = {r["run_id"] for r in (await call(alice_a, "list_runs"))["runs"]}
            assert {started["run_id"], queued["run_id"]} <= runs

            # Cancel on B a run taken by A (state kept); interrupt on A a run sent to B.
            hang = await call(
                alice_a,
                "run_python_code",
                code="import time\nwhile True: time.sleep(0.05)",
                session_id="shared",
                background=True,
            )
            await asyncio.sleep(1.0)
            cancelled = await call(alice_b, "cancel_run", run_id=hang["run_id"])
            assert cancelled["cancelled"] is True and cancelled["was"] == "running"
            assert cancelled["reply"]["state_preserved"] is True
            sleeper = asyncio.ensure_future(
                run(alice_b, "import time\ntime.sleep(60)", session_id="shared")
            )
            await asyncio.sleep(1.5)
            interrupted = await call(alice_a, "interrupt_session", session_id="shared")
            assert interrupted["interrupted"] is True
            reply = await asyncio.wait_for(sleeper, 30)
            assert reply["interrupted"] is True
            assert (await run(alice_a, "x", session_id="shared"))["result"] == "21"

            # Deleted on B: gone on A too (not revived), and nobody's active session.
            await call(alice_b, "delete_session", session_id="shared")
            assert "SessionNotFound" in await call_error(
                alice_a, "run_python_code", code="x", session_id="shared"
            )
            assert (await run(alice_a, "1"))["session_id"] == "default"
    assert "shared" not in session_actors(cluster)


async def test_creation_races_across_front_ends_end_with_one_actor(
    cluster: Any, tmp_path: Path
) -> None:
    with front_ends(cluster, tmp_path) as [(a, _, token), (b, *_)]:
        # Both front ends share state_dir, so they share the local token.
        clients = [Client(url, auth=token) for url in (a, b) * 10]
        async with contextlib.AsyncExitStack() as stack:
            for client in clients:
                await stack.enter_async_context(client)
            replies = await asyncio.gather(
                *(call(c, "create_session", session_id="race") for c in clients)
            )
            assert sum(r["status"] == "created" for r in replies) == 1, replies
            assert (await run(clients[0], "v = 1", session_id="race"))["success"]
            assert (await run(clients[1], "v", session_id="race"))["result"] == "1"
            assert len(session_actors(cluster)["race"]) == 1
            await call(clients[1], "delete_session", session_id="race")
    assert "race" not in session_actors(cluster)


async def test_a_front_end_killed_mid_runs_loses_none_of_them(cluster: Any, tmp_path: Path) -> None:
    sessions = ["k0", "k1", "k2"]
    with front_ends(cluster, tmp_path) as [(a, proc_a, token), (b, *_)]:
        async with Client(b, auth=token) as other:
            for sid in sessions:
                await call(other, "create_session", session_id=sid)
                await run(other, "done = []", session_id=sid)
            doomed = Client(a, auth=token, timeout=120)
            await doomed.__aenter__()
            background = []
            for i in range(10):
                sid = sessions[i % 3]
                code = f"import time\ntime.sleep(0.5)\ndone.append('bg{i}')"
                started = await call(
                    doomed, "run_python_code", code=code, session_id=sid, background=True
                )
                background.append((sid, started["run_id"]))
            foreground = [
                asyncio.ensure_future(
                    run(
                        doomed,
                        f"import time\ntime.sleep(0.5)\ndone.append('fg{i}')",
                        session_id=sessions[i % 3],
                    )
                )
                for i in range(5)
            ]
            await asyncio.sleep(1.0)
            proc_a.send_signal(signal.SIGKILL)
            proc_a.wait(30)
            for task in foreground:  # lost to their client only
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(task, 30)
            with contextlib.suppress(Exception):
                await doomed.__aexit__(None, None, None)

            for _sid, run_id in background:
                view = await call(other, "get_run", run_id=run_id, wait=120)
                assert view["status"] == "done" and view["reply"]["success"] is True, view
            deadline = time.monotonic() + 120
            while True:  # the foreground runs finish in their sessions
                marks = [(await run(other, "done", session_id=sid))["result"] for sid in sessions]
                if all(f"'fg{i}'" in "".join(marks) for i in range(5)):
                    break
                if time.monotonic() > deadline:
                    break
                await asyncio.sleep(1.0)
            logged = "".join(marks)
            for i in range(10):
                assert logged.count(f"'bg{i}'") == 1, logged
            for i in range(5):
                assert logged.count(f"'fg{i}'") == 1, logged
            listed = (await call(other, "list_runs"))["runs"]
            assert sum(not r["background"] and r["status"] == "done" for r in listed) >= 5
            for sid in sessions:
                await call(other, "delete_session", session_id=sid)
    assert set(session_actors(cluster)) <= {"default"}
