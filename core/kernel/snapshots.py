"""The snapshot file: a session's picklable variables on disk.

A zip (stored, not compressed: pickles of arrays barely compress) holding ``manifest.json``
(whose session, which names, what could not be saved, when) and one pickle per name. It is
written under a temporary name and renamed, so a reader finds a whole file or none.
"""

from __future__ import annotations

import json
import os
import time
import zipfile
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"


def write_snapshot(
    path: Path,
    session_id: str,
    blobs: dict[str, bytes],
    not_preserved: dict[str, str],
    extra: dict[str, Any] | None = None,
    sync: bool = True,
) -> int:
    """Write the file (``extra``: more JSON for the manifest, a hibernated session's history
    and identity); return its size in bytes. ``sync``: on disk before it takes its name (a
    cold session's empty image holds nothing a crash could lose, and skips it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    manifest = {
        "session_id": session_id,
        "names": list(blobs),
        "not_preserved": not_preserved,
        "created_at": time.time(),
        **(extra or {}),
    }
    tmp = path.with_name(path.name + ".partial")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr(MANIFEST, json.dumps(manifest))
        for index, blob in enumerate(blobs.values()):
            archive.writestr(f"values/{index}.pkl", blob)
    if sync:
        with open(tmp, "rb+") as handle:  # on disk before it takes the name
            os.fsync(handle.fileno())
    os.replace(tmp, path)
    return path.stat().st_size


def read_manifest(path: Path) -> dict[str, Any]:
    """The manifest alone (finding hibernated sessions reads only this)."""
    with zipfile.ZipFile(path) as archive:
        return json.loads(archive.read(MANIFEST))


def read_snapshot(path: Path) -> tuple[dict[str, bytes], dict[str, Any]]:
    """``(pickles by name, manifest)`` of a file ``write_snapshot`` wrote."""
    with zipfile.ZipFile(path) as archive:
        manifest = json.loads(archive.read(MANIFEST))
        blobs = {
            name: archive.read(f"values/{index}.pkl")
            for index, name in enumerate(manifest["names"])
        }
    return blobs, manifest
