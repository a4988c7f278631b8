"""A confined process's own process tree, in a PID namespace of its own:

    parent (a session's actor) ── waiter   (the parent's child, in the host's namespace)
                                    └── reaper   (PID 1 of the new namespace, its own /proc)
                                          └── the confined process (PID 2: a kernel, an installer)

``unshare(CLONE_NEWPID)`` moves only the children its caller forks afterwards, so the process
that entered the namespaces forks, and its child is PID 1. PID 1 is no place for user code: the
signals it has no handler for are ignored when they come from inside, so code that kills its own
kernel would live on. A reaper is PID 1 instead and the confined process is forked below it.
When the reaper ends, Linux kills every process left in the namespace: nothing a session starts
(a daemon, a ``setsid`` child) outlives it.

The waiter and the reaper exec a bare interpreter (``-I -S``, a few MiB): whatever the confined
process imported before the fork is not kept alive three times. The waiter dies the way the
confined process died (the same signal, or the same exit status), so the parent reads the death
from its own child as it always did; it dies with its parent (the parent-death signal survives
``exec``), and the reaper dies with the waiter.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import select
import signal
import socket
import sys
import threading
from collections.abc import Iterable
from pathlib import Path

from . import namespaces

_PR_SET_PDEATHSIG = 1
# Where a session with an allow-listed network finds its proxy, on its own loopback.
PROXY_PORT = 3128

# The waiter's and the reaper's code, run by path with a bare interpreter (no import of
# raykernel: ``-I -S``), so that a process list shows what they are.
INIT = Path(__file__).with_name("jail_init.py")


def descend(proxy: str | None = None) -> str | None:
    """Fork into the tree above, right after ``namespaces.enter`` entered a PID namespace, and
    return in the confined process only (PID 2). The process that called it becomes the
    waiter, its child the reaper. Returns None when the namespace has its own ``/proc``, else
    why not (the host's then stays visible: the caller reports it). ``proxy``: the UNIX socket
    of the session's egress proxy, which the reaper serves on 127.0.0.1:3128 of the network
    namespace (bound here, before any user code exists)."""
    if threading.active_count() > 1:  # a new kernel has none; anything else must not fork
        raise RuntimeError("jail.descend runs first thing in a new, single-threaded process")
    alive_r, alive_w = os.pipe()  # the waiter holds the write end for as long as it lives
    status_r, status_w = os.pipe()
    listening = None
    if proxy is not None:
        listening = socket.create_server(("127.0.0.1", PROXY_PORT), backlog=128)
    reaper = os.fork()
    if reaper:
        _exec("waiter", reaper, status_r, keep=(alive_w,))
    _die_with_parent()
    os.close(alive_w)
    os.close(status_r)
    # The waiter may have died before the line above armed the signal: its pipe says so.
    if select.select([alive_r], [], [], 0)[0]:
        os._exit(1)
    os.close(alive_r)
    proc_problem = None
    try:
        namespaces.mount_proc()
    except namespaces.NamespacesUnavailable as exc:
        proc_problem = str(exc)
    confined = os.fork()
    if confined:
        if listening is None:
            _exec("reaper", confined, status_w)
        forward = (str(listening.fileno()), proxy or "")
        _exec("reaper", confined, status_w, keep=(listening.fileno(),), extra=forward)
    os.close(status_w)
    if listening is not None:
        listening.close()
    return proc_problem


def _die_with_parent() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _exec(
    role: str,
    child: int,
    status_fd: int,
    keep: Iterable[int] = (),
    extra: Iterable[str] = (),
) -> None:
    """Become a bare interpreter running ``jail_init.py`` as ``role``, with only the standard
    streams and the given descriptors open (never the kernel's socket)."""
    try:
        fds = {0, 1, 2, status_fd, *keep}
        for fd in fds:
            if fd > 2:
                os.set_inheritable(fd, True)
        _close_all_but(fds)
        argv = [sys.executable, "-I", "-S", str(INIT), role, str(child), str(status_fd), *extra]
        os.execv(sys.executable, argv)
    finally:
        os._exit(127)  # exec failed: the child is taken down with this process


def _close_all_but(keep: set[int]) -> None:
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if limit == resource.RLIM_INFINITY or limit > 1 << 20:
        limit = 1 << 20
    low = 3
    for fd in sorted(f for f in keep if f >= 3):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, limit)


# How much more the kernel's out-of-memory killer should prefer a confined process (a kernel,
# an installer) to anything else on the node (-1000..1000; raising it needs no privilege).
OOM_SCORE_ADJ = 800


def oom_first() -> None:
    """If the node runs out of memory anyway, let the OOM killer take a confined process (the
    biggest: the one using the memory) before an actor, Ray's own processes or the server."""
    with contextlib.suppress(OSError):
        with open("/proc/self/oom_score_adj", "w") as handle:
            handle.write(str(OOM_SCORE_ADJ))


def die_with_parent() -> None:
    """This process never outlives the one that started it (an actor, or the server itself for
    a session it serves), even one killed with SIGKILL: a kernel's run may be a busy loop that
    never reads its socket's end. The parent thread is the one running its event loop (or the
    installer's), which lives as long as the parent."""
    if sys.platform.startswith("linux"):
        _die_with_parent()
