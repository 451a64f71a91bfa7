"""Find dense groups among units (images or micro-clusters): an exact neighbour graph in the
full space, UMAP to 5 dimensions, and HDBSCAN weighted by each unit's number of images.

The neighbour graph is searched in the units' own space, not in a projection: with 400
random concept directions in 384 dimensions, a 64-d projection kept 25% of a point's 30
nearest neighbours in its own cluster where the full space kept 54%.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager

import numpy as np

from concept.clustering.kernels import top_matches

#: Neighbours per unit in the graph UMAP embeds.
N_NEIGHBORS = 15
#: UMAP epochs up to SMALL_UNITS units, and beyond (a collection of at most core.MIN_UNITS
#: images takes no layout: `exact.py`; fewer units than that come only from a small
#: `sample_size`). When the layout counted OpenClipart's 2,262 images' concepts (6 seeds), 60
#: epochs gave 17-20 concepts for 17 folders in 0.45 s, 100 epochs 20-23 in 0.65 s. On Fashion-MNIST's 3,000-unit summaries 30, 60
#: and 200 epochs scored alike (0.652-0.666), and 200 cost 2.8 s of the 3.9 s a 25,000-image
#: fit then took.
EPOCHS_SMALL, EPOCHS_LARGE, SMALL_UNITS = 60, 30, 2_500


def embed_units(units: np.ndarray, random_state: int | None = None,
                n_neighbors: int = N_NEIGHBORS) -> np.ndarray:
    """UMAP coordinates (m, 5) of the unit vectors from their exact cosine neighbour graph.

    The graph is exact, so UMAP searches no neighbours; its epochs are most of its time. (Three
    runs side by side, tried for seed stability, agreed over 6 seeds no better than one run:
    OpenClipart ARI 0.780 against 0.781, at 3x the time; `exact.py` is what steadied it.)
    """
    from concept.clustering._jit import import_umap

    umap = import_umap()

    m = len(units)
    k = max(2, min(n_neighbors, m - 1))
    idx, sims = top_matches(units, units, k + 1)
    # Each unit first: UMAP expects itself as its own nearest neighbour.
    idx[:, 0], sims[:, 0] = np.arange(m), 1.0
    seed = None if random_state is None else int(random_state)
    reducer = umap.UMAP(n_neighbors=k + 1, n_components=5, min_dist=0.0, metric="cosine",
                        n_epochs=EPOCHS_SMALL if m <= SMALL_UNITS else EPOCHS_LARGE, init="pca",
                        random_state=seed, n_jobs=1 if seed is not None else -1,
                        precomputed_knn=(idx, np.clip(1.0 - sims, 0.0, 2.0)))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*n_jobs.*")
        warnings.filterwarnings("ignore", message=".*precomputed_knn.*")
        return np.asarray(reducer.fit_transform(units), dtype=np.float32)


@contextmanager
def _one_numba_thread():
    """fast_hdbscan's parallel kernels break ties by thread timing: on the same coordinates,
    two processes gave different groups about one time in two (OpenClipart, 1,024 images);
    with one numba thread every run agreed. HDBSCAN is a small share of the fit (0.1 s at
    3,000 units), so the same seed gives the same concepts at that cost."""
    import numba

    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(before)


def dense_groups(coords: np.ndarray, weights: np.ndarray, min_size: int, method: str = "leaf") -> np.ndarray:
    """HDBSCAN labels of the units (-1: none), where a group needs `min_size` images in all.

    "leaf" (the default) gives the finest dense groups: the finest layer. Runs on one numba
    thread, so that it is deterministic (`_one_numba_thread`).
    """
    import fast_hdbscan

    weight = None if bool(np.all(weights == 1)) else np.asarray(weights, np.float32)
    with _one_numba_thread():
        model = fast_hdbscan.HDBSCAN(min_cluster_size=int(min_size), cluster_selection_method=method)
        model.fit(coords, sample_weight=weight)
    return np.asarray(model.labels_, dtype=np.int64)
