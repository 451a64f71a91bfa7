"""An on-disk, append-only store of image embeddings: resumable, never embeds a file twice.

`EmbeddingStore(folder, model_name).embed(backend, paths)` returns the embeddings of `paths`,
computing only those the store does not hold yet, and writing them as they are computed. A row
is keyed by the file (absolute path, size, modification time in ns) and the model name: a
changed file or another model means recomputing; an unchanged collection is embedded once.

Layout, one sub-folder per model (so one store folder can serve several models)::

    FOLDER/<model-slug>/meta.json      {"format": 1, "model": ..., "dim": d, "feature_dim": f|null}
                        vectors.f32    float32 rows of d values, little-endian, append-only
                        features.f32   float32 rows of f values (backends with features only)
                        index.jsonl    one {"path", "size", "mtime_ns", "row"} per line, append-only
                        .lock          held (flock) while a process embeds

Crash safety: rows are appended, flushed and fsynced BEFORE their index lines are written (and
fsynced), so a run killed at any point never leaves an index line pointing at missing data. On
the next run a torn last index line is ignored (and cut), and rows past the shortest data file or
never indexed are simply not used. The data files are plain arrays: `np.memmap` reads them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import stat
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from concept._errors import EmbeddingError
from concept.images import LoadFailure, LoadReport

try:  # POSIX; elsewhere the store works without a lock between processes
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

__all__ = ["EmbeddingStore"]

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
_DTYPE = np.dtype("<f4")
#: With `flush_every=None`, each call to the backend is sized to take about this long: long
#: enough that the pipeline's start and end (the model waiting for the first decoded batch, the
#: workers idle during the last) cost a few percent, short enough that a killed run loses little.
TARGET_SECONDS_PER_FLUSH = 20.0

Key = tuple[str, int, int]  # (absolute path, size in bytes, mtime in ns)


def _slug(model_name: str) -> str:
    """A folder name for the model: readable part plus a hash, so distinct names never collide."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", model_name).strip("._")[:60] or "model"
    return f"{readable}-{hashlib.sha1(model_name.encode()).hexdigest()[:10]}"


