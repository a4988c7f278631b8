"""get_history, code_completion and inspect_object, answered from a session's live state."""

from __future__ import annotations

from fastmcp import Client

from tests.helpers import call, call_error, run


async def test_history_records_each_run(client: Client, scratch: str) -> None:
    await run(client, "x = 1\nprint('hello')", session_id=scratch)
    await run(client, "1/0", session_id=scratch)
    await run(client, "x + 1", session_id=scratch)
    await run(client, "while True: pass", session_id=scratch, timeout=1)
    history = await call(client, "get_history", session_id=scratch)
    entries = history["entries"]
    assert [e["status"] for e in entries] == ["ok", "error", "ok", "interrupted"]
    assert entries[0]["code"] == "x = 1\nprint('hello')" and entries[0]["stdout"] == "hello\n"
    assert entries[1]["error"].startswith("ZeroDivisionError")
    assert entries[2]["result"] == "2"
    assert [e["execution_count"] for e in entries] == [1, 2, 3, 4]
    assert all(e["started_at"] > 0 and e["execution_time"] is not None for e in entries)
    last = await call(client, "get_history", session_id=scratch, last=1)
    assert [e["execution_count"] for e in last["entries"]] == [4]


async def test_completion_and_inspection_from_live_names(client: Client, scratch: str) -> None:
    await run(
        client,
        "import collections\n"
        "def summarize(values, *, digits=2):\n"
        "    '''Mean of values, rounded.'''\n"
        "    return round(sum(values) / len(values), digits)\n"
        "measurements = [1, 2]",
        session_id=scratch,
    )
    done = await call(client, "code_completion", code="meas", session_id=scratch)
    assert "measurements" in [m["text"] for m in done["matches"]]
    assert (done["cursor_start"], done["cursor_end"]) == (0, 4)
    attr = await call(client, "code_completion", code="collections.Ord", session_id=scratch)
    assert "OrderedDict" in [m["text"] for m in attr["matches"]]
    assert attr["cursor_start"] == len("collections.")
    mid = await call(client, "code_completion", code="summ + 1", cursor_pos=4, session_id=scratch)
    assert "summarize" in [m["text"] for m in mid["matches"]]

    info = await call(client, "inspect_object", code="summarize", session_id=scratch)
    assert info["found"] is True and info["type"] == "function"
    assert "Mean of values" in info["docstring"]
    assert any("digits=2" in s for s in info["signatures"])
    nothing = await call(client, "inspect_object", code="no_such_name_here", session_id=scratch)
    assert nothing["found"] is False
    error = await call_error(client, "code_completion", code="ab", cursor_pos=9, session_id=scratch)
    assert error.startswith("InvalidArgument:")
