"""Package requirements from a model: parse strictly, refuse anything but a plain requirement;
install them with no more rights than the session's own code has.

Every item must parse as a PEP 508 requirement (``name[extras] specifier ; marker``). Options
(``-e``, ``--index-url``), shell syntax, paths and VCS links fail to parse; ``name @ URL`` parses
but is refused unless ``allow_urls``. The command that installs them is an argument list (never a
shell string), so nothing in a requirement can reach a shell.

A package's build runs its own code (``setup.py``): wheels only, unless builds are allowed, and
the installer runs in the same sandbox as a kernel (see ``confinement``), able to write only its
target, its cache and a temp folder. ``SessionInstalls`` is a session's: its installs and those
under way.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement

from raykernel.errors import InvalidPackageSpec
from raykernel.kernel.capture import truncate_text
from raykernel.protocol import KernelOp
from raykernel.workspace import Workspace

from .kernel_client import DROPPED_ENV_PREFIXES, KernelLaunch, KernelProcess

MAX_PACKAGES = 50
MAX_SPEC_LENGTH = 200


def parse_requirements(specs: list[str], *, allow_urls: bool = False) -> list[Requirement]:
    """Validate every spec; raise InvalidPackageSpec naming the first bad one."""
    if not specs:
        raise InvalidPackageSpec("no packages given")
    if len(specs) > MAX_PACKAGES:
        raise InvalidPackageSpec(f"at most {MAX_PACKAGES} packages per call, got {len(specs)}")
    parsed = []
    for spec in specs:
        if not isinstance(spec, str) or not spec.strip():
            raise InvalidPackageSpec(f"empty package spec: {spec!r}")
        if len(spec) > MAX_SPEC_LENGTH:
            raise InvalidPackageSpec(f"package spec longer than {MAX_SPEC_LENGTH} characters")
        text = spec.strip()
        if text.startswith("-"):
            raise InvalidPackageSpec(f"options are not accepted: {spec!r}")
        try:
            requirement = Requirement(text)
        except InvalidRequirement as exc:
            raise InvalidPackageSpec(
                f"not a plain requirement (name, extras, version specifier): {spec!r} ({exc})"
            ) from None
        if requirement.url and not allow_urls:
            raise InvalidPackageSpec(f"URL requirements are disabled: {spec!r}")
        parsed.append(requirement)
    return parsed


@dataclass(frozen=True)
class Installer:
    """How one session installs: the installer's argument list (uv, else pip) and the folders
    its sandbox may write (the target, the cache, a temp folder) or must read (its own
    configuration and the local indexes it names)."""

    program: str  # "uv" or "pip"
    cache: Path
    allow_builds: bool = False

    @classmethod
    def find(cls, cache: Path | None, allow_builds: bool = False) -> Installer:
        """uv if it is beside this interpreter or on PATH, else pip; ``cache`` None: the
        installer's own default cache (the user's: shared by this user's sessions)."""
        program = "uv" if _find_uv() is not None else "pip"
        return cls(program, cache or default_cache(program), allow_builds)

    def command(
        self, requirements: list[Requirement], target: Path, python: str | None = None
    ) -> list[str]:
        """The argument list that installs ``requirements`` into ``target`` for ``python``
        (this interpreter by default): wheels only unless builds are allowed (a build runs
        the package's code)."""
        python = python or sys.executable
        reqs = [str(r) for r in requirements]
        if self.program == "uv":
            uv = _find_uv()
            assert uv is not None
            return [
                uv,
                "pip",
                "install",
                "--no-progress",
                "--python",
                python,
                "--target",
                str(target),
                "--cache-dir",
                str(self.cache),
                *([] if self.allow_builds else ["--no-build"]),
                *reqs,
            ]
        return [
            python,
            "-m",
            "pip",
            "install",
            "--progress-bar",
            "off",
            "--no-input",
            "--disable-pip-version-check",
            "--target",
            str(target),
            "--cache-dir",
            str(self.cache),
            *([] if self.allow_builds else ["--only-binary", ":all:"]),
            *reqs,
        ]

    def reads(self) -> list[str]:
        """What the installer must read beyond Python and the system: its configuration files
        and the local folders and files its settings name (find-links, certificates)."""
        home = Path.home()
        config_home = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config")
        found = [
            "/etc/pip.conf",
            "/etc/xdg/pip",
            "/etc/uv",
            str(config_home / "pip"),
            str(config_home / "uv"),
            str(home / ".pip"),
            str(Path(sys.prefix) / "pip.conf"),
        ]
        uv = _find_uv()
        if uv is not None:
            found.append(uv)
        for name, value in os.environ.items():
            if name.startswith(("PIP_", "UV_")) or name in _CERTIFICATE_VARIABLES:
                found += [path for item in value.split() if (path := _local_path(item))]
        return found

    def refused_builds(self, stderr: str) -> list[str]:
        """The packages the installer refused because they need a build (no wheel)."""
        if self.allow_builds:
            return []
        if self.program == "uv":
            return sorted(set(_UV_NO_WHEEL.findall(stderr)))
        return sorted(set(_PIP_NO_VERSION.findall(stderr)))


