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

``SessionState`` is a session's: what it saves there and loads back.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import time
import zipfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from raykernel.deputy import Deputy
from raykernel.errors import SessionUnavailable
from raykernel.protocol import KernelOp

from .kernel_client import KernelGone, KernelProcess
from .runbook import History, RunBook

log = logging.getLogger(__name__)
T = TypeVar("T")

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


# A pickle's name in the store: its sha256 in hex (the kernel's reply is parsed for it, see
# kernel_replies; a point file is checked again when read, since it names files to open).
DIGEST = re.compile(r"[0-9a-f]{64}")


def _digest(name: object) -> str:
    if not isinstance(name, str) or not DIGEST.fullmatch(name):
        raise ValueError(f"not a checkpoint digest: {str(name)[:80]!r}")
    return name


class CheckpointStore:
    def __init__(self, folder: Path, depth: int = 20, max_bytes: int = 1 << 30) -> None:
        self.folder = folder
        self.depth = depth
        self.max_bytes = max_bytes
        self.blobs = folder / "blobs"
        self.points = folder / "points"

    def save(self, count: int, changes: dict[str, Any]) -> dict[str, Any]:
        """Store checkpoint ``count`` (the actor's own number for the run) from a
        ``ChangeTracker.changes`` the kernel client parsed; prune old ones."""
        count = int(count)
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.points.mkdir(parents=True, exist_ok=True)
        for digest, blob in changes["blobs"].items():
            target = self.blobs / _digest(digest)
            if not target.exists():
                _write(target, blob)
        missing = [d for d in changes["names"].values() if not (self.blobs / _digest(d)).exists()]
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
        return {name: (self.blobs / _digest(d)).read_bytes() for name, d in point["names"].items()}

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


