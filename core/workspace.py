"""The workspace folder: the file operations the file tools offer, each done beneath a
descriptor of the workspace's root (see ``raykernel.beneath``).

A path is checked lexically (no NUL, not too long, ``..`` folded and never above the root,
absolute only inside it, not in the server's store) and then opened with ``openat2`` beneath
the root, refusing every symbolic link: the path checked is the path opened, once, however
session code (which can write its workspace) swaps files and links meanwhile. File tools do
not follow symbolic links, even ones that stay inside: a listing shows them as ``symlink``,
reading or writing through one is ``PathOutsideWorkspace``. ``..`` is folded by its text,
which is exact once no link is followed.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import os
import posixpath
import re
import shutil
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from . import beneath
from .deputy import deputy_for
from .errors import FileNotFound, FileTooLarge, InvalidArgument, PathOutsideWorkspace

MAX_PATH_LENGTH = 1024
MAX_NAME_LENGTH = 255
MAX_LIST_ENTRIES = 1000
# get_workspace_info stops counting here (and says ``truncated``): counting 300k files took a
# second, a second another identity's call would wait for a thread.
MAX_INFO_ENTRIES = 50_000
# A listing goes no deeper (a path is at most MAX_PATH_LENGTH characters anyway).
MAX_DEPTH = 128
# The server's own store inside the workspace (snapshots, package dirs): no file tool, resource
# or listing reaches it, or a caller could plant a pickle that restore_session would load.
STORE = ".raykernel"

_READ = os.O_RDONLY | os.O_NONBLOCK  # a FIFO planted by session code must not hang a reader
_WRITE = os.O_WRONLY | os.O_CREAT | os.O_NONBLOCK
_LIST = os.O_RDONLY | os.O_DIRECTORY


def _typed_os_errors(method: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    """An OS refusal (a file where a folder is expected, a symlink, permissions) is the
    caller's to fix: report it typed, with the reason and without internal detail."""

    @functools.wraps(method)
    def wrapper(self: Workspace, path: str = ".", *args: Any, **kwargs: Any) -> dict[str, Any]:
        try:
            return method(self, path, *args, **kwargs)
        except OSError as exc:
            raise beneath.typed(exc, path) from None

    return wrapper


