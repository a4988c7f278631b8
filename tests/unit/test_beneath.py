"""Opening beneath a folder's descriptor (raykernel.beneath), with openat2 and with the walk
it falls back to (forced here): a symbolic link anywhere on the way is refused, '..' and
absolute paths never reach the system, and a file swapped for a link in a loop never leads
out. The Workspace's operations, which open through it, are tried under both too."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from raykernel import beneath
from raykernel.errors import FileNotFound, PathOutsideWorkspace
from raykernel.workspace import Workspace

CANARY = "canary-outside-the-folder"


@pytest.fixture(params=["openat2", "walk"])
def how(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "walk":
        monkeypatch.setattr(beneath._openat2, "usable", False)
    elif not sys.platform.startswith("linux"):
        pytest.skip("openat2 is Linux's")
    return request.param


@pytest.fixture
def tree(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """A folder with a file, a sub-folder, a link to a file outside, a link to a folder
    outside and a link that stays inside; its descriptor."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text(CANARY)
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "a.txt").write_text("inside")
    os.symlink(outside / "secret.txt", root / "out-file")
    os.symlink(outside, root / "out-dir")
    os.symlink("sub", root / "in-dir")
    fd = os.open(root, os.O_PATH | os.O_DIRECTORY)
    yield root, fd
    os.close(fd)


def _read(fd: int, parts: tuple[str, ...]) -> str:
    with beneath.opened(fd, parts, os.O_RDONLY) as opened:
        return os.read(opened, 1000).decode()


def test_a_plain_path_opens_and_the_method_is_said(how: str, tree: tuple[Path, int]) -> None:
    _root, fd = tree
    assert _read(fd, ("sub", "a.txt")) == "inside"
    assert beneath.method() == how


@pytest.mark.parametrize(
    "parts",
    [
        ("out-file",),  # a link at the end
        ("out-dir", "secret.txt"),  # a link in the middle
        ("in-dir", "a.txt"),  # a link that stays inside is not followed either
    ],
)
def test_a_symlink_anywhere_is_refused(
    how: str, tree: tuple[Path, int], parts: tuple[str, ...]
) -> None:
    _root, fd = tree
    for flags in (os.O_RDONLY, os.O_PATH, os.O_WRONLY | os.O_CREAT):
        with pytest.raises(OSError) as info:
            beneath.open_beneath(fd, parts, flags)
        assert info.value.errno == errno.ELOOP, (parts, flags, info.value)
    error = beneath.typed(info.value, "/".join(parts))
    assert isinstance(error, PathOutsideWorkspace)
    assert "do not follow symbolic links" in str(error)


def test_a_link_as_a_folder_on_the_way_is_refused_when_folders_are_made(
    how: str, tree: tuple[Path, int], tmp_path: Path
) -> None:
    _root, fd = tree
    with pytest.raises(OSError) as info:
        beneath.open_folder(fd, ("out-dir", "new"), make=True)
    assert info.value.errno == errno.ELOOP
    assert not (tmp_path / "outside" / "new").exists()
    made = beneath.open_folder(fd, ("sub", "x", "y"), make=True)
    os.close(made)
    assert (tree[0] / "sub" / "x" / "y").is_dir()


@pytest.mark.parametrize("path", ["../outside/secret.txt", "sub/../../x", "/etc/passwd", ".."])
def test_dotdot_and_absolute_paths_are_refused_before_any_open(path: str) -> None:
    with pytest.raises(PathOutsideWorkspace):
        beneath.split(path)


def test_names_that_are_not_plain_are_refused(tree: tuple[Path, int]) -> None:
    _root, fd = tree
    for parts in ((".."), ("sub", ".."), ("sub/a.txt",), ("a\x00b",)):
        with pytest.raises(PathOutsideWorkspace):
            beneath.open_beneath(fd, tuple(parts) if isinstance(parts, tuple) else (parts,), 0)


def test_a_missing_file_is_file_not_found(how: str, tree: tuple[Path, int]) -> None:
    _root, fd = tree
    with pytest.raises(FileNotFoundError) as info:
        beneath.open_beneath(fd, ("sub", "nope"), os.O_RDONLY)
    assert isinstance(beneath.typed(info.value, "sub/nope"), FileNotFound)


