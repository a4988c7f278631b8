"""What a kernel may reach, applied first thing in the kernel process, and said plainly.

``isolation = "confined"``: namespaces (no capabilities outside, Ray's session directory
covered, with the network off no interface but its own loopback, a PID namespace and a /proc of
its own: see ``jail``) and Landlock (read and execute
the Python installation and system paths; read and write the workspace, the session's package
folder and the kernel's own temp folder; nothing else, not the home directory; signals only
inside its sandbox). ``isolation = "process"``: none of it (a trusted, single-user laptop).

What could not be applied is reported, never skipped in silence; a session that asked for the
network off is refused when its kernel cannot have it.
"""

from __future__ import annotations

import glob
import os
import sys
import sysconfig
from pathlib import Path
from typing import Any

from . import jail, landlock, namespaces

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
    the raykernel package wherever it lives (an editable install maps it from a checkout)."""
    import raykernel

    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    paths.update(p for p in sysconfig.get_paths().values() if p)
    paths.update(p for p in sys.path if p and Path(p).exists())
    paths.update(raykernel.__path__)
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
    PID namespace it returns in a new process (PID 2 of that namespace: see ``jail``); the
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
        no_pids = namespaces.enter(network_off, cover)
        report["namespaces"] = "user and mount namespaces (no capabilities outside)"
        report["network"] = {
            "off": "off: own network namespace, loopback only",
            "allowlist": "allowlist: own network namespace; out only through the session's "
            f"proxy on 127.0.0.1:{jail.PROXY_PORT}, which allows the listed destinations",
        }.get(mode, "on")
    except namespaces.NamespacesUnavailable as exc:
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
        no_proc = jail.descend(spec.get("proxy") if mode == "allowlist" else None)
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
        proxy = f"http://127.0.0.1:{jail.PROXY_PORT}"
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
