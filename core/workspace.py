"""The workspace folder: path containment and the file operations the file tools offer.

Containment is checked on resolved paths, component by component (``Path.is_relative_to`` after
``realpath``), never by string prefix: ``/work/space2`` must not pass for ``/work/space``, and a
symlink planted inside that points outside must not lead out.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .errors import FileNotFound, FileTooLarge, InvalidArgument, PathOutsideWorkspace

MAX_PATH_LENGTH = 1024
MAX_NAME_LENGTH = 255
MAX_LIST_ENTRIES = 1000
# The server's own store inside the workspace (snapshots, package dirs): no file tool, resource
# or listing reaches it, or a caller could plant a pickle that restore_session would load.
STORE = ".raykernel"


def _typed_os_errors(method: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    """An OS refusal (a file where a folder is expected, a symlink swapped in, permissions) is
    the caller's to fix: report it typed, with the reason and without internal detail."""

    @functools.wraps(method)
    def wrapper(self: Workspace, path: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        try:
            return method(self, path, *args, **kwargs)
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise InvalidArgument(f"cannot access {path!r}: {reason}") from None

    return wrapper


class Workspace:
    def __init__(
        self, root: Path, max_file_bytes: int = 10_000_000, store: Path | None = None
    ) -> None:
        self.root = Path(os.path.realpath(root))
        self.max_file_bytes = max_file_bytes
        self.outputs = self.root / "outputs"
        self.scripts = self.root / "scripts"
        # The server's store (when configured inside the workspace) and the folder older
        # versions kept it in.
        closed = [self.root / STORE]
        if store is not None:
            closed.append(Path(os.path.realpath(store)))
        self.closed = tuple(closed)

    def ensure(self) -> None:
        for folder in (self.root, self.outputs, self.scripts):
            folder.mkdir(parents=True, exist_ok=True)

    def resolve(self, path: str) -> Path:
        """The real absolute path for ``path`` (relative to the root, or absolute inside it)."""
        if not isinstance(path, str) or not path:
            raise InvalidArgument("path must be a non-empty string")
        if "\x00" in path:
            raise PathOutsideWorkspace("path contains a NUL byte")
        if len(path) > MAX_PATH_LENGTH:
            raise PathOutsideWorkspace(f"path longer than {MAX_PATH_LENGTH} characters")
        if any(len(part) > MAX_NAME_LENGTH for part in Path(path).parts):
            raise PathOutsideWorkspace(f"a path component is longer than {MAX_NAME_LENGTH}")
        candidate = Path(path) if os.path.isabs(path) else self.root / path
        real = Path(os.path.realpath(candidate))
        if not real.is_relative_to(self.root):
            raise PathOutsideWorkspace(f"path {path!r} is outside the workspace")
        if self._is_closed(real):
            raise PathOutsideWorkspace(
                f"path {path!r} is in the server's own store ({STORE}/), not a workspace file"
            )
        return real

    def _is_closed(self, real: Path) -> bool:
        return any(real == closed or real.is_relative_to(closed) for closed in self.closed)

    def relative(self, real: Path) -> str:
        rel = real.relative_to(self.root).as_posix()
        return rel or "."

    # -- operations -----------------------------------------------------------------------------

    @_typed_os_errors
    def list(self, path: str = ".", recursive: bool = False) -> dict[str, Any]:
        folder = self.resolve(path)
        if not folder.exists():
            raise FileNotFound(f"no folder {path!r} in the workspace")
        if not folder.is_dir():
            raise InvalidArgument(f"{path!r} is not a folder in the workspace")
        entries = []
        walker = self._walk(folder) if recursive else folder.iterdir()
        truncated = False
        for entry in walker:
            if self._is_closed(entry):
                continue
            if len(entries) >= MAX_LIST_ENTRIES:
                truncated = True
                break
            try:
                stat = entry.lstat()
            except OSError:
                continue
            entries.append(
                {
                    "path": entry.relative_to(self.root).as_posix(),
                    "type": "dir" if entry.is_dir() and not entry.is_symlink() else "file",
                    "size": stat.st_size,
                    "modified": _iso(stat.st_mtime),
                }
            )
        entries.sort(key=lambda e: e["path"])
        return {
            "path": self.relative(folder),
            "entries": entries,
            "truncated": truncated,
            # As python-mcp-server 0.6.2 answered (its clients read these).
            "root": self.relative(folder),
            "files": [e["path"] for e in entries],
        }

    def _walk(self, folder: Path) -> Iterator[Path]:
        """Everything under ``folder``, never descending into the store (or symlinks)."""
        for dirpath, dirs, names in os.walk(folder):
            dirs[:] = [d for d in dirs if not self._is_closed(Path(dirpath) / d)]
            for name in (*dirs, *names):
                yield Path(dirpath) / name

    @_typed_os_errors
    def read(self, path: str) -> dict[str, Any]:
        real = self.resolve(path)
        if not real.exists():
            raise FileNotFound(f"no file {path!r} in the workspace")
        if not real.is_file():
            raise InvalidArgument(f"{path!r} is not a file in the workspace")
        size = real.stat().st_size
        if size > self.max_file_bytes:
            raise FileTooLarge(f"{path!r} is {size} bytes; the limit is {self.max_file_bytes}")
        data = real.read_bytes()
        try:
            text = data.decode("utf-8")
            # "text" / "base64": as python-mcp-server 0.6.2 answered.
            return {
                "path": self.relative(real),
                "content": text,
                "encoding": "utf-8",
                "size": size,
                "text": text,
            }
        except UnicodeDecodeError:
            encoded = base64.b64encode(data).decode("ascii")
            return {
                "path": self.relative(real),
                "content": encoded,
                "encoding": "base64",
                "size": size,
                "base64": encoded,
            }

    @_typed_os_errors
    def write(self, path: str, content: str, encoding: str = "utf-8") -> dict[str, Any]:
        if encoding not in ("utf-8", "base64"):
            raise InvalidArgument("encoding must be 'utf-8' or 'base64'")
        try:
            data = (
                content.encode("utf-8")
                if encoding == "utf-8"
                else base64.b64decode(content, validate=True)
            )
        except ValueError as exc:
            raise InvalidArgument(f"content is not valid base64: {exc}") from None
        if len(data) > self.max_file_bytes:
            raise FileTooLarge(f"{len(data)} bytes is above the limit of {self.max_file_bytes}")
        real = self.resolve(path)
        if real == self.root or real.is_dir():
            raise InvalidArgument(f"{path!r} is a folder")
        real.parent.mkdir(parents=True, exist_ok=True)
        # O_NOFOLLOW: a symlink swapped in after resolve() must not be written through.
        fd = os.open(real, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        return {"path": self.relative(real), "size": len(data)}

    @_typed_os_errors
    def delete(self, path: str) -> dict[str, Any]:
        real = self.resolve(path)
        if real in (self.root, self.outputs, self.scripts):
            raise InvalidArgument(f"{path!r} is a workspace folder and cannot be deleted")
        if real.is_dir():
            shutil.rmtree(real)
        elif real.exists():
            real.unlink()
        else:
            raise FileNotFound(f"no file {path!r} in the workspace")
        return {"path": self.relative(real), "deleted": True, "success": True}

    def is_file(self, path: str) -> dict[str, Any]:
        real = self.resolve(path)
        return {"path": self.relative(real), "is_file": real.is_file()}

    def info(self) -> dict[str, Any]:
        files = 0
        size = 0
        for _dirpath, dirs, names in os.walk(self.root):
            dirs[:] = [d for d in dirs if not self._is_closed(Path(_dirpath) / d)]
            for name in names:
                files += 1
                try:
                    size += os.lstat(os.path.join(_dirpath, name)).st_size
                except OSError:
                    pass
        usage = shutil.disk_usage(self.root)
        return {
            "workspace": str(self.root),
            "outputs_dir": str(self.outputs),
            # As python-mcp-server 0.6.2 answered.
            "outputs": str(self.outputs),
            "scripts": str(self.scripts),
            "uploads": str(self.root / "uploads"),
            "scripts_dir": str(self.scripts),
            "file_count": files,
            "total_size": size,
            "disk_free": usage.free,
            "max_file_bytes": self.max_file_bytes,
        }


LOCAL = "local"  # the identity of stdio and of a server without authentication
IDENTITY = "{identity}"


def identity_folder(identity: str) -> str:
    """A folder name for an identity, that no two identities share and that cannot lead out:
    its characters that are not plain become ``-``, and a hash of the whole identity follows
    (``token:alice`` -> ``token-alice-2bd806c97f``)."""
    readable = re.sub(r"[^A-Za-z0-9_.@-]+", "-", identity).strip(".-")[:48] or "id"
    return f"{readable}-{hashlib.sha256(identity.encode()).hexdigest()[:10]}"


# The operations a file tool may ask of a workspace, by reference (``SessionFiles.run``, and the
# session's actor for a workspace on its node): nothing else of a Workspace is reachable.
OPERATIONS = frozenset(
    {
        Workspace.list,
        Workspace.read,
        Workspace.write,
        Workspace.delete,
        Workspace.info,
        Workspace.is_file,
    }
)
WorkspaceOp = Callable[..., dict[str, Any]]


class Workspaces:
    """Each identity's workspace. ``local`` (stdio, a server without authentication: the
    machine's own user) has the workspace itself; every other identity a folder of its own,
    ``template`` with ``{identity}`` replaced by ``identity_folder`` (relative to the workspace,
    or absolute), where its sessions share ``outputs/`` and ``scripts/`` and never see
    another's."""

    def __init__(
        self,
        root: Path,
        template: str = IDENTITY,
        max_file_bytes: int = 10_000_000,
        store: Path | None = None,
    ) -> None:
        if IDENTITY not in template:
            raise ValueError(f"identity_workspace must contain {IDENTITY}: {template!r}")
        self.root = Path(os.path.realpath(root))
        self.template = template
        self.max_file_bytes = max_file_bytes
        self.store = store
        self._made: dict[str, Workspace] = {}

    def root_of(self, identity: str) -> Path:
        if identity == LOCAL:
            return self.root
        folder = Path(self.template.replace(IDENTITY, identity_folder(identity)))
        return Path(os.path.realpath(self.root / folder))

    def of(self, identity: str) -> Workspace:
        """The identity's workspace, its folders made on first use."""
        found = self._made.get(identity)
        if found is None:
            found = Workspace(self.root_of(identity), self.max_file_bytes, self.store)
            found.ensure()
            self._made[identity] = found
        return found


def _iso(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))
