"""The kernel's parent side without Ray: temp folders of dead owners are swept."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from raykernel.kernel import host


def test_stale_kernel_temp_folders_of_dead_owners_are_swept(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(host.tempfile, "gettempdir", lambda: str(tmp_path))
    monkeypatch.setattr(host, "_swept", False)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    stale = tmp_path / f"raykernel-kernel-{gone.pid}-abc"
    live = tmp_path / f"raykernel-kernel-{os.getpid()}-def"
    for folder in (stale, live):
        (folder / "tmp").mkdir(parents=True)
    host.sweep_stale_temp()
    assert not stale.exists() and live.exists()
