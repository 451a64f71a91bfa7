"""Shaping fitted concepts: reduce, merge, delete, outliers, zero-shot, new images, evaluation.

Pure functions over label arrays and the clustering `Hierarchy`; `ConceptModel`'s methods
(`reduce_concepts`, `merge_concepts`, `delete_concepts`, `reduce_outliers`, `update_concepts`,
`partial_fit`) call them and then describe the changed layers again.

How an edit is kept. The finest concepts of the hierarchy (their centres and outlier fences) are
what `transform` assigns new images by, and an edit never changes them. An edit of the layer of
`labels_` (layer L) is a *map* from the concepts of the layer below it (layer L - 1, or the
finest layer itself when L is 0) to the edited concepts: the layers below are kept, the edited
concepts become layer L (or a new layer 1 over the finest when L is 0), and the coarser layers
are rebuilt over the edited concepts by the same size-weighted Ward merging as the fit. So
`transform` gives exactly the edited concepts, and `save`/`load` need nothing new: the map is one
of the hierarchy's parent maps. A map may send a concept to -1 (its images become outliers).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

import numpy as np

from concept._errors import ConceptError
from concept.clustering.core import Hierarchy, by_size, layer_labels
from concept.clustering.hierarchy import build_layers, weighted_ward
from concept.clustering.kernels import label_sums, top_matches

__all__ = [
    "add_concepts",
    "named_concepts",
    "calibrated_matches",
    "concept_distinctness",
    "delete_mapping",
    "edit_base",
    "evaluate",
    "merge_mapping",
    "outlier_labels",
    "reduce_mapping",
    "relayer",
]


# -- maps between concept ids --------------------------------------------------------------------
def _check_ids(ids: Iterable, k: int, what: str) -> list[int]:
    out = []
    for c in ids:
        if not isinstance(c, (int, np.integer)) or isinstance(c, bool) or not 0 <= int(c) < k:
            raise ConceptError(f"{what}: {c!r} is not a concept id; this layer has concepts 0..{k - 1}.")
        out.append(int(c))
    return out


def _compact(target: np.ndarray) -> np.ndarray:
    """Renumber the kept targets 0..m-1 in their order (ids above a removed one move down)."""
    kept = np.unique(target[target >= 0])
    new = np.full(int(target.max(initial=-1)) + 1, -1, np.int64)
    new[kept] = np.arange(len(kept))
    return np.where(target >= 0, new[np.maximum(target, 0)], -1)


def merge_mapping(k: int, groups: Sequence[Sequence[int]]) -> np.ndarray:
    """Old id -> new id when each group of `groups` becomes one concept.

    A merged group takes the smallest id in it; the ids of the concepts that disappear are
    closed up (each id above them moves down by one per removed id below it), so the order of
    the concepts is kept. Groups must not share ids.
    """
    if isinstance(groups, (str, bytes)) or not isinstance(groups, Sequence) or not groups:
        raise ConceptError("merge_concepts needs a list of groups of concept ids, e.g. [[1, 2], [3, 4, 5]].")
    if all(isinstance(g, (int, np.integer)) for g in groups):
        groups = [groups]  # one group given flat: [1, 2]
    target = np.arange(k, dtype=np.int64)
    seen: set[int] = set()
    for group in groups:
        if isinstance(group, (str, bytes)) or not isinstance(group, Iterable):
            raise ConceptError(f"Each group must be a list of concept ids, not {group!r}.")
        ids = _check_ids(group, k, "merge_concepts")
        if seen & set(ids):
            raise ConceptError(f"Concepts {sorted(seen & set(ids))} are in more than one group.")
        seen |= set(ids)
        if ids:
            target[ids] = min(ids)
    return _compact(target)


def delete_mapping(k: int, deleted: Sequence[int], means: np.ndarray, to: str = "outliers",
                   base_to_layer: np.ndarray | None = None, base_means: np.ndarray | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Old id -> new id of the layer's concepts when `deleted` go, and the map of the base
    layer's concepts (the layer below; the layer itself when `base_to_layer` is None).

    `to="outliers"`: their images become outliers. `to="nearest"`: each base concept inside a
    deleted concept joins the remaining concept whose mean (`means`, unit rows in the
    clustering space) is nearest to its own mean (`base_means`), so the images go to their
    next-nearest concept. The remaining ids are closed up as in `merge_mapping`.
    """
    if to not in ("outliers", "nearest"):
        raise ConceptError(f"to must be 'outliers' or 'nearest', not {to!r}.")
    ids = sorted(set(_check_ids(deleted, k, "delete_concepts")))
    if not ids:
        raise ConceptError("delete_concepts needs at least one concept id.")
    if len(ids) == k and to == "nearest":
        raise ConceptError("Every concept would be deleted: nothing is left for their images to join.")
    target = np.arange(k, dtype=np.int64)
    target[ids] = -1
    layer_map = _compact(np.append(target, k))[:k]  # the sentinel keeps the length at k
    if base_to_layer is None:
        base_to_layer, base_means = np.arange(k), means
    base = np.where(base_to_layer >= 0, layer_map[np.maximum(base_to_layer, 0)], -1)
    if to == "nearest":
        alive = np.setdiff1d(np.arange(k), ids)
        moving = np.flatnonzero(np.isin(base_to_layer, ids))
        if len(moving):
            sims = base_means[moving] @ means[alive].T
            base[moving] = layer_map[alive[np.argmax(sims, axis=1)]]
    return layer_map, base