class SessionState:
    """A session's state beyond its kernel's process: snapshot files, a checkpoint after each
    run (for a session that keeps them) with its history beside it, and the image a
    hibernation writes and a resume loads. Its host gives it what that state is made of: the
    kernel's control calls (``call``), the run book, the timeline (``history``); it is made
    again with them when the host is recycled."""

    def __init__(
        self,
        call: Callable[..., Awaitable[Any]],
        book: RunBook,
        history: History,
        session_id: Callable[[], str],
        measure: Callable[[], Awaitable[dict[str, Any]]],
    ) -> None:
        self.checkpoints: CheckpointStore | None = None  # set when the session keeps them
        # Set once the session has been handed on (hibernated): no run is taken any more.
        self.closed = False
        self._call = call
        self._book = book
        self._history = history
        self._session_id = session_id
        self._measure = measure  # the kernel's, to find its child processes
        self._checkpointing = asyncio.Lock()
        self._background: set[asyncio.Future[Any]] = set()
        # The threads that touch its files, confined to its owner's folders (set by the claim).
        self.deputy: Deputy | None = None

    async def _on_disk(self, work: Callable[..., T], *args: Any) -> T:
        if self.deputy is None:
            raise SessionUnavailable("this host serves no session yet")
        return await self.deputy.run(work, *args)

    async def go_on(self, count: int) -> None:
        """The timeline goes on: from the front end's ``count`` (a new actor after the old one
        was lost), or from the store's history when the session keeps checkpoints."""
        history = self._history
        history.execution_count = max(history.execution_count, count)
        if self.checkpoints is not None:
            kept = await self._on_disk(self.checkpoints.history)
            if kept:
                history.load(kept)
                counts = [e["execution_count"] for e in kept if e.get("execution_count")]
                history.execution_count = max([history.execution_count, *counts])

    # -- snapshot files ---------------------------------------------------------------------

    async def save_snapshot(self, path: str) -> dict[str, Any]:
        """Write the kernel's picklable state to ``path`` (the kernel cannot reach the store;
        its pickles are written here as the bytes they are, never loaded)."""
        snap = await self._call(KernelOp.SNAPSHOT)
        size = await self._on_disk(
            write_snapshot, Path(path), self._session_id(), snap["blobs"], snap["not_preserved"]
        )
        return {
            "saved": sorted(snap["blobs"]),
            "not_preserved": snap["not_preserved"],
            "size_bytes": size,
        }

    async def load_snapshot(self, path: str) -> dict[str, Any]:
        """Read a snapshot file here and hand its pickles to the kernel to load."""
        blobs, manifest = await self._on_disk(read_snapshot, Path(path))
        report = await self._call(KernelOp.RESTORE, blobs)
        report["not_preserved"].update(manifest.get("not_preserved", {}))
        report["snapshot_of"] = manifest.get("session_id")
        return report

    # -- checkpoints ------------------------------------------------------------------------

    def checkpoint_soon(self, kernel: KernelProcess, count: int) -> None:
        """Save what changed in the run that just ended, off the reply's path. The kernel is
        asked now, before the reply leaves: it then takes the checkpoint before any later
        request, so a next run that crashes the kernel cannot overtake it (waiting for the
        previous checkpoint's store first could let it)."""
        store = self.checkpoints
        if store is None:
            return
        asked = asyncio.ensure_future(kernel.request(KernelOp.CHECKPOINT, store.max_bytes))
        self._off_the_path(self._store_checkpoint(kernel, store, asked, count))

    async def _store_checkpoint(
        self,
        kernel: KernelProcess,
        store: CheckpointStore,
        asked: asyncio.Future[Any],
        count: int,
    ) -> dict[str, Any] | None:
        """Store what the kernel pickled (as bytes), one checkpoint at a time, in order."""
        async with self._checkpointing:
            try:
                changes = await asked
                # The run's number is the actor's: the kernel's own count is not asked.
                return await self._on_disk(store.save, count, changes)
            except FileNotFoundError:  # the store lost pickles: hand everything over again
                await kernel.request(KernelOp.FORGET_CHECKPOINTS)
                return None
            except (KernelGone, OSError, ValueError) as exc:
                log.warning("checkpoint of %s failed: %s", self._session_id(), exc)
                return None

    def keep(self, entry: dict[str, Any] | None) -> None:
        """A history entry made or changed: for a session that keeps checkpoints, into the
        store too (off the reply's path), so that a new actor (its node lost) goes on with
        the whole timeline."""
        store = self.checkpoints
        if entry is None or store is None:
            return
        self._off_the_path(self._on_disk(store.add_history, dict(entry)))

    def _off_the_path(self, work: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def restore_checkpoint(self, count: int | None = None) -> dict[str, Any] | None:
        """Load checkpoint ``count`` (the latest when None) into a fresh namespace; the report,
        or None when there is no checkpoint."""
        store = self.checkpoints
        if store is None:
            return None
        # The checkpoint of the last run may be on its way.
        await asyncio.gather(*list(self._background), return_exceptions=True)
        point = await self._on_disk(store.point, count)
        if point is None:
            return None
        blobs = await self._on_disk(store.blobs_of, point)
        report = await self._call(KernelOp.REWIND, blobs, point["execution_count"])
        report["not_preserved"].update(point.get("not_preserved", {}))
        if count is not None:  # asked for (rewind_session), not a revival
            self.keep(self._history.note(f"rewound to the state after run {count}"))
        return {**report, "execution_count": point["execution_count"]}

    def checkpoint_counts(self) -> list[int]:
        """The runs whose state a checkpoint keeps."""
        return self.checkpoints.counts() if self.checkpoints is not None else []

    # -- hibernation ------------------------------------------------------------------------

    async def hibernate(
        self, path: str, session: dict[str, Any], wait: bool = False
    ) -> dict[str, Any]:
        """Write the session's image (its picklable state, its history, who it is) to
        ``path``, whole or not at all; the caller then frees the processes."""
        book = self._book
        if book.busy and not wait:
            raise SessionUnavailable("the session has runs in progress or queued")
        idle_since = book.last_activity
        # Asked for (``wait``), it takes its turn after the run in progress; never with runs
        # queued (they would be lost with the processes).
        async with book.exclusive():
            if book.busy or (not wait and book.last_activity != idle_since):
                raise SessionUnavailable("the session has runs in progress or queued")
            if (await self._measure()).get("num_children"):
                raise SessionUnavailable("the session has child processes running")
            snap = await self._call(KernelOp.SNAPSHOT)
            history = {
                "entries": self._history.last(None, full=True),
                "execution_count": self._history.execution_count,
                "last_execution_time": self._history.last_execution_time,
            }
            extra = {"history": history, "session": session, "runs": book.export()}
            size = await self._on_disk(
                write_snapshot,
                Path(path),
                self._session_id(),
                snap["blobs"],
                snap["not_preserved"],
                extra,
            )
            self.closed = True
        return {"size_bytes": size, "not_preserved": snap["not_preserved"]}

    def reopen(self) -> bool:
        """Serve again after a hibernation that never finished; whether it was closed."""
        was, self.closed = self.closed, False
        return was

    async def resume(self, path: str) -> dict[str, Any]:
        """Load an image ``hibernate`` wrote: variables (imports re-done as they unpickle) and
        history; the report names what could not be carried."""
        blobs, manifest = await self._on_disk(read_snapshot, Path(path))
        report = await self._call(KernelOp.RESTORE, blobs)
        saved = manifest.get("history") or {}
        history = self._history
        history.load(saved.get("entries") or [])
        history.execution_count = max(
            history.execution_count, int(saved.get("execution_count") or 0)
        )
        history.last_execution_time = saved.get("last_execution_time")
        self._book.load(manifest.get("runs") or [])
        report["not_preserved"].update(manifest.get("not_preserved", {}))
        return report
