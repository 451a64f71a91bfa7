"""Atomic writes of files and folders: a reader sees the old or the new complete content.

One guarantee everywhere: the new content is written under a temporary name next to the target
(`.NAME.tmp-HOST-PID-TOKEN`, same folder, so same file system), flushed to disk with fsync, then
renamed over the target; the folder holding it is flushed too, so the rename survives a crash.
A writer that raises leaves the target as it was and no temporary file or folder behind; one
that is killed leaves only the temporary (its name says which host and process wrote it).

A folder cannot be renamed over a non-empty folder, so `atomic_folder` moves the existing one
aside to `.NAME.old-TOKEN` first, renames the new one in, and deletes the old one last; should
the second rename fail, the old folder is put back. A crash between the two renames leaves the
complete old folder under `.NAME.old-*` (see `old_siblings`).

New files and folders get the usual modes (0o666 / 0o777 minus the umask), as if the user made
them. A target that is a symbolic link is written into the link's target, and the link kept.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import secrets
import shutil
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_file", "atomic_folder", "atomic_write_bytes", "atomic_write_text", "fsync_dir",
           "host_tag", "old_siblings", "temp_sibling"]


def host_tag() -> str:
    """A short tag of this host, so a temporary name says which machine is writing it."""
    return hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]


def temp_sibling(path: Path) -> Path:
    """A fresh temporary name next to `path`: `.NAME.tmp-HOST-PID-TOKEN`."""
    return path.parent / f".{path.name}.tmp-{host_tag()}-{os.getpid()}-{secrets.token_hex(4)}"


def old_siblings(path: Path) -> list[Path]:
    """The folders `atomic_folder` moved `path` to and a crash kept from deleting."""
    return list(path.parent.glob(f".{glob.escape(path.name)}.old-*"))


def fsync_dir(folder: str | os.PathLike) -> None:
    """Flush a folder's entries (new names, renames) to disk where the OS allows it."""
    with contextlib.suppress(OSError):  # Windows cannot open folders; NTFS journals renames
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _target(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path.resolve() if path.is_symlink() else path  # renaming would replace the link


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "wb", **open_kwargs: Any) -> Iterator[IO[Any]]:
    """Yield a file object open on a temporary sibling of `path`; replace `path` by it on exit.

    For writers that stream (``np.save``, ``pyarrow.parquet.write_table``, ``Image.save``,
    ``csv.writer``). `mode` is ``"wb"`` or ``"w"`` (text: pass `encoding`, `newline`, ...).
    If the block raises, `path` is left as it was and the temporary file is removed.
    """
    if mode not in ("w", "wb", "w+", "w+b", "wb+"):
        raise ValueError(f"atomic_file writes a whole new file: mode must be 'w' or 'wb', got {mode!r}")
    path = _target(path)
    tmp = temp_sibling(path)
    try:
        with open(tmp, mode.replace("w", "x"), **open_kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Replace the file `path` by `data` in one rename, flushed to disk first."""
    with atomic_file(path, "wb") as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> None:
    """Replace the file `path` by `text` in one rename, flushed to disk first."""
    atomic_write_bytes(path, text.encode(encoding))


def _fsync_tree(folder: Path) -> None:
    """Flush every regular file and folder under `folder` (symbolic links are not followed)."""
    for root, _dirs, files in os.walk(folder):
        for name in files:
            file = os.path.join(root, name)
            if os.path.islink(file):
                continue
            with contextlib.suppress(OSError):
                fd = os.open(file, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        fsync_dir(root)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink()


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike,
                  replace: bool | Callable[[Path], bool] = True) -> Iterator[Path]:
    """Yield a new empty folder next to `path`; on exit, flush it and swap it in as `path`.

    replace: whether an existing `path` may be replaced, or a function given the existing
        path that says so (e.g. "only if empty"). When it may not, FileExistsError is raised
        at the swap (another process made `path` meanwhile) and the new folder is discarded.
    If the block raises, `path` is left as it was and the temporary folder is removed.
    """
    path = _target(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(path)
    os.mkdir(tmp)  # mode 0o777 minus the umask, like any folder the user makes (not mkdtemp's 0700)
    try:
        yield tmp
        _fsync_tree(tmp)
        _swap_into_place(tmp, path, replace)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _swap_into_place(tmp: Path, path: Path, replace: bool | Callable[[Path], bool]) -> None:
    """Rename `tmp` to `path`; an existing `path` is moved aside first and deleted last."""
    if not (path.exists() or path.is_symlink()):
        os.rename(tmp, path)  # a folder made meanwhile: replaced if empty, else OSError
    else:
        if not (replace(path) if callable(replace) else replace):
            raise FileExistsError(f"{path} already exists; it was not replaced.")
        old = path.parent / f".{path.name}.old-{secrets.token_hex(4)}"
        os.rename(path, old)
        try:
            os.rename(tmp, path)
        except BaseException:
            os.rename(old, path)  # put the previous one back
            raise
        _remove(old)
    fsync_dir(path.parent)
