"""Package requirements from a model: parse strictly, refuse anything but a plain requirement.

Every item must parse as a PEP 508 requirement (``name[extras] specifier ; marker``). Options
(``-e``, ``--index-url``), shell syntax, paths and VCS links fail to parse; ``name @ URL`` parses
but is refused unless ``allow_urls``. The command that installs them is an argument list (never a
shell string), so nothing in a requirement can reach a shell.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement

from raykernel.errors import InvalidPackageSpec

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


def install_command(requirements: list[Requirement], target: Path) -> list[str]:
    """The argument list that installs ``requirements`` into ``target`` for this interpreter."""
    reqs = [str(r) for r in requirements]
    uv = _find_uv()
    if uv is not None:
        return [
            uv,
            "pip",
            "install",
            "--no-progress",
            "--python",
            sys.executable,
            "--target",
            str(target),
            *reqs,
        ]
    return [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--progress-bar",
        "off",
        "--no-input",
        "--disable-pip-version-check",
        "--target",
        str(target),
        *reqs,
    ]


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
