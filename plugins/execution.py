"""run_python_code (in the foreground with live progress, or in the background), get_run and
cancel_run; ``tool_result`` shapes every run's reply for clients."""

import json
import mimetypes
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import Field

from raykernel.app import App
from raykernel.arguments import OptionalSessionId, hints
from raykernel.errors import InvalidArgument
from raykernel.hookspecs import hookimpl
from raykernel.progress import progress_for_request

# Bulky forms a model rarely needs twice: kept in structured content, left out of the text.
TEXT_VIEW_SKIPS = frozenset({"text/html", "image/svg+xml"})


def resource_uri(path: str) -> str | None:
    """The resource URI of a workspace file, if it is one the resources plugin serves."""
    for folder in ("outputs/", "scripts/"):
        if path.startswith(folder):
            return f"raykernel://{folder}{path[len(folder) :]}"
    return None


def tool_result(reply: dict[str, Any], result_format: str = "structured") -> Any:
    """A run's reply for every kind of client:

    * a JSON text block (what text-only clients and most models read);
    * one image block per figure or displayed image (downscaled within ``max_image_bytes``);
    * one resource link per file the run created or saved under outputs/;
    * ``structuredContent``, the whole reply (HTML tables, SVG...), unless ``result_format``
      is "content": some clients show only structured content when both are present, and so
      would hide the images.
    """
    lean = _without_image_data(reply)
    text = lean if result_format == "content" else _text_view(lean)
    return _shaped(lean, text, _blocks(reply), result_format)


def run_result(view: dict[str, Any], result_format: str = "structured") -> Any:
    """A background run's status; once it has a reply, that reply's images and links come as
    blocks, as ``run_python_code`` would have sent them."""
    reply = view.get("reply")
    if not reply:
        return view
    lean = _without_image_data(reply)
    shown = {**view, "reply": lean}
    text = shown if result_format == "content" else {**shown, "reply": _text_view(lean)}
    return _shaped(shown, text, _blocks(reply), result_format)


def _without_image_data(reply: dict[str, Any]) -> dict[str, Any]:
    """Images travel once, as image blocks: the reply keeps only their description."""
    images = reply.get("images") or []
    return {**reply, "images": [{k: v for k, v in i.items() if k != "data"} for i in images]}


def _blocks(reply: dict[str, Any]) -> list[Any]:
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


@hookimpl
def register_tools(register: Callable[..., Any], app: App) -> None:
    settings = app.settings
    Code = Annotated[str, Field(description="Python code to run.", min_length=1)]
    Timeout = Annotated[
        float | None,
        Field(
            description=f"Seconds before the run is interrupted (default "
            f"{settings.default_timeout:g}; {settings.max_timeout:g} for a background run, "
            f"which is also the maximum). The session and its variables are kept; the code "
            "is never re-run.",
            gt=0,
            le=settings.max_timeout,
        ),
    ]
    Background = Annotated[
        bool,
        Field(
            description="Return at once with a run_id instead of waiting; follow the run with "
            "get_run and stop it with cancel_run. For jobs longer than your client's timeout."
        ),
    ]
    RunId = Annotated[str, Field(description="The run_id from a background run.", max_length=64)]

    async def run_python_code(
        code: Code,
        session_id: OptionalSessionId = None,
        timeout: Timeout = None,
        background: Background = False,
    ) -> Any:
        """Run Python code in a session, like a Jupyter cell: variables persist between calls,
        the value of a trailing expression is returned as `result` (with its HTML/Markdown/
        JSON forms in `result_data`), `display(obj)` shows objects as it goes, stdout/stderr
        are captured, errors come back with a traceback, and figures and displayed images are
        returned as images and saved under outputs/. While it runs, progress notifications
        carry the tail of its output (when your client asks for progress)."""
        if len(code.encode("utf-8", "surrogatepass")) > settings.max_code_bytes:
            raise InvalidArgument(f"code is larger than {settings.max_code_bytes} bytes")
        session = app.resolve_session(session_id)
        if background:
            await app.router.lookup(session)  # an unknown session is refused now, not later
            run = app.runs.submit(session, code, timeout or settings.max_timeout)
            return {
                "run_id": run.run_id,
                "session_id": session,
                "status": run.status,
                "next": "get_run {run_id, wait} for its output and result; cancel_run to stop",
            }
        async with progress_for_request(app.router) as on_start:
            reply = await app.router.execute(session, code, app.timeout_for(timeout), on_start)
        return tool_result(reply, settings.result_format)

    async def get_run(
        run_id: RunId,
        wait: Annotated[
            float,
            Field(ge=0, le=300, description="Seconds to wait for the run to finish (0: now)."),
        ] = 0.0,
    ) -> Any:
        """Status of a background run: queued, running (with the output so far), done (with
        its full reply, images and file links, as run_python_code gives them) or cancelled."""
        return run_result(await app.runs.get(run_id, wait), settings.result_format)

    async def cancel_run(run_id: RunId) -> Any:
        """Stop a background run: a queued run never starts; a running one is interrupted
        and its session keeps its variables (code that ignores the interrupt gets its session
        restarted, and the reply says so). A finished run is left as it is."""
        return run_result(await app.runs.cancel(run_id), settings.result_format)

    async def list_runs() -> dict[str, Any]:
        """Background runs this server knows (recent ones), with their status."""
        runs = app.runs.listing()
        return {"runs": runs, "total": len(runs)}

    register(
        run_python_code,
        title="Run Python code",
        annotations=hints(read_only=False, destructive=True, open_world=True),
    )
    register(get_run, title="Get a background run", annotations=hints(read_only=True))
    register(
        cancel_run,
        title="Cancel a background run",
        annotations=hints(read_only=False, destructive=True, idempotent=True),
    )
    register(list_runs, title="List background runs", annotations=hints(read_only=True))