def _file_key(path: str | os.PathLike) -> Key | None:
    """(absolute path, size, mtime_ns) of a regular file; None if it cannot be stat'ed as one."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    return os.path.abspath(os.fsdecode(path)), st.st_size, st.st_mtime_ns


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not possible on every platform / file system
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class EmbeddingStore:
    """Embeddings of image files on disk, keyed by file and model, written as they are computed.

    Parameters
    ----------
    folder: the store's folder (created when first written).
    model_name: identifies the backend and its settings (e.g. `backend.name`); rows of another
        model are never used.
    """

    def __init__(self, folder: str | os.PathLike, model_name: str) -> None:
        if not isinstance(model_name, str) or not model_name:
            raise EmbeddingError(f"EmbeddingStore needs a non-empty model name, got {model_name!r}")
        self.folder = Path(folder)
        self.model_name = model_name
        self.path = self.folder / _slug(model_name)

    def __repr__(self) -> str:
        return f"EmbeddingStore({os.fspath(self.folder)!r}, {self.model_name!r})"

    # ------------------------------------------------------------------ reading
    def _meta(self) -> dict[str, Any] | None:
        try:
            meta = json.loads((self.path / "meta.json").read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise EmbeddingError(f"The embedding store {self.path} has a damaged meta.json ({exc}); "
                                 "delete that folder to start it again.") from exc
        if meta.get("format") != FORMAT_VERSION or meta.get("model") != self.model_name:
            raise EmbeddingError(f"The embedding store {self.path} was written by another format or "
                                 f"model ({meta.get('format')}, {meta.get('model')!r}); delete that "
                                 "folder or use another store folder.")
        return meta

    def _n_rows(self, meta: dict[str, Any]) -> int:
        """Whole rows present in every data file (a row cut short by a crash does not count)."""
        counts = []
        for name, width in self._files(meta):
            try:
                counts.append((self.path / name).stat().st_size // (width * _DTYPE.itemsize))
            except FileNotFoundError:
                counts.append(0)
        return min(counts)

    @staticmethod
    def _files(meta: dict[str, Any]) -> list[tuple[str, int]]:
        files = [("vectors.f32", int(meta["dim"]))]
        if meta.get("feature_dim"):
            files.append(("features.f32", int(meta["feature_dim"])))
        return files

    def _read_index(self, n_rows: int) -> dict[Key, int]:
        """Key → row for every complete, valid index line whose row exists (later lines win)."""
        try:
            data = (self.path / "index.jsonl").read_bytes()
        except FileNotFoundError:
            return {}
        lines = data.split(b"\n")
        if lines and lines[-1]:
            logger.info("Ignoring a torn last line of %s (a run was interrupted)", self.path / "index.jsonl")
        index: dict[Key, int] = {}
        for line in lines[:-1]:  # the part after the last newline is torn or empty
            try:
                entry = json.loads(line)
                key, row = (str(entry["path"]), int(entry["size"]), int(entry["mtime_ns"])), int(entry["row"])
            except (ValueError, KeyError, TypeError):
                logger.warning("Ignoring a damaged line in %s", self.path / "index.jsonl")
                continue
            if 0 <= row < n_rows:
                index[key] = row
        return index

    def __len__(self) -> int:
        """Number of images (file versions) the store holds for this model."""
        meta = self._meta()
        return 0 if meta is None else len(self._read_index(self._n_rows(meta)))

    def _rows(self, meta: dict[str, Any], rows: np.ndarray) -> list[np.ndarray]:
        """The given rows of each data file (copies, float32)."""
        n = self._n_rows(meta)
        out = []
        for name, width in self._files(meta):
            if n == 0 or len(rows) == 0:
                out.append(np.zeros((0, width), np.float32))
                continue
            data = np.memmap(self.path / name, dtype=_DTYPE, mode="r", shape=(n, width))
            out.append(np.asarray(data[rows], dtype=np.float32))
            del data
        return out

    # ------------------------------------------------------------------ writing
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / ".lock", "a+b") as handle:
            if fcntl is not None:
                fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                if fcntl is not None:
                    fcntl.flock(handle, fcntl.LOCK_UN)

    def _create(self, dim: int, feature_dim: int | None) -> dict[str, Any]:
        meta = {"format": FORMAT_VERSION, "model": self.model_name, "dim": dim, "feature_dim": feature_dim}
        tmp = self.path / "meta.json.tmp"
        with open(tmp, "w") as f:
            json.dump(meta, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path / "meta.json")
        _fsync_dir(self.path)
        return meta

    def _repair(self, meta: dict[str, Any]) -> int:
        """Cut data files to their common whole rows and the index to its last full line."""
        n = self._n_rows(meta)
        for name, width in self._files(meta):
            with open(self.path / name, "ab") as f:
                f.truncate(n * width * _DTYPE.itemsize)
        index = self.path / "index.jsonl"
        if index.exists():
            data = index.read_bytes()
            end = data.rfind(b"\n") + 1
            if end != len(data):
                with open(index, "r+b") as f:
                    f.truncate(end)
        return n

    def _append(self, meta: dict[str, Any], first_row: int, keys: list[Key], arrays: list[np.ndarray]) -> None:
        """Append rows (flushed and fsynced), then their index lines (flushed and fsynced)."""
        for (name, width), array in zip(self._files(meta), arrays):
            with open(self.path / name, "ab") as f:
                if f.tell() != first_row * width * _DTYPE.itemsize:
                    raise EmbeddingError(f"The embedding store {self.path} changed while writing to it.")
                f.write(np.ascontiguousarray(array, dtype=_DTYPE).tobytes())
                f.flush()
                os.fsync(f.fileno())
        lines = "".join(
            json.dumps({"path": p, "size": s, "mtime_ns": m, "row": first_row + i}) + "\n"
            for i, (p, s, m) in enumerate(keys)
        )
        with open(self.path / "index.jsonl", "ab") as f:
            f.write(lines.encode())
            f.flush()
            os.fsync(f.fileno())

    # ------------------------------------------------------------------ the one public operation
    def embed(
        self,
        backend: Any,
        paths: Sequence[str | os.PathLike],
        batch_size: int = 32,
        *,
        report: LoadReport | None = None,
        strict: bool = False,
        features: bool | None = None,
        flush_every: int | None = None,
        verbose: bool | None = None,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Embeddings of the image files `paths`, from the store or computed (and stored) now.

        Parameters
        ----------
        backend: an embedding backend (`embed_images`, optionally `embed_images_and_features`)
            whose rows this store holds (the store trusts that it matches `model_name`).
        paths: image files, in the order wanted.
        batch_size: images per batch of the backend.
        report: filled like the backends' reports: `loaded` holds the positions in `paths` of the
            returned rows, `failures` the files that could not be read (never stored, so they
            are tried and reported again on every call).
        strict: raise `ImageLoadError` at the first unreadable file instead.
        features: store and return the backend's image features too (None: when it has
            `embed_images_and_features`, or as the store was created).
        flush_every: images per backend call, i.e. per write to disk (None: sized to take
            about `TARGET_SECONDS_PER_FLUSH`).
        verbose: progress bar (None: the backend's `verbose`, else True).

        Returns `(shared, features)`: float32 rows for the files that loaded, in input order;
        `features` is None when the store holds none.
        """
        if isinstance(paths, (str, os.PathLike)) or not all(isinstance(p, (str, os.PathLike)) for p in paths):
            raise TypeError("EmbeddingStore.embed expects a list of file paths")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if flush_every is not None and flush_every < 1:
            raise ValueError(f"flush_every must be None or >= 1, got {flush_every!r}")
        report = report if report is not None else LoadReport()
        keys = [_file_key(p) for p in paths]
        with self._locked():
            meta = self._meta()
            if features is None:
                features = bool(meta["feature_dim"]) if meta else hasattr(backend, "embed_images_and_features")
            if meta is not None and bool(meta["feature_dim"]) != features:
                raise EmbeddingError(f"The embedding store {self.path} was created "
                                     f"{'with' if meta['feature_dim'] else 'without'} image features; "
                                     f"pass features={bool(meta['feature_dim'])} or use another store folder.")
            if features and not hasattr(backend, "embed_images_and_features"):
                raise EmbeddingError(f"{type(backend).__name__} has no embed_images_and_features, "
                                     "so the store cannot hold image features for it.")
            index = self._read_index(self._n_rows(meta)) if meta else {}
            # Compute each missing file once (duplicates share it); unstat-able paths go to the
            # backend too, so that it says why they cannot be read.
            todo, planned = [], set()
            for i, key in enumerate(keys):
                if key is None or (key not in index and key not in planned):
                    todo.append(i)
                    if key is not None:
                        planned.add(key)
            failed: dict[int, LoadFailure] = {}
            unstored: dict[int, list[np.ndarray]] = {}  # loaded although stat failed (a race)
            if todo:
                meta = self._compute(backend, paths, keys, todo, batch_size, meta, index, failed, unstored,
                                     strict=strict, features=features, flush_every=flush_every,
                                     verbose=verbose)
            return self._gather(meta, keys, index, failed, unstored, report, features)

    def _compute(self, backend: Any, paths: Sequence[str | os.PathLike], keys: list[Key | None],
                 todo: list[int], batch_size: int, meta: dict[str, Any] | None, index: dict[Key, int],
                 failed: dict[int, LoadFailure], unstored: dict[int, list[np.ndarray]], *, strict: bool,
                 features: bool, flush_every: int | None, verbose: bool | None) -> dict[str, Any] | None:
        """Embed the files at positions `todo`, one backend call per flush; update `index`."""
        n_rows = self._repair(meta) if meta else 0
        show = verbose if verbose is not None else bool(getattr(backend, "verbose", True))
        # The store draws one bar over all missing files; the backend's own, per call, would flicker.
        backend_verbose = getattr(backend, "verbose", None)
        if backend_verbose is not None:
            backend.verbose = False
        size = flush_every or 2 * batch_size  # a first write soon, then sized by the measured speed
        kwargs = {"strict": True} if strict else {}
        try:
            with tqdm(total=len(todo), disable=not show, unit="img", desc="Embedding images") as bar:
                start = 0
                while start < len(todo):
                    part = todo[start:start + size]
                    sub = LoadReport()
                    began = time.perf_counter()
                    inputs = [paths[i] for i in part]
                    if features:
                        shared, feats = backend.embed_images_and_features(inputs, batch_size, report=sub, **kwargs)
                        arrays = [np.asarray(shared, np.float32), np.asarray(feats, np.float32)]
                    else:
                        arrays = [np.asarray(backend.embed_images(inputs, batch_size, report=sub, **kwargs),
                                             np.float32)]
                    loaded = sub.loaded if (sub.loaded or sub.failures) else list(range(len(part)))
                    if any(len(a) != len(loaded) for a in arrays):
                        raise EmbeddingError(f"{type(backend).__name__} returned {len(arrays[0])} rows for "
                                             f"{len(loaded)} loaded images.")
                    for f in sub.failures:
                        failed[part[f.index]] = LoadFailure(part[f.index], f.source, f.reason)
                    if meta is None and len(loaded):
                        meta = self._create(arrays[0].shape[1], arrays[1].shape[1] if features else None)
                    if meta is not None:
                        widths = [w for _, w in self._files(meta)]
                        if [a.shape[1] for a in arrays if len(a)] not in ([], widths):
                            raise EmbeddingError(
                                f"{type(backend).__name__} gave rows of {[a.shape[1] for a in arrays]} values but "
                                f"the store {self.path} holds {widths} for {self.model_name!r}: is it "
                                "the same model?")
                    keep = [j for j, p in enumerate(loaded) if keys[part[p]] is not None]
                    for j, p in enumerate(loaded):
                        if keys[part[p]] is None:
                            unstored[part[p]] = [a[j] for a in arrays]
                    if keep:
                        new_keys = [keys[part[loaded[j]]] for j in keep]
                        self._append(meta, n_rows, new_keys, [a[keep] for a in arrays])
                        index.update((k, n_rows + r) for r, k in enumerate(new_keys))
                        n_rows += len(keep)
                    start += len(part)
                    bar.update(len(part))
                    if flush_every is None:
                        rate = len(part) / max(time.perf_counter() - began, 1e-6)
                        size = int(rate * TARGET_SECONDS_PER_FLUSH) // batch_size * batch_size
                        size = min(max(size, batch_size), 256 * batch_size)
        finally:
            if backend_verbose is not None:
                backend.verbose = backend_verbose
        return meta

    def _gather(self, meta: dict[str, Any] | None, keys: list[Key | None], index: dict[Key, int],
                failed: dict[int, LoadFailure], unstored: dict[int, list[np.ndarray]],
                report: LoadReport, features: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """Rows for the loaded positions in input order; `report` filled."""
        failed_keys = {keys[i]: f for i, f in failed.items() if keys[i] is not None}
        loaded, rows = [], []
        for i, key in enumerate(keys):
            if i in unstored:
                loaded.append(i)
                rows.append(-1)
            elif key in index:
                loaded.append(i)
                rows.append(index[key])
            else:  # failed itself, or a duplicate of a file that failed
                f = failed.get(i) or failed_keys[key]
                report.failures.append(LoadFailure(i, f.source, f.reason))
        report.loaded.extend(loaded)
        if meta is None:  # nothing stored yet, nothing loaded
            return np.zeros((0, 0), np.float32), (np.zeros((0, 0), np.float32) if features else None)
        rows_arr = np.asarray(rows, dtype=np.int64)
        arrays = self._rows(meta, rows_arr[rows_arr >= 0])
        if unstored:  # rare: put the rows that could not be stored back in their places
            full = [np.zeros((len(rows), a.shape[1]), np.float32) for a in arrays]
            for a, out in zip(arrays, full):
                out[rows_arr >= 0] = a
            for j, i in enumerate(loaded):
                if i in unstored:
                    for out, row in zip(full, unstored[i]):
                        out[j] = row
            arrays = full
        return arrays[0], (arrays[1] if features else None)
