"""The MCP surface a model acts on: titles, descriptions and all four annotations on every
tool, argument descriptions, resources and resource templates, and prompts."""

from __future__ import annotations

import json

import pytest
from fastmcp import Client

from raykernel.server.arguments import SPEC_DEFAULTS
from tests.helpers import call

# Tools that may destroy what a session holds (variables, files, runs), so say nothing more.
DESTRUCTIVE = {
    "run_python_code",
    # A view of the same name replaced, a query's output file written, a view dropped.
    "register_dataset",
    "query_datasets",
    "drop_dataset",
    "unregister_session_tool",  # a tool others' calls may rely on, gone
    "delete_session",
    "restart_kernel",
    "write_file",
    "delete_file",
    "save_script",
    "run_script",
    "cancel_run",
    "restore_session",
    "rewind_session",
    "transfer_variable",
}


async def test_every_tool_is_described_and_annotated(client: Client) -> None:
    tools = await client.list_tools()
    assert len(tools) >= 30
    for tool in tools:
        assert tool.title, tool.name
        assert tool.description and len(tool.description) > 20, tool.name
        # A hint left out means the spec's default (hints() states only the others).
        assert tool.annotations is not None, tool.name
        stated = tool.annotations.model_dump(by_alias=True, exclude_none=True)
        annotations = {**SPEC_DEFAULTS, **stated}
        if annotations["readOnlyHint"]:  # the spec ignores the other two: none is stated
            assert not {"destructiveHint", "idempotentHint"} & set(stated), tool.name
        else:
            assert "destructiveHint" in stated or tool.name in DESTRUCTIVE, tool.name
        for name, schema in tool.input_schema.get("properties", {}).items():
            described = schema.get("description") or any(
                option.get("description") for option in schema.get("anyOf", [])
            )
            assert (
                described
                or schema.get("type") == "boolean"
                or name in ("recursive", "path", "content", "encoding", "name")
            ), (tool.name, name)


async def test_resources_templates_and_prompts(client: Client, scratch: str) -> None:
    templates = {t.uri_template for t in await client.list_resource_templates()}
    assert {
        "raykernel://outputs/{path*}",
        "raykernel://scripts/{name}",
        "raykernel://sessions/{session_id}",
    } <= templates
    resources = {str(r.uri) for r in await client.list_resources()}
    assert {"raykernel://sessions", "raykernel://outputs"} <= resources

    await call(client, "save_script", name="shared_tools", content="def helper():\n    return 1\n")
    script = await client.read_resource("raykernel://scripts/shared_tools")
    assert script[0].text.startswith("def helper")
    summary = json.loads((await client.read_resource(f"raykernel://sessions/{scratch}"))[0].text)
    assert summary["session_id"] == scratch
    assert summary["health"]["status"] in ("healthy", "busy", "cold")
    every = json.loads((await client.read_resource("raykernel://sessions"))[0].text)
    assert every[scratch]["uri"] == f"raykernel://sessions/{scratch}"

    for escape in ("raykernel://outputs/../../etc/passwd", "raykernel://outputs/%2E%2E/%2E%2E/x"):
        with pytest.raises(Exception, match=r"^ResourceNotFound: "):
            await client.read_resource(escape)
    with pytest.raises(Exception, match="InvalidArgument"):
        await client.read_resource("raykernel://scripts/bad-name")

    prompts = {p.name for p in await client.list_prompts()}
    assert {"analyze_csv", "parallel_experiments", "debug_session"} <= prompts
    rendered = await client.get_prompt("analyze_csv", {"path": "outputs/sales.csv"})
    text = rendered.messages[0].content.text
    assert "pd.read_csv('outputs/sales.csv')" in text and "create_session" in text
