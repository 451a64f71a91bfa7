"""`concept embed|fit IMAGES_DIR --ray [ADDRESS]`: the commands' Ray paths.

Imported by `concept.cli.fit` only when --ray is given (or IMAGES_DIR is a URI), since
`concept.distributed` needs the optional extra (pip install "concept[ray]").
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from concept._errors import ConceptError
from concept.cli._output import _failed, _figure_and_table
from concept.distributed._cluster import connect
from concept.distributed.embed import embed_to_parquet


def _start(args: argparse.Namespace):
    """Check the Ray options before any work, then connect."""
    from concept._validation import check_integer

    check_integer("--workers", args.workers, minimum=1)
    if getattr(args, "max_images", None) is not None:
        check_integer("--max-images", args.max_images, minimum=3)
    if args.gpus_per_worker < 0 or args.cpus_per_worker <= 0:
        raise ConceptError(f"--gpus-per-worker must be >= 0 and --cpus-per-worker > 0, got "
                           f"{args.gpus_per_worker} and {args.cpus_per_worker}")
    ray = connect(args.ray, log_to_driver=not args.quiet)
    ray.data.DataContext.get_current().enable_progress_bars = not args.quiet
    return ray


def _embed(args: argparse.Namespace, paths: list | str, folder: Path):
    return embed_to_parquet(paths, folder, args.embedding_model, batch_size=getattr(args, "batch_size", 32),
                            concurrency=args.workers, num_cpus=args.cpus_per_worker,
                            num_gpus=args.gpus_per_worker)


def ray_embed(args: argparse.Namespace, paths: list | str) -> None:
    """`concept embed DIR --store SHARDS --ray [ADDRESS]`: Parquet shards, resumable."""
    from concept.distributed.embed import read_embeddings

    _start(args)
    shards = _embed(args, paths, Path(args.store))
    data = read_embeddings(shards, max_images=1)  # paths and failures only: one vector read
    n_files = sum(s.n for s in shards.shards)  # paths may be a URI, listed by embed_to_parquet
    print(f"{n_files:,} files in {shards.seconds:.1f} s on Ray: {len(shards.shards)} shards in {args.store} "
          f"({shards.embedded} embedded now, {shards.reused} already there), "
          f"{_failed(data.failures, args.store)}")


def ray_fit(args: argparse.Namespace, paths: list | str, docs: list[str] | None,
            seeds: list[list[str]] | None) -> None:
    """`concept fit DIR --out MODEL --ray [ADDRESS]`: embed into shards (resumable), fit on the
    driver, label every image on the cluster, save the model and the labels.

    The model takes every option that `concept fit` gives it without Ray, but --store (here
    the folder of Parquet shards); `docs` and `seeds` are --docs and --seed-concepts as read by
    `concept.cli.fit`. With seeds the clustering runs on the driver (`concept.distributed.fit`).
    """
    from concept.distributed.fit import fit
    from concept.distributed.sources import shown
    from concept.model import ConceptModel

    _start(args)
    store = Path(args.store or f"{args.out}.shards")
    labels = Path(args.labels or f"{args.out}.labels")
    start = time.perf_counter()
    shards = _embed(args, paths, store)
    model = ConceptModel(min_concept_size=args.min_concept_size, embedding_model=args.embedding_model,
                         ctfidf=args.ctfidf, n_words=args.n_words, random_state=args.seed,
                         verbose=not args.quiet, n_concepts=args.n_concepts, seed_concepts=seeds)
    result = fit(model, shards, labels, docs=docs, max_images=args.max_images, concurrency=args.workers)
    seconds = time.perf_counter() - start
    model.save(args.out)
    n_out = int((model.labels_ < 0).sum())
    print(f"{result.n_images:,} images from {shown(args.images_dir)} in {seconds:.1f} s on Ray "
          f"(fitted on {result.n_fitted:,}): {model.n_concepts_} concepts, {n_out:,} outliers, "
          f"{_failed(model.failures_, args.out)}")
    print(f"Model saved to {args.out}; every image's concept in {labels} (Parquet: path, label, "
          f"probability, error); embeddings in {store}")
    _figure_and_table(model, args.figure)
