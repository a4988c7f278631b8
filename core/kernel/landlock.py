"""Landlock, through its three system calls (no dependency): a process restricts what it may
do to files (read, write, execute beneath given folders), TCP (bind, connect) and signals
(only to its own sandbox), for itself and every process it starts afterwards. Unprivileged;
Linux 5.13+ (TCP rules 6.7+, signal scoping 6.12+).

The rules bind the calling thread and what it starts later, never threads already running:
apply them first thing in a new process.
"""

from __future__ import annotations

import ctypes
import os
import platform
from dataclasses import dataclass
from pathlib import Path

# x86_64 and aarch64 share these numbers (the generic syscall table).
_SYSCALLS = {"create_ruleset": 444, "add_rule": 445, "restrict_self": 446}
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38

EXECUTE = 1 << 0
WRITE_FILE = 1 << 1
READ_FILE = 1 << 2
READ_DIR = 1 << 3
REMOVE_DIR = 1 << 4
REMOVE_FILE = 1 << 5
MAKE_CHAR = 1 << 6
MAKE_DIR = 1 << 7
MAKE_REG = 1 << 8
MAKE_SOCK = 1 << 9
MAKE_FIFO = 1 << 10
MAKE_BLOCK = 1 << 11
MAKE_SYM = 1 << 12
REFER = 1 << 13  # ABI 2
TRUNCATE = 1 << 14  # ABI 3
IOCTL_DEV = 1 << 15  # ABI 5

NET_BIND_TCP = 1 << 0  # ABI 4
NET_CONNECT_TCP = 1 << 1

SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0  # ABI 6
SCOPE_SIGNAL = 1 << 1

READ = EXECUTE | READ_FILE | READ_DIR
WRITE = (
    WRITE_FILE
    | REMOVE_DIR
    | REMOVE_FILE
    | MAKE_DIR
    | MAKE_REG
    | MAKE_SOCK
    | MAKE_FIFO
    | MAKE_SYM
    | REFER
    | TRUNCATE
)
_FS_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 5: (1 << 16) - 1}


class LandlockUnavailable(OSError):
    """This kernel (or machine) cannot apply Landlock rules."""


class _Ruleset(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def abi_version() -> int:
    """The Landlock ABI this kernel offers; 0 when it has none (or not on Linux)."""
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "aarch64"):
        return 0
    version = _libc().syscall(_SYSCALLS["create_ruleset"], None, 0, _CREATE_RULESET_VERSION)
    return max(version, 0)


@dataclass(frozen=True)
class Rules:
    """Folders the process may read (and execute) beneath, and folders it may also write
    beneath; whether TCP is closed; whether signals stay inside the sandbox."""

    read: tuple[Path, ...]
    write: tuple[Path, ...]
    close_tcp: bool = False
    scope_signals: bool = True


def restrict_self(rules: Rules) -> int:
    """Apply ``rules`` to this process for good; returns the ABI used. Raises
    ``LandlockUnavailable`` (nothing applied) when the kernel has no Landlock, or lacks what
    ``rules`` need (TCP rules need ABI 4)."""
    abi = abi_version()
    if abi < 1:
        raise LandlockUnavailable("this kernel has no Landlock")
    if rules.close_tcp and abi < 4:
        raise LandlockUnavailable(f"Landlock ABI {abi} cannot restrict TCP (needs 4)")
    fs = _FS_BY_ABI[max(k for k in _FS_BY_ABI if k <= abi)]
    attr = _Ruleset(handled_access_fs=fs)
    size = 8
    if abi >= 4:
        attr.handled_access_net = NET_BIND_TCP | NET_CONNECT_TCP if rules.close_tcp else 0
        size = 16
    if abi >= 6:
        attr.scoped = (SCOPE_SIGNAL | SCOPE_ABSTRACT_UNIX_SOCKET) if rules.scope_signals else 0
        size = 24
    libc = _libc()
    ruleset = libc.syscall(_SYSCALLS["create_ruleset"], ctypes.byref(attr), size, 0)
    if ruleset < 0:
        raise LandlockUnavailable(os.strerror(ctypes.get_errno()))
    try:
        for paths, access in ((rules.read, READ), (rules.write, READ | WRITE)):
            for path in paths:
                _allow(libc, ruleset, path, access & fs)
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise LandlockUnavailable(f"no_new_privs: {os.strerror(ctypes.get_errno())}")
        if libc.syscall(_SYSCALLS["restrict_self"], ruleset, 0) != 0:
            raise LandlockUnavailable(f"restrict_self: {os.strerror(ctypes.get_errno())}")
    finally:
        os.close(ruleset)
    return abi


def _allow(libc: ctypes.CDLL, ruleset: int, path: Path, access: int) -> None:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return  # a folder that does not exist grants nothing
    try:
        if not os.path.isdir(path):
            # Rights on a file are file rights only (the kernel refuses directory rights).
            access &= EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV
        rule = _PathBeneath(allowed_access=access, parent_fd=fd)
        if libc.syscall(_SYSCALLS["add_rule"], ruleset, _RULE_PATH_BENEATH, ctypes.byref(rule), 0):
            raise LandlockUnavailable(f"add_rule {path}: {os.strerror(ctypes.get_errno())}")
    finally:
        os.close(fd)
