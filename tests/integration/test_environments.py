"""Sessions in the user's own Python environments (the ``environments`` setting), through a
real client against real Ray: a venv the test builds, with a package only it has, runs a
session confined as any other; the environment and its Python version are reported; an
interpreter that cannot run a kernel is refused at create_session with the reason."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from fastmcp import Client

from tests.helpers import call, call_error, run

PURELIB = "import sysconfig; print(sysconfig.get_path('purelib'))"
# Where the venv's .pth tries to write: the server user's home, out of every sandbox's reach.
ESCAPE = Path.home() / f"raykernel-escape-{os.getpid()}"


def _files(root: Path) -> list[str]:
    return sorted(str(p) for p in root.rglob("*"))


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv of this interpreter (no pip: nothing to download) with a module only it has."""
    root = tmp_path_factory.mktemp("envs") / "project"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    found = subprocess.run(
        [
            str(root / "bin" / "python"),
            "-c",
            "import sysconfig; print(sysconfig.get_path('purelib'))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    site = Path(found.stdout.strip())
    (site / "only_here.py").write_text("ANSWER = 42\n")
    # A package's .pth runs whenever the interpreter starts, the server's probe included: it
    # must meet the kernel's sandbox there too.
    (site / "hostile.pth").write_text(
        f"import pathlib; pathlib.Path({str(ESCAPE)!r}).write_text('escaped')\n"
    )
    return root


@pytest.fixture
async def envs(workspace: Path, venv: Path, tmp_path: Path) -> AsyncIterator[tuple[Client, Any]]:
    """A second server on this process's Ray, with three environments: the venv, an
    interpreter too old for a kernel, and a folder that is no environment."""
    from raykernel.server.app import app_of
    from raykernel.server.build import build_server
    from raykernel.settings import Settings

    old = tmp_path / "python3.8"
    old.write_text(
        "#!/bin/sh\necho '"
        + json.dumps({"version": "3.8.18", "prefix": "/x", "base_prefix": "/x", "problem": None})
        + "'\n"
    )
    old.chmod(0o755)
    mcp, _ = build_server(
        Settings(
            workspace=workspace,
            environments={"project": str(venv), "ancient": str(old), "nothing": str(tmp_path)},
            toolsets=["all"],
            config=None,
        )
    )
    async with Client(mcp) as client:
        await call(client, "list_sessions")
        yield client, app_of(mcp)


async def test_a_session_runs_in_an_environment_the_test_made(
    envs: tuple[Client, Any], venv: Path
) -> None:
    client, _app = envs
    created = await call(client, "create_session", session_id="in-venv", environment="project")
    assert created["environment"] == "project"
    assert not ESCAPE.exists()  # the probe ran the venv's .pth in the sandbox
    await call(client, "create_session", session_id="plain-one")
    try:
        inside = await run(
            client,
            "import sys, only_here\n(sys.prefix, only_here.ANSWER)",
            session_id="in-venv",
        )
        assert inside["success"], inside
        assert inside["result"] == repr((str(venv), 42))
        assert not ESCAPE.exists()  # and so did the kernel
        # The package is the environment's: another session does not have it.
        other = await run(client, "import only_here", session_id="plain-one")
        assert other["error"]["ename"] == "ModuleNotFoundError"
        # And the server's own packages are not the environment's (only the kernel's code
        # reaches it): NumPy is installed beside the server, not in the venv.
        server_only = await run(client, "import numpy", session_id="in-venv")
        assert server_only["error"]["ename"] == "ModuleNotFoundError"

        health = await call(client, "get_kernel_health", session_id="in-venv")
        plain = await call(client, "get_kernel_health", session_id="plain-one")
        assert health["environment"] == "project" and plain["environment"] is None
        assert health["python_version"] == platform.python_version()
        # Confined exactly as a session in the server's own Python is.
        assert health["isolation"] == plain["isolation"]
        assert health["isolation"]["mode"] == "confined"
        listed = (await call(client, "list_sessions"))["sessions"]
        assert listed["in-venv"]["environment"] == "project"
        assert listed["in-venv"]["python_version"] == platform.python_version()
        # The environment is read-only to the session, like the server's installation.
        write = await run(
            client,
            "import only_here, pathlib\npathlib.Path(only_here.__file__).write_text('x')",
            session_id="in-venv",
        )
        assert write["error"]["ename"] == "PermissionError"
        # Installing adds to the session's own folder, for that interpreter, and leaves the
        # environment as it was.
        before = _files(venv)
        installed = await call(
            client, "install_dependencies", packages=["tinydb"], session_id="in-venv"
        )
        assert installed["success"], installed["stderr"]
        used = await run(client, "import tinydb, only_here\ntinydb.__name__", session_id="in-venv")
        assert used["result"] == "'tinydb'"
        assert _files(venv) == before
        # What a kernel imports before it confines itself (the links to raykernel's code) is
        # out of its reach: replacing it would run code unconfined at the next start.
        links = await run(
            client,
            "import sys, pathlib\nhere = [p for p in sys.path if p.endswith('kernel-path')][0]\n"
            "pathlib.Path(here, 'evil.py').write_text('x')",
            session_id="in-venv",
        )
        assert links["error"]["ename"] == "PermissionError", links
        # A new kernel (restart) runs the environment's interpreter again.
        await call(client, "restart_kernel", session_id="in-venv")
        again = await run(client, "import only_here\nonly_here.ANSWER", session_id="in-venv")
        assert again["result"] == "42"
        # Hibernated and resumed, it comes back in its environment.
        await run(client, "kept = 7", session_id="in-venv")
        await call(client, "hibernate_session", session_id="in-venv")
        resumed = await run(
            client, "import sys, only_here\n(kept, sys.prefix)", session_id="in-venv"
        )
        assert resumed["result"] == repr((7, str(venv)))
    finally:
        for sid in ("in-venv", "plain-one"):
            await call(client, "delete_session", session_id=sid)


async def test_an_environment_that_cannot_run_a_kernel_is_refused(
    envs: tuple[Client, Any],
) -> None:
    client, _app = envs
    old = await call_error(client, "create_session", session_id="old", environment="ancient")
    assert old.startswith("InvalidArgument:") and "3.8.18" in old and "3.11" in old
    none = await call_error(client, "create_session", session_id="none", environment="nothing")
    assert none.startswith("InvalidArgument:") and "no bin/python" in none
    unknown = await call_error(client, "create_session", session_id="unk", environment="nope")
    assert unknown.startswith("InvalidArgument:") and "project" in unknown
    listed = (await call(client, "list_sessions"))["sessions"]
    assert not {"old", "none", "unk"} & set(listed)  # nothing was created


async def test_the_argument_is_offered_only_with_environments(client: Client) -> None:
    """The suite's server has no environments: create_session does not offer one."""
    tools = {t.name: t for t in await client.list_tools()}
    assert "environment" not in tools["create_session"].input_schema["properties"]
    refused = await call_error(client, "create_session", session_id="x-env", environment="any")
    assert refused.startswith("InvalidArgument:") and "none are configured" in refused
