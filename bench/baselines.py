"""The baselines raykernel is measured against, each started the same way as raykernel.

* the floor: bench/bare_server.py, a bare fastmcp server exec'ing in its own process;
* the seed: python-mcp-server 0.6.2 (one Jupyter kernel per session, the same tool names). It
  needs fastmcp 2.12 / mcp 1.13, so it gets its own virtual environment under bench/.seed-venv,
  resolved as of its release (uv --exclude-newer) so that its old pins still import;
* raw jupyter_client talking to one ipykernel.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SEED_VENV = HERE / ".seed-venv"
SEED_BIN = SEED_VENV / "bin" / "python-mcp-server"


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("RAYKERNEL_")}


def ensure_seed() -> Path:
    """python-mcp-server 0.6.2 in its own venv (created once, reused), byte-compiled: with
    PYTHONDONTWRITEBYTECODE set (as on CI machines) every launch would compile it anew, and its
    start-up would be measured at several times its real cost."""
    if SEED_BIN.exists():
        _compile_seed()
        return SEED_BIN
    uv = str(Path(sys.executable).parent / "uv")
    subprocess.run([uv, "venv", "-q", str(SEED_VENV), "--python", sys.executable], check=True)
    subprocess.run(
        [
            uv,
            "pip",
            "install",
            "-q",
            "--python",
            str(SEED_VENV / "bin" / "python"),
            "--exclude-newer",
            "2025-10-20",
            "python-mcp-server==0.6.2",
            "fastmcp>=2.12,<2.13",
            "mcp>=1.13,<1.14",
        ],
        check=True,
    )
    _compile_seed()
    return SEED_BIN


def _compile_seed() -> None:
    python = SEED_VENV / "bin" / "python"
    done = SEED_VENV / ".compiled"
    if not done.exists():
        site = subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        subprocess.run([str(python), "-m", "compileall", "-q", "-j0", site], check=False)
        done.touch()


def raykernel_cmd(workspace: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "raykernel", "--workspace", workspace, *extra]


def revision_tree(rev: str) -> Path:
    """raykernel as it was at git revision ``rev``, laid out as the installed package
    (core/ -> raykernel, plugins/ and actors/ inside it), under bench/.revisions/<rev>; put it
    first on PYTHONPATH to run that version beside this one (Ray's workers inherit it)."""
    import shutil
    import tarfile
    import tempfile

    target = HERE / ".revisions" / rev
    if (target / "raykernel" / "__init__.py").exists():
        return target
    repo = HERE.parent
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "tree.tar"
        subprocess.run(["git", "-C", str(repo), "archive", "-o", str(archive), rev], check=True)
        with tarfile.open(archive) as tar:
            tar.extractall(Path(tmp) / "src", filter="data")
        src = Path(tmp) / "src"
        package = target / "raykernel"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(src / "core", package)
        shutil.copytree(src / "plugins", package / "plugins")
        shutil.copytree(src / "actors", package / "actors")
    return target


def revision_env(rev: str) -> dict[str, str]:
    """``clean_env()`` that runs raykernel as of ``rev``."""
    env = clean_env()
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(revision_tree(rev)), env.get("PYTHONPATH")])
    )
    return env


def bare_cmd(*extra: str) -> list[str]:
    return [sys.executable, str(HERE / "bare_server.py"), *extra]


def seed_cmd(workspace: str, *extra: str) -> list[str]:
    return [str(ensure_seed()), "--workspace", workspace, *extra]


class Jupyter:
    """One ipykernel driven through jupyter_client, the way a notebook front end does."""

    def __init__(self) -> None:
        from jupyter_client.manager import KernelManager

        self.km = KernelManager(kernel_name="python3")
        started = time.perf_counter()
        self.km.start_kernel()
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)
        self.start_time = time.perf_counter() - started

    @property
    def pid(self) -> int:
        return self.km.provisioner.process.pid  # type: ignore[union-attr]

    def execute(self, code: str, timeout: float = 60) -> dict[str, Any]:
        msg_id = self.kc.execute(code)
        while True:
            reply = self.kc.get_shell_msg(timeout=timeout)
            if reply["parent_header"].get("msg_id") == msg_id:
                return reply

    def start(self, code: str) -> str:
        return self.kc.execute(code)

    def wait_reply(self, msg_id: str, timeout: float = 60) -> dict[str, Any]:
        while True:
            reply = self.kc.get_shell_msg(timeout=timeout)
            if reply["parent_header"].get("msg_id") == msg_id:
                return reply

    def close(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)
