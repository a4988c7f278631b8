"""Interrupting a running session from another process on the same node.

Ray runs a synchronous actor's methods on the worker's main thread and blocks SIGINT there. The
session unblocks it and installs a handler that raises KeyboardInterrupt only when the signal is
meant for the run in progress: the sender first writes that run's token to a per-PID file. A
signal that arrives late (after its run ended, or during the next run) finds another token and
is ignored, so an interrupt can never hit the wrong run.
"""

from __future__ import annotations

import os
import signal
import tempfile
from collections.abc import Callable
from pathlib import Path


def token_file(pid: int) -> Path:
    return Path(tempfile.gettempdir()) / f"raykernel-interrupt-{os.getuid()}-{pid}"


def request_interrupt(pid: int, token: str) -> None:
    """Ask the run ``token`` in process ``pid`` to stop. Raises ProcessLookupError if it is gone."""
    if pid <= 0:  # os.kill(0 or -n, ...) would signal whole process groups
        raise ValueError(f"not a process id: {pid}")
    path = token_file(pid)
    tmp = path.with_name(path.name + f".{os.getpid()}")
    tmp.write_text(token)
    os.replace(tmp, path)
    os.kill(pid, signal.SIGINT)


def install_handler(current_token: Callable[[], str | None]) -> None:
    """Install the SIGINT handler in this process; call on the main thread."""
    path = token_file(os.getpid())

    def _handler(signum: int, frame: object) -> None:
        token = current_token()
        if token is None:
            return
        try:
            wanted = path.read_text()
        except OSError:
            return
        if wanted == token:
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, _handler)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def clear_token_file(pid: int) -> None:
    try:
        token_file(pid).unlink()
    except OSError:
        pass
