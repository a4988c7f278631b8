"""Rich output: IPython's display protocol, ``display()``, and images of bounded size, and a
run's rich output settled.

A value can offer richer forms than its repr through ``_repr_html_``, ``_repr_markdown_``,
``_repr_svg_``, ``_repr_png_``, ``_repr_jpeg_``, ``_repr_json_``, ``_repr_latex_`` or
``_repr_mimebundle_`` (pandas DataFrames, IPython.display objects, many plotting libraries).
``mime_bundle`` collects them the way Jupyter does; text/plain (the repr) is always there. Runs in
the session's process; nothing here imports IPython.

Settled (``RichOutput``): text forms kept (bounded), images saved under outputs/ and inlined
within ``max_image_bytes``, matplotlib's open figures turned into PNGs and closed.
"""

from __future__ import annotations

import base64
import importlib.abc
import importlib.machinery
import inspect
import io
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from raykernel.replies import ImageEntry

from .capture import truncate_text

REPR_METHODS = {
    "text/html": "_repr_html_",
    "text/markdown": "_repr_markdown_",
    "text/latex": "_repr_latex_",
    "image/svg+xml": "_repr_svg_",
    "image/png": "_repr_png_",
    "image/jpeg": "_repr_jpeg_",
    "application/json": "_repr_json_",
}
BINARY_TYPES = frozenset({"image/png", "image/jpeg"})


def safe_repr(value: Any) -> str:
    try:
        return repr(value)
    except Exception as exc:
        return f"<repr failed: {type(exc).__name__}: {exc}>"


def mime_bundle(value: Any) -> dict[str, Any]:
    """{mime type: data} for ``value``: text types as str, images as bytes, JSON as data.
    A broken ``_repr_*_`` is skipped, never raised: the repr still shows."""
    bundle: dict[str, Any] = {}
    if not inspect.isclass(value):  # a class's _repr_html_ is an unbound method
        bundle.update(_from_mimebundle(value))
        for mime, method_name in REPR_METHODS.items():
            if mime in bundle:
                continue
            data = _call_repr(value, method_name)
            if data is not None:
                bundle[mime] = data
    bundle["text/plain"] = bundle.get("text/plain") or safe_repr(value)
    return {mime: data for mime, data in bundle.items() if _valid(mime, data)}


def _call_repr(value: Any, method_name: str) -> Any:
    try:
        method = getattr(value, method_name, None)
        if not callable(method):
            return None
        data = method()
    except Exception:
        return None
    if isinstance(data, tuple) and len(data) == 2:  # (data, metadata)
        data = data[0]
    return data


def _from_mimebundle(value: Any) -> dict[str, Any]:
    try:
        method = getattr(value, "_repr_mimebundle_", None)
        if not callable(method):
            return {}
        data = method(include=None, exclude=None)
    except Exception:
        return {}
    if isinstance(data, tuple) and len(data) == 2:
        data = data[0]
    return dict(data) if isinstance(data, dict) else {}


def _valid(mime: str, data: Any) -> bool:
    if mime in BINARY_TYPES:
        return isinstance(data, bytes | str) and bool(data)
    if mime == "application/json":
        try:
            json.dumps(data)
        except (TypeError, ValueError):
            return False
        return True
    return isinstance(data, str)


def image_bytes(data: bytes | str) -> bytes:
    """PNG/JPEG data as bytes (``_repr_png_`` may return base64 text)."""
    if isinstance(data, bytes):
        return data
    return base64.b64decode(data)


def bound_image(data: bytes, mime: str, limit: int) -> tuple[bytes, str] | None:
    """``data`` if it fits in ``limit`` bytes, else a downscaled (then JPEG) re-encoding that
    fits; None if it cannot be made to fit (Pillow missing or a degenerate image)."""
    if len(data) <= limit:
        return data, mime
    try:
        from PIL import Image
    except ImportError:
        return None
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
        for _attempt in range(6):
            scale = max(0.1, min(0.9, (limit / len(data)) ** 0.5))
            image = image.resize(
                (max(1, int(image.width * scale)), max(1, int(image.height * scale)))
            )
            buffer = io.BytesIO()
            if mime == "image/png" and _attempt < 3:
                image.save(buffer, format="PNG", optimize=True)
            else:
                image.convert("RGB").save(buffer, format="JPEG", quality=80)
                mime = "image/jpeg"
            data = buffer.getvalue()
            if len(data) <= limit:
                return data, mime
    except Exception:
        return None
    return None


class DisplayCollector:
    """What ``display()`` shows during one run."""

    def __init__(self) -> None:
        self.bundles: list[dict[str, Any]] = []


class Display:
    """The ``display`` function given to user code: one collector per run, else a print."""

    def __init__(self) -> None:
        self.collector: DisplayCollector | None = None

    def __call__(self, *objects: Any, **_options: Any) -> None:
        for obj in objects:
            if self.collector is None:
                print(safe_repr(obj))
            else:
                self.collector.bundles.append(mime_bundle(obj))


