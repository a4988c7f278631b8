"""The live output tail: what a reader outside the session sees while a run goes on, for code
and for an installer's output."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

from raykernel.actors.installer import run_installer
from raykernel.kernel.capture import LiveTail
from raykernel.kernel.interpreter import Interpreter


def _wait_for(predicate, timeout: float = 5.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    return predicate()


class Published:
    """What a kernel's tail would send its parent: the last (token, text)."""

    def __init__(self) -> None:
        self.last: dict[str, str] = {}

    def __call__(self, token: str, text: str) -> None:
        self.last = {token: text}


def test_tail_is_bounded_tokened_and_quiet_after_the_run() -> None:
    published = Published()
    tail = LiveTail(published, limit=50)
    tail.start("run-a")
    for i in range(100):
        tail.feed(f"line {i}\n")
    seen = _wait_for(lambda: published.last.get("run-a"))
    assert seen.endswith("line 99\n") and len(seen) <= 50 + len("line 99\n")
    assert "run-b" not in published.last  # only the run in progress is published
    tail.stop()
    published.last.clear()
    tail.feed("after the run\n")
    time.sleep(0.6)
    assert published.last == {}


def test_a_running_cell_is_published_while_it_runs(tmp_path: Path) -> None:
    (tmp_path / "outputs").mkdir()
    published = Published()
    interp = Interpreter("t", tmp_path, live=LiveTail(published))
    done: dict = {}
    runner = threading.Thread(
        target=lambda: done.update(
            interp.execute("import time\nprint('first')\ntime.sleep(1.5)\nprint('second')", "tok")
        )
    )
    runner.start()
    seen = _wait_for(lambda: published.last.get("tok"))
    runner.join()
    assert seen == "first\n"
    assert done["stdout"] == "first\nsecond\n"


def test_installer_output_streams_to_the_tail_and_into_the_reply() -> None:
    published = Published()
    tail = LiveTail(published)
    tail.start("install")
    command = [
        sys.executable,
        "-c",
        "import sys, time\nprint('Resolved 1 package', flush=True)\ntime.sleep(1.5)\n"
        "print('Installed 1 package', file=sys.stderr)",
    ]
    result: dict = {}
    runner = threading.Thread(
        target=lambda: result.update(out=run_installer(command, 30, tail.feed))
    )
    runner.start()
    seen = _wait_for(lambda: published.last.get("install"))
    runner.join()
    tail.stop()
    assert seen == "Resolved 1 package\n"
    stdout, stderr, ok = result["out"]
    assert (stdout, stderr, ok) == ("Resolved 1 package\n", "Installed 1 package\n", True)


def test_installer_timeout_is_reported() -> None:
    command = [sys.executable, "-c", "import time; time.sleep(30)"]
    started = time.monotonic()
    _stdout, stderr, ok = run_installer(command, 0.5, None)
    assert ok is False and "timed out after 0.5 s" in stderr
    assert time.monotonic() - started < 10
