"""Summarise a large collection into micro-clusters: spherical k-means, two levels deep.

The non-linear stages (a neighbour graph, UMAP, HDBSCAN) cost far more per row than a
product, so a collection larger than they can take is first summarised: every image joins
one of `n_units` micro-clusters of similar images, and the later stages see the micro-
clusters' mean directions weighted by their sizes. Unlike a random sample, every image then
shapes the concepts: a concept of 100 images in a million is 2 micro-clusters, not 0.5
sampled images, and a micro-cluster's mean is far less noisy than any one image.

Two levels keep the cost near n x sqrt(n_units) products instead of n x n_units: k-means
into about sqrt(n_units) cells (fitted on a sample), then each cell into its share of the
micro-clusters. Each cell is an independent piece of work.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from concept.clustering.kernels import mean_directions, top_matches

#: Cells whose micro-clusters a row may also join, besides its own cell's.
NEIGHBOUR_CELLS = 2


@dataclass
class Summary:
    """Unit-norm micro-cluster centres (m, d), each row's micro-cluster (n,), their sizes (m,)."""

    centres: np.ndarray
    labels: np.ndarray
    weights: np.ndarray


def spherical_kmeans(x: np.ndarray, k: int, rng: np.random.Generator, iters: int = 5
                     ) -> tuple[np.ndarray, np.ndarray]:
    """k-means on unit vectors by cosine (Lloyd's steps from k random rows); returns the
    centres of the non-empty clusters and each row's cluster."""
    n = len(x)
    k = max(1, min(int(k), n))
    centres = x[np.sort(rng.choice(n, k, replace=False))]
    for _ in range(iters):
        labels = top_matches(x, centres, exact=False)[0][:, 0]
        centres, counts = mean_directions(x, labels, k)
        empty = np.flatnonzero(counts == 0)
        if len(empty):  # restart empty clusters at random rows
            centres[empty] = x[rng.choice(n, len(empty), replace=False)]
    labels = top_matches(x, centres, exact=False)[0][:, 0]
    counts = np.bincount(labels, minlength=k)
    keep = counts > 0
    remap = np.cumsum(keep) - 1
    return mean_directions(x, remap[labels], int(keep.sum()))[0], remap[labels]


def summarise(x: np.ndarray, n_units: int, rng: np.random.Generator) -> Summary:
    """About `n_units` micro-clusters of the rows of `x` (every row its own unit when
    len(x) <= n_units)."""
    n = len(x)
    if n <= n_units:
        return Summary(x, np.arange(n), np.ones(n, dtype=np.float64))
    cell_centres = coarse_cells(lambda rows: x[rows], n, n_units, rng)
    cells = top_matches(x, cell_centres, exact=False)[0][:, 0]
    order = np.argsort(cells, kind="stable")
    bounds = np.searchsorted(cells[order], np.arange(len(cell_centres) + 1))
    labels = np.empty(n, dtype=np.int64)
    offset = 0
    for cell in range(len(cell_centres)):
        rows = order[bounds[cell]:bounds[cell + 1]]
        if len(rows) == 0:
            continue
        _, part = spherical_kmeans(x[rows], units_in_cell(len(rows), n, n_units), rng)
        labels[rows] = part + offset
        offset += int(part.max()) + 1
    centres, _ = mean_directions(x, labels, offset)
    labels = _across_borders(x, cells, cell_centres, centres, labels, order, bounds)
    keep = np.bincount(labels, minlength=offset) > 0
    remap = np.cumsum(keep) - 1
    centres, counts = mean_directions(x, remap[labels], int(keep.sum()))
    return Summary(centres, remap[labels], counts.astype(np.float64))


def coarse_cells(take: Callable[[np.ndarray], np.ndarray], n: int, n_units: int,
                 rng: np.random.Generator) -> np.ndarray:
    """The first level's cell centres: k-means into about sqrt(n_units) cells on a sample of
    64 rows a cell; `take(positions)` gives those rows of the collection (of `n` rows)."""
    n_cells = max(1, round(math.sqrt(n_units)))
    sample = np.sort(rng.choice(n, min(n, 64 * n_cells), replace=False))
    return spherical_kmeans(take(sample), n_cells, rng, iters=8)[0]


def units_in_cell(rows: int, n: int, n_units: int) -> int:
    """Micro-clusters for a cell of `rows` of the `n` rows: its share of `n_units`."""
    return max(1, round(rows * n_units / n))


def _across_borders(x: np.ndarray, cells: np.ndarray, cell_centres: np.ndarray, centres: np.ndarray,
                    labels: np.ndarray, order: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Each row's nearest micro-cluster among those of its cell and the NEIGHBOUR_CELLS cells
    nearest to it: a row put in the wrong cell (near a border) finds its micro-cluster there."""
    owner = np.empty(len(centres), np.int64)
    owner[labels] = cells
    return nearest_units(x, cell_centres, centres, owner, order, bounds, labels.copy())


def nearest_units(x: np.ndarray, cell_centres: np.ndarray, centres: np.ndarray, owner: np.ndarray,
                  order: np.ndarray, bounds: np.ndarray, out: np.ndarray,
                  cell_rows: np.ndarray | None = None) -> np.ndarray:
    """`_across_borders` given each micro-cluster's cell (`owner`) and the rows of `x` by
    cell (`order`, `bounds`): writes each row's micro-cluster into `out`. Any set of rows
    will do (concept.distributed runs it shard by shard, with each cell's rows in the whole
    collection as `cell_rows`, so that each piece is scored as the whole cell would be)."""
    by_cell = [np.flatnonzero(owner == c) for c in range(len(cell_centres))]
    near = top_matches(cell_centres, cell_centres, NEIGHBOUR_CELLS + 1)[0]
    for cell in range(len(cell_centres)):
        rows = order[bounds[cell]:bounds[cell + 1]]
        candidates = np.concatenate([by_cell[c] for c in near[cell]])
        if len(rows) and len(candidates):
            whole = None if cell_rows is None else int(cell_rows[cell])
            out[rows] = candidates[top_matches(x[rows], centres[candidates], exact=False, rows=whole)[0][:, 0]]
    return out
