"""The two small processes of a confined process's PID namespace (see ``jail``), run as
``python -I -S jail_init.py ROLE CHILD STATUS_FD``: no import of raykernel, a few MiB each.

* ``waiter`` (in the host's namespace, its parent's child): wait for the reaper, then end the
  way the confined process ended (its wait status comes through STATUS_FD; the reaper's own
  when the reaper was killed before it could say), so that the parent reads the death as if the
  confined process were its own child.
* ``reaper`` (PID 1 of the namespace): reap every orphan; when the confined process (CHILD)
  ends, pass its wait status on and end, which takes the rest of the namespace with it.
"""

import os
import resource
import signal
import sys


def waiter(reaper: int, status: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C is the server's to take
    while True:
        try:
            own = os.waitpid(reaper, 0)[1]
            break
        except InterruptedError:
            continue
    said = os.read(status, 32)
    code = int(said) if said else own
    if os.WIFSIGNALED(code):
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if os.WTERMSIG(code) not in (signal.SIGKILL, signal.SIGSTOP):
            signal.signal(os.WTERMSIG(code), signal.SIG_DFL)
        os.kill(os.getpid(), os.WTERMSIG(code))
    os._exit(os.WEXITSTATUS(code) if os.WIFEXITED(code) else 1)


def reaper(confined: int, status: int) -> None:
    while True:
        try:
            pid, code = os.wait()
        except ChildProcessError:
            os._exit(0)
        except InterruptedError:
            continue
        if pid == confined:
            os.write(status, str(code).encode())
            os._exit(0)


if __name__ == "__main__":
    role, child, status_fd = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    (waiter if role == "waiter" else reaper)(child, status_fd)
