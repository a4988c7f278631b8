"""Checkpoints, the kernel's half: a session's picklable state after each successful run, kept
so that a crash costs at most the run that crashed, and so that a session can be rewound.

``ChangeTracker`` pickles every name after a run and hands over only the pickles whose content
changed since the last checkpoint (a value mutated in place changes its pickle, so in-place
edits are seen too), with the name -> content-hash map of the whole namespace. The session
actor keeps them (``CheckpointStore``, in raykernel.actors.store).
"""

from __future__ import annotations

import hashlib
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
