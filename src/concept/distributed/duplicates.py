"""Duplicates of the images in embedded shards, their pixels read by Ray Data tasks (issue 27).

`embed_to_parquet` leaves each image's path and vectors in the store's Parquet shards. Finding the
duplicates of those images has two costs of very different sizes: decoding every image once more for
the exact pass and the pixel check (the larger by far: seconds per hundred images), and the
neighbour search over the vectors (`concept.clustering.blocks`: a million vectors in under a minute on
one machine). So the decoding runs as a Ray Data `map_batches` over the shards' paths, on however many
workers the cluster has, and returns each image's `PixelIdentities` (hashes, sizes, and a 12 kB look
while there are at most `duplicates.PIXEL_CHECK_MAX` images); the driver reads the vectors with
`read_embeddings` and groups them with `find_duplicates` (no image decoded there).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from concept.distributed._cluster import require_ray
from concept.distributed.embed import EmbeddedShards, read_embeddings
from concept.duplicates import PIXEL_CHECK_MAX, Duplicates, PixelIdentities, find_duplicates, pixel_identities

__all__ = ["find_duplicates_on_ray", "pixel_identities_on_ray"]

#: Images a Ray task decodes at a time.
BATCH = 256


class _Identify:
    """A `map_batches` function: the `PixelIdentities` of a batch of paths, as columns Ray can carry."""

    def __init__(self, keep_looks: bool) -> None:
        self.keep_looks = keep_looks

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ids = pixel_identities([str(p) for p in batch["path"]], keep_looks=self.keep_looks)
        out = {"row": np.asarray(batch["row"]), "digest": np.array(ids.digests, dtype=object),
               "key": np.array(ids.keys, dtype=object), "sharpness": ids.sharpness, "pixels": ids.pixels,
               "file_bytes": ids.file_bytes, "dims": ids.dims}
        if self.keep_looks:
            out["look"] = ids.looks
        return out


def pixel_identities_on_ray(paths: Sequence[str | os.PathLike], *, batch_size: int = BATCH,
                            concurrency: int | None = None) -> PixelIdentities:
    """The `PixelIdentities` of `paths` (files every worker can read), decoded by Ray Data tasks, in path order."""
    ray = require_ray()
    n = len(paths)
    keep = n <= PIXEL_CHECK_MAX
    ds = ray.data.from_items([{"row": i, "path": os.fspath(p)} for i, p in enumerate(paths)])
    ds = ds.map_batches(_Identify, fn_constructor_kwargs={"keep_looks": keep}, batch_size=batch_size,
                        concurrency=concurrency, batch_format="numpy")
    parts = []
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
        parts.append((np.asarray(batch["row"]), PixelIdentities(
            list(batch["digest"]), list(batch["key"]), batch["sharpness"], batch["pixels"], batch["file_bytes"],
            np.asarray(batch["look"], dtype=np.uint8) if keep else None, np.asarray(batch["dims"]))))
    if not parts:
        return pixel_identities([], keep_looks=keep)
    order = np.argsort(np.concatenate([rows for rows, _ in parts]), kind="stable")
    return PixelIdentities.concat([p for _, p in parts]).take(order)


def find_duplicates_on_ray(shards: EmbeddedShards | Sequence[str | os.PathLike], *, near: float | None = None,
                           exact: bool = True, batch_size: int = BATCH, concurrency: int | None = None,
                           ) -> Duplicates:
    """`find_duplicates` of the images in embedded shards (`embed_to_parquet`'s result or its shard files):
    the pixels read by Ray tasks (`pixel_identities_on_ray`; skipped with `exact=False`), the vectors (the
    clustering features where the shards have them) grouped on the driver. Rows are the images that loaded,
    in the shards' order; `paths` says which file each is."""
    data = read_embeddings(shards)
    x = data.features if data.features is not None else data.embeddings
    paths = list(data.kept_paths)
    pixels = pixel_identities_on_ray(paths, batch_size=batch_size, concurrency=concurrency) if exact else None
    return find_duplicates(paths, embeddings=x, near=near, exact=exact, pixels=pixels)
