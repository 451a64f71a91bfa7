"""Distributed embedding: shards of an image list embedded by a Ray Data actor pool, as Parquet.

The list of paths is cut into shards of `shard_size` images, in order. Each shard is one row
of a small Ray dataset; `map_batches` sends the rows to a pool of actors, each holding one
embedding backend loaded once, which embed the shard's images with the backend's own
`embed_images_and_features` (the same decoding, resizing and per-item failure report as on
one machine) and write the shard's Parquet file themselves, in one rename. A shard's file
name carries a hash of its files (path, size, modification time) and of the model, so:

- a rerun (after a crash, a killed job, or to add files) skips every shard already written;
- a shard whose files changed, or another model, gets a new name and is embedded again;
- a half-written shard never exists (temporary name until the rename).

Shard schema: `path` (string), `ok` (bool), `error` (string, null when ok), `embedding`
(fixed-size list of float32, unit norm; zeros when not ok) and, for backends with features
(the offline model), `features` (likewise).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from concept._atomic import atomic_file
from concept._errors import ConceptError
from concept._validation import check_integer
from concept.distributed._cluster import require_ray
from concept.images import LoadFailure, LoadReport

logger = logging.getLogger(__name__)

#: Images per shard: a multiple of the default batch size (batches fall as on one machine),
#: about a minute of the offline model on one core, 7 MB of Parquet with its features.
DEFAULT_SHARD_SIZE = 1024
SHARD_GLOB = "shard-*.parquet"


@dataclass
class Shard:
    """One planned piece of work: its position, its file name, its images and their number.
    `embed_to_parquet` keeps `paths` empty: a shard's paths are in its plan file, then in the
    shard itself, not in the driver's memory."""

    index: int
    name: str
    paths: list[str]
    n: int = -1

    def __post_init__(self) -> None:
        if self.n < 0:
            self.n = len(self.paths)


def _file_key(path: str) -> str:
    try:
        st = os.stat(path)
        return f"{path}\0{st.st_size}\0{st.st_mtime_ns}"
    except OSError:  # unreadable: embedded (and reported) like any other failure
        return f"{path}\0missing"


def plan_shards(paths: Sequence[str | os.PathLike], model_name: str, shard_size: int,
                keys: Sequence[str] | None = None) -> list[Shard]:
    """The shards of `paths` in order, each named by a hash of its files and the model.

    keys: one string per path that changes when the file does (default: the local file's
        path, size and modification time); with keys, the paths are kept as given (URIs)."""
    return list(_iter_shards(paths, model_name, shard_size, keys))


def _iter_shards(paths: Sequence[str | os.PathLike], model_name: str, shard_size: int,
                 keys: Sequence[str] | None) -> Iterator[Shard]:
    """`plan_shards` one shard at a time (only one shard's paths and keys made at once)."""
    for i, start in enumerate(range(0, len(paths), shard_size)):
        chunk = paths[start:start + shard_size]
        if keys is None:
            chunk = [os.path.abspath(os.fspath(p)) for p in chunk]
            chunk_keys = [_file_key(p) for p in chunk]
        else:
            chunk, chunk_keys = list(chunk), keys[start:start + shard_size]
        digest = hashlib.sha1(model_name.encode())
        for key in chunk_keys:
            digest.update(key.encode("utf-8", "surrogateescape"))
            digest.update(b"\n")
        yield Shard(i, f"shard-{i:06d}-{digest.hexdigest()[:12]}.parquet", chunk)


def _vectors_column(x: np.ndarray):
    import pyarrow as pa

    x = np.ascontiguousarray(x, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), x.shape[1])


def embed_items(backend: Any, items: Sequence[Any], batch_size: int
                ) -> tuple[np.ndarray, np.ndarray | None, list[str | None]]:
    """Embed `items` with the backend's own loop: vectors, features (or None) and one error
    per item (None when it loaded); rows of failed items are zeros."""
    report = LoadReport()
    if hasattr(backend, "embed_images_and_features"):
        x, f = backend.embed_images_and_features(items, batch_size, report=report)
    else:
        x, f = backend.embed_images(items, batch_size, report=report), None
    kept = np.asarray(report.loaded, dtype=np.int64)
    errors: list[str | None] = [None] * len(items)
    for failure in report.failures:
        errors[failure.index] = failure.reason
    full_x = np.zeros((len(items), backend.dim), np.float32)
    full_x[kept] = x
    full_f = None
    if f is not None:
        full_f = np.zeros((len(items), f.shape[1]), np.float32)
        full_f[kept] = f
    return full_x, full_f, errors


