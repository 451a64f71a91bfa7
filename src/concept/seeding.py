"""Seeded concepts: lists of words that steer the clustering towards concepts a user expects.

BERTopic's seeded topic modeling averages each document that matches a seed topic with the
seed's embedding before clustering and raises the seed words' weight in the topic words. For
images the steps are the same in spirit, but each is adapted to the two spaces a model has:

1. `seed_vectors`: each seed list ("beach", "sea") is embedded by the text encoder; its vector
   is the normalised mean of its words', in the joint image-text space.
2. `seed_matches`: which images match a seed, by `concept.editing.calibrated_matches` (each
   image's best seed, scored against the images that prefer other seeds in this collection).
   Image-text cosines are far below image-image ones (the modality gap), so no fixed cosine
   fits; the same calibration as zero-shot concepts does. A sigmoid-trained model (SigLIP)
   scores pairs as probabilities on its own, so there, as for zero-shot, an image matches its
   most probable seed at `matching.SIGMOID_MATCH` (`concept.matching`). Seeds matched by fewer
   than MIN_MATCHED images are dropped.
3. `pull_towards_seeds`: in the *clustering* space (the offline model's CNN features, which
   have no text side, or the joint space), each matched image moves `weight` of the way
   towards the mean direction of its seed's matched images, so the ordinary clustering
   finds them together. Unlike zero-shot concepts, nothing is assigned directly.
4. `reanchor`: the finest concepts found in the pulled space get centres and outlier fences
   measured on the *unpulled* vectors, and every image is assigned by the rule `transform`
   uses (nearest centre, -1 below its fence), the coarser layers kept. So `transform` gives
   the fitted images their labels and a loaded model assigns as before, with no pull to
   store or to apply to new images: the seeds shaped where the concepts are, the vectors
   decide who is in them.
5. `seeded_concepts` / `favour_seed_words`: in every layer, a concept that holds at least
   MIN_SHARE of a seed's matched images lists the seed's words first (the seed words are added
   to the candidate words, so they always can be).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from concept._errors import ConceptError
from concept.clustering.core import Hierarchy, finish_hierarchy
from concept.clustering.kernels import mean_directions, top_matches
from concept.embedding.base import l2_normalize

__all__ = ["MIN_MATCHED", "MIN_SHARE", "SEED_THRESHOLD", "SEED_WEIGHT", "check_seed_concepts",
           "favour_seed_words", "pull_towards_seeds", "reanchor", "seed_matches", "seed_vectors",
           "seeded_concepts"]

logger = logging.getLogger(__name__)

#: Share of the way a matched image's clustering vector moves towards its seed's matched
#: images' mean direction. BERTopic averages a document 3:1 with its seed's embedding, a fixed
#: point that moves the matched documents together; a pull towards their own mean only
#: tightens them, so it takes more: at 0.25 a split class on the synthetic test stayed split
#: (benchmarks/editing.py measures Fashion-MNIST).
SEED_WEIGHT = 0.75
#: Robust SDs above the images that prefer other seeds a match needs (`calibrated_matches`).
#: Lower than zero-shot's 3: a seed only nudges, and at 3 a single seed matched no image of a
#: class of a quarter of the synthetic test's images.
SEED_THRESHOLD = 2.0
#: A seed matched by fewer images is dropped (its mean direction would be one image's).
MIN_MATCHED = 3
#: A concept gets a seed's words when it holds at least this share of the seed's matched images.
MIN_SHARE = 0.5


def check_seed_concepts(seeds: Any) -> list[list[str]] | None:
    """The seed lists, stripped, or None; a ConceptError saying what to pass otherwise."""
    if seeds is None:
        return None
    example = "e.g. [['beach', 'sea'], ['cat', 'kitten']]"
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Sequence) or len(seeds) == 0:
        raise ConceptError(f"seed_concepts must be a non-empty list of lists of words, {example}; "
                           f"got {type(seeds).__name__}.")
    out = []
    for i, words in enumerate(seeds):
        if isinstance(words, (str, bytes)) or not isinstance(words, Sequence) or len(words) == 0:
            raise ConceptError(f"seed_concepts[{i}] must be a non-empty list of words, {example}; got {words!r}.")
        if not all(isinstance(w, str) and w.strip() for w in words):
            raise ConceptError(f"seed_concepts[{i}] holds an empty or non-string word: {list(words)!r}.")
        out.append(list(dict.fromkeys(w.strip() for w in words)))
    return out


def seed_vectors(embed_texts: Callable[[list[str]], np.ndarray], seeds: list[list[str]]) -> np.ndarray:
    """One unit vector per seed: the normalised mean of its words' text embeddings."""
    words = list(dict.fromkeys(w for ws in seeds for w in ws))
    vectors = l2_normalize(np.asarray(embed_texts(words), np.float32))
    row = {w: i for i, w in enumerate(words)}
    return l2_normalize(np.stack([vectors[[row[w] for w in ws]].mean(axis=0) for ws in seeds]))