_CERTIFICATE_VARIABLES = ("SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")
# uv 0.13: "hint: Wheels are required for `docopt` because building from source is disabled"
_UV_NO_WHEEL = re.compile(r"Wheels are required for `([^`]+)` because building from source")
# pip cannot tell "needs a build" from "does not exist" with --only-binary: it names both so.
_PIP_NO_VERSION = re.compile(r"Could not find a version that satisfies the requirement (\S+)")


def _local_path(item: str) -> str | None:
    if item.startswith("file://"):
        return item.removeprefix("file://") or None
    return item if os.path.isabs(item) else None


def default_cache(program: str) -> Path:
    """Where uv or pip keeps its cache when told nothing (their own rules)."""
    variable = "UV_CACHE_DIR" if program == "uv" else "PIP_CACHE_DIR"
    if os.environ.get(variable):
        return Path(os.environ[variable])
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / program


def _find_uv() -> str | None:
    beside = Path(sys.executable).parent / "uv"
    if beside.is_file():
        return str(beside)
    return shutil.which("uv")


def run_installer(
    command: list[str],
    timeout: float,
    feed: Callable[[str], None] | None = None,
    started: Callable[[subprocess.Popen[str]], None] | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> tuple[str, str, bool]:
    """Run an installer, handing its output to ``feed`` line by line as it comes (progress for
    the client); ``(stdout, stderr, succeeded)``. Killed at ``timeout`` or on
    KeyboardInterrupt (which is re-raised); ``started`` gets the process, for whoever may kill
    it sooner."""
    proc = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        env=env,
        cwd=cwd,
    )
    if started is not None:
        started(proc)
    captured: dict[str, list[str]] = {"out": [], "err": []}

    def pump(stream: Any, key: str) -> None:
        for line in stream:
            captured[key].append(line)
            if feed is not None:
                feed(line)

    readers = [
        threading.Thread(target=pump, args=(proc.stdout, "out"), daemon=True),
        threading.Thread(target=pump, args=(proc.stderr, "err"), daemon=True),
    ]
    for reader in readers:
        reader.start()
    timed_out = False
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        proc.kill()
        proc.wait()
    except KeyboardInterrupt:
        proc.kill()
        proc.wait()
        raise
    finally:
        for reader in readers:
            reader.join(timeout=5)
    stdout, stderr = "".join(captured["out"]), "".join(captured["err"])
    if timed_out:
        stderr += f"\ninstall timed out after {timeout:g} s"
    return stdout, stderr, not timed_out and proc.returncode == 0


