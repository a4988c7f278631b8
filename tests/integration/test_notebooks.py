"""Notebooks through a real MCP client against real sessions: a session's history exported as
a .ipynb that validates and renders (nbconvert) with its figure and its DataFrame table, a
notebook run cell by cell as papermill would, and the export as a resource."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
from fastmcp import Client
from nbconvert import HTMLExporter
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from tests.helpers import call, run

CELLS = [
    "import pandas as pd\nprint('hello')\nimport sys; print('careful', file=sys.stderr)",
    "pd.DataFrame({'a': [1, 2], 'b': ['x', 'y']})",
    "from IPython.display import display, Markdown\ndisplay(Markdown('**bold**'))",
    "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3]);",
    "1 / 0",
]


async def test_export_notebook_writes_what_jupyter_would(
    client: Client, scratch: str, workspace: Path
) -> None:
    for code in CELLS:
        await run(client, code, session_id=scratch)
    exported = await call(
        client, "export_notebook", path="outputs/history.ipynb", session_id=scratch
    )
    assert exported["cells"] == len(CELLS)
    book = nbformat.read(workspace / "outputs" / "history.ipynb", as_version=4)
    nbformat.validate(book)
    assert [c.source for c in book.cells] == CELLS
    assert [c.execution_count for c in book.cells] == [1, 2, 3, 4, 5]
    first, table, shown, figure, error = (c.outputs for c in book.cells)
    assert [(o.output_type, o.name, o.text) for o in first] == [
        ("stream", "stdout", "hello\n"),
        ("stream", "stderr", "careful\n"),
    ]
    assert table[0].output_type == "execute_result" and table[0].execution_count == 2
    assert "<table" in table[0].data["text/html"] and "text/plain" in table[0].data
    assert shown[0].output_type == "display_data" and "**bold**" in shown[0].data["text/markdown"]
    assert figure[0].output_type == "display_data"
    assert figure[0].data["image/png"].startswith("iVBOR")  # the PNG, inlined
    assert (error[0].output_type, error[0].ename) == ("error", "ZeroDivisionError")
    assert any("1 / 0" in line for line in error[0].traceback)
    html, _ = HTMLExporter().from_notebook_node(book)
    assert "data:image/png;base64,iVBOR" in html and "<table" in html
    assert exported["output_types"] == ["display_data", "error", "execute_result", "stream"]


async def test_run_notebook_runs_cells_in_order_and_writes_the_executed_copy(
    client: Client, scratch: str, workspace: Path
) -> None:
    book = new_notebook(
        cells=[
            new_markdown_cell("# A notebook"),
            new_code_cell("x = 20"),
            new_code_cell("x + 22"),
            new_code_cell("raise ValueError('stop here')"),
            new_code_cell("y = 'never'"),
        ]
    )
    nbformat.write(book, workspace / "outputs" / "plan.ipynb")
    ran = await call(client, "run_notebook", path="outputs/plan.ipynb", session_id=scratch)
    assert [c["status"] for c in ran["cells"]] == ["ok", "ok", "error", "skipped"]
    assert "ValueError: stop here" in ran["cells"][2]["error"]
    assert ran["success"] is False and ran["output_path"] == "outputs/plan.executed.ipynb"
    executed = nbformat.read(workspace / "outputs" / "plan.executed.ipynb", as_version=4)
    nbformat.validate(executed)
    assert executed.cells[0].cell_type == "markdown"
    assert executed.cells[2].outputs[0].data["text/plain"] == "42"
    assert (await run(client, "'y' in dir()", session_id=scratch))["result"] == "False"
    # Without stop_on_error every cell runs.
    again = await call(
        client, "run_notebook", path="outputs/plan.ipynb", session_id=scratch, stop_on_error=False
    )
    assert [c["status"] for c in again["cells"]] == ["ok", "ok", "error", "ok"]
    assert (await run(client, "y", session_id=scratch))["result"] == "'never'"


async def test_the_notebook_resource_is_the_export(client: Client, scratch: str) -> None:
    await run(client, "print(6 * 7)", session_id=scratch)
    contents = await client.read_resource(f"raykernel://sessions/{scratch}/notebook")
    book = nbformat.reads(contents[0].text, as_version=4)
    nbformat.validate(book)
    assert book.cells[0].outputs[0].text == "42\n"
    assert json.loads(contents[0].text)["nbformat"] == 4
