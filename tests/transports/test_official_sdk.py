"""The official `mcp` SDK's ClientSession against the server over stdio and streamable HTTP,
in both reply shapes (result_format "structured" and "content"): a run that plots, displays a
DataFrame and streams progress, seen as that client sees it."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

from tests.helpers import http_server_process, server_command, subprocess_env

pytestmark = pytest.mark.subprocess

SHOWCASE = (
    "import time\n"
    "import matplotlib.pyplot as plt\n"
    "import pandas as pd\n"
    "for step in range(4):\n"
    "    print(f'training step {step}', flush=True)\n"
    "    time.sleep(0.5)\n"
    "df = pd.DataFrame({'step': range(4), 'loss': [0.9, 0.5, 0.3, 0.2]})\n"
    "display(df.describe())\n"
    "plt.plot(df['step'], df['loss'])\n"
    "plt.title('loss')\n"
    "df"
)


async def _showcase(session: ClientSession) -> tuple[Any, list[str]]:
    await session.initialize()
    names = {tool.name for tool in (await session.list_tools()).tools}
    assert {"run_python_code", "get_run", "code_completion", "get_history"} <= names
    messages: list[str] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        messages.append(message or "")

    result = await session.call_tool(
        "run_python_code", {"code": SHOWCASE}, progress_callback=on_progress
    )
    assert not result.is_error, result.content
    return result, messages


def _check_content(result: Any, messages: list[str]) -> dict[str, Any]:
    assert any("training step" in m for m in messages), messages
    kinds = [block.type for block in result.content]
    assert kinds[0] == "text" and "image" in kinds and "resource_link" in kinds
    image = next(b for b in result.content if b.type == "image")
    assert base64.b64decode(image.data)[:4] == b"\x89PNG"
    link = next(b for b in result.content if b.type == "resource_link")
    assert link.uri.startswith("raykernel://outputs/figure_")
    return json.loads(result.content[0].text)


async def test_official_sdk_over_stdio_structured(tmp_path: Path) -> None:
    command = server_command("--workspace", str(tmp_path))
    params = StdioServerParameters(command=command[0], args=command[1:], env=subprocess_env())
    with (tmp_path / "server.log").open("w") as errlog:
        async with (
            stdio_client(params, errlog=errlog) as (read, write),
            ClientSession(read, write) as session,
        ):
            result, messages = await _showcase(session)
            text = _check_content(result, messages)
            structured = result.structured_content
            assert "<table" in structured["result_data"]["text/html"]
            assert "loss" in structured["result"] and "loss" in text["result"]
            assert "text/html" not in text["result_data"]
            assert "mean" in structured["displays"][0]["text/plain"]
            figure = structured["images"][0]
            link = next(b for b in result.content if b.type == "resource_link")
            read_back = await session.read_resource(link.uri)
            assert base64.b64decode(read_back.contents[0].blob)[:4] == b"\x89PNG"
            assert (tmp_path / figure["path"]).is_file()
    print("\nrun_python_code as the official SDK sees it (stdio, structured):")
    print(" content:", [block.type for block in result.content])
    print(" progress messages:", messages)
    print(" text block:", result.content[0].text[:600])


async def test_official_sdk_over_http_content_only(tmp_path: Path) -> None:
    with http_server_process(tmp_path, RAYKERNEL_RESULT_FORMAT="content") as (url, _, token):
        # The server's own token, as a user pastes it from its start-up lines.
        headers = {"Authorization": f"Bearer {token}"}
        async with (
            httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(300.0)) as http,
            streamable_http_client(url, http_client=http) as (read, write),
            ClientSession(read, write) as session,
        ):
            result, messages = await _showcase(session)
            text = _check_content(result, messages)
            # No structured content: clients that would show only it now show the images.
            assert result.structured_content is None
            assert "<table" in text["result_data"]["text/html"]
            assert "loss" in text["result"]
            completion = await session.call_tool("code_completion", {"code": "df.lo"})
            matches = [m["text"] for m in completion.structured_content["matches"]]
            assert "loss" in matches and "loc" in matches
    print("\nrun_python_code as the official SDK sees it (HTTP, content only):")
    print(" content:", [block.type for block in result.content])
    print(" progress messages:", messages[:4])
