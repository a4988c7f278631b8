"""Linux namespaces a kernel process enters before anything else runs in it.

* a user namespace: the process keeps its uid (mapped to itself) but loses every capability it
  had outside, so even a server run as root gives its sessions none;
* a mount namespace, where folders the kernel must not see (Ray's session directory, with the
  sockets of the node's Ray processes) are covered by an empty tmpfs;
* with the network off, a network namespace: a loopback of its own and nothing else, so neither
  TCP nor UDP leaves it;
* a PID namespace, which holds the processes forked after ``enter`` (see ``jail``): with its own
  ``/proc`` they see their own processes only, not the host's command lines.

``unshare`` refuses a process that has threads: call ``enter`` first thing in a new process.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import socket
import struct
from pathlib import Path

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