def reduce_mapping(x: np.ndarray, labels: np.ndarray, k: int, n: int) -> np.ndarray:
    """Old id -> new id merging the k concepts of `labels` into exactly `n`, by size-weighted
    Ward over their members in `x` (the merge the fit's coarser layers come from), new ids by
    size (0 the largest)."""
    from scipy.cluster.hierarchy import cut_tree

    if not 1 <= n <= k:
        raise ConceptError(f"Cannot make {n} concepts out of {k}.")
    if n == k:
        target = np.arange(k)
    elif n == 1:
        target = np.zeros(k, np.int64)
    else:
        sums, sizes = label_sums(x, labels, k)
        tree = weighted_ward(sums / np.maximum(sizes, 1)[:, None], np.maximum(sizes, 1))
        target = cut_tree(tree, n_clusters=[n])[:, 0].astype(np.int64)
    new = np.where(labels >= 0, target[np.maximum(labels, 0)], -1)
    return by_size(new, n)[target]


def relayer(h: Hierarchy, base: int, mapping: np.ndarray, x: np.ndarray) -> Hierarchy:
    """The hierarchy with layers 0..`base` kept, the edited concepts (`mapping`: layer `base`
    id -> new id, or -1 for outliers) as layer base + 1, the default, and coarser layers
    rebuilt over them by size-weighted Ward (ids by size). `x`: the clustering space."""
    mapping = np.asarray(mapping, np.int64)
    parents = [*h.parents[:base], mapping]
    edited = layer_labels(h.fine, parents)[-1]
    k = int(mapping.max(initial=-1)) + 1
    if k > 0:
        sums, sizes = label_sums(x, edited, k)
        coarse = build_layers(sums / np.maximum(sizes, 1)[:, None], np.maximum(sizes, 1)).parents
        labels = edited
        for parent in coarse:
            m = int(parent.max()) + 1
            up = np.where(labels >= 0, parent[np.maximum(labels, 0)], -1)
            perm = by_size(up, m)
            parents.append(perm[parent])
            labels = np.where(up >= 0, perm[np.maximum(up, 0)], -1)
    return dataclasses.replace(h, parents=parents, default=base + 1)


def edit_base(h: Hierarchy) -> tuple[int, np.ndarray]:
    """The layer an edit of the default layer maps from, and that layer's map into the
    default layer (the identity when the default is the finest layer)."""
    if h.default == 0:
        return 0, np.arange(len(h.centres), dtype=np.int64)
    return h.default - 1, h.parents[h.default - 1]


