"""The two small processes of a confined process's PID namespace (see ``confinement``), run as
``python -I -S jail_init.py ROLE CHILD STATUS_FD [LISTEN_FD PROXY_PATH]``: no import of
raykernel, a few MiB each.

* ``waiter`` (in the host's PID namespace, its parent's child): wait for the reaper, then end the
  way the confined process ended (its wait status comes through STATUS_FD; the reaper's own
  when the reaper was killed before it could say), so that the parent reads the death as if the
  confined process were its own child.
* ``reaper`` (PID 1 of the namespace): reap every orphan; when the confined process (CHILD)
  ends, pass its wait status on and end, which takes the rest of the namespace with it. For a
  session whose network is an allow-list it also carries the kernel's proxy connections: it is
  in the kernel's network namespace, listening on LISTEN_FD (127.0.0.1:3128 there), but
  outside its sandbox (out of reach of its signals), and hands each connection to the
  session's proxy on the UNIX socket PROXY_PATH (see ``egress``). The waiter cannot: a process
  that entered a PID namespace may start no thread.
"""

import os
import resource
import select
import signal
import socket
import sys
import threading


def forward(listening: int, path: str) -> None:
    """Each connection on ``listening`` to a new connection to the UNIX socket ``path``."""
    server = socket.socket(fileno=listening)
    while True:
        try:
            client, _ = server.accept()
        except OSError:
            continue
        threading.Thread(target=_carry, args=(client, path), daemon=True).start()


def _carry(client: socket.socket, path: str) -> None:
    upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        upstream.connect(path)
    except OSError:
        client.close()
        upstream.close()
        return
    ends = {client: upstream, upstream: client}
    open_ends = [client, upstream]
    try:
        while open_ends:
            for source in select.select(open_ends, [], [])[0]:
                data = source.recv(65536)
                if data:
                    ends[source].sendall(data)
                    continue
                open_ends.remove(source)
                try:
                    ends[source].shutdown(socket.SHUT_WR)
                except OSError:
                    pass
    except OSError:
        pass
    finally:
        client.close()
        upstream.close()


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


def reaper(confined: int, status: int, listening: int = -1, path: str = "") -> None:
    if listening >= 0:
        threading.Thread(target=forward, args=(listening, path), daemon=True).start()
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
    if role == "waiter":
        waiter(child, status_fd)
    elif len(sys.argv) > 5:
        reaper(child, status_fd, int(sys.argv[4]), sys.argv[5])
    else:
        reaper(child, status_fd)
