"""Callers that go away, hostile paths planted by code, and many clients at once."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from fastmcp import Client

from tests.helpers import call, call_error, run


async def test_cancelled_call_interrupts_its_run_and_the_session_recovers(
    client: Client, app
) -> None:
    sid = f"cancel-{time.monotonic_ns()}"
    await call(client, "create_session", session_id=sid)
    await run(client, "kept = 'before'", session_id=sid)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(
            client.call_tool(
                "run_python_code",
                {"code": "import time\nstarted = 1\ntime.sleep(10**6)", "session_id": sid},
            ),
            1.5,
        )
    started = time.monotonic()
    reply = await run(client, "(kept, started)", session_id=sid)
    assert time.monotonic() - started < 5
    assert reply["result"] == "('before', 1)"
    assert reply["restarted"] is False
    await call(client, "delete_session", session_id=sid)


async def test_symlinks_planted_by_code_do_not_lead_out(
    client: Client, workspace: Path, tmp_path: Path
) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("original")
    await run(
        client,
        f"import os\nos.symlink({str(victim)!r}, 'outputs/planted-file')\n"
        f"os.symlink({str(tmp_path)!r}, 'outputs/planted-dir')",
    )
    for tool, args in [
        ("read_file", {"path": "outputs/planted-file"}),
        ("write_file", {"path": "outputs/planted-file", "content": "pwned"}),
        ("write_file", {"path": "outputs/planted-dir/victim.txt", "content": "pwned"}),
        ("delete_file", {"path": "outputs/planted-dir/victim.txt"}),
        ("list_files", {"path": "outputs/planted-dir"}),
    ]:
        error = await call_error(client, tool, **args)
        assert error.startswith("PathOutsideWorkspace:"), (tool, error)
    assert victim.read_text() == "original"


async def test_sixteen_clients_with_a_spinning_neighbour(server, client: Client) -> None:
    ids = [f"load{i}" for i in range(16)]
    await asyncio.gather(*(call(client, "create_session", session_id=s) for s in ids))
    await call(client, "create_session", session_id="neighbour")
    spinner = asyncio.ensure_future(
        run(client, "while True: pass", session_id="neighbour", timeout=20)
    )

    async def worker(sid: str) -> list[dict]:
        async with Client(server) as own:
            replies = []
            for i in range(5):
                replies.append(await run(own, f"mine = {sid!r}\nmine + ':{i}'", session_id=sid))
            replies.append(
                await run(own, "sorted(k for k in globals() if k == 'mine')", session_id=sid)
            )
            return replies

    started = time.monotonic()
    results = await asyncio.gather(*(worker(s) for s in ids))
    assert time.monotonic() - started < 60
    for sid, replies in zip(ids, results, strict=True):
        assert all(r["success"] for r in replies)
        assert replies[-2]["result"] == repr(f"{sid}:4")
        assert replies[-1]["result"] == "['mine']"
    # No cross-session visibility: the neighbour never saw anyone's variable.
    await call(client, "interrupt_session", session_id="neighbour")
    assert (await spinner)["interrupted"] is True
    assert (await run(client, "'mine' in globals()", session_id="neighbour"))["result"] == "False"
    for sid in [*ids, "neighbour"]:
        await call(client, "delete_session", session_id=sid)
