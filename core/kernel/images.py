"""A run's rich output, settled: text forms kept (bounded), images saved under outputs/ and
inlined within ``max_image_bytes``, matplotlib's open figures turned into PNGs and closed."""

from __future__ import annotations

import base64
import io
import json
import os
import sys
from pathlib import Path
from typing import Any

from raykernel.replies import ImageEntry

from .capture import truncate_text
from .display import BINARY_TYPES, bound_image, image_bytes

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