def _table(paths: Sequence[str], x: np.ndarray, f: np.ndarray | None, errors: list[str | None]):
    import pyarrow as pa

    columns = {"path": pa.array(list(paths), pa.string()),
               "ok": pa.array([e is None for e in errors], pa.bool_()),
               "error": pa.array(errors, pa.string()),
               "embedding": _vectors_column(x)}
    if f is not None:
        columns["features"] = _vectors_column(f)
    return pa.table(columns)


def _write_atomically(table: Any, target: Path) -> None:
    """Write a Parquet file in one rename: a shard file is complete or absent (resuming trusts it)."""
    import pyarrow.parquet as pq

    with atomic_file(target) as f:
        pq.write_table(table, f)


class _ShardEmbedder:
    """A Ray Data actor: loads the backend once, then embeds and writes whole shards."""

    def __init__(self, embedding_model: Any, folder: str, batch_size: int, device: str | None,
                 decode_workers: int, filesystem: Any = None) -> None:
        from concept.embedding import load_embedding_model

        self.filesystem = filesystem  # images under a URI: copied locally, then loaded as files

        self.backend = load_embedding_model(embedding_model, device=device, verbose=False)
        if hasattr(self.backend, "num_workers"):
            # Ray schedules one actor per CPU it was given: decoding runs in the actor's own
            # process unless the user asks for decode workers inside each actor.
            self.backend.num_workers = decode_workers
        self.folder = Path(folder)
        self.batch_size = batch_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n, failed, seconds = [], [], []
        for name, plan in zip(batch["name"], batch["plan"]):
            start = time.perf_counter()
            target = self.folder / str(name)
            # A shard may have been written since the driver planned it: by a killed job's actor
            # that finished it as this run started, or by a run beside this one. Not redone.
            paths = None if target.is_file() else _plan_paths(target, Path(str(plan)))
            if paths is None:
                count, bad = _finished(target)
            else:
                x, f, errors = self._embed(paths)
                _write_atomically(_table(paths, x, f, errors), target)
                count, bad = len(paths), sum(e is not None for e in errors)
            n.append(count)
            failed.append(bad)
            seconds.append(time.perf_counter() - start)
        return {"name": batch["name"], "n": np.asarray(n), "failed": np.asarray(failed),
                "seconds": np.asarray(seconds)}

    def _embed(self, paths: list[str]) -> tuple[np.ndarray, np.ndarray | None, list[str | None]]:
        if self.filesystem is None:
            return embed_items(self.backend, paths, self.batch_size)
        from concept.distributed.sources import LocalCopies

        with LocalCopies(self.filesystem, paths) as (local, fetched):
            x, f, errors = embed_items(self.backend, local, self.batch_size)
        return x, f, [fetch or e for fetch, e in zip(fetched, errors)]


def _finished(target: Path) -> tuple[int, int]:
    """(images, failures) of a shard already written."""
    import pyarrow.parquet as pq

    ok = pq.read_table(target, columns=["ok"]).column("ok").to_numpy(zero_copy_only=False).astype(bool)
    return len(ok), int((~ok).sum())


def _plan_paths(target: Path, plan: Path) -> list[str] | None:
    """The shard's paths from its plan file; None when the plan is gone because the shard was
    written meanwhile. Plans are removed by the driver once its run has every shard."""
    import pyarrow.parquet as pq

    try:
        return pq.read_table(plan, columns=["path"]).column("path").to_pylist()
    except FileNotFoundError:
        if target.is_file():
            return None
        raise ConceptError(f"The plan of shard {target.name} ({plan}) is missing and the shard was "
                           "not written: run embed_to_parquet again to plan it anew.") from None


