"""Installing as users do: the wheel holds only the ``raykernel`` package, and ``uvx`` runs it
from that wheel alone (a fresh environment resolved by uv) as a stdio server."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from fastmcp import Client
from fastmcp.client.transports import StdioTransport

from tests.helpers import REPO, subprocess_env

pytestmark = pytest.mark.subprocess

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [str(BIN / "uv"), "build", "--wheel", "-q", "-o", str(out), str(REPO)], check=True
    )
    (built,) = out.glob("raykernel-*.whl")
    return built


def test_the_wheel_holds_only_the_raykernel_package(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names}
    assert tops == {"raykernel", wheel.name.split("-py3")[0] + ".dist-info"}, tops
    assert "raykernel/actors/session_actor.py" in names
    assert "raykernel/plugins/execution.py" in names


def _uvx(wheel: Path) -> list[str]:
    return [str(BIN / "uvx"), "--from", str(wheel), "raykernel"]


def test_uvx_runs_the_wheel(wheel: Path) -> None:
    env = subprocess_env(PYTHONPATH=None)
    version = subprocess.run([*_uvx(wheel), "--version"], capture_output=True, text=True, env=env)
    assert version.stdout.startswith("raykernel "), version.stderr[-2000:]


async def test_uvx_serves_stdio_from_the_wheel(wheel: Path, tmp_path: Path) -> None:
    uvx = _uvx(wheel)
    transport = StdioTransport(
        command=uvx[0],
        args=[*uvx[1:], "--workspace", str(tmp_path)],
        env=subprocess_env(PYTHONPATH=None),
        keep_alive=False,
        log_file=tmp_path / "server.log",
    )
    async with Client(transport) as client:
        names = {tool.name for tool in await client.list_tools()}
        assert {"run_python_code", "create_session", "get_kernel_health"} <= names
        code = "import raykernel\nraykernel.__file__"
        reply = await client.call_tool("run_python_code", {"code": code})
        assert str(REPO) not in reply.structured_content["result"]  # the wheel's, not this checkout
