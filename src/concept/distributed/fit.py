"""Distributed fit: concepts from the shards' vectors on the driver, then every image assigned
on the cluster.

`fit` reads the vectors of every image (or of a seeded sample, `max_images`) from the
Parquet shards to the driver and runs the ordinary `ConceptModel.fit` on them, so the result
is an ordinary model that saves, loads and explores like any other; on the same files and
seed it is the model `ConceptModel.fit(paths)` finds. `assign_to_parquet` then labels every
image of the shards in a Ray Data actor pool: the fitted hierarchy (centres, fences, parent
maps) is put in the object store once and each actor fetches it once, reads a shard,
assigns its rows with `concept.clustering.assign` (what `ConceptModel.transform` runs) and
writes a labels shard of the same name.

Labels shard schema: `path`, `label` (int64; -1 outlier or unreadable), `probability`
(float64, the confidence `transform` reports), `error` (null when the image loaded).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from concept._errors import ConceptError
from concept._validation import check_integer, check_model_params
from concept.collage import concept_collages
from concept.distributed._cluster import require_ray
from concept.distributed.embed import (
    EmbeddedShards,
    _shard_files,
    _vectors,
    _write_atomically,
    read_embeddings,
)
from concept.embedding import load_embedding_model
from concept.finding import effective_min_size

logger = logging.getLogger(__name__)

#: Images whose vectors `fit` pulls to the driver by default: 6.6 KB each with the offline
#: model's features (384 + 1280 float32), so 1.3 GB; the clustering core summarises any
#: number into at most `sample_size` units, so a larger share changes the concepts little.
DEFAULT_MAX_IMAGES = 200_000


@dataclass
class DistributedFit:
    """A `fit` result: the fitted model, the folder of per-image labels shards and what was
    timed (seconds reading the vectors, fitting on the driver, assigning on the cluster)."""

    model: Any
    labels: Path
    n_images: int
    n_fitted: int
    seconds: dict[str, float]
    #: With pieces="ray": each pass the clustering core made as Ray tasks, and the shard
    #: files its tasks read (empty when the core ran on the driver).
    passes: list[tuple[str, list[str]]] = dataclasses.field(default_factory=list)

    def labels_dataset(self) -> Any:
        """The labels as a `ray.data.Dataset` (path, label, probability, error)."""
        return require_ray().data.read_parquet(str(self.labels))


class _ShardAssigner:
    """A Ray Data actor: fetches the hierarchy once, then labels whole shards."""

    def __init__(self, hierarchy: dict, column: str, layer: int, folder: str) -> None:
        import ray

        self.hierarchy = ray.get(hierarchy["ref"])  # nested in a dict: fetched here, once
        self.column, self.layer, self.folder = column, layer, Path(folder)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        from concept.clustering import assign, one_blas_thread

        n = []
        for file in batch["file"]:
            table = pq.read_table(str(file), columns=["path", "ok", "error", self.column])
            ok = table.column("ok").to_numpy(zero_copy_only=False).astype(bool)
            labels = np.full(len(ok), -1, np.int64)
            probs = np.zeros(len(ok), np.float64)
            if ok.any():
                x = _vectors(table.column(self.column))[ok]
                with one_blas_thread():
                    labels[ok], probs[ok] = assign(x, self.hierarchy, self.layer)
            out = pa.table({"path": table.column("path"), "label": pa.array(labels),
                            "probability": pa.array(probs), "error": table.column("error")})
            _write_atomically(out, self.folder / Path(str(file)).name)
            n.append(len(ok))
        return {"file": batch["file"], "n": np.asarray(n)}


def _space(model: Any) -> str:
    return "features" if model.features_ is not None else "embedding"


def assign_to_parquet(model: Any, shards: EmbeddedShards | Sequence[str | os.PathLike],
                      folder: str | os.PathLike, *, layer: int | None = None,
                      concurrency: int = 2, num_cpus: float = 1) -> Path:
    """Label every image of `shards` with a fitted model's concepts of `layer` (default: the
    layer of `labels_`), on the cluster; one labels shard per embedding shard in `folder`.

    Gives what `model.transform` gives for the same images, without their vectors ever
    reaching the driver.
    """
    from concept._validation import check_layer

    ray = require_ray()
    layer = check_layer(layer, len(model.layer_sizes_), model.layer_)  # layer_sizes_: NotFittedError first
    check_integer("concurrency", concurrency, minimum=1)
    files = _shard_files(shards)
    import pyarrow.parquet as pq

    schema = pq.read_schema(files[0])
    column = _space(model)
    if column not in schema.names:
        raise ConceptError(f"The model clustered on image features but the shards in {files[0].parent} "
                           "have none: embed them with the model's own embedding_model.")
    width = pq.read_schema(files[0]).field(column).type.list_size
    fitted = model.features_ if column == "features" else model.embeddings_
    if width != fitted.shape[1]:
        raise ConceptError(f"The shards' {column} have {width} dimensions but the model was fitted on "
                           f"{fitted.shape[1]}: embed with the model's own embedding_model.")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    hierarchy = ray.put(dataclasses.replace(model.hierarchy_))
    ds = ray.data.from_items([{"file": str(f.resolve())} for f in files], override_num_blocks=len(files))
    ds.map_batches(_ShardAssigner, batch_size=1,
                   fn_constructor_kwargs={"hierarchy": {"ref": hierarchy}, "column": column,
                                          "layer": layer, "folder": str(folder.resolve())},
                   compute=ray.data.ActorPoolStrategy(size=min(concurrency, len(files))),
                   num_cpus=num_cpus).take_all()
    return folder


def _use_pieces(pieces: str, model: Any, n_loaded: int, max_images: int | None) -> bool:
    """Whether the clustering core's passes run as Ray tasks (see `fit`'s `pieces`)."""
    # Zero-shot names and seeds steer the clustering of the driver's vectors; the tasks know neither.
    own = (model.umap_model is None and model.hdbscan_model is None and not model.zeroshot_concepts
           and model.seed_concepts is None)
    if pieces == "ray" and not own:
        raise ConceptError('pieces="ray" runs the default clustering core: it takes no umap_model, '
                           'hdbscan_model, zeroshot_concepts or seed_concepts. Use pieces="driver" for those.')
    if pieces == "auto":
        return own and max_images is not None and n_loaded > max_images
    return pieces == "ray"


def _fit_on_passes(model: Any, shards: EmbeddedShards, data: Any) -> Any:
    """The model's hierarchy from every loaded image by Ray tasks over the shards
    (`pieces.find_hierarchy_on_shards`), restricted to the rows `data` holds on the driver."""
    from concept.distributed.pieces import ShardRows, find_hierarchy_on_shards

    check_model_params(model.get_params())
    files = [str(f.resolve()) for f in _shard_files(shards)]
    column = "features" if data.features is not None and model.cluster_space == "auto" else "embedding"
    rows = ShardRows(files, column)
    n = len(rows)
    h = find_hierarchy_on_shards(rows, effective_min_size(n, model.min_concept_size), max_units=model.sample_size,
                                 threshold=float(model.outlier_threshold), random_state=model.random_state)
    failed = np.asarray([f.index for f in data.failures], np.int64)
    loaded = np.setdiff1d(np.arange(data.n_paths), failed)
    at = np.searchsorted(loaded, data.kept)  # the driver's rows among the loaded images
    return dataclasses.replace(h, fine=h.fine[at], nearest=h.nearest[at], probabilities=h.probabilities[at]), rows


def _collages_from_store(model: Any, filesystem: Any, images: list[str]) -> None:
    """For images under a URI: their URIs are the sources, and the collages are made from
    local copies of the exemplars alone."""
    from concept.distributed.sources import LocalCopies

    rows = sorted({int(r) for ex in model.exemplars_.values() for r in ex})
    with LocalCopies(filesystem, [images[r] for r in rows]) as (local, _):
        model.collages_ = concept_collages(model.exemplars_, dict(zip(rows, local)).get)
    model.image_sources_ = list(images)


def fit(model: Any, shards: EmbeddedShards, labels: str | os.PathLike, *,
        docs: Sequence[str] | None = None, max_images: int | None = DEFAULT_MAX_IMAGES,
        concurrency: int = 2, num_cpus: float = 1, pieces: str = "auto") -> DistributedFit:
    """Fit `model` (an unfitted `ConceptModel` with the shards' embedding_model) on the
    vectors in `shards`, then label every image on the cluster into the folder `labels`.

    max_images: the driver holds the vectors of at most this many images, a sample seeded by
        the model's random_state (None: every image), for the concepts' exemplars, words
        and the map. The labels dataset covers every image either way.
    pieces: where the clustering core's passes over the images run. "driver": on the
        sample, in the driver (`ConceptModel.fit` on it); "ray": over every image, as Ray
        tasks over the shards (`concept.distributed.pieces`: the driver holds only the
        units and concept centres), the sample then only describes the concepts; "auto":
        "ray" when there are more images than `max_images` and the model uses the default
        clustering core, else "driver".
    """
    require_ray()
    check_integer("max_images", max_images, minimum=3, allow_none=True)
    if pieces not in ("auto", "driver", "ray"):
        raise ConceptError(f'pieces must be "auto", "driver" or "ray", got {pieces!r}')
    if not isinstance(shards, EmbeddedShards):
        raise ConceptError("shards must be the result of embed_to_parquet (it knows the files' order and model).")
    embedder = None
    if model.embedding_model is not None:  # loaded once: the fit below reuses it
        embedder = load_embedding_model(model.embedding_model, verbose=model.verbose)
        model.set_params(embedding_model=embedder)
    if embedder is None or getattr(embedder, "name", None) != shards.model_name:
        raise ConceptError(f"The shards were embedded by {shards.model_name!r} but the model's embedding_model "
                           f"is {getattr(embedder, 'name', None)!r}: create the ConceptModel with the same one "
                           "(its words and search need that model).")
    start = time.perf_counter()
    data = read_embeddings(shards, max_images=max_images, random_state=model.random_state)
    read_s = time.perf_counter() - start
    start = time.perf_counter()
    passes, hierarchy = None, None
    if _use_pieces(pieces, model, data.n_paths - len(data.failures), max_images):
        hierarchy, passes = _fit_on_passes(model, shards, data)
    images = data.kept_paths
    remote = shards.filesystem is not None  # URIs: the driver reads only the exemplars
    model.fit(None if remote else images, docs=docs, image_embeddings=data.embeddings,
              image_features=data.features, hierarchy=hierarchy)
    if remote:
        _collages_from_store(model, shards.filesystem, images)
    # Positions in the whole list and its failures, as ConceptModel.fit(paths) records them.
    model.image_indices_ = data.kept
    model.failures_ = data.failures
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    folder = assign_to_parquet(model, shards, labels, concurrency=concurrency, num_cpus=num_cpus)
    assign_s = time.perf_counter() - start
    logger.info("Fitted on %d of %d images; every image labelled in %s.", len(images), data.n_paths, folder)
    return DistributedFit(model, folder, data.n_paths, len(images),
                          {"read": read_s, "fit": fit_s, "assign": assign_s},
                          [] if passes is None else passes.log)