class _RowEmbedder:
    """A Ray Data actor for a user's dataset: rows with `path` and/or `bytes` columns in, the
    same rows with `ok`, `error`, `embedding` (and `features`) columns out."""

    def __init__(self, embedding_model: Any, batch_size: int, device: str | None) -> None:
        from concept.embedding import load_embedding_model

        self.backend = load_embedding_model(embedding_model, device=device, verbose=False)
        if hasattr(self.backend, "num_workers"):
            self.backend.num_workers = 0
        self.batch_size = batch_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import io

        from PIL import Image

        n = len(batch["bytes"] if "bytes" in batch else batch["path"])
        errors: list[str | None] = [None] * n
        if "bytes" in batch:  # e.g. ray.data.read_binary_files: decoded here, by PIL
            items = []
            for i, data in enumerate(batch["bytes"]):
                try:
                    items.append(Image.open(io.BytesIO(data)))
                except Exception as exc:  # noqa: BLE001 - PIL raises many types for bad data
                    errors[i] = "empty file (0 bytes)" if not len(data) else f"not an image ({exc})"
        else:
            items = [str(p) for p in batch["path"]]
        good = [i for i, e in enumerate(errors) if e is None]
        x = np.zeros((n, self.backend.dim), np.float32)
        f = None
        # Even with nothing to embed: the batch then still gets every column (one schema).
        xs, fs, errs = embed_items(self.backend, items, self.batch_size)
        x[good] = xs
        if fs is not None:
            f = np.zeros((n, fs.shape[1]), np.float32)
            f[good] = fs
        for i, e in zip(good, errs):
            errors[i] = e
        out = {k: v for k, v in batch.items() if k != "bytes"}
        out.update(ok=np.asarray([e is None for e in errors]),
                   error=np.asarray(["" if e is None else e for e in errors], dtype=object),
                   embedding=x)
        if f is not None:
            out["features"] = f
        return out


def _model_name(embedding_model: Any) -> str:
    """The backend's name (keys the shards) without loading its networks on the driver."""
    if isinstance(embedding_model, str):
        from concept.embedding import load_embedding_model

        backend = load_embedding_model(embedding_model, verbose=False)  # lazy: no weights yet
        return str(backend.name)
    name = getattr(embedding_model, "name", None)
    if not isinstance(name, str) or name == "base":
        raise ConceptError("The embedding model needs a `name` to key its shards by; pass a model "
                           "name such as 'offline' or an object with a unique `name`.")
    return name


@dataclass
class EmbeddedShards:
    """What `embed_to_parquet` did: the folder, every shard of this run's plan (in order),
    how many were embedded now and how many were already there."""

    folder: Path
    model_name: str
    shards: list[Shard]
    embedded: int
    reused: int
    seconds: float
    stats: list[dict] = field(default_factory=list)
    #: The pyarrow filesystem the images were read from when they were given by URI.
    filesystem: Any = None

    @property
    def files(self) -> list[Path]:
        return [self.folder / s.name for s in self.shards]


def _check_common(batch_size: int, concurrency: int, num_gpus: float, num_cpus: float) -> None:
    check_integer("batch_size", batch_size, minimum=1)
    check_integer("concurrency", concurrency, minimum=1)
    if not (isinstance(num_gpus, (int, float)) and num_gpus >= 0):
        raise ConceptError(f"num_gpus must be a number >= 0 (GPUs per actor), got {num_gpus!r}")
    if not (isinstance(num_cpus, (int, float)) and num_cpus > 0):
        raise ConceptError(f"num_cpus must be a number > 0 (CPUs per actor), got {num_cpus!r}")


