"""install_dependencies streams the installer's output as progress notifications while it
works: a local package whose build takes seconds, installed through a stdio client. A local
package outside the workspace is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastmcp import Client

from tests.helpers import stdio_transport

pytestmark = pytest.mark.subprocess

SLOW_SETUP = (
    "import time\nfrom setuptools import setup\ntime.sleep(3)\nsetup(py_modules=['slowpkg'])\n"
)


def _slow_package(folder: Path) -> Path:
    folder.mkdir()
    (folder / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "slowpkg"\nversion = "0.1"\n'
    )
    (folder / "setup.py").write_text(SLOW_SETUP)
    (folder / "slowpkg.py").write_text("BUILT = True\n")
    return folder


async def test_install_progress_carries_the_installer_output(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    # A local package must be in the workspace: the build may touch nothing the session can't.
    package = _slow_package(workspace / "slowpkg")
    messages: list[str] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        messages.append(message or "")

    transport = stdio_transport(
        workspace, RAYKERNEL_ALLOW_PACKAGE_URLS="true", RAYKERNEL_ALLOW_SOURCE_BUILDS="true"
    )
    async with Client(transport) as client:
        reply = await client.call_tool(
            "install_dependencies",
            {"packages": [f"slowpkg @ {package.as_uri()}"]},
            progress_handler=on_progress,
        )
        assert reply.structured_content["success"] is True, reply.structured_content["stderr"]
        check = await client.call_tool("run_python_code", {"code": "import slowpkg\nslowpkg.BUILT"})
        assert check.structured_content["result"] == "True"
    assert any("Building slowpkg" in message for message in messages), messages


async def test_a_local_package_outside_the_workspace_is_refused(tmp_path: Path) -> None:
    package = _slow_package(tmp_path / "elsewhere")
    workspace = tmp_path / "ws"
    workspace.mkdir()
    transport = stdio_transport(
        workspace, RAYKERNEL_ALLOW_PACKAGE_URLS="true", RAYKERNEL_ALLOW_SOURCE_BUILDS="true"
    )
    async with Client(transport) as client:
        refused = await client.call_tool(
            "install_dependencies",
            {"packages": [f"slowpkg @ {package.as_uri()}"]},
            raise_on_error=False,
        )
        assert refused.is_error
        assert refused.content[0].text.startswith("PathOutsideWorkspace:"), refused.content
    assert not (package / "slowpkg.egg-info").exists()
