"""idle_timeout: abandoned sessions are deleted; used ones and "default" stay."""

from __future__ import annotations

import asyncio
from pathlib import Path

from fastmcp import Client

from tests.helpers import call, run


async def test_idle_sessions_are_deleted(server, workspace: Path) -> None:
    from raykernel.server.build import build_server
    from raykernel.settings import Settings

    # A second server on the Ray this test process already runs, with a 3 s idle timeout.
    mcp, _app = build_server(
        Settings(workspace=workspace, idle_timeout=3, warm_pool_size=0, config=None)
    )
    async with Client(mcp) as client:
        await call(client, "create_session", session_id="abandoned")
        # At once: starting the next session on a loaded machine may take longer than 3 s.
        await call(client, "switch_session", session_id="abandoned")
        await call(client, "create_session", session_id="in-use")
        for _ in range(14):
            await run(client, "1", session_id="in-use")
            await asyncio.sleep(0.5)
        listing = await call(client, "list_sessions")
        assert "abandoned" not in listing["sessions"]
        assert {"in-use", "default"} <= set(listing["sessions"])
        assert listing["active_session"] == "default"
