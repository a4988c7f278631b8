"""Helpers the tests share (fixtures live in conftest.py): calling tools and reading their
replies, starting the server as a subprocess over stdio or HTTP."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from fastmcp import Client
from fastmcp.exceptions import ToolError

REPO = Path(__file__).resolve().parent.parent

# What a model might pass as a package: each must be refused before anything runs.
HOSTILE_PACKAGE_SPECS = [
    "x; rm -rf ~",
    "$(id)",
    "`id`",
    "--index-url=https://evil.example/simple",
    "-e .",
    "-r requirements.txt",
    "git+https://github.com/x/y.git@--upload-pack=touch /tmp/pwned",
    "./local/path",
    "/abs/path/pkg.whl",
    "https://example.com/pkg.tar.gz",
    "pkg @ https://example.com/pkg.whl",
    "pkg && echo hi",
    "pkg | cat",
    "",
    "   ",
]


async def call(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    """Call a tool and return its structured reply."""
    result = await client.call_tool(tool, arguments)
    assert result.structured_content is not None, result
    return result.structured_content


async def call_error(client: Client, tool: str, **arguments: Any) -> str:
    """Call a tool that must fail; return the error text the client sees."""
    with pytest.raises(ToolError) as info:
        await client.call_tool(tool, arguments)
    return str(info.value)


async def run(client: Client, code: str, **arguments: Any) -> dict[str, Any]:
    return await call(client, "run_python_code", code=code, **arguments)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "raykernel", *args]


def subprocess_env(**extra: str | None) -> dict[str, str]:
    """This process's environment without raykernel's and Ray's address settings, offering
    every toolset (as the in-process server does); ``extra`` adds variables, and removes those
    given as None (``RAYKERNEL_TOOLSETS=None``: the default toolsets)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAYKERNEL_")}
    env.pop("RAY_ADDRESS", None)
    env["RAYKERNEL_TOOLSETS"] = "all"
    for name, value in extra.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def stdio_transport(workspace: Path, *args: str, **env: str | None) -> Any:
    """The server as a stdio subprocess for fastmcp's Client; its stderr goes to server.log."""
    from fastmcp.client.transports import StdioTransport

    return StdioTransport(
        command=sys.executable,
        args=server_command("--workspace", str(workspace), *args)[1:],
        env=subprocess_env(**env),
        keep_alive=False,
        log_file=workspace / "server.log",
    )


def text_of(result: Any) -> dict[str, Any]:
    """The JSON text block of a tool result (what a text-only client reads)."""
    return json.loads(result.content[0].text)


class HttpServer(NamedTuple):
    url: str
    proc: subprocess.Popen
    # The server's own token (it makes one when no authentication is configured), else None.
    token: str | None


@contextmanager
def http_server_process(
    workspace: Path, log_name: str = "server.log", **env: str
) -> Iterator[HttpServer]:
    """``raykernel --transport http`` as a subprocess; yields (url, process, token) once it
    answers. Its state_dir is beside the workspace unless ``env`` names one. On exit it is
    stopped with SIGTERM, as a service manager would."""
    port = free_port()
    env.setdefault("RAYKERNEL_STATE_DIR", f"{workspace}-state")
    with open(workspace / log_name, "wb") as log:
        proc = subprocess.Popen(
            server_command(
                "--transport", "http", "--port", str(port), "--workspace", str(workspace)
            ),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=subprocess_env(**env),
        )
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1)
                    break
                except urllib.error.HTTPError:
                    break  # it answers (404 on /): it is up
                except OSError:
                    time.sleep(0.2)
            else:
                pytest.fail("HTTP server did not start: " + (workspace / log_name).read_text())
            token_file = Path(env["RAYKERNEL_STATE_DIR"]) / "http-token"
            token = token_file.read_text().strip() if token_file.exists() else None
            yield HttpServer(f"http://127.0.0.1:{port}/mcp", proc, token)
        finally:
            proc.terminate()
            proc.wait(60)
