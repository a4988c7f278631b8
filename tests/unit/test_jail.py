"""The PID namespace a confined process runs in (raykernel.kernel.confinement.descend), without
Ray: the confined process is PID 2 under a reaper, sees its own processes only, ends the way it
ended for its parent, and takes everything it started with it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

CHILD = textwrap.dedent(
    """
    import json, os, signal, subprocess, sys
    from raykernel.kernel import confinement
    if confinement.enter(False, {}) is not None:
        sys.exit(99)
    problem = confinement.descend()
    daemon = subprocess.Popen(["sleep", "300"], start_new_session=True)
    print(json.dumps({"pid": os.getpid(), "problem": problem, "daemon": daemon.pid,
                      "proc": sorted(int(p) for p in os.listdir("/proc") if p.isdigit())}),
          flush=True)
    how = sys.argv[1]
    if how == "exit":
        os._exit(7)
    if how == "wait":
        signal.pause()
    os.kill(os.getpid(), getattr(signal, how))
    """
)


def _confined(how: str) -> tuple[subprocess.Popen[str], dict]:
    proc = subprocess.Popen([sys.executable, "-c", CHILD, how], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if proc.poll() == 99:
        pytest.fail("this machine gives no PID namespace: the jail cannot be tested here")
    return proc, json.loads(line)


@pytest.mark.parametrize(
    ("how", "returncode"),
    [("exit", 7), ("SIGKILL", -signal.SIGKILL), ("SIGSEGV", -signal.SIGSEGV)],
)
def test_the_confined_process_is_pid_2_and_ends_as_it_ended(how: str, returncode: int) -> None:
    proc, seen = _confined(how)
    assert proc.wait(10) == returncode
    assert seen["pid"] == 2 and seen["problem"] is None
    assert seen["proc"] == [1, 2, seen["daemon"]]  # the reaper, itself and its daemon


def test_killing_the_waiter_takes_the_whole_namespace_down() -> None:
    proc, _seen = _confined("wait")
    tree = psutil.Process(proc.pid).children(recursive=True)
    assert len(tree) == 3  # reaper, confined process, its daemon (host PIDs)
    proc.kill()
    proc.wait(10)
    gone, alive = psutil.wait_procs(tree, timeout=10)
    assert alive == []
    assert len(gone) == 3


def test_the_waiter_and_reaper_are_bare_interpreters() -> None:
    proc, _seen = _confined("wait")
    try:
        reaper = psutil.Process(proc.pid).children()[0]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and "-S" not in reaper.cmdline():
            time.sleep(0.05)
        for process in (psutil.Process(proc.pid), reaper):
            assert process.cmdline()[1:3] == ["-I", "-S"]
            assert process.num_fds() <= 6  # the standard streams and the jail's pipes only
    finally:
        proc.kill()
        proc.wait(10)
