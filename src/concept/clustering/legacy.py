"""The single-layer path: reduce, then cluster (a user's `umap_model` / `hdbscan_model`).

Any reducer with `fit_transform` and any clusterer with `fit` and `labels_` can be passed
instead; probabilities come from the clusterer's public `probabilities_` when it has one.
New points are assigned by a k-nearest-neighbour vote, which needs only arrays (so it
survives save/load exactly) and works whatever the clusterer was.

Every neighbour search runs in a linear pre-reduction of the embeddings (`fit_projection`:
their top singular directions), exactly, as one matrix product and a top-k: the default
UMAP gets its neighbour graph from there instead of building an approximate one itself.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass

import numpy as np

from concept._errors import ConceptError
from concept.clustering.kernels import fit_projection, nearest, project

logger = logging.getLogger(__name__)



@dataclass
class Clustering:
    """Labels (-1 = outlier, 0 = largest concept), membership strengths in [0, 1], the rows
    that were reduced and clustered (the rest were assigned to them), their reduced data, and
    the (d, PROJECTION_DIM) basis of the space neighbours were searched in (None: all of d)."""

    labels: np.ndarray
    probabilities: np.ndarray
    fitted_rows: np.ndarray
    reduced: np.ndarray | None
    projection: np.ndarray | None = None


def default_reducer(n_samples: int, random_state: int | None = None):
    """UMAP to 5 dimensions on cosine distances, like the reference, with 30 neighbours,
    30 epochs (100 up to 2,500 points) and a PCA initialisation; `cluster` hands it an exact
    neighbour graph.

    Fewer epochs than UMAP's own 200-500 because the graph is exact and the sample small: on
    OpenClipart, Fashion-MNIST and the synthetic mixtures 30-100 epochs scored as well as 200
    (benchmarks/RESULTS.md), and the epochs are most of UMAP's time. Small sets get 100, which
    steadied the concept count on OpenClipart's 2,262 images at a cost of a fraction of a second.
    30 neighbours rather than the reference's 15: on a 5,000-image sample of Fashion-MNIST's
    70,000, 15 sometimes split the classes into 18-20 fragments with 15% outliers (NMI 0.619
    over 5 seeds), 30 less often (0.627), and with 30 epochs the fit is still faster than 15
    neighbours with 50. PCA initialisation scored as well as the spectral one (OpenClipart:
    NMI 0.221 vs 0.211 over 5 seeds) and costs nothing, where the spectral one took 0.4 s of 1.7.
    """
    from concept.clustering._jit import import_umap

    umap = import_umap()

    model = umap.UMAP(n_neighbors=max(2, min(30, n_samples - 1)), n_components=5, min_dist=0.0,
                      metric="cosine", n_epochs=100 if n_samples <= 2500 else 30, init="pca",
                      random_state=random_state, n_jobs=1 if random_state is not None else -1)
    model._concept_default = True  # our own marker: `cluster` gives it the neighbour graph
    return model


def default_clusterer(min_cluster_size: int, n_points: int | None = None):
    """HDBSCAN (fast_hdbscan's implementation: same algorithm, faster) with "eom" selection,
    where no concept may hold more than half of the clustered points.

    Without that cap "eom" sometimes selects one root-level cluster holding 86-98% of the
    images (2-4 concepts on OpenClipart, in the features and in the shared space); with it the
    same runs find 13-16 concepts, and Fashion-MNIST its 10 classes (benchmarks/RESULTS.md).
    """
    import fast_hdbscan

    cap = max(min_cluster_size, n_points // 2) if n_points else np.inf
    model = fast_hdbscan.HDBSCAN(min_cluster_size=min_cluster_size, cluster_selection_method="eom",
                                 max_cluster_size=cap)
    model._concept_default = True  # our own marker: `cluster` may retry it without the cap
    return model


#: Smallest concept, in sampled images, that the default clusterer looks for in a sample.
MIN_SAMPLED_CONCEPT = 15


def sampled_min_size(min_concept_size: int, n_sampled: int, n_total: int) -> int:
    """HDBSCAN's `min_cluster_size` for a sample of `n_sampled` of `n_total` images.

    `min_concept_size` counts images of the whole collection: a concept of that size has only
    about `min_concept_size * n_sampled / n_total` images in the sample, so asking the sample
    for the full size would miss every concept smaller than `n_total / n_sampled` times it.
    Scaled down, with a floor of `MIN_SAMPLED_CONCEPT` below which density estimates get noisy.
    """
    if n_sampled >= n_total:
        return int(min_concept_size)
    scaled = math.ceil(min_concept_size * n_sampled / n_total)
    return int(min(min_concept_size, max(MIN_SAMPLED_CONCEPT, scaled)))


def sort_by_size(labels: np.ndarray) -> np.ndarray:
    """Renumber concepts so 0 is the largest (ties by old id); -1 stays -1."""
    labels = np.asarray(labels, dtype=np.int64)
    ids, counts = np.unique(labels[labels >= 0], return_counts=True)
    order = ids[np.lexsort((ids, -counts))]
    mapping = np.full(labels.max(initial=-1) + 2, -1, dtype=np.int64)
    mapping[order + 1] = np.arange(len(order))
    return mapping[labels + 1]


def distinct_rows(x: np.ndarray, sample: int = 2000) -> int:
    """Number of distinct rows (equal to 5 decimals counts as equal) in a fixed random sample: a
    cheap degeneracy check. Each rounded row is reduced to its product with a fixed random
    float64 direction, equal for equal rows and, for different ones, equal only by a chance
    too small to matter; sorting 2,000 numbers instead of 2,000 rows of 1,280 took it from
    58 ms to a few."""
    rng = np.random.default_rng(0)
    if len(x) > sample:
        x = x[rng.choice(len(x), sample, replace=False)]
    rounded = np.round(np.asarray(x, np.float64), 5)
    return len(np.unique(rounded @ rng.standard_normal(rounded.shape[1])))


#: Collections with fewer distinct images than this are grouped by identical image instead.
MIN_DISTINCT = 10


def _group_identical(embeddings: np.ndarray, min_size: int) -> Clustering:
    """Concepts of identical rows (a few photos repeated): UMAP and HDBSCAN cannot handle
    such data, and grouping exact duplicates is the right answer anyway."""
    n = len(embeddings)
    logger.warning("Fewer than %d distinct images: grouping identical images into concepts.", MIN_DISTINCT)
    _, groups, counts = np.unique(np.round(embeddings, 5), axis=0, return_inverse=True, return_counts=True)
    groups = groups.ravel()
    labels = np.where(counts[groups] >= min_size, groups, -1)
    if (labels < 0).all():  # every group too small: one concept rather than none
        labels = np.zeros(n, dtype=np.int64)
    return Clustering(sort_by_size(labels), (labels >= 0).astype(float), np.arange(n), None)


def cluster(embeddings: np.ndarray, reducer, clusterer, *, sample_size: int | None = None,
            random_state: int | None = None) -> Clustering:
    """Reduce then cluster; labels sorted by size.

    With more rows than `sample_size`, only a random sample of that size is reduced and
    clustered, and every other row joins the concept its nearest sampled rows vote for
    (`assign`): the cost of the non-linear stages stops growing with the collection.

    Collections with almost no distinct images (e.g. one photo repeated) cannot be reduced
    or density-clustered; they become a single concept instead of crashing deep in UMAP.
    """
    n = len(embeddings)
    if distinct_rows(embeddings) < MIN_DISTINCT:
        return _group_identical(embeddings, getattr(clusterer, "min_cluster_size", 2))
    rows = np.arange(n)
    if sample_size is not None and n > sample_size:
        rows = np.sort(np.random.default_rng(random_state).choice(n, sample_size, replace=False))
    fit_x = embeddings[rows] if len(rows) < n else embeddings
    basis = fit_projection(fit_x, random_state=random_state)
    fit_p = project(fit_x, basis)
    reduced = fit_x
    if reducer is not None:
        ours = getattr(reducer, "_concept_default", False)
        if ours:  # the exact graph in the projection, instead of UMAP's approximate search
            k = reducer.get_params()["n_neighbors"]
            indices, sims = nearest(fit_p, fit_p, k)
            reducer.set_params(precomputed_knn=(indices, np.clip(1.0 - sims, 0.0, 2.0)))
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*n_jobs.*")
            warnings.filterwarnings("ignore", message=".*precomputed_knn.*")
            reduced = np.asarray(reducer.fit_transform(fit_p if ours else fit_x), dtype=np.float32)
    try:
        clusterer.fit(reduced)
    except (KeyError, ValueError, IndexError) as exc:
        if not getattr(clusterer, "_concept_default", False):
            raise
        # fast_hdbscan's size cap can fail on degenerate trees; the uncapped run does not.
        logger.warning("HDBSCAN failed with the concept size cap (%r); retrying without it.", exc)
        clusterer.set_params(max_cluster_size=np.inf)
        clusterer.fit(reduced)
    labels = getattr(clusterer, "labels_", None)
    if labels is None or len(labels) != len(fit_x):
        raise ConceptError(
            f"The clusterer {type(clusterer).__name__} gave no labels_ of length {len(fit_x)} "
            "after fit(); pass an object with fit() and a labels_ attribute (-1 for outliers)."
        )
    labels = sort_by_size(np.asarray(labels))
    probs = getattr(clusterer, "probabilities_", None)
    if probs is None or len(probs) != len(labels):
        probs = (labels >= 0).astype(np.float64)
    probs = np.where(labels >= 0, np.clip(np.nan_to_num(np.asarray(probs, float)), 0, 1), 0.0)
    if len(rows) < n:
        rest = np.setdiff1d(np.arange(n), rows, assume_unique=True)
        k = int(labels.max(initial=-1)) + 1
        rest_labels, shares = assign(project(embeddings, basis, rows=rest), fit_p, labels, k)
        full_labels = np.empty(n, dtype=np.int64)
        full_probs = np.zeros(n)
        full_labels[rows], full_probs[rows] = labels, probs
        full_labels[rest] = rest_labels
        won = rest_labels >= 0
        full_probs[rest[won]] = shares[np.flatnonzero(won), rest_labels[won]]
        labels, probs = sort_by_size(full_labels), full_probs
    return Clustering(labels, probs, rows, reduced, basis)


def assign(vectors: np.ndarray, reference: np.ndarray, reference_labels: np.ndarray,
           n_concepts: int, k: int = 15, chunk: int = 4096,
           rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Assign rows of `vectors` (only `rows`, if given) to concepts by a similarity-weighted
    vote of their `k` nearest reference rows (outliers vote too).

    Returns labels (-1 when outliers win the vote) and an (n, n_concepts) matrix of each
    concept's share of the vote (rows sum to at most 1; the rest is the outliers' share).
    """
    k = max(1, min(k, len(reference)))
    n = len(vectors) if rows is None else len(rows)
    labels = np.empty(n, dtype=np.int64)
    shares = np.zeros((n, n_concepts), dtype=np.float32)
    for start in range(0, n, chunk):
        part = vectors[start:start + chunk] if rows is None else vectors[rows[start:start + chunk]]
        nn, sims = nearest(part, reference, k, chunk=chunk, ordered=False)
        weights = np.maximum(sims, 0) + 1e-6
        votes = np.zeros((len(nn), n_concepts + 1))
        voter = np.repeat(np.arange(len(nn)), k)
        np.add.at(votes, (voter, reference_labels[nn].ravel() + 1), weights.ravel())
        votes /= votes.sum(axis=1, keepdims=True)
        labels[start:start + chunk] = votes.argmax(axis=1) - 1
        shares[start:start + chunk] = votes[:, 1:]
    return labels, shares
