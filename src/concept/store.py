"""An on-disk, append-only store of image embeddings: resumable, never embeds a file twice.

`EmbeddingStore(folder, model_name).embed(backend, paths)` returns the embeddings of `paths`,
computing only those the store does not hold yet, and writing them as they are computed. A row
is keyed by the file (absolute path, size, modification time in ns) and the model name: a
changed file or another model means recomputing; an unchanged collection is embedded once.

Layout, one sub-folder per model (so one store folder can serve several models)::

    FOLDER/<model-slug>/meta.json      {"format": 2, "model": ..., "dim": d, "feature_dim": f|null}
                        vectors.f32    float32 rows of d values, little-endian, append-only
                        features.f32   float32 rows of f values (backends with features only)
                        index.jsonl    one {"path", "size", "mtime_ns", "row", "crc"} per line
                        .lock          held (flock) while a process embeds; names its holder

Crash safety: rows are appended, flushed and fsynced BEFORE their index lines are written (and
fsynced), so a run killed at any point never leaves an index line pointing at missing data. On
the next run a torn last index line is ignored (and cut), and rows past the shortest data file or
never indexed are simply not used. When a data file was cut short (a crash, a full disk), the
repair before the next write drops every index line past the data, so rows appended later can
never be read for a stale line's file. Each line's `crc` (crc32 of the row's bytes in every data
file) is checked whenever a row is read: a row that fails is embedded again, never returned.
Format 1 stores (no `crc`) are read as they are and upgraded to format 2 by their next write.
The data files are plain arrays: `np.memmap` reads them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import socket
import stat
import time
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from concept._atomic import atomic_write_bytes
from concept._errors import EmbeddingError
from concept.images import LoadFailure, LoadReport

try:  # POSIX; elsewhere the store works without a lock between processes
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

__all__ = ["EmbeddingStore"]

logger = logging.getLogger(__name__)

FORMAT_VERSION = 2
#: Formats this version reads (1: no per-row checksums; upgraded by the next write).
READABLE_FORMATS = (1, 2)
#: Row widths above this are not an embedding: a damaged or hostile meta.json.
MAX_DIM = 1 << 20
#: Rows read (and checksummed) at once when verifying.
VERIFY_CHUNK = 65_536
_DTYPE = np.dtype("<f4")
#: With `flush_every=None`, each call to the backend is sized to take about this long: long
#: enough that the pipeline's start and end (the model waiting for the first decoded batch, the
#: workers idle during the last) cost a few percent, short enough that a killed run loses little.
TARGET_SECONDS_PER_FLUSH = 20.0

Key = tuple[str, int, int]  # (absolute path, size in bytes, mtime in ns)
Entry = tuple[int, int | None]  # (row, crc32 of its bytes; None in a format 1 store)


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


def _row_crcs(arrays: list[np.ndarray]) -> list[int]:
    """crc32 of each row's bytes, the row of every data file in turn (vectors, then features)."""
    parts = [np.ascontiguousarray(a, dtype=_DTYPE) for a in arrays]
    crcs = []
    for i in range(len(parts[0])):
        crc = 0
        for part in parts:
            crc = zlib.crc32(part[i].tobytes(), crc)
        crcs.append(crc)
    return crcs


def _index_line(key: Key, row: int, crc: int) -> str:
    path, size, mtime_ns = key
    return json.dumps({"path": path, "size": size, "mtime_ns": mtime_ns, "row": row, "crc": crc}) + "\n"


