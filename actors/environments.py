"""The user's own Python environments for sessions (``environments`` setting): a session's
kernel may run another interpreter than the server's (a project venv, a conda env, a uv
project's ``.venv``), confined the same way.

Nothing of raykernel is installed there. The kernel's own code and its few dependencies reach
that interpreter from the server's installation, read-only: a folder of links (made per actor,
in its temp folder) holds ``raykernel`` alone, first on the kernel's path; another holds the
dependencies (cloudpickle, psutil's stable-ABI build, pluggy, jedi, parso), last on the path,
so that the environment's own copies win. The environment's packages are what the session
imports; ``install_dependencies`` adds to the session's own folder on top, for that
interpreter, and never touches the environment. ``SessionEnvironment`` is a session's, in its
actor: the environment and its links.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The kernel's code needs what the server needs (pyproject's requires-python).
MIN_PYTHON = (3, 11)
# What the kernel imports beyond the standard library (introspection imports jedi lazily).
KERNEL_DEPENDENCIES = ("cloudpickle", "psutil", "pluggy", "jedi", "parso")
PROBE_TIMEOUT = 30.0
# The variable that names the dependencies' folder (see raykernel.kernel.__main__).
FALLBACK_ENV = "RAYKERNEL_KERNEL_FALLBACK"


class EnvironmentRefused(Exception):
    """The interpreter cannot run a kernel; the message says why."""


@dataclass(frozen=True)
class Environment:
    name: str
    python: str  # the interpreter
    version: str
    prefix: str
    base_prefix: str

    def paths(self) -> list[str]:
        """What a confined process must read to run this interpreter: found by the server
        from the installation itself (``_installation_of``), never from what the probe
        printed (the environment's own code runs there and could say "/")."""
        return _installation_of(str(Path(self.python).parent.parent), Path(self.python))

    def as_dict(self) -> dict[str, str]:
        return {
            "name": self.name,
            "python": self.python,
            "version": self.version,
            "prefix": self.prefix,
            "base_prefix": self.base_prefix,
        }

    @classmethod
    def from_dict(cls, data: dict[str, str]) -> Environment:
        return cls(**{k: data[k] for k in ("name", "python", "version", "prefix", "base_prefix")})


def interpreter_of(place: str) -> Path:
    """The interpreter a setting names: itself, or a venv's or conda env's ``bin/python``."""
    path = Path(place).expanduser()
    if path.is_dir():
        for candidate in ("bin/python3", "bin/python", "python.exe"):
            if (path / candidate).is_file():
                return path / candidate
        raise EnvironmentRefused(f"{place} is a folder with no bin/python: not a venv or conda env")
    if not path.is_file() or not os.access(path, os.X_OK):
        raise EnvironmentRefused(f"{place} is not an interpreter, a venv or a conda env")
    return path


def probe(
    name: str, place: str, support: list[str], fallback: str, sandbox: dict[str, Any]
) -> Environment:
    """Run the interpreter once: its version and prefixes, and whether the kernel's code
    imports there (with ``support`` first and ``fallback`` last on its path, as a kernel
    has them). It runs in the kernel's sandbox (``sandbox``: the policy, see
    raykernel.kernel.sandbox, to which the environment's folders are added): starting an
    interpreter runs its site-packages' ``.pth`` files, code a package index supplied.
    Blocking."""
    python = interpreter_of(place)
    policy = {**sandbox, "read": [*sandbox.get("read", []), *_installation_of(place, python)]}
    script = (
        "import json, sys\n"
        f"sys.path.append({fallback!r})\n"
        "ok = sys.version_info[:2] >= " + repr(MIN_PYTHON) + "\n"
        "problem = None\n"
        "if ok:\n"
        "    try:\n"
        "        import raykernel.kernel.service\n"
        "    except Exception as exc:\n"
        "        problem = f'{type(exc).__name__}: {exc}'\n"
        "import site\n"
        "site.main()\n"  # then the environment's packages, as a kernel adds them: sys.prefix
        "print(json.dumps({'version': '%d.%d.%d' % sys.version_info[:3], 'prefix': sys.prefix,"
        " 'base_prefix': sys.base_prefix, 'problem': problem}))\n"
    )
    # Nothing of the server's: no token, no upstream server's headers, no Ray address.
    dropped = ("PYTHON", "VIRTUAL_ENV", "RAY_", "RAYKERNEL_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
    env["PYTHONPATH"] = os.pathsep.join(support)
    confined = [
        *(sys.executable, "-P", "-s", "-m", "raykernel.kernel.sandbox"),
        *(json.dumps(policy), "--"),
    ]
    done: subprocess.CompletedProcess[str] | None = None
    try:
        # -S, as a kernel starts: the kernel's own code and dependencies, before the
        # environment's packages (which a kernel adds once confined).
        done = subprocess.run(
            [*confined, str(python), "-P", "-S", "-c", script],
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT,
            env=env,
            check=False,
        )
        found = json.loads(done.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError) as exc:
        said = " | ".join(done.stderr.strip().splitlines()[-3:]) if done is not None else ""
        raise EnvironmentRefused(f"{python} did not run: {exc} {said}".strip()) from None
    version = found["version"]
    if tuple(int(p) for p in version.split(".")[:2]) < MIN_PYTHON:
        needed = ".".join(map(str, MIN_PYTHON))
        raise EnvironmentRefused(f"{python} is Python {version}; a kernel needs {needed} or newer")
    if found.get("problem"):
        raise EnvironmentRefused(
            f"{python} (Python {version}) cannot run a kernel: {found['problem']}"
        )
    return Environment(name, str(python), version, found["prefix"], found["base_prefix"])


def _installation_of(place: str, python: Path) -> list[str]:
    """The folders an environment's interpreter reads to start: its own folder and, for a
    venv, the installation it was made from (pyvenv.cfg's ``home``)."""
    folders = {str(Path(place).expanduser()), str(python.parent.parent)}
    real = python.resolve()
    folders.add(str(real.parent.parent))
    config = python.parent.parent / "pyvenv.cfg"
    if config.is_file():
        for line in config.read_text(errors="replace").splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "home" and value.strip():
                folders.add(str(Path(value.strip()).parent))
    home = Path.home().resolve()
    return sorted(
        f
        for f in folders
        if Path(f).resolve() != Path("/") and not home.is_relative_to(Path(f).resolve())
    )


def support_folders(root: Path) -> tuple[list[str], str, list[str]]:
    """Make (once) the two folders of links under ``root``: the kernel's path entries first,
    the dependencies' folder, and the real folders the links lead to (which a confined
    kernel must be allowed to read: a rule on a link's folder does not reach its target)."""
    import raykernel

    first, last = root / "kernel-path", root / "kernel-deps"
    targets = [str(Path(p).resolve()) for p in raykernel.__path__]
    _link(first / "raykernel", Path(raykernel.__path__[0]))
    for name in KERNEL_DEPENDENCIES:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            continue
        where = Path(spec.origin)
        source = where.parent if where.name == "__init__.py" else where
        _link(last / source.name, source)
        targets.append(str(source.resolve()))
    return [str(first)], str(last), sorted(set(targets))


def _link(link: Path, target: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.is_symlink():
        link.symlink_to(target.resolve(), target_is_directory=target.is_dir())


class SessionEnvironment:
    """A session's own Python environment, if it has one (the claim names it): its
    interpreter, what a confined process must read of it, and the links that bring the
    kernel's code to it."""

    def __init__(self) -> None:
        self.environment: Environment | None = None
        # What its kernels and installs must read of it, found once at the claim.
        self.reads: list[str] = []
        self._support: tuple[list[str], str, list[str]] | None = None
        self._links: Path | None = None

    async def use(self, data: dict[str, str]) -> None:
        """Serve environment ``data`` (``Environment.as_dict``): its links made, what it
        reads found."""
        self.environment = Environment.from_dict(data)
        # Not in the kernel's temp folder: a kernel starts before it confines itself, so
        # what it imports then must be out of its sessions' reach.
        links = Path(tempfile.mkdtemp(prefix=f"raykernel-links-{os.getpid()}-"))
        self._links = links
        self._support = await asyncio.to_thread(support_folders, links)
        paths = await asyncio.to_thread(self.environment.paths)
        # Its installation, and the kernel code the links lead to.
        self.reads = [*paths, *self._support[2]]

    @property
    def python(self) -> str | None:
        """Its interpreter; None: the server's."""
        return self.environment.python if self.environment is not None else None

    @property
    def name(self) -> str | None:
        return self.environment.name if self.environment is not None else None

    def apply(self, env: dict[str, str]) -> None:
        """A kernel's variables for another interpreter: nothing of the server's environment,
        the kernel's own code first on its path and its dependencies last."""
        if self._support is None:
            return
        for name in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "CONDA_PREFIX"):
            env.pop(name, None)
        first, last, _targets = self._support
        env["PYTHONPATH"] = os.pathsep.join(first)
        env[FALLBACK_ENV] = last
        env["RAYKERNEL_KERNEL_SITE"] = "1"

    def drop(self) -> None:
        """Remove its links."""
        if self._links is not None:
            shutil.rmtree(self._links, ignore_errors=True)
            self._links = None