# -- outliers -----------------------------------------------------------------------------------
def outlier_labels(x: np.ndarray, labels: np.ndarray, strategy: str = "embeddings",
                   threshold: float = 0.0, *, candidates: np.ndarray | None = None,
                   nearest_concept: np.ndarray | None = None, nearest_similarity: np.ndarray | None = None,
                   n_neighbors: int = 10) -> np.ndarray:
    """New labels where outliers (-1; only the `candidates` among them, if given) get a
    concept, the others unchanged.

    strategy "embeddings": `nearest_concept`, the concept holding the row's nearest finest
    centre, when the cosine to that centre (`nearest_similarity`) is at least `threshold`.
    "neighbours": the most common concept among its `n_neighbors` nearest clustered rows of
    `x`, when at least `threshold` of them (a share, 0..1) have it.
    """
    if strategy not in ("embeddings", "neighbours", "neighbors"):
        raise ConceptError(f"strategy must be 'embeddings' or 'neighbours', not {strategy!r}.")
    labels = np.asarray(labels, np.int64)
    out = labels.copy()
    todo = labels < 0 if candidates is None else (labels < 0) & candidates
    rows = np.flatnonzero(todo)
    if len(rows) == 0 or (labels >= 0).sum() == 0:
        return out
    if strategy == "embeddings":
        if nearest_concept is None or nearest_similarity is None:
            raise ConceptError("strategy='embeddings' needs each row's nearest concept and its similarity.")
        ok = (nearest_concept[rows] >= 0) & (nearest_similarity[rows] >= threshold)
        out[rows[ok]] = nearest_concept[rows[ok]]
    elif strategy in ("neighbours", "neighbors"):
        members = np.flatnonzero(labels >= 0)
        kk = min(int(n_neighbors), len(members))
        idx, _ = top_matches(x[rows], x[members], k=kk)
        votes = labels[members][idx]
        counts = np.zeros((len(rows), int(labels.max()) + 1), np.int64)
        np.add.at(counts, (np.repeat(np.arange(len(rows)), kk), votes.reshape(-1)), 1)
        best = counts.argmax(axis=1)
        ok = counts[np.arange(len(rows)), best] / kk >= threshold
        out[rows[ok]] = best[ok]
    return out


# -- zero-shot ----------------------------------------------------------------------------------
#: A zero-shot match is an image whose centred similarity to a text is this many robust SDs
#: above the images that prefer other texts (see `calibrated_matches`).
ZEROSHOT_Z = 3.0


def calibrated_matches(images: np.ndarray, texts: np.ndarray, z: float = ZEROSHOT_Z
                       ) -> tuple[np.ndarray, np.ndarray]:
    """For each image, the text it matches (-1: none) and its calibrated score.

    Image-text cosines in a joint space sit far below image-image ones and differ from text to
    text (the modality gap: with CLIP a matching pair scores about 0.3, so BERTopic's fixed 0.7
    matches nothing), so no fixed threshold fits every model. Instead: both sides are centred
    on their own mean (the offset the modalities share); each image is a candidate for the
    text it is most similar to; and each text's threshold is set by the images that prefer
    other texts, its null distribution in this collection: a candidate matches when its
    similarity is at least `z` robust SDs (1.4826 x MAD; at least that of all images) above
    their median. One text alone is not centred (its mean is itself).
    """
    imgs = images - images.mean(axis=0) if len(images) > 1 else images
    txts = texts - texts.mean(axis=0) if len(texts) > 1 else texts
    imgs = imgs / np.maximum(np.linalg.norm(imgs, axis=1, keepdims=True), 1e-12)
    txts = txts / np.maximum(np.linalg.norm(txts, axis=1, keepdims=True), 1e-12)
    sims = imgs @ txts.T
    best = np.argmax(sims, axis=1)
    scores = np.empty_like(sims)
    for j in range(sims.shape[1]):
        every = sims[:, j]
        null = sims[best != j, j]
        null = null if len(null) >= 10 else every
        med = np.median(null)
        # The SD of all images is a floor: a null of one tight group (e.g. the images of the only
        # other name) would make anything else look significant.
        sd = max(1.4826 * float(np.median(np.abs(null - med))),
                 1.4826 * float(np.median(np.abs(every - np.median(every)))), 1e-6)
        scores[:, j] = (every - med) / sd
    score = scores[np.arange(len(images)), best]
    return np.where(score >= z, best, -1), score


