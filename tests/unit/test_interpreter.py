"""The plain interpreter, driven without Ray."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pluggy
import pytest

from raykernel.actors.runbook import History
from raykernel.hookspecs import hookimpl
from raykernel.kernel.interpreter import Interpreter, Interrupts
from raykernel.pluginmanager import new_manager


@pytest.fixture
def interp(tmp_path: Path) -> Interpreter:
    (tmp_path / "outputs").mkdir()
    return Interpreter("t", tmp_path, max_output_bytes=2_000, site_dir=tmp_path / "site")


def test_last_expression_is_the_result_and_state_persists(interp: Interpreter) -> None:
    reply = interp.execute("x = 20\nprint('hello')\nx * 2 + 2")
    assert reply["success"] is True
    assert reply["stdout"] == "hello\n"
    assert reply["result"] == "42"
    assert reply["error"] is None
    assert reply["execution_count"] == 1
    assert interp.execute("x")["result"] == "20"
    assert interp.execute("x")["execution_count"] == 3


def test_none_and_statements_give_no_result(interp: Interpreter) -> None:
    assert interp.execute("None")["result"] is None
    assert interp.execute("y = 1")["result"] is None


def test_error_has_user_traceback_only(interp: Interpreter) -> None:
    reply = interp.execute("def f():\n    return 1/0\nf()")
    assert reply["success"] is False
    assert reply["error"]["ename"] == "ZeroDivisionError"
    tb = reply["error"]["traceback"]
    assert '"<cell-1>", line 2, in f' in tb
    assert "return 1/0" in tb
    assert "interpreter.py" not in tb


def test_syntax_error_runs_nothing(interp: Interpreter) -> None:
    reply = interp.execute("a = 1\nfor x in:")
    assert reply["error"]["ename"] == "SyntaxError"
    assert "a" not in interp.namespace


def test_stderr_is_captured_separately(interp: Interpreter) -> None:
    reply = interp.execute("import sys\nprint('out')\nprint('err', file=sys.stderr)")
    assert reply["stdout"] == "out\n"
    assert reply["stderr"] == "err\n"


def test_output_is_capped_with_marker(interp: Interpreter) -> None:
    reply = interp.execute("for i in range(100000): print('x' * 50)")
    assert len(reply["stdout"]) < 2_200
    assert "output truncated" in reply["stdout"]
    huge = interp.execute("'y' * 10**6")["result"]
    assert len(huge) < 2_200 and "truncated" in huge


def test_system_exit_is_reported_and_state_kept(interp: Interpreter) -> None:
    interp.execute("keep = 'me'")
    for code in ("import sys; sys.exit(3)", "raise SystemExit('bye')", "exit()"):
        reply = interp.execute(code)
        assert reply["success"] is False
        assert reply["error"]["ename"] == "SystemExit"
    assert interp.execute("keep")["result"] == "'me'"


def test_input_fails_fast(interp: Interpreter, monkeypatch: pytest.MonkeyPatch) -> None:
    import io
    import sys

    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    assert interp.execute("input('name? ')")["error"]["ename"] == "EOFError"


def test_new_files_under_outputs_are_reported(interp: Interpreter, tmp_path: Path) -> None:
    (tmp_path / "outputs" / "old.txt").write_text("old")
    code = (
        "open('outputs/old.txt', 'w').write('rewritten')\n"
        "import os; os.makedirs('outputs/sub', exist_ok=True)\n"
        "open('outputs/sub/new.csv', 'w').write('a,b')\n"
        "open('elsewhere.txt', 'w').write('not in outputs')"
    )
    old_cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        reply = interp.execute(code)
    finally:
        os.chdir(old_cwd)
    assert reply["success"], reply
    assert reply["new_files"] == ["outputs/sub/new.csv"]


def test_figures_are_saved_and_returned(interp: Interpreter, tmp_path: Path) -> None:
    reply = interp.execute(
        "import matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\n"
        "plt.plot([1, 2, 3])\nplt.figure()\nplt.plot([3, 1])"
    )
    assert reply["success"], reply["error"]
    assert reply["outputs"] == ["outputs/figure_t_1_1.png", "outputs/figure_t_1_2.png"]
    assert (tmp_path / "outputs" / "figure_t_1_1.png").read_bytes()[:4] == b"\x89PNG"
    assert [i["mime_type"] for i in reply["images"]] == ["image/png", "image/png"]
    # Figures are closed after each run: the next run returns none.
    assert interp.execute("1")["outputs"] == []


def test_run_script_sets_argv_and_merges_names(interp: Interpreter, tmp_path: Path) -> None:
    script = tmp_path / "job.py"
    source = (
        "import sys\nRESULT = sys.argv[1:]\nFILE = __file__\nprint(__name__)\n"
        "if __name__ == '__main__':\n    print('main')\n"
    )
    # The text is the actor's (read once); the file on disk by then is not read again.
    script.write_text("raise SystemExit('the file was read again')\n")
    reply = interp.run_script(script, source, ["--n", "3"])
    assert reply["stdout"] == "__main__\nmain\n"
    assert interp.execute("RESULT")["result"] == "['--n', '3']"
    assert interp.execute("FILE")["result"] == repr(str(script))


def test_variables_lists_user_names(interp: Interpreter) -> None:
    interp.execute("import os\nalpha = [1, 2]\n_hidden = 1\ndef fn(): pass")
    names = {v["name"]: v for v in interp.variables()}
    assert set(names) == {"alpha", "fn"}
    assert names["alpha"]["type"] == "list"
    assert names["alpha"]["repr"] == "[1, 2]"


def test_snapshot_restore_names_what_cannot_be_pickled(interp: Interpreter, tmp_path: Path) -> None:
    interp.execute(
        "import threading\ndata = {'a': [1, 2]}\nsq = lambda v: v * v\n"
        "lock = threading.Lock()\ngen = (i for i in range(3))"
    )
    snap = interp.snapshot()
    assert set(snap["not_preserved"]) == {"lock", "gen"}
    other = Interpreter("u", tmp_path)
    report = other.restore(snap["blobs"])
    assert "data" in report["restored"] and "sq" in report["restored"]
    assert other.execute("sq(data['a'][1])")["result"] == "4"


class _Policy:
    @hookimpl
    def before_execute(self, session_id: str, code: str) -> None:
        if "forbidden" in code:
            raise PermissionError("no forbidden code here")

    @hookimpl
    def after_execute(self, session_id: str, code: str, reply: dict) -> dict:
        return {"lines": code.count("\n") + 1, "session": session_id}


def test_execute_hooks_refuse_and_annotate(tmp_path: Path) -> None:
    pm: pluggy.PluginManager = new_manager()
    pm.register(_Policy())
    interp = Interpreter("h", tmp_path, hooks=pm.hook)
    refused = interp.execute("forbidden = 1")
    assert refused["success"] is False
    assert refused["error"]["ename"] == "ExecutionRefused"
    assert "no forbidden code here" in refused["error"]["evalue"]
    assert "forbidden" not in interp.namespace
    ok = interp.execute("a = 1\nb = 2")
    assert ok["extras"] == {"lines": 2, "session": "h"}


@pytest.mark.parametrize("code", ["while True: pass", "import time; time.sleep(10**6)"])
def test_interrupt_with_matching_token_stops_run_and_keeps_state(
    interp: Interpreter, code: str
) -> None:
    previous = signal.getsignal(signal.SIGINT)
    interrupts = Interrupts(interp.current_token)
    interrupts.install()
    try:
        interp.execute("before = 'kept'")
        timer = threading.Timer(0.3, interrupts.request, ("tok-1",))
        timer.start()
        started = time.monotonic()
        reply = interp.execute("partial = 1\n" + code, token="tok-1")
        assert time.monotonic() - started < 5
        assert reply["interrupted"] is True
        assert reply["error"]["ename"] == "KeyboardInterrupt"
        assert interp.execute("(before, partial)")["result"] == "('kept', 1)"
    finally:
        signal.signal(signal.SIGINT, previous)


def test_interrupt_for_another_run_is_ignored(interp: Interpreter) -> None:
    previous = signal.getsignal(signal.SIGINT)
    interrupts = Interrupts(interp.current_token)
    interrupts.install()
    try:
        timer = threading.Timer(0.2, interrupts.request, ("stale",))
        timer.start()
        reply = interp.execute("import time\ntime.sleep(0.6)\n'finished'", token="current")
        assert reply["success"] is True
        assert reply["result"] == "'finished'"
        assert interrupts.request("stale") is False
    finally:
        signal.signal(signal.SIGINT, previous)


def test_display_protocol_and_history_without_ray(
    interp: Interpreter, monkeypatch: pytest.MonkeyPatch
) -> None:
    import builtins

    # What the session actor does (display.install), undone after the test.
    monkeypatch.setattr(builtins, "display", interp.display, raising=False)
    reply = interp.execute(
        "class M:\n"
        "    def _repr_markdown_(self): return '*m*'\n"
        "    def __repr__(self): return 'M()'\n"
        "display(M(), 7)\n"
        "M"  # a class: its _repr_markdown_ is unbound and must not be called
    )
    assert reply["displays"] == [{"text/plain": "M()", "text/markdown": "*m*"}, {"text/plain": "7"}]
    assert reply["result"] == "<class '__main__.M'>" and reply["result_data"] == {}
    # The history is the session's (its actor keeps it across kernels), made from replies.
    history = History()
    history.record("display(M(), 7)", reply, 0.0)
    history.record("raise ValueError('bad')", interp.execute("raise ValueError('bad')"), 1.0)
    entries = history.last()
    assert [e["status"] for e in entries] == ["ok", "error"]
    assert entries[1]["error"] == "ValueError: bad"
    assert history.last(1) == entries[-1:]
