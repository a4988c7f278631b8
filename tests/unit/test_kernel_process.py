"""The kernel's parent side without Ray: temp folders of dead owners are swept."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from raykernel.actors import kernel_client


def test_stale_kernel_temp_folders_of_dead_owners_are_swept(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(kernel_client.tempfile, "gettempdir", lambda: str(tmp_path))
    monkeypatch.setattr(kernel_client, "_swept", False)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    stale = tmp_path / f"raykernel-kernel-{gone.pid}-abc"
    live = tmp_path / f"raykernel-kernel-{os.getpid()}-def"
    for folder in (stale, live):
        (folder / "tmp").mkdir(parents=True)
    kernel_client.sweep_stale_temp()
    assert not stale.exists() and live.exists()


async def test_a_kernel_that_dies_at_start_says_why(tmp_path: Path) -> None:
    """Its own exit status and the last lines it wrote, not a guess (it used to be killed
    first, and then reported as 'killed by SIGKILL (out of memory?)')."""
    from raykernel.actors.kernel_client import KernelGone, KernelProcess

    kernel = KernelProcess({**os.environ, "TMPDIR": str(tmp_path)})
    spec = {"workspace": str(tmp_path / "missing"), "isolation": "process", "network": "on"}
    with pytest.raises(KernelGone) as info:
        await kernel.start(spec, timeout=60)
    reason = info.value.reason
    assert "exited with status 1" in reason and "FileNotFoundError" in reason, reason
    assert "SIGKILL" not in reason


def test_a_workspace_inside_rays_temp_folder_is_refused_naming_both(tmp_path: Path) -> None:
    from raykernel.actors.session_actor import refuse_hidden
    from raykernel.errors import SessionUnavailable
    from raykernel.settings import Settings

    ray_temp = tmp_path / "ray"
    inside = Settings(workspace=ray_temp / "ws", state_dir=tmp_path / "state", config=None)
    with pytest.raises(ValueError, match=f"workspace {ray_temp / 'ws'} is inside .*{ray_temp}"):
        inside.refuse_inside(ray_temp)
    outside = Settings(workspace=tmp_path / "ws", state_dir=ray_temp / "s", config=None)
    with pytest.raises(ValueError, match="state_dir"):
        outside.refuse_inside(ray_temp)
    Settings(workspace=tmp_path / "ws", state_dir=tmp_path / "s", config=None).refuse_inside(
        ray_temp
    )
    with pytest.raises(SessionUnavailable, match="inside Ray's temp folder"):
        refuse_hidden(ray_temp / "ws", tmp_path / "s", [str(ray_temp)])


def test_the_server_refuses_to_start_with_its_workspace_in_rays_folder(tmp_path: Path) -> None:
    from tests.helpers import server_command, subprocess_env

    workspace = tmp_path / "ray" / "ws"
    done = subprocess.run(
        server_command("--workspace", str(workspace)),
        capture_output=True,
        text=True,
        timeout=60,
        env=subprocess_env(RAY_TMPDIR=str(tmp_path), RAYKERNEL_STATE_DIR=str(tmp_path / "s")),
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 2, done.stderr
    assert str(workspace) in done.stderr and str(tmp_path / "ray") in done.stderr