# -- evaluation ---------------------------------------------------------------------------------
def evaluate(model_or_labels, true_labels: Sequence | None = None, *, space: np.ndarray | None = None,
             seeds: Sequence[int] = (), silhouette_sample: int = 5_000, random_state: int = 0) -> dict:
    """How good are the concepts? Scores of a fitted `ConceptModel` (or of a label array).

    With `true_labels`: NMI and ARI over all images (outliers count as one more concept), the
    same over clustered images only, and the fraction clustered. Without labels: the silhouette
    (cosine) in the clustering space on a sample of `silhouette_sample` clustered images, and,
    for a model and `seeds`, the seed stability: the mean and the lowest ARI between the
    concepts and those of a refit with each seed on the same vectors.

    For a model, how distinct the concepts of `labels_` are: `max_shared_words`, the most of
    their first 5 words two concepts share; `alike_concepts`, how many concepts share more than 2
    with another (the words then tell them apart, `concept.words.tell_apart`, so 0 unless the
    model was saved before that); `closest_concepts`, the highest cosine between two concept
    embeddings (near 1: two concepts look alike in the shared space).
    """
    from sklearn.metrics import (
        adjusted_rand_score,
        normalized_mutual_info_score,
        silhouette_score,
    )

    model = None if isinstance(model_or_labels, (np.ndarray, list, tuple)) else model_or_labels
    if model is not None:
        if not hasattr(model, "labels_"):
            from concept._errors import NotFittedError

            raise NotFittedError("This ConceptModel is not fitted yet: call fit() or load() first.")
        labels = np.asarray(model.labels_, np.int64)
        if space is None:
            space = model.features_ if model.features_ is not None else model.embeddings_
    else:
        labels = np.asarray(model_or_labels, np.int64).reshape(-1)
    clustered = labels >= 0
    out: dict[str, float] = {"n_images": len(labels), "n_concepts": len(np.unique(labels[clustered])),
                             "fraction_clustered": float(clustered.mean()) if len(labels) else 0.0}
    if true_labels is not None:
        truth = np.asarray(true_labels).reshape(-1)
        if len(truth) != len(labels):
            raise ConceptError(f"true_labels has {len(truth)} entries but there are {len(labels)} images; "
                               "give one per fitted image (in the order of labels_).")
        out["nmi"] = float(normalized_mutual_info_score(truth, labels))
        out["ari"] = float(adjusted_rand_score(truth, labels))
        if clustered.any():
            out["nmi_clustered"] = float(normalized_mutual_info_score(truth[clustered], labels[clustered]))
            out["ari_clustered"] = float(adjusted_rand_score(truth[clustered], labels[clustered]))
    if space is not None and out["n_concepts"] >= 2:
        if len(space) != len(labels):
            raise ConceptError(f"space has {len(space)} rows but there are {len(labels)} labels.")
        rows = np.flatnonzero(clustered)
        if len(rows) > silhouette_sample:
            rows = np.sort(np.random.default_rng(random_state).choice(rows, silhouette_sample, replace=False))
        out["silhouette"] = float(silhouette_score(space[rows], labels[rows], metric="cosine"))
    if model is not None and seeds:
        import copy

        aris = []
        for seed in seeds:
            other = copy.copy(model)
            other.random_state = int(seed)
            other.verbose = False
            refit = other.cluster_images(space)
            aris.append(adjusted_rand_score(labels, refit))
        out["seed_stability_ari"] = float(np.mean(aris))
        out["seed_stability_min_ari"] = float(np.min(aris))
    if model is not None:
        out.update(concept_distinctness(model.topics_, model.concept_embeddings_))
    return out


def concept_distinctness(topics: dict[int, list[tuple[str, float]]], embeddings: np.ndarray) -> dict[str, float]:
    """How distinct a layer's concepts are (see `evaluate`): top-5 words shared at most, concepts
    sharing more than 2 with another, and the highest cosine between two concept embeddings."""
    from concept.words import (
        COMPARED_WORDS,
        MAX_SHARED_WORDS,
        alike_groups,
        shared_words,
    )

    tops = [[w for w, _ in topics.get(c, [])[:COMPARED_WORDS]] for c in range(len(embeddings))]
    out: dict[str, float] = {"max_shared_words": max(shared_words(tops).values(), default=0),
                             "alike_concepts": sum(len(g) for g in alike_groups(tops, MAX_SHARED_WORDS))}
    norms = np.linalg.norm(embeddings, axis=1)
    live = np.flatnonzero(norms > 0)  # an emptied concept has a zero row
    if len(live) >= 2:
        unit = embeddings[live] / norms[live, None]
        sims = unit @ unit.T
        np.fill_diagonal(sims, -np.inf)
        out["closest_concepts"] = float(sims.max())
    return out