def _flipping(folder: Path, target: Path, stop: threading.Event) -> threading.Thread:
    """A thread that swaps ``folder/f`` between a file and a link to ``target``, and
    ``folder/d`` between a folder and a link to ``target``'s folder, atomically (rename), as
    session code would."""

    def flip() -> None:
        while not stop.is_set():
            try:
                (folder / "d").mkdir(exist_ok=True)
                (folder / "f.new").write_text("inside")
                os.replace(folder / "f.new", folder / "f")
                os.symlink(target, folder / "f.link")
                os.replace(folder / "f.link", folder / "f")
                os.symlink(target.parent, folder / "d.link")
                os.rename(folder / "d", folder / "d.old")
                os.replace(folder / "d.link", folder / "d")
                os.unlink(folder / "d")
                os.rename(folder / "d.old", folder / "d")
            except OSError:  # the file tools made or removed one meanwhile: go on
                for leftover in ("f.link", "d.link"):
                    with contextlib.suppress(OSError):
                        os.unlink(folder / leftover)
                with contextlib.suppress(OSError):
                    shutil.rmtree(folder / "d.old")

    thread = threading.Thread(target=flip, daemon=True)
    thread.start()
    return thread


def test_a_file_flipped_with_a_link_never_leads_out(how: str, tmp_path: Path) -> None:
    """The race itself: a path checked then opened by name loses it (shown first, so the
    test is known to be able to fail); opened beneath, it never does."""
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret.txt"
    secret.write_text(CANARY)
    (outside / "f").write_text(CANARY)
    root = tmp_path / "root"
    root.mkdir()
    stop = threading.Event()
    thread = _flipping(root, secret, stop)
    try:
        by_name = 0
        for _ in range(3000):  # the old way: realpath, check, then open by name
            try:
                if Path(os.path.realpath(root / "f")).is_relative_to(root):
                    by_name += (root / "f").read_text() == CANARY
            except OSError:
                pass
        fd = os.open(root, os.O_PATH | os.O_DIRECTORY)
        leaks = 0
        for _ in range(3000):
            for parts in (("f",), ("d", "secret.txt")):
                try:
                    leaks += _read(fd, parts) == CANARY
                except OSError as exc:
                    assert exc.errno in (errno.ELOOP, errno.ENOENT, errno.ENOTDIR), exc
        os.close(fd)
    finally:
        stop.set()
        thread.join()
    assert by_name > 0, "the race did not show: the test could not fail"
    assert leaks == 0
    assert secret.read_text() == CANARY


def test_workspace_operations_under_the_flip_loop(how: str, tmp_path: Path) -> None:
    """read, write, delete and listing of the Workspace, with each way of opening."""
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret.txt"
    secret.write_text(CANARY)
    ws = Workspace(tmp_path / "ws")
    ws.ensure()
    stop = threading.Event()
    thread = _flipping(ws.outputs, secret, stop)
    try:
        for i in range(300):
            for op, args in (
                (ws.read, ("outputs/f",)),
                (ws.read, ("outputs/d/secret.txt",)),
                (ws.write, ("outputs/f", f"w{i}")),
                (ws.write, ("outputs/d/mine.txt", f"w{i}")),
                (ws.delete, ("outputs/d/secret.txt",)),
                (ws.delete, ("outputs/d/mine.txt",)),
            ):
                try:
                    reply = op(*args)
                except (PathOutsideWorkspace, FileNotFound):
                    continue
                except Exception as exc:  # a typed refusal of another kind is fine too
                    assert type(exc).__module__ == "raykernel.errors", exc
                    continue
                assert CANARY not in str(reply)
            assert secret.read_text() == CANARY
            listing = ws.list("outputs", recursive=True)
            assert all(not e["path"].endswith("secret.txt") for e in listing["entries"])
    finally:
        stop.set()
        thread.join()
    assert sorted(os.listdir(outside)) == ["secret.txt"]
    assert secret.read_text() == CANARY


def test_listing_shows_links_as_links_and_never_enters_them(how: str, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text(CANARY)
    ws = Workspace(tmp_path / "ws")
    ws.ensure()
    os.symlink(outside, ws.outputs / "door")
    os.symlink(outside / "secret.txt", ws.outputs / "note")
    listing = ws.list("outputs", recursive=True)
    kinds = {e["path"]: e["type"] for e in listing["entries"]}
    assert kinds == {"outputs/door": "symlink", "outputs/note": "symlink"}
    with pytest.raises(PathOutsideWorkspace, match="symbolic link"):
        ws.list("outputs/door")
    assert ws.is_file("outputs/note")["is_file"] is False
    info = ws.info()
    assert info["truncated"] is False and info["file_count"] == 2


def test_info_stops_counting_at_its_cap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import raykernel.workspace as module

    monkeypatch.setattr(module, "MAX_INFO_ENTRIES", 10)
    ws = Workspace(tmp_path / "ws")
    ws.ensure()
    for i in range(30):
        (ws.outputs / f"{i}.txt").write_text("x")
    info = ws.info()
    assert info["truncated"] is True and info["file_count"] < 30
