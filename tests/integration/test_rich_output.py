"""What a client sees of rich output: DataFrames as text and HTML, display(), the display
protocol, matplotlib figures as images with resource links, and bounded image sizes."""

from __future__ import annotations

import base64
import json

from fastmcp import Client

from tests.helpers import run

DATAFRAME = (
    "import pandas as pd\ndf = pd.DataFrame({'city': ['Oslo', 'Lima'], 'temp': [3.5, 19.0]})\ndf"
)


async def test_dataframe_is_text_for_models_and_html_in_structured_content(
    client: Client, scratch: str
) -> None:
    result = await client.call_tool("run_python_code", {"code": DATAFRAME, "session_id": scratch})
    reply = result.structured_content
    assert "Oslo" in reply["result"] and "temp" in reply["result"]  # the repr, as text
    assert "<table" in reply["result_data"]["text/html"]
    text = json.loads(result.content[0].text)
    assert "Oslo" in text["result"]
    assert "text/html" not in text["result_data"]  # bulky HTML is only in structured content


async def test_display_calls_and_the_display_protocol(client: Client, scratch: str) -> None:
    code = (
        "class Card:\n"
        "    def _repr_markdown_(self): return '**bold card**'\n"
        "    def _repr_json_(self): return {'kind': 'card'}\n"
        "    def __repr__(self): return 'Card()'\n"
        "class Broken:\n"
        "    def _repr_html_(self): raise RuntimeError('no html')\n"
        "    def __repr__(self): return 'Broken()'\n"
        "display(Card())\n"
        "display('plain text', Broken())\n"
        "from IPython.display import HTML, display as ipy_display\n"
        "ipy_display(HTML('<b>from ipython</b>'))\n"
        "Card()"
    )
    reply = await run(client, code, session_id=scratch)
    assert reply["success"] is True, reply["error"]
    displays = reply["displays"]
    assert displays[0] == {
        "text/plain": "Card()",
        "text/markdown": "**bold card**",
        "application/json": {"kind": "card"},
    }
    assert displays[1] == {"text/plain": "'plain text'"}
    assert displays[2] == {"text/plain": "Broken()"}  # a failing _repr_html_ is skipped
    assert displays[3]["text/html"] == "<b>from ipython</b>"
    assert reply["result"] == "Card()"
    assert reply["result_data"] == {
        "text/markdown": "**bold card**",
        "application/json": {"kind": "card"},
    }


async def test_figures_and_displayed_images_come_back_as_images_files_and_links(
    client: Client, scratch: str, workspace
) -> None:
    code = (
        "import matplotlib.pyplot as plt\n"
        "plt.plot([1, 3, 2])\n"
        "class Dot:\n"
        "    def _repr_png_(self):\n"
        "        import io\n"
        "        from PIL import Image\n"
        "        buf = io.BytesIO(); Image.new('RGB', (4, 4), 'red').save(buf, 'PNG')\n"
        "        return buf.getvalue()\n"
        "display(Dot())\n"
        "open('outputs/table.csv', 'w').write('a,b\\n1,2\\n')"
    )
    result = await client.call_tool("run_python_code", {"code": code, "session_id": scratch})
    reply = result.structured_content
    sources = sorted(image["source"] for image in reply["images"])
    assert sources == ["display", "figure"]
    images = [block for block in result.content if block.type == "image"]
    assert len(images) == 2
    for block in images:
        assert base64.b64decode(block.data)[:4] == b"\x89PNG"
    for image in reply["images"]:
        assert "data" not in image  # images travel once, as image blocks
        assert (workspace / image["path"]).is_file()
    assert reply["displays"][0]["image"].startswith("outputs/display_")
    links = {block.uri for block in result.content if block.type == "resource_link"}
    assert f"raykernel://{reply['images'][0]['path']}" in links
    assert "raykernel://outputs/table.csv" in links
    # The link resolves through resources/read.
    read = await client.read_resource("raykernel://outputs/table.csv")
    assert read[0].text == "a,b\n1,2\n"


async def test_large_images_are_downscaled_within_the_limit(
    client: Client, scratch: str, app
) -> None:
    limit = app.settings.max_image_bytes
    code = (
        "import numpy as np\n"
        "from PIL import Image\n"
        "class Noise:\n"
        "    def _repr_png_(self):\n"
        "        import io\n"
        "        rng = np.random.default_rng(0)\n"
        "        pixels = rng.integers(0, 255, (1500, 1500, 3), dtype=np.uint8)\n"
        "        buf = io.BytesIO(); Image.fromarray(pixels).save(buf, 'PNG')\n"
        "        return buf.getvalue()\n"
        "Noise()"
    )
    result = await client.call_tool("run_python_code", {"code": code, "session_id": scratch})
    image = result.structured_content["images"][0]
    assert image["size_bytes"] > limit  # the file is full size
    assert "downscaled" in image["note"]
    block = next(b for b in result.content if b.type == "image")
    assert len(base64.b64decode(block.data)) <= limit