def embed_to_parquet(paths: Sequence[str | os.PathLike] | str, folder: str | os.PathLike,
                     embedding_model: Any = "offline", *, shard_size: int = DEFAULT_SHARD_SIZE,
                     batch_size: int = 32, concurrency: int = 2, num_cpus: float = 1,
                     num_gpus: float = 0, decode_workers: int | None = None) -> EmbeddedShards:
    """Embed image files on the Ray cluster into Parquet shards in `folder`; resumable.

    paths: image files every worker node can read (a local folder on one machine, a shared
        file system on a cluster), in the order the shards keep; or a URI of a folder or
        bucket prefix (s3://bucket/photos, file:///data/photos: `sources.list_images`),
        whose images the actors read through pyarrow's filesystem.
    embedding_model: as `ConceptModel`'s ("offline", a CLIP name or folder, ...), loaded once
        per actor; a custom object is pickled to each actor.
    concurrency: actors in the pool; num_cpus / num_gpus: resources per actor (num_gpus=1 puts
        each CLIP actor on its own GPU, device "cuda").
    decode_workers: processes decoding images inside each actor (0: the actor decodes itself;
        None: 0 for CPU actors, where Ray runs one actor per CPU, and num_cpus - 1 for GPU
        actors, whose network needs no CPU: give them num_cpus=8 or so to keep a GPU fed).

    Shards already in `folder` for the same files and model are not embedded again.
    Call `concept.distributed.connect()` first (or `ray.init`), or a local cluster is started.
    """
    ray = require_ray()
    check_integer("shard_size", shard_size, minimum=1)
    _check_common(batch_size, concurrency, num_gpus, num_cpus)
    if decode_workers is None:
        decode_workers = max(0, int(num_cpus) - 1) if num_gpus else 0
    check_integer("decode_workers", decode_workers, minimum=0)
    from concept.distributed.sources import RemoteImages, is_uri, list_images, shown

    remote = list_images(paths) if is_uri(paths) else paths if isinstance(paths, RemoteImages) else None
    if remote is not None:
        paths = remote.paths
    if isinstance(paths, (str, os.PathLike)):
        raise ConceptError("paths must be a list of image files or a URI (s3://bucket/prefix); for a "
                           "folder pass concept.images.list_image_files(folder).")
    if len(paths) == 0:
        raise ConceptError("No image paths to embed." if remote is None else
                           f"No image files under {shown(remote.uri)}.")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    model_name = _model_name(embedding_model)
    import pyarrow as pa

    # The plan, a shard at a time: each shard still to embed gets a plan file with its paths
    # (read by its actor), so the driver never holds a second copy of the whole list.
    plans = folder / ".plan"
    shards, todo = [], []
    for shard in _iter_shards(paths, model_name, shard_size, None if remote is None else remote.keys):
        if not (folder / shard.name).is_file():
            plan = plans / f"{shard.name}.paths"
            if not plan.is_file():
                plans.mkdir(exist_ok=True)
                _write_atomically(pa.table({"path": pa.array(shard.paths, pa.string())}), plan)
            todo.append({"name": shard.name, "plan": str(plan.resolve())})
        shards.append(Shard(shard.index, shard.name, [], len(shard.paths)))
    logger.info("%d shards of up to %d images: %d to embed, %d already in %s.",
                len(shards), shard_size, len(todo), len(shards) - len(todo), folder)
    stats: list[dict] = []
    if todo:
        ds = ray.data.from_items(todo, override_num_blocks=len(todo))
        ds = ds.map_batches(
            _ShardEmbedder, batch_size=1,
            fn_constructor_kwargs={"embedding_model": embedding_model, "folder": str(folder.resolve()),
                                   "batch_size": batch_size,
                                   "device": "cuda" if num_gpus else None,
                                   "decode_workers": decode_workers,
                                   "filesystem": None if remote is None else remote.filesystem},
            compute=ray.data.ActorPoolStrategy(size=min(concurrency, len(todo))),
            num_cpus=num_cpus, num_gpus=num_gpus)
        stats = ds.take_all()
        _remove_plans(plans, [s.name for s in shards])
    return EmbeddedShards(folder, model_name, shards, len(todo), len(shards) - len(todo),
                          time.perf_counter() - start, stats, None if remote is None else remote.filesystem)


def _remove_plans(plans: Path, names: list[str]) -> None:
    """Remove the plan files of a finished run (actors leave them: a concurrent run, such as a
    killed job's actors still finishing, may be about to read one), then the folder if empty."""
    for name in names:
        with contextlib.suppress(OSError):
            os.remove(plans / f"{name}.paths")
    with contextlib.suppress(OSError):  # not empty: another run's plans are in it
        plans.rmdir()


def embed_dataset(ds: Any, embedding_model: Any = "offline", *, batch_size: int = 32,
                  concurrency: int = 2, num_cpus: float = 1, num_gpus: float = 0) -> Any:
    """A user's `ray.data.Dataset` of images, embedded lazily by the same actor pool.

    The rows need a `path` column of files the workers can read, or a `bytes` column of
    encoded images (`ray.data.read_binary_files(uri, include_paths=True)` reads both from
    local folders or object stores; bytes are decoded by PIL in the actor). Returns the
    dataset with `ok`, `error` (empty when ok), `embedding` and, for backends with them,
    `features` columns (`bytes` dropped); write it with `.write_parquet(...)`. Not resumable
    by itself: for files, `embed_to_parquet` is.
    """
    ray = require_ray()
    _check_common(batch_size, concurrency, num_gpus, num_cpus)
    if not isinstance(ds, ray.data.Dataset):
        raise ConceptError(f"embed_dataset expects a ray.data.Dataset, got {type(ds).__name__}; "
                           "for a list of files use embed_to_parquet.")
    return ds.map_batches(
        _RowEmbedder, batch_size=batch_size,
        fn_constructor_kwargs={"embedding_model": embedding_model, "batch_size": batch_size,
                               "device": "cuda" if num_gpus else None},
        compute=ray.data.ActorPoolStrategy(size=concurrency), num_cpus=num_cpus, num_gpus=num_gpus)