class EmbeddingStore:
    """Embeddings of image files on disk, keyed by file and model, written as they are computed.

    Parameters
    ----------
    folder: the store's folder (created when first written).
    model_name: identifies the backend and its settings (e.g. `backend.name`); rows of another
        model are never used.

    After `embed`, `newly_embedded` is the number of rows that call computed and stored (not
    rows another process stored meanwhile).
    """

    def __init__(self, folder: str | os.PathLike, model_name: str) -> None:
        if not isinstance(model_name, str) or not model_name:
            raise EmbeddingError(f"EmbeddingStore needs a non-empty model name, got {model_name!r}")
        self.folder = Path(folder)
        self.model_name = model_name
        self.path = self.folder / _slug(model_name)
        self.newly_embedded = 0

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
        if not isinstance(meta, dict) or meta.get("format") not in READABLE_FORMATS \
                or meta.get("model") != self.model_name:
            found = (meta.get("format"), meta.get("model")) if isinstance(meta, dict) else meta
            raise EmbeddingError(f"The embedding store {self.path} was written by another format or "
                                 f"model ({str(found)[:100]}); delete that folder or use another "
                                 "store folder.")
        dim, feature_dim = meta.get("dim"), meta.get("feature_dim")
        if type(dim) is not int or not 1 <= dim <= MAX_DIM or not (
                feature_dim is None or type(feature_dim) is int and 1 <= feature_dim <= MAX_DIM):
            raise EmbeddingError(f"The embedding store {self.path} has a damaged meta.json (dim "
                                 f"{str(dim)[:20]}, feature_dim {str(feature_dim)[:20]}: each must be "
                                 f"a whole number from 1 to {MAX_DIM}); delete that folder to start "
                                 "it again.")
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

    def _read_index(self, meta: dict[str, Any], n_rows: int) -> tuple[dict[Key, Entry], bool]:
        """Key → (row, crc) for every complete, valid index line whose row exists (later lines
        win), and whether any line was torn, damaged or past the data (the file needs repair)."""
        try:
            data = (self.path / "index.jsonl").read_bytes()
        except FileNotFoundError:
            return {}, False
        lines = data.split(b"\n")
        dirty = bool(lines[-1])
        if dirty:
            logger.info("Ignoring a torn last line of %s (a run was interrupted)", self.path / "index.jsonl")
        needs_crc = meta["format"] >= 2
        index: dict[Key, Entry] = {}
        for line in lines[:-1]:  # the part after the last newline is torn or empty
            try:
                entry = json.loads(line)
                key, row = (str(entry["path"]), int(entry["size"]), int(entry["mtime_ns"])), int(entry["row"])
                crc = int(entry["crc"]) if needs_crc or "crc" in entry else None
            except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
                logger.warning("Ignoring a damaged line in %s", self.path / "index.jsonl")
                dirty = True
                continue
            if 0 <= row < n_rows:
                index[key] = (row, crc)
            else:
                dirty = True
        return index, dirty

    def __len__(self) -> int:
        """Number of images (file versions) the store holds for this model."""
        meta = self._meta()
        return 0 if meta is None else len(self._read_index(meta, self._n_rows(meta))[0])

    def _drop_corrupt(self, meta: dict[str, Any], index: dict[Key, Entry], keys: list[Key | None]) -> None:
        """Remove from `index` the entries of `keys` whose rows fail their checksum (so they are
        embedded again); rows of a format 1 store have none and are trusted."""
        entries = sorted({index[k] for k in keys if k in index and index[k][1] is not None})
        bad: set[int] = set()
        for start in range(0, len(entries), VERIFY_CHUNK):
            part = entries[start:start + VERIFY_CHUNK]
            rows = np.asarray([row for row, _ in part], dtype=np.int64)
            for (row, crc), found in zip(part, _row_crcs(self._rows(meta, rows))):
                if crc != found:
                    bad.add(row)
        if bad:
            logger.warning("%d rows of the embedding store %s fail their checksum (damaged data); "
                           "embedding those images again.", len(bad), self.path)
            for key in [k for k, (row, _) in index.items() if row in bad]:
                del index[key]

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
        """Hold the store's lock; say so when another process holds it and this one waits."""
        self.path.mkdir(parents=True, exist_ok=True)
        lock = self.path / ".lock"
        with open(lock, "a+b") as handle:
            if fcntl is not None:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    logger.warning("Waiting for the lock %s: %s is embedding into this store; this run "
                                   "goes on when it ends (and reuses what it stored).", lock,
                                   self._holder(handle))
                    fcntl.flock(handle, fcntl.LOCK_EX)
                # Name the holder for a run that has to wait (the lock itself is the flock).
                handle.truncate(0)
                handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                         "since": time.strftime("%Y-%m-%d %H:%M:%S")}).encode())
                handle.flush()
            try:
                yield
            finally:
                if fcntl is not None:
                    handle.truncate(0)
                    fcntl.flock(handle, fcntl.LOCK_UN)

    @staticmethod
    def _holder(handle: Any) -> str:
        """Who holds the lock, as the lock file says ("another process" if it does not)."""
        with contextlib.suppress(OSError, ValueError, TypeError, AttributeError, RecursionError):
            handle.seek(0)
            info = json.loads(handle.read(4096) or b"null")
            return (f"process {int(info['pid'])} on {str(info['host'])[:100]} "
                    f"(since {str(info['since'])[:40]})")
        return "another process"

    def _create(self, dim: int, feature_dim: int | None) -> dict[str, Any]:
        meta = {"format": FORMAT_VERSION, "model": self.model_name, "dim": dim, "feature_dim": feature_dim}
        atomic_write_bytes(self.path / "meta.json", json.dumps(meta).encode())
        return meta

    def _check_width(self, backend: Any, meta: dict[str, Any]) -> None:
        """Refuse a backend whose `dim` differs from the store's rows (before anything is cut)."""
        try:
            dim = getattr(backend, "dim", None)
        except Exception:  # noqa: BLE001 -- a backend's property may fail; the rows are checked later
            return
        if isinstance(dim, int) and not isinstance(dim, bool) and dim != meta["dim"]:
            raise EmbeddingError(f"{type(backend).__name__} gives {dim}-d rows but the store {self.path} "
                                 f"holds {meta['dim']}-d rows for {self.model_name!r}: is it the same "
                                 "model? If meta.json is damaged, delete that folder to start it again.")

    def _repair(self, meta: dict[str, Any]) -> tuple[dict[str, Any], int]:
        """Before writing: cut the data files to their common whole rows, and rewrite the index
        without torn or damaged lines and without lines past the data (rows appended next reuse
        those offsets, so such a line would come to name another image's row). A format 1 store
        gets its rows' checksums and becomes format 2. Returns the meta and the row count."""
        n = self._n_rows(meta)
        for name, width in self._files(meta):
            with open(self.path / name, "ab") as f:
                f.truncate(n * width * _DTYPE.itemsize)
        index, dirty = self._read_index(meta, n)
        upgrade = meta["format"] < FORMAT_VERSION
        if dirty or upgrade:
            keys = list(index)
            crcs = [crc for _, crc in index.values()]
            if upgrade:
                crcs = []
                for start in range(0, len(keys), VERIFY_CHUNK):
                    rows = np.asarray([index[k][0] for k in keys[start:start + VERIFY_CHUNK]], np.int64)
                    crcs += _row_crcs(self._rows(meta, rows))
            lines = [_index_line(key, index[key][0], crc) for key, crc in zip(keys, crcs)]
            dropped = "" if not dirty else " (dropping torn, damaged or dangling lines)"
            logger.info("Rewriting the index of %s%s", self.path, dropped)
            atomic_write_bytes(self.path / "index.jsonl", "".join(lines).encode())
            if upgrade:
                meta = self._create(meta["dim"], meta["feature_dim"])
        return meta, n

    def _append(self, meta: dict[str, Any], first_row: int, keys: list[Key],
                arrays: list[np.ndarray]) -> list[int]:
        """Append rows (flushed and fsynced), then their index lines (flushed and fsynced);
        return the rows' checksums."""
        for (name, width), array in zip(self._files(meta), arrays):
            with open(self.path / name, "ab") as f:
                if f.tell() != first_row * width * _DTYPE.itemsize:
                    raise EmbeddingError(f"The embedding store {self.path} changed while writing to it.")
                f.write(np.ascontiguousarray(array, dtype=_DTYPE).tobytes())
                f.flush()
                os.fsync(f.fileno())
        crcs = _row_crcs(arrays)
        lines = "".join(_index_line(key, first_row + i, crc) for i, (key, crc) in enumerate(zip(keys, crcs)))
        with open(self.path / "index.jsonl", "ab") as f:
            f.write(lines.encode())
            f.flush()
            os.fsync(f.fileno())
        return crcs

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
        self.newly_embedded = 0
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
            if meta is not None:
                self._check_width(backend, meta)
            index = self._read_index(meta, self._n_rows(meta))[0] if meta else {}
            if index:
                self._drop_corrupt(meta, index, keys)
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
                 todo: list[int], batch_size: int, meta: dict[str, Any] | None, index: dict[Key, Entry],
                 failed: dict[int, LoadFailure], unstored: dict[int, list[np.ndarray]], *, strict: bool,
                 features: bool, flush_every: int | None, verbose: bool | None) -> dict[str, Any] | None:
        """Embed the files at positions `todo`, one backend call per flush; update `index`."""
        meta, n_rows = self._repair(meta) if meta else (None, 0)
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
                        crcs = self._append(meta, n_rows, new_keys, [a[keep] for a in arrays])
                        index.update((k, (n_rows + r, crc)) for r, (k, crc) in enumerate(zip(new_keys, crcs)))
                        n_rows += len(keep)
                        self.newly_embedded += len(keep)
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

    def _gather(self, meta: dict[str, Any] | None, keys: list[Key | None], index: dict[Key, Entry],
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
                rows.append(index[key][0])
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
