"""The clustering core: concepts at every scale, as a hierarchy of layers.

1. Summarise: above MIN_UNITS images, every image joins one of up to `max_units`
   micro-clusters (`summary.py`); smaller collections use the images themselves.
2. Dense groups: an exact neighbour graph of the units, UMAP, and HDBSCAN's finest ("leaf")
   groups weighted by images per unit (`density.py`). When the units are the images, the
   groups are HDBSCAN's excess-of-mass concepts of the images' exact Ward tree (`exact.py`).
3. Refine on every image, measure confidence, build coarser layers (`hierarchy.py`); where the
   tree of concepts has no clear gap, the layer shown first is a k-means partition that does
   not change with the seed, with the finest concepts redrawn inside it (`stable.py`).

Each stage works on plain arrays; the summary's cells and the refinement's chunks are
independent pieces of work.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from concept.clustering.density import dense_groups, embed_units
from concept.clustering.exact import MAX_IMAGES, excess_of_mass, image_tree
from concept.clustering.hierarchy import (
    OUTLIER_THRESHOLD,
    build_layers,
    confidence,
    default_count,
    exact_nearest,
    gap_counts,
    narrowing,
    refine_centres,
    spread,
    starting_groups,
    weighted_ward,
)
from concept.clustering.kernels import directions, label_sums, mean_directions, top_matches
from concept.clustering.passes import InMemory, Rows
from concept.clustering.separation import clearly_apart, merge_inseparable
from concept.clustering.stable import steady_layers
from concept.clustering.summary import summarise

logger = logging.getLogger(__name__)

#: Collections up to this size are clustered image by image, without a summary.
MIN_UNITS = 3_000
#: Rounds of the steady default layer at most (`layers_from_finest`): a second when the tree
#: of the redrawn concepts asks for another count.
STEADY_ROUNDS = 2
#: Images per micro-cluster aimed at between MIN_UNITS and `max_units` units.
IMAGES_PER_UNIT = 40


@contextmanager
def phase(name: str):
    """Log how long a phase of the fit took (INFO), so a slow fit says where its time went."""
    start = time.perf_counter()
    yield
    logger.info("%s: %.2f s", name, time.perf_counter() - start)


def n_units(n: int, max_units: int | None) -> int:
    """How many units the non-linear stages see for `n` images: all of them up to MIN_UNITS,
    then about one per IMAGES_PER_UNIT images, never more than `max_units` (None: no cap)."""
    cap = n if max_units is None else int(max_units)
    return int(min(n, cap, max(MIN_UNITS, n // IMAGES_PER_UNIT)))


@dataclass
class Hierarchy:
    """Fitted concepts in layers, finest first; concept ids in each layer by size (0 largest).

    fine: each row's finest concept (-1: outlier); nearest: each row's nearest finest concept,
    outliers included; probabilities: confidence in it (0 for outliers); centres, medians,
    sds: per finest concept, in the clustering space; parents[i]: layer i -> layer i+1.
    """

    fine: np.ndarray
    nearest: np.ndarray
    probabilities: np.ndarray
    centres: np.ndarray
    medians: np.ndarray
    sds: np.ndarray
    parents: list[np.ndarray] = field(default_factory=list)
    default: int = 0
    threshold: float = OUTLIER_THRESHOLD
    n_units: int = 0

    @property
    def layers(self) -> list[np.ndarray]:
        return layer_labels(self.fine, self.parents)


def layer_labels(fine: np.ndarray, parents: list[np.ndarray]) -> list[np.ndarray]:
    """Label arrays of every layer from the finest labels and the parent maps."""
    out = [np.asarray(fine, np.int64)]
    for parent in parents:
        prev = out[-1]
        out.append(np.where(prev >= 0, parent[np.maximum(prev, 0)], -1))
    return out


def by_size(labels: np.ndarray, k: int) -> np.ndarray:
    """Permutation old id -> new id with 0 the largest (ties by old id)."""
    counts = np.bincount(labels[labels >= 0], minlength=k)[:k]
    order = np.lexsort((np.arange(k), -counts))
    perm = np.empty(k, np.int64)
    perm[order] = np.arange(k)
    return perm


def finish_hierarchy(nearest: np.ndarray, sims: np.ndarray, centres: np.ndarray,
            parents: list[np.ndarray], default: int, threshold: float, units: int,
            inlier: np.ndarray | None = None, probabilities: np.ndarray | None = None) -> Hierarchy:
    """Confidence, outliers and size order for every layer (a parent of -1, a concept mapped to
    no coarser one, stays -1)."""
    k0 = len(centres)
    members = nearest if inlier is None else np.where(inlier, nearest, -1)
    medians, sds = spread(members, sims, k0)
    if inlier is not None:  # a clusterer's own members all pass their concept's fence
        lowest = np.full(k0, np.inf, np.float32)
        np.minimum.at(lowest, members[inlier], sims[inlier])
        need = np.where(np.isfinite(lowest), (medians - lowest) / threshold, 0.0)
        sds = np.maximum(sds, need * 1.001 + 1e-6).astype(np.float32)
    conf = confidence(sims, medians[nearest], sds[nearest], threshold)
    keep = conf > 0 if inlier is None else inlier
    fine = np.where(keep, nearest, -1)
    probs = np.where(keep, conf if probabilities is None else probabilities, 0.0)
    # Renumber every layer by size; parents follow.
    sizes = [k0] + [int(parent.max(initial=-1)) + 1 for parent in parents]
    perms = [by_size(labels, k) for labels, k in zip(layer_labels(fine, parents), sizes)]
    new_parents = []
    for i, parent in enumerate(parents):
        p = np.empty_like(parent)
        p[perms[i]] = np.where(parent >= 0, perms[i + 1][np.maximum(parent, 0)], -1)
        new_parents.append(p)
    inv = np.argsort(perms[0])
    return Hierarchy(np.where(fine >= 0, perms[0][np.maximum(fine, 0)], -1), perms[0][nearest],
                     probs.astype(np.float64), centres[inv], medians[inv], sds[inv], new_parents,
                     default, float(threshold), units)


def find_hierarchy(x: np.ndarray, min_size: int, *, max_units: int | None = 20_000,
                   threshold: float = OUTLIER_THRESHOLD, random_state: int | None = None
                   ) -> Hierarchy:
    """Concepts of at least `min_size` images in the unit rows of `x`, in layers."""
    rng = np.random.default_rng(random_state)
    with phase("summary"):
        summary = summarise(x, n_units(len(x), max_units), rng)
    units = len(summary.centres)
    logger.info("Clustering %d images as %d units.", len(x), units)
    with phase("unit groups (graph, UMAP, HDBSCAN)"):
        groups, max_iter = unit_groups(summary.centres, summary.weights, len(x), min_size, random_state)
    with phase("refinement"):
        start, k = starting_groups(groups[summary.labels])  # `refine`, with narrowed steps at scale
        centres, _ = mean_directions(x, start, k)
        narrow = narrowing(x, centres, (summary.centres, summary.labels))
        nearest, centres, sims = refine_centres(InMemory(x), centres, min_size, max_iter, narrow)
        sums, _ = label_sums(x, nearest, len(centres))
    with phase("layers"):
        # With `narrow`, refine's last labels were among candidates: merge_halves ends exactly.
        return layers_from_finest(InMemory(x), nearest, centres, sims, sums, min_size, threshold, units,
                                  exact=narrow is None, join=units < len(x))


def unit_groups(centres: np.ndarray, weights: np.ndarray, n_images: int, min_size: int,
                random_state: int | None = None) -> tuple[np.ndarray, int | None]:
    """Each unit's (each row of `centres`, `weights` images) finest group (-1: none) and the Lloyd's steps `refine` takes from them
    (None: its default).

    HDBSCAN's finest groups on a UMAP layout of the units. When the units are the images (a
    collection of at most MIN_UNITS), the groups are HDBSCAN's excess-of-mass concepts of the
    images' exact Ward tree (`exact.py`): no layout, no seed, the same concepts for every
    `random_state`; and refine just moves each image to its nearest concept, since Lloyd's
    steps to convergence gave back part of the seed agreement won (OpenClipart ARI 0.95 -> 0.89).
    """
    if len(centres) == n_images <= MAX_IMAGES:
        return excess_of_mass(image_tree(centres), min_size), 0
    groups = dense_groups(embed_units(centres, random_state), weights, min_size, "leaf")
    return groups, None


def layers_from_finest(rows: Rows, nearest: np.ndarray, centres: np.ndarray, sims: np.ndarray,
                       sums: np.ndarray, min_size: int, threshold: float, units: int,
                       exact: bool = True, join: bool = True) -> Hierarchy:
    """The hierarchy over the finest concepts (each row's `nearest`, its similarity, the
    concepts' centres and sums; `exact`: whether `nearest` searched every centre): halves of one
    concept joined (`join`: for summarised collections, whose finest groups over micro-clusters
    over-split), then Ward layers, with the default on the tree's first clear gap; without a gap
    the steady default layer of `stable.py`, whose passes go over `rows`."""
    with phase("halves joined"):
        nearest, centres, sims, sums, clear = merge_halves(rows, nearest, centres, sims, sums, min_size,
                                                           exact, join)
    means, sizes, tree, count, steady = _plan(nearest, sums, len(centres))
    if clear or not steady:
        layers = build_layers(means, sizes, count, tree, finest_clear=clear)
        return finish_hierarchy(nearest, sims, centres, layers.parents, layers.default, threshold, units)
    for _ in range(STEADY_ROUNDS):
        nearest, centres, sims, parents, default, sums = steady_layers(rows, nearest, centres, sums, tree, count,
                                                                       min_size)
        # The count again, from the tree of the redrawn concepts: they lie inside a partition
        # that does not change with the seed, so their tree does not either (HDBSCAN's finest
        # groups do: Fashion-MNIST's gave 11 or 12 by seed, the redrawn ones 11 for 6 seeds).
        _, _, again_tree, again, steady = _plan(nearest, sums, len(centres))
        if again == count or not steady:
            break
        tree, count = again_tree, again
    return finish_hierarchy(nearest, sims, centres, parents, default, threshold, units)


def merge_halves(rows: Rows, nearest: np.ndarray, centres: np.ndarray, sims: np.ndarray,
                 sums: np.ndarray, min_size: int, exact: bool = True, join: bool = True):
    """The finest concepts with those that are one concept cut in two joined (with `join`:
    `separation.merge_inseparable`), every row moved to its nearest joined concept (an exact
    pass, concepts under `min_size` dissolved: `exact_nearest`; none when nothing was joined
    and `nearest` is `exact` already), and whether the joined concepts are clearly apart
    (`separation.clearly_apart`). Returns nearest, centres, sims, sums, clear.

    Not for collections clustered image by image (at most MIN_UNITS): their concepts of a few
    dozen images in hundreds of dimensions project too noisily (24 clip-art images of three
    folders were joined into 2), and their groups come from the exact tree, not from HDBSCAN
    over micro-clusters, which is what cuts concepts in two."""
    k0 = len(centres)
    group, clear = np.arange(k0), False
    sizes = np.bincount(nearest, minlength=k0)
    if k0 >= 3 and join:
        tree = weighted_ward(sums / np.maximum(sizes, 1)[:, None], sizes)
        group, kept = merge_inseparable(rows, nearest, sums, tree)
        clear = clearly_apart(kept)
    k = int(group.max()) + 1
    if k == k0 and exact:
        return nearest, centres, sims, sums, clear
    joined = np.zeros((k, sums.shape[1]))
    np.add.at(joined, group, sums)
    if k < k0:
        logger.info("Joined %d finest concepts into %d (one concept cut in two).", k0, k)
    # Concepts already under min_size dissolve before the exact pass, not in a second one.
    count = np.bincount(group, weights=sizes, minlength=k)
    keep = count >= min_size if (count >= min_size).any() else count == count.max()
    nearest, joined_centres, sims, sums = exact_nearest(rows, directions(joined[keep]), min_size)
    return nearest, joined_centres, sims, sums, clear


def _plan(nearest: np.ndarray, sums: np.ndarray, k0: int):
    """The finest concepts' means and sizes, their Ward tree (None for 2 or fewer), the
    default count read off it, and whether the steady default layer applies (no gap, and a
    count between 2 and k0)."""
    sizes = np.bincount(nearest, minlength=k0)
    means = sums / np.maximum(sizes, 1)[:, None]
    tree = weighted_ward(means, sizes) if k0 > 2 else None
    count = default_count(tree) if tree is not None else k0
    steady = tree is not None and not gap_counts(tree, k0) and 2 <= count < k0
    return means, sizes, tree, count, steady


def from_labels(x: np.ndarray, labels: np.ndarray, probabilities: np.ndarray | None = None,
                threshold: float = OUTLIER_THRESHOLD) -> Hierarchy:
    """One layer from a clusterer's own labels (-1 kept as outliers), with centres and
    spreads for assigning new images: each concept's fence is widened to take in all its
    members, so `assign` gives the clusterer's concepts back for them."""
    labels = np.asarray(labels, np.int64)
    k = int(labels.max(initial=-1)) + 1
    if k == 0:
        centres, _ = mean_directions(x, np.zeros(len(x), np.int64), 1)
        k, labels = 1, np.zeros(len(x), np.int64)
    else:
        centres, _ = mean_directions(x, labels, k)
    idx, _ = top_matches(x, centres)
    nearest = np.where(labels >= 0, labels, idx[:, 0])
    own = np.einsum("nd,nd->n", x, centres[nearest])
    return finish_hierarchy(nearest, own.astype(np.float32), centres, [], 0, threshold, len(x),
                   inlier=labels >= 0, probabilities=probabilities)


def assign(x: np.ndarray, h: Hierarchy, layer: int = 0, memberships: bool = False):
    """Concepts of new rows at `layer`: nearest finest centre, -1 below its outlier fence.

    Returns labels and confidences, or with `memberships` labels and an (n, k_layer) matrix
    of each concept's membership (a coarse concept's is its best fine concept's).
    """
    idx, sims = top_matches(x, h.centres)
    nearest, s = idx[:, 0], sims[:, 0]
    conf = confidence(s, h.medians[nearest], h.sds[nearest], h.threshold)
    fine = np.where(conf > 0, nearest, -1)
    labels = layer_labels(fine, h.parents[:layer])[layer]
    if not memberships:
        return labels, np.where(fine >= 0, conf, 0.0)
    member = confidence(x @ h.centres.T, h.medians[None, :], h.sds[None, :], h.threshold)
    for parent in h.parents[:layer]:
        coarse = np.zeros((len(x), int(parent.max(initial=-1)) + 1))
        kept = parent >= 0  # a concept mapped to -1 (deleted to outliers) counts for none
        np.maximum.at(coarse.T, parent[kept], member.T[kept])
        member = coarse
    return labels, member
