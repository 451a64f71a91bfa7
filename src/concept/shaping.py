"""What each edit of a fitted model does to its concept hierarchy, as functions over plain data.

`ConceptModel.reduce_concepts`, `merge_concepts`, `delete_concepts`, `update_concepts` and
`partial_fit` call these with the hierarchy, the clustering vectors and the layers; each returns
an `Edit` (the new hierarchy, the first layer that changed, and the map from the old concepts of
`labels_` to the new ones), which the model applies and describes again. The maps themselves
are built in `concept.editing` (see its docstring for how an edit is kept).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from concept._errors import ConceptError
from concept.clustering import Hierarchy, assign, layer_labels, mean_directions
from concept.editing import (
    add_concepts,
    delete_mapping,
    edit_base,
    merge_mapping,
    reduce_mapping,
    relayer,
)

__all__ = ["Edit", "add_images", "carry_names", "delete", "give_outliers", "merge", "outlier_candidates", "reduce"]

logger = logging.getLogger("concept.model")


@dataclass
class Edit:
    """A new hierarchy, the first layer whose concepts changed, and {old concept of `labels_`:
    new} as an array (-1: gone; None: the concepts are new, e.g. re-cut from a finer layer)."""

    hierarchy: Hierarchy
    first_changed: int
    mapping: np.ndarray | None


def reduce(h: Hierarchy, space: np.ndarray, layers: list[np.ndarray], sizes: list[int], layer: int,
           n: int) -> Edit:
    """Merge the concepts of `layers[layer]` into exactly `n` along the hierarchy (size-weighted
    Ward); more than it has re-cuts the coarsest finer layer that has at least `n`."""
    if n <= sizes[layer]:
        base, to_layer = edit_base(h)
        red = reduce_mapping(space, layers[layer], sizes[layer], n)
        new_h = relayer(h, base, np.where(to_layer >= 0, red[np.maximum(to_layer, 0)], -1), space)
        return Edit(new_h, base + 1, red)
    finer = [i for i in range(layer) if sizes[i] >= n]
    if not finer:
        raise ConceptError(f"Cannot make {n} concepts: the finest layer has {sizes[0]}. Concepts are only "
                           "merged, never split; refit with a lower min_concept_size for more.")
    base = max(finer)
    red = reduce_mapping(space, layers[base], sizes[base], n)
    return Edit(relayer(h, base, red, space), base + 1, None)


def merge(h: Hierarchy, space: np.ndarray, k: int, groups: Sequence[Sequence[int]]) -> Edit:
    """Each group of the `k` concepts of `labels_` merged into its smallest id."""
    mapping = merge_mapping(k, groups)
    base, to_layer = edit_base(h)
    new_h = relayer(h, base, np.where(to_layer >= 0, mapping[np.maximum(to_layer, 0)], -1), space)
    return Edit(new_h, base + 1, mapping)


def delete(h: Hierarchy, space: np.ndarray, layers: list[np.ndarray], sizes: list[int], layer: int,
           concepts: list[int], to: str) -> Edit:
    """The `concepts` of `layers[layer]` removed: their images become outliers or join the
    nearest remaining concept (`to`)."""
    k = sizes[layer]
    base, to_layer = edit_base(h)
    means, _ = mean_directions(space, layers[layer], k)
    base_means, _ = mean_directions(space, layers[base], sizes[base])
    layer_map, base_map = delete_mapping(k, list(concepts), means, to, to_layer, base_means)
    if (base_map < 0).all():
        raise ConceptError("Every concept would be deleted; keep at least one.")
    return Edit(relayer(h, base, base_map, space), base + 1, layer_map)


def outlier_candidates(h: Hierarchy, space: np.ndarray, labels: np.ndarray, nearest_labels: np.ndarray,
                       strategy: str, threshold: float, n_neighbors: int) -> np.ndarray:
    """`labels` with outliers given a concept by `strategy` (`editing.outlier_labels`): by their
    nearest finest centre in the clustering space, or by their neighbours' vote."""
    from concept._validation import check_integer, check_number
    from concept.editing import outlier_labels

    check_number("threshold", threshold, -1.0, 1.0)
    check_integer("n_neighbors", n_neighbors, minimum=1)
    own = np.einsum("nd,nd->n", space, h.centres[h.nearest])
    return outlier_labels(space, labels, strategy, float(threshold), candidates=h.fine < 0,
                          nearest_concept=nearest_labels, nearest_similarity=own, n_neighbors=int(n_neighbors))