class _IPythonBridge(importlib.abc.MetaPathFinder):
    """``from IPython.display import display`` in a session must reach our ``display``: IPython
    outside a kernel only prints the repr. The module defining it is patched right after it
    loads, before ``IPython.display`` copies the name."""

    TARGET = "IPython.core.display_functions"

    def __init__(self, display: Callable[..., None]) -> None:
        self.display = display

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name != self.TARGET:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        loader, bridge = spec.loader, self

        class _Loader(importlib.abc.Loader):
            def create_module(self, spec: Any) -> Any:
                return loader.create_module(spec)

            def exec_module(self, module: Any) -> None:
                loader.exec_module(module)
                module.display = bridge.display

        spec.loader = _Loader()
        return spec


def install(display: Display) -> None:
    """Make ``display`` a builtin of this process and the one IPython's display resolves to."""
    import builtins

    builtins.display = display  # type: ignore[attr-defined]
    for name in (_IPythonBridge.TARGET, "IPython.core.display", "IPython.display", "IPython"):
        loaded = sys.modules.get(name)
        if loaded is not None and hasattr(loaded, "display"):
            loaded.display = display
    sys.meta_path.insert(0, _IPythonBridge(display))


IMAGE_SUFFIX = {"image/png": "png", "image/jpeg": "jpg"}


class RichOutput:
    def __init__(
        self, workspace: Path, max_output_bytes: int, max_image_bytes: int = 1_000_000
    ) -> None:
        self.workspace = workspace
        self.outputs = workspace / "outputs"
        self.max_output_bytes = max_output_bytes
        self.max_image_bytes = max_image_bytes

    def settle(
        self, session_id: str, count: int, bundles: list[dict[str, Any]], has_result: bool
    ) -> dict[str, Any]:
        """Split display bundles into text forms (kept in the reply) and images; the last
        bundle is the result's when ``has_result``. Figures join the images first."""
        images = self.save_figures(session_id, count)
        displays: list[dict[str, Any]] = []
        result: str | None = None
        result_data: dict[str, Any] = {}
        for index, bundle in enumerate(bundles, 1):
            is_result = has_result and index == len(bundles)
            forms: dict[str, Any] = {}
            for mime, data in bundle.items():
                if mime not in BINARY_TYPES and (kept := self._bounded(data)) is not None:
                    forms[mime] = kept
            image_mime = next((m for m in IMAGE_SUFFIX if m in bundle), None)
            if image_mime is not None:
                source = "result" if is_result else "display"
                name = f"{source}_{session_id}_{count}_{index}.{IMAGE_SUFFIX[image_mime]}"
                image = self._save(self.outputs / name, bundle[image_mime], image_mime, source)
                if image is not None:
                    images.append(image)
                    forms["image"] = image["path"]
            if is_result:
                result = forms.pop("text/plain", None)
                result_data = forms
            else:
                displays.append(forms)
        return {
            "result": result,
            "result_data": result_data,
            "displays": displays,
            "images": images,
        }

    def save_figures(self, session_id: str, count: int) -> list[ImageEntry]:
        # Only when the user already loaded pyplot: importing matplotlib costs ~0.5 s.
        plt = sys.modules.get("matplotlib.pyplot")
        if plt is None:
            return []
        images: list[ImageEntry] = []
        try:
            numbers = plt.get_fignums()
            if numbers:
                self.outputs.mkdir(parents=True, exist_ok=True)
            for index, number in enumerate(numbers, 1):
                figure = plt.figure(number)
                path = self.outputs / f"figure_{session_id}_{count}_{index}.png"
                buffer = io.BytesIO()
                figure.savefig(buffer, format="png", bbox_inches="tight")
                data = buffer.getvalue()
                path.write_bytes(data)
                images.append(self._entry(path, data, "image/png", "figure"))
        finally:
            plt.close("all")
        return images

    def _save(self, path: Path, raw: Any, mime: str, source: str) -> ImageEntry | None:
        try:
            data = image_bytes(raw)
            self.outputs.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        except (OSError, ValueError):
            return None
        return self._entry(path, data, mime, source)

    def _bounded(self, data: Any) -> Any:
        """A text form cut to the output limit; JSON dropped (None) when it is too large."""
        if isinstance(data, str):
            return truncate_text(data, self.max_output_bytes)
        if len(json.dumps(data, default=str)) > self.max_output_bytes:
            return None
        return data

    def _entry(self, path: Path, data: bytes, mime: str, source: str) -> ImageEntry:
        entry: ImageEntry = {
            "path": os.path.relpath(path, self.workspace),
            "mime_type": mime,
            "source": source,
            "size_bytes": len(data),
        }
        bounded = bound_image(data, mime, self.max_image_bytes)
        if bounded is None:
            entry["data"] = None
            entry["note"] = (
                f"image is {len(data)} bytes, above max_image_bytes={self.max_image_bytes}, "
                "and could not be downscaled; read it from its file"
            )
        else:
            inline, inline_mime = bounded
            entry["data"] = base64.b64encode(inline).decode("ascii")
            entry["inline_mime_type"] = inline_mime
            if inline is not data:
                entry["note"] = (
                    f"downscaled to {len(inline)} bytes for display; the file is full size"
                )
        return entry