class SessionInstalls:
    """A session's installs into its package folder, each run confined like its kernel (plus
    the network, to reach the index), and the ones under way: an interrupt or the session's
    end kills them, and the live tail shows what they print. Made again with the cache and the
    workspace a claim names."""

    def __init__(
        self,
        launch: KernelLaunch,
        cache: Path | None,
        workspace: Workspace,
        kernel: Callable[[], KernelProcess | None],
    ) -> None:
        self.launch = launch  # where the session's kernels live, and how they are confined
        self.cache = cache
        self.workspace = workspace
        self._kernel = kernel  # the session's kernel now, to import what was installed
        self._running: dict[str, Any] = {}
        self._tails: dict[str, str] = {}

    async def install(
        self, specs: list[str], allow_urls: bool, allow_builds: bool, timeout: float, token: str
    ) -> dict[str, Any]:
        """Install into the session's own folder, then let the kernel import from it. The
        installer runs confined like the kernel (plus the network, to reach the index): a
        package's build may write its target, the cache and a temp folder, and read nothing of
        the server's (see Installer and raykernel.kernel.confinement)."""
        requirements = parse_requirements(specs, allow_urls=allow_urls)
        site_dir = self.launch.site_dir
        site_dir.mkdir(parents=True, exist_ok=True)
        installer = Installer.find(self.cache, allow_builds)
        installer.cache.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix="install-", dir=self.launch.tmp))
        # A "name @ file://..." requirement (allowed by allow_package_urls) must be in the
        # session's own workspace, where its code may write anyway (a source tree builds in
        # place); anywhere else would hand the build what the session cannot reach.
        local = [
            str(self.workspace.resolve(url.removeprefix("file://")))
            for r in requirements
            if (url := r.url or "").startswith("file://")
        ]
        command = self._confined(
            installer.command(
                requirements, site_dir, self.launch.environment.python or sys.executable
            ),
            installer,
            work,
            local,
        )
        self._tails[token] = ""

        def feed(line: str) -> None:
            self._tails[token] = (self._tails.get(token, "") + line)[-4000:]

        def started(process: Any) -> None:
            self._running[token] = process

        try:
            stdout, stderr, ok = await asyncio.to_thread(
                run_installer, command, timeout, feed, started, self._env(work), work
            )
        finally:
            self._running.pop(token, None)
            self._tails.pop(token, None)
            shutil.rmtree(work, ignore_errors=True)
        kernel = self._kernel()
        if ok and kernel is not None and kernel.alive:
            await kernel.request(KernelOp.ACTIVATE_SITE)
        limit = self.launch.config.max_output_bytes
        reply: dict[str, Any] = {
            "success": ok,
            "installed": [r.name for r in requirements] if ok else [],
            "stdout": truncate_text(stdout, limit),
            "stderr": truncate_text(stderr, limit),
        }
        refused = [] if ok else installer.refused_builds(stderr)
        if refused:
            reply["error"] = {
                "ename": "SourceBuildRefused",
                "evalue": f"{', '.join(refused)} {'has' if len(refused) == 1 else 'have'} no "
                "wheel for this platform, only a source package, and building one runs the "
                "package's own code: refused. Nothing was installed. A server that trusts its "
                "index can set allow_source_builds = true (RAYKERNEL_ALLOW_SOURCE_BUILDS=1); "
                "builds then run in the session's sandbox.",
            }
        return reply

    def kill(self, token: str) -> bool:
        """Kill install ``token``; whether it is one under way."""
        process = self._running.get(token)
        if process is None:
            return False
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        return True

    def kill_all(self) -> None:
        for token in list(self._running):
            self.kill(token)

    def tail(self, token: str) -> str | None:
        """What install ``token`` printed last; None when it is no install under way."""
        return self._tails.get(token)

    def _confined(
        self, command: list[str], installer: Installer, work: Path, sources: list[str]
    ) -> list[str]:
        """``command`` run through the jail, with the kernel's confinement but the network on:
        write the target, the cache, ``work`` and ``sources`` (local packages of the
        workspace); read Python, the system and its configuration."""
        config = self.launch.config
        policy = {
            "isolation": config.isolation,
            "network": "on",
            "write": [str(self.launch.site_dir), str(installer.cache), str(work), *sources],
            "read": [*installer.reads(), *self.launch.reads],
            "hide": config.hide,
        }
        return [
            sys.executable,
            "-P",
            "-s",  # the installer's home is in the session's temp folder
            "-m",
            "raykernel.kernel.sandbox",
            json.dumps(policy),
            "--",
            *command,
        ]

    def _env(self, work: Path) -> dict[str, str]:
        """The installer's environment: no Ray or raykernel variable (no token), and a home and
        temp folder of its own (its configuration is still found where the user keeps it)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(DROPPED_ENV_PREFIXES)}
        home = work / "home"
        home.mkdir()
        env["XDG_CONFIG_HOME"] = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
        env.update(HOME=str(home), TMPDIR=str(work))
        return env
