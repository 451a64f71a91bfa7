"""A 2-D map of every image, for display only (the explorer, notebooks)."""

from __future__ import annotations

import warnings

import numpy as np

from concept.clustering.kernels import nearest


def layout_2d(vectors: np.ndarray, fitted_rows: np.ndarray, random_state: int | None = None,
              k: int = 10) -> np.ndarray:
    """A 2-D map of every row for display: UMAP on the clustered rows, and each other row at
    the similarity-weighted mean position of its `k` nearest clustered rows."""
    from concept.clustering._jit import import_umap

    umap = import_umap()

    base = vectors[fitted_rows]
    coords = np.zeros((len(vectors), 2), dtype=np.float32)
    if len(base) < 4:
        return coords
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore")
        base_xy = umap.UMAP(n_neighbors=max(2, min(15, len(base) - 1)), n_components=2, min_dist=0.1,
                            metric="cosine", n_epochs=200, random_state=random_state).fit_transform(base)
    coords[fitted_rows] = base_xy
    rest = np.setdiff1d(np.arange(len(vectors)), fitted_rows, assume_unique=True)
    for start in range(0, len(rest), 65_536):
        rows = rest[start:start + 65_536]
        nn, sims = nearest(vectors[rows], base, k)
        w = np.maximum(sims, 0) + 1e-6
        coords[rows] = (base_xy[nn] * w[..., None]).sum(axis=1) / w.sum(axis=1, keepdims=True)
    return coords




def reference_rows(n: int, sample: int, random_state: int | None = None) -> np.ndarray:
    """The rows the 2-D map's UMAP is fitted on: every row up to `sample`, else a seeded
    sample of `sample` rows (sorted); `layout_2d` places the others by their nearest."""
    if n <= sample:
        return np.arange(n)
    return np.sort(np.random.default_rng(random_state).choice(n, sample, replace=False))
