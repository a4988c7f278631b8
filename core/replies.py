"""The one reply of a run, and how it is shaped for MCP clients.

``RunReply`` is what ``run_python_code``, ``run_script`` (and a background run's ``get_run``)
answer: the kernel builds it with ``run_reply``, the router builds the ones no code produced
(a death, an interrupt that could not stop the code) with ``failed_reply``, and ``tool_result``
/ ``run_result`` turn it into MCP content. Plugins use these; none imports another plugin.

Importing this module is cheap (the kernel does): MCP types are imported where they are used.

And runs as Jupyter notebook cells (nbformat 4), both ways.

``cell_outputs(reply)`` turns a run's reply into the outputs Jupyter would have recorded:
``stream`` for stdout and stderr, ``display_data`` for each ``display()`` and figure,
``execute_result`` with every form of the value, ``error`` with its traceback. Images stay
references to their files under outputs/ (``{"$file": path}``) until ``notebook`` inlines them,
so that a session's history holds text, not pictures. The kernel records these per run
(cheap to import: nbformat is only needed to build and validate a notebook, in the front end).
"""

from __future__ import annotations

import json
import mimetypes
from collections.abc import Awaitable, Callable
from typing import Any, NotRequired, TypedDict


class RunError(TypedDict):
    ename: str
    evalue: str
    traceback: str


class ImageEntry(TypedDict, total=False):
    path: str
    mime_type: str
    source: str  # figure | result | display
    size_bytes: int
    data: str | None  # base64 of the inlined (possibly downscaled) image
    inline_mime_type: str
    note: str


class RunReply(TypedDict):
    success: bool
    stdout: str
    stderr: str
    result: str | None  # the trailing expression's repr
    result_data: dict[str, Any]  # its other forms (text/html, ...)
    displays: list[dict[str, Any]]
    error: RunError | None
    execution_count: int
    execution_time: float | None
    session_id: str
    outputs: list[str]
    new_files: list[str]
    images: list[ImageEntry]
    interrupted: bool
    restarted: bool
    # False: lost; True: kept; "checkpoint": restored from the last checkpoint.
    state_preserved: bool | str
    notice: NotRequired[str]  # what happened to the session besides the run
    restored_to_execution: NotRequired[int]  # the checkpoint a restart restored
    resumed: NotRequired[bool]  # the session was hibernated; this call resumed it
    not_preserved: NotRequired[dict[str, str]]  # what a restore or resume could not carry
    extras: NotRequired[dict[str, Any]]  # after_execute hooks' contributions


def run_error(ename: str, evalue: str, traceback: str = "") -> RunError:
    return {"ename": ename, "evalue": evalue, "traceback": traceback}


def run_reply(
    session_id: str,
    execution_count: int,
    execution_time: float | None,
    *,
    stdout: str = "",
    stderr: str = "",
    error: RunError | None = None,
    result: str | None = None,
    result_data: dict[str, Any] | None = None,
    displays: list[dict[str, Any]] | None = None,
    images: list[ImageEntry] | None = None,
    new_files: list[str] | None = None,
    interrupted: bool = False,
    restarted: bool = False,
    state_preserved: bool | None = None,
) -> RunReply:
    images = images or []
    return {
        "success": error is None,
        "stdout": stdout,
        "stderr": stderr,
        "result": result,
        "result_data": result_data or {},
        "displays": displays or [],
        "error": error,
        "execution_count": execution_count,
        "execution_time": execution_time,
        "session_id": session_id,
        "outputs": [image["path"] for image in images],
        "new_files": new_files or [],
        "images": images,
        "interrupted": interrupted,
        "restarted": restarted,
        "state_preserved": (not restarted) if state_preserved is None else state_preserved,
    }


def failed_reply(
    session_id: str,
    execution_count: int,
    ename: str,
    evalue: str,
    *,
    interrupted: bool,
    restarted: bool,
    state_preserved: bool = False,
) -> RunReply:
    """The reply to a run whose code produced none (its process died, it was killed)."""
    return run_reply(
        session_id,
        execution_count,
        None,
        error=run_error(ename, evalue),
        interrupted=interrupted,
        restarted=restarted,
        state_preserved=state_preserved,
    )


def kernel_died_reply(
    session_id: str, execution_count: int, cause: str | None, *, variant: bool = False
) -> RunReply:
    """The one ``KernelDied`` reply: the process that ran the code died under it (a
    run_variants fork: ``variant``, the session itself unchanged)."""
    if variant:
        evalue = f"the variant's process died; the session is not changed. Cause: {cause}"
    else:
        evalue = (
            "the session's process died while running this code; its state is lost. "
            f"The next call restarts it. Cause: {cause}"
        )
    return failed_reply(
        session_id, execution_count, "KernelDied", evalue, interrupted=False, restarted=False
    )


