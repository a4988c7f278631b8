"""Checkpoints: a session's picklable state after each successful run, kept so that a crash
costs at most the run that crashed, and so that a session can be rewound.

Two halves, on each side of the wall:

* ``ChangeTracker`` runs in the kernel: after a run it pickles every name and hands over only
  the pickles whose content changed since the last checkpoint (a value mutated in place changes
  its pickle, so in-place edits are seen too), with the name -> content-hash map of the whole
  namespace;
* ``CheckpointStore`` runs in the session's actor, in the server's store: content-addressed
  pickles (``blobs/<sha256>``, written once, shared by every checkpoint that has them) and one
  small manifest per checkpoint (``points/<execution_count>.json``), the last ``depth`` of them
  kept within a byte budget. Every file is written under a temporary name and renamed, so a
  crash leaves whole checkpoints only. The actor never unpickles what it stores.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import cloudpickle

from .capture import truncate_text


class ChangeTracker:
    def __init__(self, max_value_bytes: int) -> None:
        self.max_value_bytes = max_value_bytes
        self._hashes: dict[str, str] = {}

    def changes(self, namespace: dict[str, Any]) -> dict[str, Any]:
        """``{names: {name: sha}, blobs: {sha: pickle}, not_preserved: {name: why}}`` with only
        the pickles this tracker has not handed over before."""
        names: dict[str, str] = {}
        blobs: dict[str, bytes] = {}
        failed: dict[str, str] = {}
        for name, value in list(namespace.items()):
            if name.startswith("__") and name.endswith("__"):
                continue
            try:
                blob = cloudpickle.dumps(value)
            except Exception as exc:
                failed[name] = f"{type(exc).__name__}: {truncate_text(str(exc), 200)}"
                continue
            if len(blob) > self.max_value_bytes:
                failed[name] = f"{len(blob)} bytes, above the checkpoint limit per value"
                continue
            digest = hashlib.sha256(blob).hexdigest()
            names[name] = digest
            if self._hashes.get(name) != digest:
                blobs[digest] = blob
        self._hashes = names
        return {"names": names, "blobs": blobs, "not_preserved": failed}

    def forget(self) -> None:
        """The next checkpoint hands over everything (a new store, a restored namespace)."""
        self._hashes = {}


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
