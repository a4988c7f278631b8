"""Rich output: IPython's display protocol, ``display()``, and images of bounded size.

A value can offer richer forms than its repr through ``_repr_html_``, ``_repr_markdown_``,
``_repr_svg_``, ``_repr_png_``, ``_repr_jpeg_``, ``_repr_json_``, ``_repr_latex_`` or
``_repr_mimebundle_`` (pandas DataFrames, IPython.display objects, many plotting libraries).
``mime_bundle`` collects them the way Jupyter does; text/plain (the repr) is always there. Runs in
the session's process; nothing here imports IPython.
"""

from __future__ import annotations

import base64
import importlib.abc
import importlib.machinery
import inspect
import io
import json
import sys
from collections.abc import Callable
from typing import Any

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
