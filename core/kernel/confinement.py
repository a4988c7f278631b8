"""What a kernel may reach, applied first thing in the kernel process, and said plainly; and the
Linux namespaces and the process tree that apply most of it.

``isolation = "confined"``: namespaces (no capabilities outside, Ray's session directory
covered, with the network off no interface but its own loopback, a PID namespace and a /proc of
its own) and Landlock (see ``landlock``: read and execute the Python installation and system
paths; read and write the workspace, the session's package folder and the kernel's own temp
folder; nothing else, not the home directory; signals only inside its sandbox).
``isolation = "process"``: none of it (a trusted, single-user laptop).

What could not be applied is reported, never skipped in silence; a session that asked for the
network off is refused when its kernel cannot have it.

The namespaces a kernel process enters before anything else runs in it (``enter``):

* a user namespace: the process keeps its uid (mapped to itself) but loses every capability it
  had outside, so even a server run as root gives its sessions none;
* a mount namespace, where folders the kernel must not see (Ray's session directory, with the
  sockets of the node's Ray processes) are covered by an empty tmpfs;
* with the network off, a network namespace: a loopback of its own and nothing else, so neither
  TCP nor UDP leaves it;
* a PID namespace, which holds the processes forked after ``enter`` (see ``descend``): with its
  own ``/proc`` they see their own processes only, not the host's command lines.

``unshare`` refuses a process that has threads: call ``enter`` first thing in a new process.

A confined process's own process tree, in a PID namespace of its own (``descend``):

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
import fcntl
import glob
import os
import resource
import select
import signal
import socket
import struct
import sys
import sysconfig
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from . import landlock

# Read-only beyond the Python installation: shared libraries, certificates, name resolution,
# time zones, CPU topology (numpy, OpenBLAS). Not /etc as a whole: not /etc/passwd or shadow.
SYSTEM_READ = (
    "/usr",
    "/lib",
    "/lib64",
    "/lib32",
    "/bin",
    "/sbin",
    "/opt",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/localtime",
    "/etc/timezone",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/pki",
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/nsswitch.conf",
    "/etc/gai.conf",
    "/etc/services",
    "/etc/protocols",
    "/etc/mime.types",
    "/etc/fonts",
    "/proc",
    "/sys/devices/system/cpu",
    "/sys/fs/cgroup",
    "/dev/urandom",
    "/dev/random",
    "/dev/zero",
)
DEVICES_RW = ("/dev/null", "/dev/tty", "/dev/shm")
GPU_DEVICES = ("/dev/nvidia*", "/dev/dri")


class ConfinementRefused(Exception):
    """The kernel cannot be given what the session asked for (the network off)."""


def python_paths() -> list[Path]:
    """The interpreter, its standard library, every folder on ``sys.path`` (site-packages) and
    the raykernel package wherever it lives: an editable install maps it from a checkout, and
    its subpackages raykernel.actors and raykernel.plugins from folders of their own (a plugin
    the kernel imports may import ``raykernel.api``, which reaches them; the wheel has them all
    in one folder)."""
    import importlib.util

    import raykernel

    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    paths.update(p for p in sysconfig.get_paths().values() if p)
    paths.update(p for p in sys.path if p and Path(p).exists())
    paths.update(raykernel.__path__)
    for name in ("raykernel.actors", "raykernel.plugins"):
        spec = importlib.util.find_spec(name)  # finds the folder, imports nothing of it
        paths.update((spec.submodule_search_locations or []) if spec is not None else [])
    # A sys.path entry such as "/" or the home folder (a current folder that slipped in) would
    # open everything beneath it: never.
    home = Path.home().resolve()
    return [
        Path(p)
        for p in sorted(paths)
        if Path(p).resolve() != Path("/") and not home.is_relative_to(Path(p).resolve())
    ]


def confine(spec: dict[str, Any]) -> dict[str, Any]:
    """Apply ``spec``'s isolation to this process; the report for ``get_kernel_health``. With a
    PID namespace it returns in a new process (PID 2 of that namespace: see ``descend``); the
    report's ``pid_namespace`` says so, for the parent to find the confined process."""
    mode = spec.get("network")
    network_off = mode in ("off", "allowlist")  # a network namespace of its own
    if spec.get("isolation") != "confined":
        if network_off:
            raise ConfinementRefused(f'network "{mode}" needs isolation "confined"')
        return {
            "mode": "process",
            "files": "open: whatever the server's user can read and write",
            "network": "on",
        }
    report: dict[str, Any] = {"mode": "confined"}
    # Ray's session folder (its processes' sockets, which Landlock does not guard) is covered
    # by an empty folder; /dev/shm (semaphores, shared arrays) becomes the session's own.
    cover = {Path(p): "64k" for p in spec.get("hide", [])}
    cover[Path("/dev/shm")] = str(spec.get("shm_bytes") or "25%")
    report["pid_namespace"] = False
    try:
        no_pids = enter(network_off, cover)
        report["namespaces"] = "user and mount namespaces (no capabilities outside)"
        report["network"] = {
            "off": "off: own network namespace, loopback only",
            "allowlist": "allowlist: own network namespace; out only through the session's "
            f"proxy on 127.0.0.1:{PROXY_PORT}, which allows the listed destinations",
        }.get(mode, "on")
    except NamespacesUnavailable as exc:
        if network_off:
            raise ConfinementRefused(
                f'network "{mode}" is not available on this node (user and network '
                f"namespaces: {exc})"
            ) from None
        report["namespaces"] = f"unavailable ({exc}): Ray's sockets are reachable"
        report["network"] = "on"
        no_pids = str(exc)
    if mode == "allowlist" and no_pids is not None:
        raise ConfinementRefused(f"an allow-listed network needs a PID namespace ({no_pids})")
    if no_pids is None:
        no_proc = descend(spec.get("proxy") if mode == "allowlist" else None)
        report["pid_namespace"] = True
        report["processes"] = (
            "own PID namespace and /proc: only the session's own processes are visible"
            if no_proc is None
            else f"own PID namespace, but the host's /proc ({no_proc}): host processes visible"
        )
    else:
        report["processes"] = f"the host's process list is visible (PID namespace: {no_pids})"
    if mode == "allowlist":
        # What urllib, requests, httpx, pip and curl read; a session's own local servers are
        # out of reach through them (127.0.0.1 means the host, through the proxy).
        proxy = f"http://127.0.0.1:{PROXY_PORT}"
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
            os.environ[name] = os.environ[name.lower()] = proxy
        for name in ("NO_PROXY", "no_proxy"):
            os.environ.pop(name, None)
    write = [Path(p) for p in spec.get("write", [])]
    read = [*python_paths(), *(Path(p) for p in SYSTEM_READ), *map(Path, spec.get("read", []))]
    devices = [Path(p) for pattern in GPU_DEVICES for p in glob.glob(pattern)]
    rules = landlock.Rules(
        read=tuple(read), write=(*write, *map(Path, DEVICES_RW), *devices), scope_signals=True
    )
    try:
        abi = landlock.restrict_self(rules)
        report["files"] = (
            f"landlock (ABI {abi}): read-only Python and system paths; read-write "
            "workspace, the session's packages and its temp folder; nothing else"
        )
        report["signals"] = "only within the session" if abi >= 6 else "not scoped"
    except landlock.LandlockUnavailable as exc:
        report["files"] = f"unconfined: Landlock unavailable ({exc})"
        report["signals"] = "not scoped"
    return report


CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
_MS_NOSUID = 0x2
_MS_NODEV = 0x4
_MS_NOEXEC = 0x8
_MS_REC = 0x4000
_MS_PRIVATE = 0x40000
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1


class NamespacesUnavailable(OSError):
    """The namespaces could not be entered (kernel settings, seccomp, a container)."""


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def enter(network_off: bool, cover: dict[Path, str], pids: bool = True) -> str | None:
    """Enter a user and mount namespace (and a network namespace when ``network_off``, and a
    PID namespace for the children to come when ``pids``), then cover each folder of ``cover``
    that exists with an empty tmpfs of the given size (the kernel sees a private, empty folder
    there). Raises ``NamespacesUnavailable`` with the reason. Returns None when the PID
    namespace was entered, else why not (the others were entered all the same)."""
    uid, gid = os.getuid(), os.getgid()
    flags = CLONE_NEWUSER | CLONE_NEWNS | (CLONE_NEWNET if network_off else 0)
    libc = _libc()
    no_pids: str | None = "not asked for"
    if pids:
        if libc.unshare(flags | CLONE_NEWPID) == 0:
            no_pids = None
        else:
            no_pids = f"unshare: {os.strerror(ctypes.get_errno())}"
    if no_pids is not None and libc.unshare(flags) != 0:
        raise NamespacesUnavailable(f"unshare: {os.strerror(ctypes.get_errno())}")
    _write("/proc/self/setgroups", "deny")
    _write("/proc/self/uid_map", f"{uid} {uid} 1")
    _write("/proc/self/gid_map", f"{gid} {gid} 1")
    # Mounts made here must not reach the parent's namespace.
    _mount(libc, None, "/", None, _MS_REC | _MS_PRIVATE, None)
    for folder, size in cover.items():
        if folder.is_dir():
            _mount(libc, "tmpfs", str(folder), "tmpfs", _MS_NOSUID | _MS_NODEV, f"size={size}")
    if network_off:
        _loopback_up()
    return no_pids


