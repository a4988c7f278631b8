"""``python -m raykernel.kernel FD``: a kernel process, started by its session actor.

It imports what it will need, then waits for its spec on the socket ``FD`` (a pooled session's
kernel waits here until the session is claimed: nothing of anyone's has reached it yet),
confines itself before anything else runs (no thread may exist yet: namespaces and Landlock
require it), then serves requests until its parent goes.
"""

from __future__ import annotations

import os
import platform
import socket
import sys

# A kernel in another environment than the server's finds the kernel's dependencies last on
# its path (see environments); it starts without the environment's site-packages (-S), which
# it adds once confined: their .pth files are code a package index supplied.
FALLBACK = os.environ.pop("RAYKERNEL_KERNEL_FALLBACK", "")
SITE_AFTER_CONFINE = os.environ.pop("RAYKERNEL_KERNEL_SITE", "") == "1"
if FALLBACK:
    sys.path.append(FALLBACK)

from . import wire  # noqa: E402 - after the path is set
from .confinement import ConfinementRefused, confine, die_with_parent, oom_first  # noqa: E402


def main(argv: list[str]) -> int:
    die_with_parent()
    oom_first()
    sock = socket.socket(fileno=int(argv[1]))
    # Imported before the spec (no module starts a thread on import): a claim then costs the
    # confinement only. The import is the kernel's own code, from the Python installation.
    from . import containment
    from .service import KernelService, prepare_process

    try:
        spec = wire.receive(sock)
    except EOFError:
        return 0  # a pooled kernel whose actor went away
    try:
        isolation = confine(spec)
    except ConfinementRefused as exc:
        wire.send(sock, {"event": "refused", "message": str(exc)})
        return 3
    if SITE_AFTER_CONFINE:
        _add_site()
    prepare_process()
    os.chdir(spec["workspace"])
    scripts = os.path.join(spec["workspace"], "scripts")
    if scripts not in sys.path:
        sys.path.insert(0, scripts)
    containment.limit_memory(spec.get("memory_limit", 0))
    service = KernelService(sock, spec)
    python = {"version": platform.python_version(), "executable": sys.executable}
    wire.send(
        sock, {"event": "ready", "pid": os.getpid(), "isolation": isolation, "python": python}
    )
    service.serve()
    return 0


def _add_site() -> None:
    """The environment's site-packages (and what its .pth files do), now that this process
    is confined; the kernel's dependencies stay last."""
    import site

    site.main()
    if FALLBACK in sys.path:
        sys.path.remove(FALLBACK)
        sys.path.append(FALLBACK)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
