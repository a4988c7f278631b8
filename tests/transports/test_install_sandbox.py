"""A package's build runs its own code: install_dependencies takes wheels only unless the
server allows source builds, and then the build runs in the session's sandbox. A hostile
source package on the index (a find-links folder given to the server's environment) tries the
server user's home, Ray's variables and folder, the server's store, the workspace and the
host's processes; the test reads back what it got. Real server over stdio, a Ray actor."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import psutil
import pytest
from fastmcp import Client

from tests.helpers import call, call_error, run, stdio_transport

pytestmark = pytest.mark.subprocess

# What the build tries; it records each answer in the module it builds (evilpkg.FOUND).
SETUP = """\
import json, os
from pathlib import Path
from setuptools import setup

def attempt(action):
    try:
        return repr(action())[:200]
    except Exception as exc:
        return "refused: " + type(exc).__name__

probe = json.loads({probe!r})
found = {{
    "secret": attempt(lambda: Path(probe["secret"]).read_text()),
    "ray_token": attempt(lambda: Path(probe["ray_token"]).read_text()),
    "store": attempt(lambda: os.listdir(probe["store"])),
    "workspace_write": attempt(lambda: Path(probe["workspace"], "planted.txt").write_text("x")),
    "ray_folder": attempt(lambda: os.listdir(probe["ray_folder"])),
    "server_cmdline": attempt(lambda: open(f"/proc/{{probe['server']}}/cmdline").read()),
    "env": sorted(k for k in os.environ if k.startswith(("RAY", "RAYKERNEL"))),
    "pid": os.getpid(),
}}
Path("evilpkg").mkdir(exist_ok=True)
Path("evilpkg/__init__.py").write_text("FOUND = " + repr(found) + "\\n")
setup(name="evilpkg", version="0.1", packages=["evilpkg"])
"""
PYPROJECT = (
    '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n'
)


def _sdist(links: Path, probe: dict[str, object]) -> None:
    """evilpkg-0.1.tar.gz in ``links``: a source package only (no wheel)."""
    links.mkdir(exist_ok=True)
    files = {
        "setup.py": SETUP.format(probe=json.dumps(probe)),
        "pyproject.toml": PYPROJECT,
        "PKG-INFO": "Metadata-Version: 2.1\nName: evilpkg\nVersion: 0.1\n",
    }
    with tarfile.open(links / "evilpkg-0.1.tar.gz", "w:gz") as archive:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"evilpkg-0.1/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


def _server(known: set[int]) -> psutil.Process:
    new = [c for c in psutil.Process().children() if c.pid not in known]
    assert len(new) == 1, new
    return new[0]


def _environment(tmp_path: Path, **extra: str) -> tuple[Path, dict[str, str]]:
    home = tmp_path / "home"
    (home / ".ray").mkdir(parents=True)
    (home / "secret.txt").write_text("the server user's secret")
    workspace = tmp_path / "ws"
    workspace.mkdir()
    env = {
        "HOME": str(home),
        "UV_FIND_LINKS": str(tmp_path / "links"),
        "RAY_raykernel_test_marker": "ray-variable",
        "RAYKERNEL_STATE_DIR": str(tmp_path / "store"),
        **extra,
    }
    return workspace, env


async def test_a_source_package_is_refused_by_default_and_nothing_installed(
    tmp_path: Path,
) -> None:
    workspace, env = _environment(tmp_path)
    _sdist(
        tmp_path / "links",
        {
            "secret": "",
            "ray_token": "",
            "store": "",
            "workspace": "",
            "ray_folder": "",
            "server": 0,
        },
    )
    async with Client(stdio_transport(workspace, **env)) as client:
        await call(client, "create_session", session_id="builder")  # a Ray actor
        error = await call_error(
            client, "install_dependencies", packages=["evilpkg"], session_id="builder"
        )
        assert error.startswith("SourceBuildRefused: evilpkg has no wheel"), error
        assert "allow_source_builds" in error
        reply = await run(client, "import evilpkg", session_id="builder")
        assert reply["error"]["ename"] == "ModuleNotFoundError"
        site = tmp_path / "store" / "site" / "local" / "builder"
        # uv's own lock file at most: no package, no metadata.
        assert [p.name for p in site.iterdir() if p.name != ".lock"] == []


async def test_an_allowed_build_runs_in_the_sandbox_and_reads_nothing(tmp_path: Path) -> None:
    workspace, env = _environment(tmp_path, RAYKERNEL_ALLOW_SOURCE_BUILDS="true")
    known = {c.pid for c in psutil.Process().children()}
    async with Client(stdio_transport(workspace, **env)) as client:
        await call(client, "create_session", session_id="builder")
        server = _server(known)
        (tmp_path / "home" / ".ray" / "auth_token").write_text("ray-token")
        probe = {
            "secret": str(tmp_path / "home" / "secret.txt"),
            "ray_token": str(tmp_path / "home" / ".ray" / "auth_token"),
            "store": str(tmp_path / "store"),
            "workspace": str(workspace),
            "ray_folder": "/tmp/ray",
            "server": server.pid,
        }
        _sdist(tmp_path / "links", probe)
        installed = await call(
            client, "install_dependencies", packages=["evilpkg"], session_id="builder"
        )
        assert installed["success"] is True, installed["stderr"]
        found = await run(client, "import evilpkg\nevilpkg.FOUND", session_id="builder")
        assert found["success"], found
        seen = eval(found["result"])  # a dict literal the build wrote
        for key in ("secret", "ray_token", "store", "workspace_write"):
            assert seen[key] == "refused: PermissionError", (key, seen)
        assert seen["ray_folder"] in ("[]", "refused: PermissionError"), seen
        assert seen["server_cmdline"] == "refused: FileNotFoundError", seen  # not in its /proc
        assert seen["env"] == [], seen
        assert not (workspace / "planted.txt").exists()
        # Nothing of the build is left running.
        assert not any("evilpkg" in " ".join(p.cmdline()) for p in server.children(True))
