"""Workspace containment and file operations."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from raykernel.errors import FileTooLarge, InvalidArgument, PathOutsideWorkspace
from raykernel.workspace import Workspace


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    space = Workspace(tmp_path / "space", max_file_bytes=1_000)
    space.ensure()
    return space


@pytest.mark.parametrize(
    "path",
    [
        "../x",
        "/etc/passwd",
        "a/../../b",
        "outputs/../../x",
        "bad\x00name",
        "n" * 4096,
        "a/" + "n" * 300,
    ],
)
def test_paths_outside_or_malformed_are_refused(ws: Workspace, path: str) -> None:
    with pytest.raises(PathOutsideWorkspace):
        ws.resolve(path)
    with pytest.raises(PathOutsideWorkspace):
        ws.write(path, "x")


def test_sibling_folder_with_same_prefix_is_outside(ws: Workspace, tmp_path: Path) -> None:
    sibling = tmp_path / "space2"
    sibling.mkdir()
    (sibling / "secret").write_text("s")
    with pytest.raises(PathOutsideWorkspace):
        ws.read(str(sibling / "secret"))
    with pytest.raises(PathOutsideWorkspace):
        ws.read("../space2/secret")


def test_symlink_pointing_outside_is_refused_and_target_unchanged(
    ws: Workspace, tmp_path: Path
) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("original")
    os.symlink(outside, ws.root / "outputs" / "link.txt")
    os.symlink(tmp_path, ws.root / "escape")
    for path in ("outputs/link.txt", "escape/outside.txt"):
        with pytest.raises(PathOutsideWorkspace, match="symbolic link"):
            ws.write(path, "overwritten")
        with pytest.raises(PathOutsideWorkspace, match="symbolic link"):
            ws.read(path)
    with pytest.raises(PathOutsideWorkspace, match="symbolic link"):
        ws.delete("escape/outside.txt")
    assert outside.read_text() == "original"
    # Deleting a link removes the link, never what it points to.
    ws.delete("outputs/link.txt")
    assert not os.path.lexists(ws.root / "outputs" / "link.txt")
    assert outside.read_text() == "original"


def test_write_read_list_delete_round_trip(ws: Workspace) -> None:
    assert ws.write("outputs/deep/a.txt", "héllo") == {"path": "outputs/deep/a.txt", "size": 6}
    assert ws.read("outputs/deep/a.txt")["content"] == "héllo"
    abs_path = str(ws.root / "outputs" / "deep" / "a.txt")
    assert ws.read(abs_path)["path"] == "outputs/deep/a.txt"
    listing = ws.list("outputs", recursive=True)
    assert [e["path"] for e in listing["entries"]] == ["outputs/deep", "outputs/deep/a.txt"]
    ws.delete("outputs/deep")
    assert not (ws.root / "outputs" / "deep").exists()


def test_binary_round_trip_through_base64(ws: Workspace) -> None:
    import base64

    data = bytes(range(256))
    ws.write("outputs/b.bin", base64.b64encode(data).decode(), encoding="base64")
    reply = ws.read("outputs/b.bin")
    assert reply["encoding"] == "base64"
    assert base64.b64decode(reply["content"]) == data


def test_size_limits(ws: Workspace) -> None:
    with pytest.raises(FileTooLarge):
        ws.write("outputs/big.txt", "x" * 1_001)
    assert not (ws.root / "outputs" / "big.txt").exists()
    (ws.root / "outputs" / "big.txt").write_text("x" * 2_000)
    with pytest.raises(FileTooLarge):
        ws.read("outputs/big.txt")


def test_workspace_folders_cannot_be_deleted(ws: Workspace) -> None:
    for path in (".", "outputs", "scripts"):
        with pytest.raises(InvalidArgument):
            ws.delete(path)
    assert ws.outputs.is_dir() and ws.scripts.is_dir()


def test_os_refusals_are_typed(ws: Workspace) -> None:
    ws.write("outputs/a.txt", "file")
    with pytest.raises(InvalidArgument, match=r"cannot access 'outputs/a\.txt/b'"):
        ws.write("outputs/a.txt/b", "under a file")


@pytest.mark.parametrize(
    "path", [".raykernel", ".raykernel/snapshots/evil.pkl", "outputs/../.raykernel/site/x"]
)
def test_the_servers_store_is_closed_to_file_operations(ws: Workspace, path: str) -> None:
    (ws.root / ".raykernel" / "snapshots").mkdir(parents=True)
    (ws.root / ".raykernel" / "snapshots" / "kept.zip").write_text("snapshot")
    for operation, args in (("write", ("planted",)), ("read", ()), ("delete", ())):
        with pytest.raises(PathOutsideWorkspace, match="store"):
            getattr(ws, operation)(path, *args)
    assert (ws.root / ".raykernel" / "snapshots" / "kept.zip").read_text() == "snapshot"
    assert not (ws.root / ".raykernel" / "snapshots" / "evil.pkl").exists()
    listed = [e["path"] for e in ws.list(".", recursive=True)["entries"]]
    assert listed and not any(p.startswith(".raykernel") for p in listed)
    assert ".raykernel" not in [e["path"] for e in ws.list(".")["entries"]]


def test_a_symlink_into_the_store_is_closed_too(ws: Workspace) -> None:
    (ws.root / ".raykernel").mkdir()
    os.symlink(ws.root / ".raykernel", ws.root / "outputs" / "door")
    with pytest.raises(PathOutsideWorkspace, match="symbolic link"):
        ws.write("outputs/door/evil.pkl", "x")
    assert not (ws.root / ".raykernel" / "evil.pkl").exists()
