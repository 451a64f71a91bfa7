"""Embed, fit and assign on a Ray cluster (the optional extra: ``pip install "concept[ray]"``).

The expensive stage, embedding, runs in Ray Data: an actor pool of embedders (each holds one
backend, the offline model on CPUs or CLIP with `num_gpus` per actor) over shards of the
image list; every actor writes its shards as Parquet files itself, so no image or vector
passes through the driver, and a rerun skips the shards already written (images may also be
under a URI, s3://bucket/prefix: `sources.py`). Fitting runs the ordinary `ConceptModel.fit`
on a sample pulled to the driver; above that sample's size the clustering core's passes over
every image run as Ray tasks over the shards (`pieces.py`), and the sample only describes the
concepts. Every image is then assigned in the actor pool with the fitted model's arrays
broadcast once. Duplicates of the stored images (`find_duplicates_on_ray`) decode every image
again in Ray tasks and group the vectors on the driver.
The pieces of work are the single-machine pipeline's own functions; Ray only schedules them.

This package is the only one in `concept` that imports ray.
"""

from __future__ import annotations

from concept.distributed._cluster import connect
from concept.distributed.embed import (
    EmbeddedShards,
    embed_dataset,
    embed_to_parquet,
    read_embeddings,
)
from concept.distributed.duplicates import find_duplicates_on_ray
from concept.distributed.fit import DistributedFit, assign_to_parquet, fit

__all__ = [
    "DistributedFit",
    "EmbeddedShards",
    "assign_to_parquet",
    "connect",
    "embed_dataset",
    "embed_to_parquet",
    "find_duplicates_on_ray",
    "fit",
    "read_embeddings",
]