def seed_matches(images: np.ndarray, seeds: np.ndarray, threshold: float | None = None,
                 embedder: Any = None) -> np.ndarray:
    """Each image's matched seed (-1: none), calibrated on the collection (see module doc;
    `threshold` in robust SDs, default SEED_THRESHOLD), or by a sigmoid-trained `embedder`'s
    own probability (`matching.text_image_matches`); seeds with fewer than MIN_MATCHED
    matches are dropped (their images get -1)."""
    from concept.matching import text_image_matches

    match, _ = text_image_matches(images, seeds, SEED_THRESHOLD if threshold is None else threshold, embedder)
    counts = np.bincount(match[match >= 0], minlength=len(seeds))
    few = np.flatnonzero(counts < MIN_MATCHED)
    if len(few):
        match[np.isin(match, few)] = -1
    return match


def pull_towards_seeds(space: np.ndarray, match: np.ndarray, weight: float | None = None) -> np.ndarray:
    """A copy of `space` (unit rows) where each matched row moved `weight` (default
    SEED_WEIGHT) of the way towards the mean direction of its seed's matched rows, renormalised."""
    weight = SEED_WEIGHT if weight is None else weight
    k = int(match.max(initial=-1)) + 1
    out = np.array(space, dtype=np.float32, copy=True)
    if k == 0:
        return out
    means, _ = mean_directions(space, match, k)
    rows = np.flatnonzero(match >= 0)
    out[rows] = l2_normalize((1 - weight) * space[rows] + weight * means[match[rows]])
    return out


def _compact_layers(fine: np.ndarray, parents: list[np.ndarray], keep: np.ndarray
                    ) -> tuple[np.ndarray, list[np.ndarray]]:
    """Drop the finest concepts not in `keep` (a boolean mask) and the coarser concepts left
    without children; ids closed up in order."""
    new = np.full(len(keep), -1, np.int64)
    new[keep] = np.arange(int(keep.sum()))
    fine = np.where(fine >= 0, new[np.maximum(fine, 0)], -1)
    out, alive = [], keep
    for parent in parents:
        kept = parent[alive]
        used = np.unique(kept[kept >= 0])
        up = np.full(int(parent.max(initial=-1)) + 1, -1, np.int64)
        up[used] = np.arange(len(used))
        out.append(np.where(kept >= 0, up[np.maximum(kept, 0)], -1))
        alive = up >= 0
    return fine, out


def reanchor(h: Hierarchy, space: np.ndarray) -> Hierarchy:
    """The hierarchy `h` (fitted on pulled vectors) re-measured on `space`, the vectors
    `transform` will see: each finest concept's centre is its members' mean direction there,
    every row goes to its nearest centre (an outlier below that concept's fence, from the
    spread of its nearest rows), concepts left without a row are dropped, and every layer is
    renumbered by size. The parent maps (the seeded clustering's layers) are kept."""
    fine, parents = h.fine, list(h.parents)
    for _ in range(len(h.centres) + 1):  # each pass can only drop concepts
        k = int(fine.max(initial=-1)) + 1
        centres, _ = mean_directions(space, fine, k)
        idx, sims = top_matches(space, centres)
        nearest, s = idx[:, 0], sims[:, 0].astype(np.float32)
        empty = np.bincount(nearest, minlength=k) == 0
        if not empty.any():
            break
        fine, parents = _compact_layers(fine, parents, ~empty)
    return finish_hierarchy(nearest, s, centres.astype(h.centres.dtype), parents, min(h.default, len(parents)),
                            float(h.threshold), h.n_units)


def seeded_concepts(labels: np.ndarray, match: np.ndarray | None, k: int) -> dict[int, list[int]]:
    """{concept id: [seed indices]}: the concept of `labels` (ids 0..k-1) holding at least
    MIN_SHARE of each seed's matched images (rows of `labels` beyond `match` are ignored)."""
    out: dict[int, list[int]] = {}
    if match is None or k == 0:
        return out
    labels = np.asarray(labels)[:len(match)]
    for seed in np.unique(match[match >= 0]):
        members = labels[match == seed]
        counts = np.bincount(members[members >= 0], minlength=k)
        best = int(np.argmax(counts))
        if counts[best] >= MIN_SHARE * len(members):
            out.setdefault(best, []).append(int(seed))
    return out


def favour_seed_words(described: list[list[tuple[str, float]]], seeded: dict[int, list[int]],
                      seeds: list[list[str]], score: Callable[[int, list[str]], list[float]],
                      n_words: int) -> list[list[tuple[str, float]]]:
    """Each concept's words with its seeds' words first (scored by `score(concept, words)`,
    best first), then its other words, `n_words` in all."""
    out = list(described)
    for c, ids in seeded.items():
        words = list(dict.fromkeys(w for j in ids for w in seeds[j]))
        first = sorted(zip(words, score(c, words)), key=lambda p: -p[1])
        taken = set(words)
        out[c] = (first + [(w, s) for w, s in described[c] if w not in taken])[:n_words]
    return out
