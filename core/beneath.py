"""Opening files beneath a directory handle, never following a symbolic link.

A path that is checked (``realpath``, then "is it inside?") and then opened by name is a race
whenever someone else can write the folder: session code that swaps a file for a symlink
between the two steps sends the opener outside. Here the path checked is the path opened, in
one step, relative to a file descriptor of the folder:

- Linux ``openat2(2)`` (5.6+) with ``RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
  RESOLVE_NO_MAGICLINKS``: the kernel resolves every component beneath the directory and
  refuses any symbolic link on the way (``ELOOP``) or any way out (``EXDEV``).
- Where the system call is missing (``ENOSYS``: an older kernel, a seccomp filter that does not
  know it, another system), the same walk by hand: each component opened with
  ``O_NOFOLLOW`` relative to its parent's descriptor (``O_DIRECTORY`` for the folders on the
  way), so a symlink anywhere is refused and nothing is resolved by name from the top.

Both refuse ``..`` and absolute paths lexically (callers normalise first; see
``raykernel.workspace``). Python has no wrapper for ``openat2``; PyPI's ``pathrs`` binds
libpathrs, a system library this project cannot assume (and it follows symlinks inside the
root, which the file tools must not): so ``ctypes`` and the system call number, 437 on every
architecture that has the generic table (x86_64, aarch64 and the others with one number list).

What a descriptor cannot promise: a folder that is moved elsewhere while an operation holds it
takes the operation with it. Whoever moves it must be able to write both places, so an
operation on a tenant's workspace can only be moved where that tenant writes already.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import stat
from collections.abc import Iterator
from contextlib import contextmanager

from .errors import FileNotFound, InvalidArgument, PathOutsideWorkspace, RaykernelError

RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS

# openat2's number where Linux uses the generic system call table (and x86_64's own, which
# took the same number).
_SYSCALLS = {"x86_64": 437, "aarch64": 437, "arm64": 437, "riscv64": 437, "ppc64le": 437}
O_PATH = getattr(os, "O_PATH", os.O_RDONLY)
O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_FOLDER = O_PATH | os.O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


class _Openat2:
    """The system call, or None once it is known to be missing here."""

    def __init__(self) -> None:
        self.number = _SYSCALLS.get(platform.machine()) if os.name == "posix" else None
        self.usable: bool | None = None if self.number is not None else False
        self._syscall = None
        if self.number is not None:
            try:
                self._syscall = ctypes.CDLL(None, use_errno=True).syscall
            except (OSError, AttributeError):
                self.usable = False

    def __call__(self, dirfd: int, path: str, flags: int, mode: int) -> int | None:
        if self.usable is False or self._syscall is None:
            return None
        # Without O_NOFOLLOW, which would turn a link met last into ENOTDIR under
        # O_DIRECTORY: RESOLVE_NO_SYMLINKS refuses it (ELOOP), wherever it is.
        how = _OpenHow(
            (flags & ~O_NOFOLLOW) | O_CLOEXEC, mode if flags & os.O_CREAT else 0, RESOLVE
        )
        encoded = os.fsencode(path)
        while True:
            fd = self._syscall(
                ctypes.c_long(self.number),
                ctypes.c_int(dirfd),
                ctypes.c_char_p(encoded),
                ctypes.byref(how),
                ctypes.c_size_t(ctypes.sizeof(how)),
            )
            if fd >= 0:
                self.usable = True
                return int(fd)
            code = ctypes.get_errno()
            if code == errno.EINTR:
                continue
            # ENOSYS: no such call; EPERM before it ever worked: a seccomp filter that refuses
            # calls it does not know (older container runtimes answer that way).
            if code == errno.ENOSYS or (code == errno.EPERM and self.usable is None):
                self.usable = False
                return None
            # EAGAIN: a rename raced a '..' lookup; none is asked here, but it is the one
            # answer that says "try again".
            if code == errno.EAGAIN:
                continue
            raise OSError(code, os.strerror(code), path)


_openat2 = _Openat2()


def method() -> str:
    """How this process opens beneath a folder: ``openat2``, or ``walk`` (component by
    component) where the system call is missing; ``unknown`` before the first open."""
    if _openat2.usable is None:
        return "unknown"
    return "openat2" if _openat2.usable else "walk"


def split(path: str) -> tuple[str, ...]:
    """``path``'s components, ``.`` and empty ones dropped; an absolute path or a ``..`` is
    refused here, before anything is opened."""
    if path.startswith("/"):
        raise PathOutsideWorkspace(f"{path!r} is absolute: only paths beneath are opened")
    parts = tuple(part for part in path.split("/") if part not in ("", "."))
    if ".." in parts:
        raise PathOutsideWorkspace(f"{path!r} has a '..' component")
    return parts


def open_beneath(dirfd: int, parts: tuple[str, ...], flags: int, mode: int = 0o644) -> int:
    """A new descriptor for ``parts`` beneath the folder ``dirfd`` (``()`` is that folder),
    opened with ``flags`` (``O_CLOEXEC`` always); raises ``OSError`` as ``open`` does, with
    ``ELOOP`` for a symbolic link anywhere on the way, the last component included (even with
    ``O_PATH``)."""
    for part in parts:
        if part in ("", ".", "..") or "/" in part or "\x00" in part:
            raise PathOutsideWorkspace(f"{part!r} is not a plain name")
    path = "/".join(parts) or "."
    fd = _openat2(dirfd, path, flags, mode)
    if fd is not None:
        return fd
    return _walk(dirfd, parts, flags, mode)


def _walk(dirfd: int, parts: tuple[str, ...], flags: int, mode: int) -> int:
    """``openat2``'s answer, one component at a time: nothing is followed."""
    current = dirfd
    try:
        for part in parts[:-1]:
            try:
                fd = os.open(part, _FOLDER, dir_fd=current)
            except OSError as exc:
                raise _named(exc, part, current) from None
            if current != dirfd:
                os.close(current)
            current = fd
        last = parts[-1] if parts else "."
        try:
            fd = os.open(last, flags | O_NOFOLLOW | O_CLOEXEC, mode, dir_fd=current)
        except OSError as exc:
            raise _named(exc, last, current) from None
        # O_PATH | O_NOFOLLOW opens a symlink itself: openat2 would have refused it.
        if flags & O_PATH and stat.S_ISLNK(os.fstat(fd).st_mode):
            os.close(fd)
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), last)
        return fd
    finally:
        if current != dirfd:
            os.close(current)