def give_outliers(h: Hierarchy, space: np.ndarray, labels: np.ndarray, layer: int,
                  given: Any) -> tuple[Edit | None, int]:
    """Outliers of `labels` given the concepts in `new` (one per fitted image): each joins the
    finest concept of its new concept nearest to it, whose fence is widened to take it in;
    outliers that a widened fence now takes in join too. The edit (None: nothing changed) and
    how many images joined a concept."""
    from concept.clustering.hierarchy import confidence

    new = np.asarray(given)
    if new.shape != labels.shape or new.dtype.kind not in "iu":
        raise ConceptError(f"labels must be {len(labels)} integer concept ids, one per fitted image "
                           "(as returned by reduce_outliers).")
    new, k = new.astype(np.int64), int(labels.max(initial=-1)) + 1
    if new.min(initial=0) < -1 or new.max(initial=-1) >= k:
        raise ConceptError(f"labels must be concept ids of labels_ (0..{k - 1}) or -1.")
    changed = np.flatnonzero(new != labels)
    if (labels[changed] >= 0).any():
        raise ConceptError("update_concepts only gives outliers a concept; to change concepts use "
                           "merge_concepts, delete_concepts or reduce_concepts.")
    if (h.fine[changed] >= 0).any():
        raise ConceptError("Images of a concept deleted to outliers cannot be given a concept one by one: "
                           "delete it with to='nearest' instead.")
    if len(changed) == 0:
        return None, 0
    to_layer = layer_labels(np.arange(len(h.centres)), h.parents[:layer])[layer]
    fine, sds, probs = h.fine.copy(), h.sds.copy(), h.probabilities.copy()
    sims = space[changed] @ h.centres.T
    sims[to_layer[None, :] != new[changed][:, None]] = -np.inf
    chosen = np.argmax(sims, axis=1)
    best = sims[np.arange(len(changed)), chosen]
    need = (h.medians[chosen] - best) / h.threshold * 1.001 + 1e-6
    np.maximum.at(sds, chosen, need.astype(np.float32))
    fine[changed] = chosen
    widened = np.unique(chosen)
    own = np.einsum("nd,nd->n", space, h.centres[h.nearest])
    conf = confidence(own, h.medians[h.nearest], sds[h.nearest], h.threshold)
    extra = np.flatnonzero((fine < 0) & np.isin(h.nearest, widened) & (conf > 0))
    fine[extra] = h.nearest[extra]
    redo = np.isin(fine, widened)
    rows = np.flatnonzero(redo)
    mine = np.einsum("nd,nd->n", space[rows], h.centres[fine[rows]])
    probs[rows] = confidence(mine, h.medians[fine[rows]], sds[fine[rows]], h.threshold)
    probs[changed] = np.maximum(probs[changed], 1e-6)
    if len(extra):
        logger.info("%d more outliers joined a concept whose fence was widened.", len(extra))
    new_h = dataclasses.replace(h, fine=fine, sds=sds, probabilities=probs)
    return Edit(new_h, 0, np.arange(k)), int(len(changed) + len(extra))


def add_images(h: Hierarchy, space: np.ndarray, new_space: np.ndarray, min_size: int, k: int,
               clusterer) -> Edit:
    """New rows joined to the fitted concepts (`transform`'s rule); when at least `min_size`
    fit none, `clusterer(vectors, min_size)` finds concepts among them, added after the
    existing ids in every layer. `k`: the number of concepts of `labels_` (none renumbered)."""
    fine, _ = assign(new_space, h, 0)
    unplaced = np.flatnonzero(fine < 0)
    new_labels = np.full(len(new_space), -1, np.int64)
    if len(unplaced) >= max(min_size, 3):
        sub = clusterer(new_space[unplaced], min_size)
        new_labels[unplaced] = sub.layers[sub.default]
    return Edit(add_concepts(h, space, new_space, new_labels), 0, np.arange(k))


def carry_names(names: dict[int, str], mapping: np.ndarray | None) -> dict[int, str]:
    """Custom labels carried over an edit's map: a merged concept keeps the label of its
    smallest old id; none survive a re-cut (mapping None), which is logged."""
    as_dict = {} if mapping is None else {int(o): int(n) for o, n in enumerate(mapping)}
    out: dict[int, str] = {}
    for old, name in sorted(names.items()):
        new = as_dict.get(old, -1)
        if new >= 0 and new not in out:
            out[new] = name
    if mapping is None and names:
        logger.warning("The concepts were re-cut from a finer layer: their custom labels are dropped.")
    return out
