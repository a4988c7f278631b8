"""The store of a session's state on disk, in its actor: snapshot files and checkpoints.

Snapshot files: a session's picklable variables on disk. A zip (stored, not compressed: pickles
of arrays barely compress) holding ``manifest.json`` (whose session, which names, what could not
be saved, when) and one pickle per name. It is written under a temporary name and renamed, so a
reader finds a whole file or none.

Checkpoints (the kernel's half, ``ChangeTracker``, is in raykernel.kernel.service): after each
successful run, ``CheckpointStore`` keeps content-addressed pickles (``blobs/<sha256>``, written
once, shared by every checkpoint that has them) and one small manifest per checkpoint
(``points/<execution_count>.json``), the last ``depth`` of them kept within a byte budget. Every
file is written under a temporary name and renamed, so a crash leaves whole checkpoints only.
The actor never unpickles what it stores.
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


# A history file past this is rewritten with each entry once.
HISTORY_COMPACT_BYTES = 4 << 20


class CheckpointStore:
    def __init__(self, folder: Path, depth: int = 20, max_bytes: int = 1 << 30) -> None:
        self.folder = folder
        self.depth = depth
        self.max_bytes = max_bytes
        self.blobs = folder / "blobs"
        self.points = folder / "points"

    def save(self, count: int, changes: dict[str, Any]) -> dict[str, Any]:
        """Store checkpoint ``count`` from a ``ChangeTracker.changes``; prune old ones."""
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.points.mkdir(parents=True, exist_ok=True)
        for digest, blob in changes["blobs"].items():
            target = self.blobs / digest
            if not target.exists():
                _write(target, blob)
        missing = [d for d in changes["names"].values() if not (self.blobs / d).exists()]
        if missing:  # a pickle handed over before was pruned: this point is not whole
            raise FileNotFoundError(f"{len(missing)} pickles of checkpoint {count} are missing")
        point = {
            "execution_count": count,
            "names": changes["names"],
            "not_preserved": changes["not_preserved"],
            "created_at": time.time(),
        }
        _write(self.points / f"{count}.json", json.dumps(point).encode())
        self.prune()
        return point

    def counts(self) -> list[int]:
        if not self.points.is_dir():
            return []
        return sorted(int(p.stem) for p in self.points.glob("*.json") if p.stem.isdigit())

    def point(self, count: int | None = None) -> dict[str, Any] | None:
        """Checkpoint ``count`` (the latest when None), or None if there is none."""
        counts = self.counts()
        if not counts:
            return None
        chosen = counts[-1] if count is None else count
        if chosen not in counts:
            return None
        return json.loads((self.points / f"{chosen}.json").read_text())

    def blobs_of(self, point: dict[str, Any]) -> dict[str, bytes]:
        """The pickles of a checkpoint, by name."""
        return {name: (self.blobs / d).read_bytes() for name, d in point["names"].items()}

    # -- the session's history, beside its checkpoints (a new actor goes on with it) ---------

    @property
    def _history(self) -> Path:
        return self.folder / "history.jsonl"

    def add_history(self, entry: dict[str, Any]) -> None:
        """Append an entry (made, or changed: the last line of an entry wins)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self._history, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry, default=str) + "\n")
        if self._history.stat().st_size > HISTORY_COMPACT_BYTES:
            self._compact()

    def history(self, keep: int = 500) -> list[dict[str, Any]]:
        """The entries in order (each once, as last written), the last ``keep`` of them."""
        if not self._history.is_file():
            return []
        entries: dict[tuple[Any, Any], dict[str, Any]] = {}
        for line in self._history.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # a line cut by a crash mid-write
            entries[(entry.get("execution_count"), entry.get("started_at"))] = entry
        # Appends run off the reply's path and may land out of order: time orders them.
        ordered = sorted(entries.values(), key=lambda e: e.get("started_at") or 0.0)
        return ordered[-keep:]

    def _compact(self) -> None:
        lines = [json.dumps(e, default=str) + "\n" for e in self.history()]
        _write(self._history, "".join(lines).encode())

    def size(self) -> int:
        return sum(p.stat().st_size for p in self.blobs.glob("*")) if self.blobs.is_dir() else 0

    def prune(self) -> None:
        """Keep the last ``depth`` checkpoints, fewer if their pickles pass ``max_bytes``;
        remove pickles no kept checkpoint names."""
        counts = self.counts()
        kept = counts[-self.depth :]
        for count in counts[: -self.depth]:
            (self.points / f"{count}.json").unlink(missing_ok=True)
        while len(kept) > 1:
            if self._referenced_size(kept) <= self.max_bytes:
                break
            (self.points / f"{kept.pop(0)}.json").unlink(missing_ok=True)
        referenced = self._referenced(kept)
        for blob in self.blobs.glob("*"):
            if blob.name not in referenced and not blob.name.endswith(".partial"):
                blob.unlink(missing_ok=True)

    def remove(self) -> None:
        """Forget every checkpoint (the session is deleted)."""
        import shutil

        shutil.rmtree(self.folder, ignore_errors=True)

    def _referenced(self, counts: list[int]) -> set[str]:
        names: set[str] = set()
        for count in counts:
            point = self.point(count)
            if point is not None:
                names.update(point["names"].values())
        return names

    def _referenced_size(self, counts: list[int]) -> int:
        total = 0
        for digest in self._referenced(counts):
            path = self.blobs / digest
            if path.exists():
                total += path.stat().st_size
        return total


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".partial")
    tmp.write_bytes(data)
    os.replace(tmp, path)
