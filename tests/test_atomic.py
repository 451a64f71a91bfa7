"""Atomic writes: the old file or folder survives a writer that fails, and nothing is left behind."""

from __future__ import annotations

import os

import numpy as np
import pytest

from concept._atomic import atomic_file, atomic_folder, atomic_write_bytes, atomic_write_text


def _names(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_write_bytes_and_text_create_and_replace_files(tmp_path):
    target = tmp_path / "sub" / "data.bin"
    target.parent.mkdir()
    atomic_write_bytes(target, b"first")
    assert target.read_bytes() == b"first"
    atomic_write_bytes(target, b"second, longer")
    assert target.read_bytes() == b"second, longer"
    atomic_write_text(tmp_path / "note.txt", "caf\u00e9 \u2713")
    assert (tmp_path / "note.txt").read_text(encoding="utf-8") == "caf\u00e9 \u2713"
    assert _names(tmp_path) == ["note.txt", "sub"] and _names(target.parent) == ["data.bin"]


def test_a_streaming_writer_that_raises_midway_keeps_the_old_file(tmp_path):
    target = tmp_path / "vectors.npy"
    np.save(target, np.arange(3))
    with pytest.raises(RuntimeError, match="disk full"), atomic_file(target) as f:
        f.write(b"\x93NUMPY partial")
        raise RuntimeError("disk full")
    np.testing.assert_array_equal(np.load(target), np.arange(3))
    assert _names(tmp_path) == ["vectors.npy"]  # no temporary file left


def test_atomic_file_streams_numpy_and_text(tmp_path):
    with atomic_file(tmp_path / "a.npy") as f:
        np.save(f, np.eye(2, dtype=np.float32))
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), np.eye(2))
    with atomic_file(tmp_path / "rows.csv", "w", newline="", encoding="utf-8") as f:
        f.write("a,b\r\n1,2\r\n")
    assert (tmp_path / "rows.csv").read_bytes() == b"a,b\r\n1,2\r\n"
    with pytest.raises(ValueError, match="mode"), atomic_file(tmp_path / "x", "ab"):
        pass
    assert _names(tmp_path) == ["a.npy", "rows.csv"]


def test_a_failing_rename_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "index.jsonl"
    target.write_text("old\n")

    def broken(src, dst):
        raise OSError("simulated crash")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError, match="simulated crash"):
        atomic_write_text(target, "new\n")
    monkeypatch.undo()
    assert target.read_text() == "old\n" and _names(tmp_path) == ["index.jsonl"]


@pytest.mark.skipif(os.name != "posix", reason="symlinks and modes")
def test_a_symlink_is_written_through_and_files_follow_the_umask(tmp_path):
    real = tmp_path / "real.txt"
    real.write_text("old")
    link = tmp_path / "link.txt"
    link.symlink_to(real)
    old = os.umask(0o022)
    try:
        atomic_write_text(link, "new")
    finally:
        os.umask(old)
    assert link.is_symlink() and real.read_text() == "new"
    assert real.stat().st_mode & 0o777 == 0o644  # not mkstemp's 0600


def test_folder_is_created_and_replaced_whole(tmp_path):
    target = tmp_path / "model"
    with atomic_folder(target) as tmp:
        assert tmp.parent == tmp_path and tmp != target and not target.exists()
        (tmp / "a.txt").write_text("one")
        (tmp / "b.txt").write_text("one")
    assert _names(target) == ["a.txt", "b.txt"]
    with atomic_folder(target) as tmp:
        (tmp / "a.txt").write_text("two")
    assert _names(target) == ["a.txt"] and (target / "a.txt").read_text() == "two"
    assert _names(tmp_path) == ["model"]  # neither the temporary nor the old folder is left


def test_folder_writer_that_raises_keeps_the_old_folder(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "a.txt").write_text("old")
    with pytest.raises(KeyboardInterrupt), atomic_folder(target) as tmp:
        (tmp / "a.txt").write_text("half")
        raise KeyboardInterrupt
    assert _names(target) == ["a.txt"] and (target / "a.txt").read_text() == "old"
    assert _names(tmp_path) == ["model"]


def test_a_failing_second_rename_puts_the_old_folder_back(tmp_path, monkeypatch):
    target = tmp_path / "model"
    target.mkdir()
    (target / "a.txt").write_text("old")
    original, calls = os.rename, []

    def second_fails(src, dst):
        calls.append(dst)
        if len(calls) == 2:  # 1: model -> .model.old-*, 2: temporary -> model
            raise OSError("simulated crash")
        return original(src, dst)

    monkeypatch.setattr(os, "rename", second_fails)
    with pytest.raises(OSError, match="simulated crash"), atomic_folder(target) as tmp:
        (tmp / "a.txt").write_text("new")
    monkeypatch.undo()
    assert (target / "a.txt").read_text() == "old" and _names(tmp_path) == ["model"]


def test_folder_not_replaced_when_refused(tmp_path):
    target = tmp_path / "cache"
    with pytest.raises(FileExistsError), atomic_folder(target, replace=False) as tmp:
        target.mkdir()  # another process finished first
        (target / "model.xml").write_text("theirs")
        (tmp / "model.xml").write_text("ours")
    assert (target / "model.xml").read_text() == "theirs" and _names(tmp_path) == ["cache"]

    only_if_empty = lambda p: not any(p.iterdir())  # noqa: E731
    with pytest.raises(FileExistsError), atomic_folder(target, replace=only_if_empty):
        pass
    (tmp_path / "empty").mkdir()
    with atomic_folder(tmp_path / "empty", replace=only_if_empty) as tmp:
        (tmp / "x").write_text("filled")
    assert (tmp_path / "empty" / "x").read_text() == "filled"
    assert _names(tmp_path) == ["cache", "empty"]
