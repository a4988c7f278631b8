"""Runs as Jupyter notebook cells (nbformat 4), both ways.

``cell_outputs(reply)`` turns a run's reply into the outputs Jupyter would have recorded:
``stream`` for stdout and stderr, ``display_data`` for each ``display()`` and figure,
``execute_result`` with every form of the value, ``error`` with its traceback. Images stay
references to their files under outputs/ (``{"$file": path}``) until ``notebook`` inlines them,
so that a session's history holds text, not pictures. The kernel records these per run
(cheap to import: nbformat is only needed to build and validate a notebook, in the front end).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

MAX_OUTPUTS = 50
MAX_TEXT = 200_000

ReadImage = Callable[[str], Awaitable[str | None]]  # workspace path -> base64, or None


def cell_outputs(reply: dict[str, Any]) -> list[dict[str, Any]]:
    """The nbformat outputs of one run's reply (images as file references)."""
    outputs: list[dict[str, Any]] = []
    for name in ("stdout", "stderr"):
        if reply.get(name):
            outputs.append({"output_type": "stream", "name": name, "text": _cap(reply[name])})
    mimes = {i["path"]: i.get("mime_type", "image/png") for i in reply.get("images") or []}
    for forms in reply.get("displays") or []:
        data = _bundle(forms, mimes)
        outputs.append({"output_type": "display_data", "data": data, "metadata": {}})
    for image in reply.get("images") or []:
        if image.get("source") == "figure":
            data = {image.get("mime_type", "image/png"): {"$file": image["path"]}}
            outputs.append({"output_type": "display_data", "data": data, "metadata": {}})
    if reply.get("result") is not None:
        forms = _bundle(reply.get("result_data") or {}, mimes)
        data = {"text/plain": _cap(reply["result"]), **forms}
        outputs.append(
            {
                "output_type": "execute_result",
                "data": data,
                "metadata": {},
                "execution_count": reply.get("execution_count"),
            }
        )
    error = reply.get("error")
    if error:
        outputs.append(
            {
                "output_type": "error",
                "ename": error.get("ename", "Error"),
                "evalue": _cap(error.get("evalue", "")),
                "traceback": _cap(error.get("traceback", "")).splitlines(),
            }
        )
    return outputs[:MAX_OUTPUTS]


def _bundle(forms: dict[str, Any], mimes: dict[str, str]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for mime, value in forms.items():
        if mime == "image":  # the path of the image this bundle held
            data[mimes.get(value, "image/png")] = {"$file": value}
        elif isinstance(value, str):
            data[mime] = _cap(value)
        else:
            data[mime] = value  # JSON forms (application/json...)
    return data


def _cap(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + "\n[... truncated]"


async def notebook(cells: list[dict[str, Any]], read_image: ReadImage) -> Any:
    """A validated nbformat 4 notebook of ``cells`` (``{"code", "execution_count",
    "outputs"}``), images inlined as Jupyter stores them."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook, new_output

    book = new_notebook()
    book.metadata.update(
        {
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python"},
        }
    )
    for cell in cells:
        outputs = []
        for output in cell.get("outputs") or []:
            output = dict(output)
            if "data" in output:
                output["data"] = await _inlined(output["data"], read_image)
            outputs.append(new_output(**output))
        book.cells.append(
            new_code_cell(
                source=cell["code"], execution_count=cell.get("execution_count"), outputs=outputs
            )
        )
    nbformat.validate(book)
    return book


async def _inlined(data: dict[str, Any], read_image: ReadImage) -> dict[str, Any]:
    inlined: dict[str, Any] = {}
    for mime, value in data.items():
        if isinstance(value, dict) and "$file" in value:
            encoded = await read_image(value["$file"])
            if encoded is None:
                inlined.setdefault("text/plain", f"[image {value['$file']} is gone]")
            else:
                inlined[mime] = encoded
        else:
            inlined[mime] = value
    return inlined
