"""The warm pool: new sessions get a pre-started actor that nobody has used."""

from __future__ import annotations

import pytest
from fastmcp import Client

from raykernel.protocol import Claim
from tests.helpers import call, run


async def test_pooled_actor_is_fresh_and_the_pool_refills(client: Client, app) -> None:
    pool = app.router.pool
    # Embedded, Ray starts (and the pool fills) when a session first needs an actor: at its
    # first call (a new session is cold: no process until then).
    await call(client, "create_session", session_id="starts-ray")
    await run(client, "1", session_id="starts-ray")
    await pool.settled()
    assert len(pool) == app.settings.pool_size == 1  # the embedded default
    pooled = list(pool._ready)
    created = await call(client, "create_session", session_id="from-pool")
    record = app.router.sessions["from-pool"]
    assert record.handle is None and created["node_id"] is None  # cold: no process yet
    first = await run(
        client, "sorted(k for k in globals() if not k.startswith('__'))", session_id="from-pool"
    )
    assert record.handle in pooled  # its first call was handed a pre-started actor
    assert first["execution_count"] == 1 and "resumed" not in first
    assert first["result"] == "[]"
    assert created["status"] == "created"
    await pool.settled()
    assert len(pool) == 1  # refilled in the background
    for sid in ("from-pool", "starts-ray"):
        await call(client, "delete_session", session_id=sid)


async def test_an_actor_serves_one_session_only(client: Client, app) -> None:
    await call(client, "create_session", session_id="claimed")
    await run(client, "1", session_id="claimed")
    handle = app.router.sessions["claimed"].handle
    with pytest.raises(RuntimeError, match="already serves session 'claimed'"):
        await handle.claim(Claim("thief", "local", "", 0.0, "/nonexistent", {}, "on"), 30)
    await call(client, "delete_session", session_id="claimed")