def _named(exc: OSError, name: str, dirfd: int) -> OSError:
    """``ELOOP`` when ``name`` is a symlink (``O_DIRECTORY | O_NOFOLLOW`` says ``ENOTDIR``)."""
    if exc.errno in (errno.ENOTDIR, errno.ELOOP):
        try:
            if stat.S_ISLNK(os.stat(name, dir_fd=dirfd, follow_symlinks=False).st_mode):
                return OSError(errno.ELOOP, os.strerror(errno.ELOOP), name)
        except OSError:
            pass
    return exc


def open_folder(dirfd: int, parts: tuple[str, ...], make: bool = False) -> int:
    """A descriptor (``O_PATH``) of the folder ``parts`` beneath ``dirfd``; with ``make``, the
    folders missing on the way are made, each with ``mkdirat`` relative to its parent's
    descriptor."""
    if not make:
        return open_beneath(dirfd, parts, _FOLDER)
    current = os.dup(dirfd)
    try:
        for part in parts:
            try:
                fd = open_beneath(current, (part,), _FOLDER)
            except FileNotFoundError:
                try:
                    os.mkdir(part, 0o755, dir_fd=current)
                except FileExistsError:
                    pass  # made meanwhile: opened below, as anything else there would be
                fd = open_beneath(current, (part,), _FOLDER)
            os.close(current)
            current = fd
        return current
    except BaseException:
        os.close(current)
        raise


@contextmanager
def opened(dirfd: int, parts: tuple[str, ...], flags: int, mode: int = 0o644) -> Iterator[int]:
    fd = open_beneath(dirfd, parts, flags, mode)
    try:
        yield fd
    finally:
        os.close(fd)


@contextmanager
def folder(path: str | os.PathLike[str]) -> Iterator[int]:
    """A descriptor of the folder at ``path`` (a path the caller owns, such as a workspace
    root: its last component must not be a symlink either)."""
    fd = os.open(path, _FOLDER)
    try:
        yield fd
    finally:
        os.close(fd)


def typed(exc: OSError, shown: str) -> RaykernelError:
    """An OS refusal met beneath a folder, as the error hierarchy says it (``shown``: the path
    as the caller gave it)."""
    code = exc.errno
    if code == errno.ELOOP:
        return PathOutsideWorkspace(
            f"{shown!r} is or passes through a symbolic link: file tools do not follow "
            "symbolic links"
        )
    if code == errno.EXDEV:
        return PathOutsideWorkspace(f"{shown!r} leads outside the workspace")
    if code == errno.ENOENT:
        return FileNotFound(f"no file or folder {shown!r} in the workspace")
    if code == errno.ENAMETOOLONG:
        return PathOutsideWorkspace(f"{shown!r} is too long")
    return InvalidArgument(f"cannot access {shown!r}: {exc.strerror or type(exc).__name__}")