def revival_notice(session_id: str, reason: str, restored: dict[str, Any] | None) -> dict[str, Any]:
    """What the first reply after a session was brought back from a death says: restarted,
    and its state as of its last checkpoint (``restored``) or lost."""
    if restored is not None:
        count = restored["execution_count"]
        return {
            "restarted": True,
            "state_preserved": "checkpoint",
            "restored_to_execution": count,
            "not_preserved": restored["not_preserved"],
            "notice": f"session {session_id!r} had died ({reason}); it was restarted "
            f"before this call with its state as of run {count} (its last checkpoint)",
        }
    return {
        "restarted": True,
        "state_preserved": False,
        "notice": f"session {session_id!r} had died ({reason}); it was restarted "
        "before this call, and its earlier state is lost",
    }


# -- shaping for MCP clients ---------------------------------------------------------------

# Bulky forms a model rarely needs twice: kept in structured content, left out of the text.
TEXT_VIEW_SKIPS = frozenset({"text/html", "image/svg+xml"})
RESOURCE_FOLDERS = ("outputs/", "scripts/")


def resource_uri(path: str) -> str | None:
    """The resource URI of a workspace file, if it is one the resources plugin serves."""
    for folder in RESOURCE_FOLDERS:
        if path.startswith(folder):
            return f"raykernel://{folder}{path[len(folder) :]}"
    return None


def tool_result(reply: RunReply | dict[str, Any], result_format: str = "structured") -> Any:
    """A run's reply for every kind of client:

    * a JSON text block (what text-only clients and most models read);
    * one image block per figure or displayed image (downscaled within ``max_image_bytes``);
    * one resource link per file the run created or saved under outputs/;
    * ``structuredContent``, the whole reply (HTML tables, SVG...), unless ``result_format``
      is "content": some clients show only structured content when both are present, and so
      would hide the images.
    """
    lean = {**without_image_data(reply), **seed_keys(reply)}
    text = lean if result_format == "content" else _text_view(lean)
    return _shaped(lean, text, _blocks(reply), result_format)


def seed_keys(reply: Any) -> dict[str, Any]:
    """What python-mcp-server 0.6.2 (the session API raykernel implements) answered and its
    clients read: ``results`` (the trailing value's text, in a list) and, for scripts,
    ``returncode``."""
    result = reply.get("result")
    return {
        "results": [] if result is None else [result],
        "returncode": 0 if reply.get("success") else 1,
    }


def run_result(view: dict[str, Any], result_format: str = "structured") -> Any:
    """A background run's status; once it has a reply, that reply's images and links come as
    blocks, as ``run_python_code`` would have sent them."""
    reply = view.get("reply")
    if not reply:
        return view
    lean = without_image_data(reply)
    shown = {**view, "reply": lean}
    text = shown if result_format == "content" else {**shown, "reply": _text_view(lean)}
    return _shaped(shown, text, _blocks(reply), result_format)


def without_image_data(reply: Any) -> dict[str, Any]:
    """Images travel once, as image blocks: the reply keeps only their description."""
    images = reply.get("images") or []
    return {**reply, "images": [{k: v for k, v in i.items() if k != "data"} for i in images]}


def _blocks(reply: Any) -> list[Any]:
    """Image blocks for the reply's inlined images, then links to the files it made."""
    from mcp_types import ImageContent, ResourceLink

    blocks: list[Any] = [
        ImageContent(type="image", data=image["data"], mime_type=image["inline_mime_type"])
        for image in reply.get("images") or []
        if image.get("data")
    ]
    for path in dict.fromkeys([*reply.get("outputs", []), *reply.get("new_files", [])]):
        uri = resource_uri(path)
        if uri is not None:
            blocks.append(
                ResourceLink(
                    type="resource_link",
                    uri=uri,
                    name=path.rsplit("/", 1)[-1],
                    mime_type=mimetypes.guess_type(path)[0] or "application/octet-stream",
                )
            )
    return blocks


def _shaped(
    structured: dict[str, Any], text: dict[str, Any], blocks: list[Any], result_format: str
) -> Any:
    from fastmcp.tools import ToolResult
    from mcp_types import TextContent

    content = [TextContent(type="text", text=json.dumps(text, default=str)), *blocks]
    return ToolResult(
        content=content,
        structured_content=structured if result_format == "structured" else None,
    )


def _text_view(reply: dict[str, Any]) -> dict[str, Any]:
    def lean(forms: dict[str, Any]) -> dict[str, Any]:
        return {mime: data for mime, data in forms.items() if mime not in TEXT_VIEW_SKIPS}

    view = dict(reply)
    if view.get("result_data"):
        view["result_data"] = lean(view["result_data"])
    if view.get("displays"):
        view["displays"] = [lean(forms) for forms in view["displays"]]
    return view


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