def _vectors(column: Any) -> np.ndarray:
    chunks = [c for c in column.chunks]
    if not chunks:
        return np.zeros((0, 0), np.float32)
    width = chunks[0].type.list_size
    return np.concatenate([c.flatten().to_numpy(zero_copy_only=False).reshape(-1, width)
                           for c in chunks]).astype(np.float32, copy=False)


@dataclass
class Embeddings:
    """Vectors of a run's shards on the driver: the rows read (`kept`, positions among all
    `n_paths` images in plan order), their paths, vectors and features, and every failure.
    `paths` (every image's path) is read from the shards when first asked for: the driver
    otherwise holds no path but the sample's and the failures'."""

    n_paths: int
    kept: np.ndarray
    kept_paths: list[str]
    embeddings: np.ndarray
    features: np.ndarray | None
    failures: list[LoadFailure]
    files: list[Path] = field(default_factory=list, repr=False)
    _all: list[str] | None = field(default=None, repr=False)

    @property
    def paths(self) -> list[str]:
        """Every image's path in plan order (read from the shards, once)."""
        if self._all is None:
            import pyarrow.parquet as pq

            self._all = [p for f in self.files for p in pq.read_table(f, columns=["path"]).column("path").to_pylist()]
        return self._all


def _shard_files(shards: EmbeddedShards | Sequence[str | os.PathLike]) -> list[Path]:
    files = shards.files if isinstance(shards, EmbeddedShards) else [Path(f) for f in shards]
    if not files:
        raise ConceptError("No shard files to read.")
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise ConceptError(f"{len(missing)} shard files are missing (e.g. {missing[0]}): run "
                           "embed_to_parquet again to write them.")
    return files


def read_embeddings(shards: EmbeddedShards | Sequence[str | os.PathLike], *,
                    max_images: int | None = None, random_state: int | None = None) -> Embeddings:
    """Read Parquet shards (an `embed_to_parquet` result or shard files, in order) on the
    driver: what `ConceptModel.fit` takes as image_embeddings and image_features.

    max_images: read a random sample of this many of the images that loaded (seeded by
        `random_state`), shard by shard, so the driver holds the sample and one shard only;
        None: every image. Paths are read only for the sample and the failures.
    """
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    check_integer("max_images", max_images, minimum=1, allow_none=True)
    files = _shard_files(shards)
    oks = [pq.read_table(f, columns=["ok"]).column("ok").to_numpy(zero_copy_only=False).astype(bool)
           for f in files]
    ok = np.concatenate(oks)
    kept = np.flatnonzero(ok)
    if max_images is not None and len(kept) > max_images:
        kept = np.sort(np.random.default_rng(random_state).choice(kept, max_images, replace=False))
    has_features = "features" in pq.read_schema(files[0]).names
    xs, fs, paths, failures, offset = [], [], [], [], 0
    for file, part in zip(files, oks):
        rows = kept[(kept >= offset) & (kept < offset + len(part))] - offset
        bad = np.flatnonzero(~part)
        if len(rows) or len(bad):
            columns = ["path", "error"] + (["embedding", "features"] if has_features else ["embedding"])
            table = pq.read_table(file, columns=columns if len(rows) else ["path", "error"])
            if len(bad):
                failed = table.select(["path", "error"]).take(bad)
                failures += [LoadFailure(int(offset + i), p, e) for i, p, e in
                             zip(bad, failed.column("path").to_pylist(), failed.column("error").to_pylist())]
            if len(rows):
                paths += pc.take(table.column("path"), rows).to_pylist()
                xs.append(_vectors(table.column("embedding"))[rows])
                if has_features:
                    fs.append(_vectors(table.column("features"))[rows])
        offset += len(part)
    if not xs:
        raise ConceptError(f"None of the {len(ok)} images in the shards could be loaded.")
    return Embeddings(len(ok), kept, paths, np.concatenate(xs), np.concatenate(fs) if fs else None,
                      failures, files)
