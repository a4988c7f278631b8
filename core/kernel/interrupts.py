"""Interrupting the run in progress in a kernel, with the run's token.

The kernel's parent asks for an interrupt of run ``token``; the kernel's reader thread, if that
run is the one in progress, sends SIGINT to the main thread (``pthread_kill``: a blocking call
such as ``time.sleep`` is woken, as with Ctrl-C). The handler raises KeyboardInterrupt only
while that run is still in progress, so a late request can never hit the next run. Code that
replaces the handler (or C code that never returns to Python) is not stopped: the parent then
kills the kernel.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable


class Interrupts:
    def __init__(self, current_token: Callable[[], str | None]) -> None:
        self.current_token = current_token
        self._wanted: str | None = None
        self._main = threading.main_thread().ident

    def install(self) -> None:
        """Install the SIGINT handler; call on the main thread."""
        signal.signal(signal.SIGINT, self._handler)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})

    def request(self, token: str) -> bool:
        """Interrupt run ``token`` if it is the one in progress; False if it is not."""
        if token != self.current_token():
            return False
        self._wanted = token
        assert self._main is not None
        signal.pthread_kill(self._main, signal.SIGINT)
        return True

    def _handler(self, signum: int, frame: object) -> None:
        token = self.current_token()
        if token is not None and token == self._wanted:
            self._wanted = None
            raise KeyboardInterrupt