def mount_proc() -> None:
    """Mount a ``/proc`` of this PID namespace over the host's (call it from inside the
    namespace: PID 1 or below). Raises ``NamespacesUnavailable`` when it cannot be mounted (a
    container that masks parts of its own ``/proc`` refuses it)."""
    _mount(_libc(), "proc", "/proc", "proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC, None)


def _write(path: str, text: str) -> None:
    with open(path, "w") as handle:
        handle.write(text)


def _mount(
    libc: ctypes.CDLL,
    source: str | None,
    target: str,
    fstype: str | None,
    flags: int,
    data: str | None,
) -> None:
    encode = lambda s: s.encode() if s is not None else None  # noqa: E731
    if libc.mount(encode(source), encode(target), encode(fstype), flags, encode(data)) != 0:
        raise NamespacesUnavailable(f"mount {target}: {os.strerror(ctypes.get_errno())}")


def _loopback_up() -> None:
    """Bring ``lo`` up in the new network namespace (it starts down): local servers a session
    starts for itself (multiprocessing managers, a test server) keep working."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(sock, _SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, _SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | _IFF_UP))


_PR_SET_PDEATHSIG = 1
# Where a session with an allow-listed network finds its proxy, on its own loopback.
PROXY_PORT = 3128

# The waiter's and the reaper's code, run by path with a bare interpreter (no import of
# raykernel: ``-I -S``), so that a process list shows what they are.
INIT = Path(__file__).with_name("jail_init.py")


def descend(proxy: str | None = None) -> str | None:
    """Fork into the tree above, right after ``enter`` entered a PID namespace, and
    return in the confined process only (PID 2). The process that called it becomes the
    waiter, its child the reaper. Returns None when the namespace has its own ``/proc``, else
    why not (the host's then stays visible: the caller reports it). ``proxy``: the UNIX socket
    of the session's egress proxy, which the reaper serves on 127.0.0.1:3128 of the network
    namespace (bound here, before any user code exists)."""
    if threading.active_count() > 1:  # a new kernel has none; anything else must not fork
        raise RuntimeError("confinement.descend runs first thing in a new, single-threaded process")
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
        mount_proc()
    except NamespacesUnavailable as exc:
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