class Workspace:
    def __init__(
        self, root: Path, max_file_bytes: int = 10_000_000, store: Path | None = None
    ) -> None:
        self.given = Path(os.path.abspath(root))
        self.root = Path(os.path.realpath(root))
        self.max_file_bytes = max_file_bytes
        self.outputs = self.root / "outputs"
        self.scripts = self.root / "scripts"
        # The server's store (when configured inside the workspace) and the folder older
        # versions kept it in, as components beneath the root: exact, since no link is
        # followed. () closes everything (a workspace inside the store).
        closed = [self.root / STORE]
        if store is not None:
            closed.append(Path(os.path.realpath(store)))
        self.closed = tuple(closed)
        self._closed = tuple(
            () if self.root.is_relative_to(c) else c.relative_to(self.root).parts
            for c in closed
            if self.root.is_relative_to(c) or c.is_relative_to(self.root)
        )

    def ensure(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        with beneath.folder(self.root) as root:
            for name in ("outputs", "scripts"):
                os.close(beneath.open_folder(root, (name,), make=True))

    # -- paths ----------------------------------------------------------------------------------

    def parts(self, path: str) -> tuple[str, ...]:
        """``path`` (relative to the root, or absolute inside it) as components beneath the
        root, checked by its text alone: nothing is resolved, nothing followed."""
        if not isinstance(path, str) or not path:
            raise InvalidArgument("path must be a non-empty string")
        if "\x00" in path:
            raise PathOutsideWorkspace("path contains a NUL byte")
        if len(path) > MAX_PATH_LENGTH:
            raise PathOutsideWorkspace(f"path longer than {MAX_PATH_LENGTH} characters")
        if any(len(part) > MAX_NAME_LENGTH for part in path.split("/")):
            raise PathOutsideWorkspace(f"a path component is longer than {MAX_NAME_LENGTH}")
        relative = path
        if path.startswith("/"):
            normal = posixpath.normpath(path)
            for root in dict.fromkeys((self.root.as_posix(), self.given.as_posix())):
                if normal == root or normal.startswith(root.rstrip("/") + "/"):
                    relative = normal[len(root) :]
                    break
            else:
                raise PathOutsideWorkspace(f"path {path!r} is outside the workspace")
        normal = posixpath.normpath(relative.lstrip("/") or ".")
        if normal == ".." or normal.startswith("../"):
            raise PathOutsideWorkspace(f"path {path!r} is outside the workspace")
        parts = beneath.split(normal)
        if self._is_closed(parts):
            raise PathOutsideWorkspace(
                f"path {path!r} is in the server's own store ({STORE}/), not a workspace file"
            )
        return parts

    def resolve(self, path: str) -> Path:
        """The real absolute path for ``path``, refused outside the workspace or in the store.
        An early, friendly check only (a link can be swapped after it): what protects is that
        every operation here opens beneath the root and follows no link."""
        parts = self.parts(path)
        real = Path(os.path.realpath(self.root.joinpath(*parts)))
        if not real.is_relative_to(self.root):
            raise PathOutsideWorkspace(f"path {path!r} is outside the workspace")
        if self._is_closed(real.relative_to(self.root).parts):
            raise PathOutsideWorkspace(
                f"path {path!r} is in the server's own store ({STORE}/), not a workspace file"
            )
        return real

    def _is_closed(self, parts: tuple[str, ...]) -> bool:
        return any(parts[: len(closed)] == closed for closed in self._closed)

    def _holds_closed(self, parts: tuple[str, ...]) -> bool:
        """Whether the store is beneath ``parts`` (deleting it would delete the store)."""
        return any(closed[: len(parts)] == parts for closed in self._closed)

    def relative(self, real: Path) -> str:
        rel = real.relative_to(self.root).as_posix()
        return rel or "."

    @staticmethod
    def _shown(parts: tuple[str, ...]) -> str:
        return "/".join(parts) or "."

    # -- operations -----------------------------------------------------------------------------

    @_typed_os_errors
    def list(self, path: str = ".", recursive: bool = False) -> dict[str, Any]:
        parts = self.parts(path)
        entries = []
        truncated = False
        with beneath.folder(self.root) as root:
            try:
                fd = beneath.open_beneath(root, parts, _LIST)
            except FileNotFoundError:
                raise FileNotFound(f"no folder {path!r} in the workspace") from None
            except NotADirectoryError:
                raise InvalidArgument(f"{path!r} is not a folder in the workspace") from None
            try:
                for child, info in self._tree(fd, parts, recursive):
                    if len(entries) >= MAX_LIST_ENTRIES:
                        truncated = True
                        break
                    entries.append(
                        {
                            "path": "/".join(child),
                            "type": _kind(info.st_mode),
                            "size": info.st_size,
                            "modified": _iso(info.st_mtime),
                        }
                    )
            finally:
                os.close(fd)
        entries.sort(key=lambda e: e["path"])
        shown = self._shown(parts)
        return {
            "path": shown,
            "entries": entries,
            "truncated": truncated,
            # As python-mcp-server 0.6.2 answered (its clients read these).
            "root": shown,
            "files": [e["path"] for e in entries],
        }

    def _tree(
        self, fd: int, parts: tuple[str, ...], recursive: bool, depth: int = 0
    ) -> Iterator[tuple[tuple[str, ...], os.stat_result]]:
        """What the folder ``fd`` holds (and, ``recursive``, its folders' contents), never
        the store, never through a link: each folder is opened beneath its parent with
        ``O_NOFOLLOW``, so one swapped for a link meanwhile is skipped."""
        with os.scandir(fd) as found:
            for entry in found:
                child = (*parts, entry.name)
                if self._is_closed(child):
                    continue
                try:
                    info = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                yield child, info
                if not (recursive and stat.S_ISDIR(info.st_mode) and depth < MAX_DEPTH):
                    continue
                try:
                    sub = beneath.open_beneath(fd, (entry.name,), _LIST)
                except OSError:
                    continue
                try:
                    yield from self._tree(sub, child, True, depth + 1)
                finally:
                    os.close(sub)

    @_typed_os_errors
    def read(self, path: str) -> dict[str, Any]:
        parts = self.parts(path)
        data = self._read_bytes(parts, path)
        size = len(data)
        shown = self._shown(parts)
        try:
            text = data.decode("utf-8")
            # "text" / "base64": as python-mcp-server 0.6.2 answered.
            return {"path": shown, "content": text, "encoding": "utf-8", "size": size, "text": text}
        except UnicodeDecodeError:
            encoded = base64.b64encode(data).decode("ascii")
            return {
                "path": shown,
                "content": encoded,
                "encoding": "base64",
                "size": size,
                "base64": encoded,
            }

    def _read_bytes(self, parts: tuple[str, ...], path: str) -> bytes:
        """The bytes of the regular file ``parts``: opened beneath the root, checked on its
        descriptor (its kind, its size), read from it."""
        with beneath.folder(self.root) as root:
            try:
                fd = beneath.open_beneath(root, parts, _READ)
            except FileNotFoundError:
                raise FileNotFound(f"no file {path!r} in the workspace") from None
            with os.fdopen(fd, "rb") as handle:
                info = os.fstat(fd)
                if not stat.S_ISREG(info.st_mode):
                    raise InvalidArgument(f"{path!r} is not a file in the workspace")
                if info.st_size > self.max_file_bytes:
                    raise FileTooLarge(
                        f"{path!r} is {info.st_size} bytes; the limit is {self.max_file_bytes}"
                    )
                os.set_blocking(fd, True)
                # It may grow after fstat: never read past the limit.
                data = handle.read(self.max_file_bytes + 1)
        if len(data) > self.max_file_bytes:
            raise FileTooLarge(f"{path!r} is above the limit of {self.max_file_bytes} bytes")
        return data

    def script(self, path: str) -> dict[str, Any]:
        """A script to run, read once as ``read`` reads: ``path``, its absolute path (its
        ``__file__``), and ``source``, its UTF-8 text (what runs and what the history keeps)."""
        parts = self.parts(path)
        try:
            data = self._read_bytes(parts, path)
        except OSError as exc:
            raise beneath.typed(exc, path) from None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidArgument(f"{path!r} is not UTF-8 text: {exc.reason}") from None
        return {"path": str(self.root.joinpath(*parts)), "source": text}

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
        parts = self.parts(path)
        if not parts:
            raise InvalidArgument(f"{path!r} is a folder")
        with beneath.folder(self.root) as root:
            parent = beneath.open_folder(root, parts[:-1], make=True)
            try:
                try:
                    fd = beneath.open_beneath(parent, parts[-1:], _WRITE, 0o644)
                except IsADirectoryError:
                    raise InvalidArgument(f"{path!r} is a folder") from None
            finally:
                os.close(parent)
        with os.fdopen(fd, "wb") as handle:
            # Truncated once known to be a regular file (never a FIFO or a device).
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise InvalidArgument(f"{path!r} is not a file in the workspace")
            os.set_blocking(fd, True)
            os.ftruncate(fd, 0)
            handle.write(data)
        return {"path": self._shown(parts), "size": len(data)}

    @_typed_os_errors
    def delete(self, path: str) -> dict[str, Any]:
        parts = self.parts(path)
        if parts in ((), ("outputs",), ("scripts",)) or self._holds_closed(parts):
            raise InvalidArgument(f"{path!r} is a workspace folder and cannot be deleted")
        name = parts[-1]
        with beneath.folder(self.root) as root:
            try:
                parent = beneath.open_folder(root, parts[:-1])
            except (FileNotFoundError, NotADirectoryError):
                raise FileNotFound(f"no file {path!r} in the workspace") from None
            try:
                try:
                    info = os.stat(name, dir_fd=parent, follow_symlinks=False)
                except FileNotFoundError:
                    raise FileNotFound(f"no file {path!r} in the workspace") from None
                if stat.S_ISDIR(info.st_mode):
                    # fd-based: each folder opened beneath its parent, a link never followed
                    # (it checks that what it opened is what it looked at).
                    shutil.rmtree(name, dir_fd=parent)
                else:
                    os.unlink(name, dir_fd=parent)  # a link itself, never its target
            finally:
                os.close(parent)
        return {"path": self._shown(parts), "deleted": True, "success": True}

    def is_file(self, path: str) -> dict[str, Any]:
        parts = self.parts(path)
        with beneath.folder(self.root) as root:
            try:
                with beneath.opened(root, parts, beneath.O_PATH) as fd:
                    found = stat.S_ISREG(os.fstat(fd).st_mode)
            except OSError:  # missing, a link, under a file: not a file the tools read
                found = False
        return {"path": self._shown(parts), "is_file": found}

    def info(self) -> dict[str, Any]:
        files = 0
        size = 0
        seen = 0
        truncated = False
        with beneath.folder(self.root) as root:
            with beneath.opened(root, (), _LIST) as fd:
                for _child, entry in self._tree(fd, (), recursive=True):
                    seen += 1
                    if seen > MAX_INFO_ENTRIES:
                        truncated = True
                        break
                    if not stat.S_ISDIR(entry.st_mode):
                        files += 1
                        size += entry.st_size
            usage = os.statvfs(root)
        return {
            "workspace": str(self.root),
            "outputs_dir": str(self.outputs),
            # As python-mcp-server 0.6.2 answered.
            "outputs": str(self.outputs),
            "scripts": str(self.scripts),
            "uploads": str(self.root / "uploads"),
            "scripts_dir": str(self.scripts),
            # Counted up to MAX_INFO_ENTRIES entries: with ``truncated``, at least these.
            "file_count": files,
            "total_size": size,
            "truncated": truncated,
            "disk_free": usage.f_bavail * usage.f_frsize,
            "max_file_bytes": self.max_file_bytes,
            "file_access": beneath.method(),
            # How the thread doing this is held (the deputy's, as ``raykernel.deputy`` says).
            "file_confinement": deputy_for(self.root).confinement["by"],
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
        Workspace.script,
    }
)
WorkspaceOp = Callable[..., dict[str, Any]]


async def perform(op: WorkspaceOp, workspace: Workspace, *args: Any) -> dict[str, Any]:
    """``op(workspace, *args)`` on a thread of the workspace's deputy (``raykernel.deputy``:
    confined to this workspace, off the event loop): the one place a workspace operation is
    handed on (the front end's file tools and the session's actor both come here)."""
    if op not in OPERATIONS:
        raise ValueError(f"unknown workspace operation {op!r}")
    return await deputy_for(workspace.root).run(op, workspace, *args)


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


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISLNK(mode):
        return "symlink"  # listed, never followed
    return "file" if stat.S_ISREG(mode) else "other"


def _iso(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))