# -- names --------------------------------------------------------------------------------------
def named_concepts(names: dict[int, str], labels: dict[int, str] | Sequence[str], k: int) -> dict[int, str]:
    """`names` ({concept: name}) with `labels` ({id: name}, or a list of one name per concept
    0..k-1) set; an empty name removes one."""
    if isinstance(labels, dict):
        items = list(labels.items())
    elif isinstance(labels, Sequence) and not isinstance(labels, (str, bytes)):
        if len(labels) != k:
            raise ConceptError(f"A list of names needs one per concept ({k}), got {len(labels)}; "
                               "or pass {id: name}.")
        items = list(enumerate(labels))
    else:
        raise ConceptError("set_concept_labels takes {concept id: name} or a list of names.")
    out = dict(names)
    for c, name in items:
        if not isinstance(c, (int, np.integer)) or isinstance(c, bool) or not 0 <= int(c) < k:
            raise ConceptError(f"{c!r} is not a concept id; labels_ has concepts 0..{k - 1}.")
        if not isinstance(name, str):
            raise ConceptError(f"The name of concept {c} must be a string, not {type(name).__name__}.")
        if name.strip():
            out[int(c)] = name.strip()
        else:
            out.pop(int(c), None)
    return out


# -- new images ---------------------------------------------------------------------------------
def add_concepts(h: Hierarchy, x_old: np.ndarray, x_new: np.ndarray, new_labels: np.ndarray,
                 keep: bool = False) -> Hierarchy:
    """The hierarchy over the old rows and `x_new`, with the concepts of `new_labels` (ids
    0..m-1 among the new rows, -1 none) added as finest concepts k0..k0+m-1, each its own
    concept in every coarser layer (ids after the existing ones). No existing id changes.

    The new rows, and the old rows now nearer to a new centre than to their own, are assigned
    by the rule `transform` uses (nearest finest centre, -1 below its fence), so `transform`
    gives every fitted image its label. With `keep` (zero-shot concepts) the new rows keep
    the concepts of `new_labels` instead, and each new concept's fence is widened to take in
    all its members (as for a user's clusterer: `transform` gives a member its concept when
    that concept's centre is its nearest).
    """
    from concept.clustering.core import assign
    from concept.clustering.hierarchy import confidence, spread
    from concept.clustering.kernels import mean_directions

    new_labels = np.asarray(new_labels, np.int64)
    m = int(new_labels.max(initial=-1)) + 1
    k0 = len(h.centres)
    if m:
        centres, _ = mean_directions(x_new, new_labels, m)
        own = np.einsum("nd,nd->n", x_new, centres[np.maximum(new_labels, 0)]).astype(np.float32)
        medians, sds = spread(new_labels, own, m)
        if keep:
            lowest = np.full(m, np.inf, np.float32)
            ok = new_labels >= 0
            np.minimum.at(lowest, new_labels[ok], own[ok])
            need = np.where(np.isfinite(lowest), (medians - lowest) / h.threshold, 0.0)
            sds = np.maximum(sds, need * 1.001 + 1e-6).astype(np.float32)
        parents = []
        for parent in h.parents:
            top = int(parent.max(initial=-1)) + 1
            parents.append(np.concatenate([parent, top + np.arange(m)]))
        h = dataclasses.replace(h, centres=np.vstack([h.centres, centres]).astype(h.centres.dtype),
                                medians=np.concatenate([h.medians, medians]).astype(np.float32),
                                sds=np.concatenate([h.sds, sds]).astype(np.float32), parents=parents)
    fine_new, conf_new = assign(x_new, h, 0)
    idx_new, _ = top_matches(x_new, h.centres)
    if keep and m:
        ok = new_labels >= 0
        fine_new = np.where(ok, k0 + new_labels, fine_new)
        own_conf = confidence(own, h.medians[k0 + np.maximum(new_labels, 0)], h.sds[k0 + np.maximum(new_labels, 0)],
                              h.threshold)
        conf_new = np.where(ok, np.maximum(own_conf, 1e-6), conf_new)
    fine, nearest, probs = h.fine.copy(), h.nearest.copy(), h.probabilities.copy()
    if m and len(x_old):
        idx, sims = top_matches(x_old, h.centres[k0:])
        current = np.einsum("nd,nd->n", x_old, h.centres[nearest])
        moved = np.flatnonzero(sims[:, 0] > current)
        if len(moved):
            to = k0 + idx[moved, 0]
            conf = confidence(sims[moved, 0], h.medians[to], h.sds[to], h.threshold)
            nearest[moved] = to
            fine[moved] = np.where(conf > 0, to, -1)
            probs[moved] = np.where(conf > 0, conf, 0.0)
    return dataclasses.replace(h, fine=np.concatenate([fine, fine_new]),
                               nearest=np.concatenate([nearest, idx_new[:, 0]]),
                               probabilities=np.concatenate([probs, conf_new]).astype(np.float64))
