"""``python -m raykernel.kernel FD``: a kernel process, started by its session actor.

It reads its spec from the socket ``FD``, confines itself before anything else runs (no thread
may exist yet: namespaces and Landlock require it), then serves requests until its parent goes.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys

from . import wire
from .confinement import ConfinementRefused, confine


def die_with_parent() -> None:
    """A kernel never outlives the process that started it (an actor, or the server itself
    for a session it serves), even one killed with SIGKILL: its run may be a busy loop that
    never reads the socket's end. The parent thread is the one running its event loop, which
    lives as long as the parent."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def main(argv: list[str]) -> int:
    die_with_parent()
    sock = socket.socket(fileno=int(argv[1]))
    spec = wire.receive(sock)
    try:
        isolation = confine(spec)
    except ConfinementRefused as exc:
        wire.send(sock, {"event": "refused", "message": str(exc)})
        return 3
    from . import containment
    from .service import KernelService, prepare_process

    prepare_process()
    os.chdir(spec["workspace"])
    scripts = os.path.join(spec["workspace"], "scripts")
    if scripts not in sys.path:
        sys.path.insert(0, scripts)
    containment.limit_memory(spec.get("memory_limit", 0))
    service = KernelService(sock, spec)
    wire.send(sock, {"event": "ready", "pid": os.getpid(), "isolation": isolation})
    service.serve()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
