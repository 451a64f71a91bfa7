"""Describe concepts: an embedding, exemplar images (MMR) and words, from cluster labels alone.

Nothing here depends on how the labels were made, so any clusterer that returns labels works
(the reference read hdbscan's private condensed tree to find exemplars).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import sparse

from concept.ctfidf import ctfidf, top_terms
from concept.embedding.base import l2_normalize
from concept.mmr import mmr

#: Rows of embeddings compared against all words at once (bounds memory at ~CHUNK x n_words floats).
CHUNK = 2048


@dataclass
class Concepts:
    """Concept ids, their unit-norm embeddings and exemplar row indices (best first)."""

    ids: np.ndarray
    embeddings: np.ndarray
    exemplars: list[np.ndarray]


def describe_concepts(embeddings: np.ndarray, labels: np.ndarray, *, n_exemplars: int = 9,
                      diversity: float = 0.3, n_candidates: int | None = None,
                      groups: np.ndarray | None = None) -> Concepts:
    """Embed each concept as the normalised mean of its members, then pick exemplars.

    Exemplars: the `n_candidates` members closest to the concept embedding (default
    ``max(3 * n_exemplars, 20)``), of which MMR keeps `n_exemplars` relevant but mutually
    diverse ones. A concept smaller than `n_exemplars` gets all its members. Members are
    found by one sort of the labels, so thousands of concepts cost one pass, not one each.
    `groups`: each row's duplicate group (-1: in none, `concept.duplicates.duplicate_groups`): of a
    group, only its member closest to the concept embedding is a candidate, and MMR skips groups
    already shown, so no two exemplars are copies of one image.
    """
    labels = np.asarray(labels, dtype=np.int64)
    ids = np.unique(labels[labels >= 0])
    n_candidates = n_candidates or max(3 * n_exemplars, 20)
    centroids = np.zeros((len(ids), embeddings.shape[1]), dtype=np.float32)
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.concatenate([ids, [np.iinfo(np.int64).max]]))
    exemplars = []
    for row in range(len(ids)):
        members = order[bounds[row]:bounds[row + 1]]
        rows = embeddings[members]  # one gather: at 1,000,000 images every layer moves 1.5 GB
        centroid = l2_normalize(rows.mean(axis=0))
        centroids[row] = centroid
        sims = rows @ centroid
        ranked = members[np.argsort(-sims, kind="stable")]
        if groups is not None:  # the first (closest) member of each group stands for it
            group = groups[ranked]
            first = np.zeros(len(ranked), bool)
            first[np.unique(group, return_index=True)[1]] = True
            ranked = ranked[(group < 0) | first]
        closest = ranked[:n_candidates]
        chosen = mmr(centroid, embeddings[closest], n_exemplars, diversity,
                     None if groups is None else groups[closest])
        exemplars.append(closest[chosen])
    return Concepts(ids, centroids, exemplars)


def layer_exemplars(embeddings: np.ndarray, layers: Sequence[np.ndarray], *, n_exemplars: int, diversity: float,
                    groups: np.ndarray | None = None) -> list[dict[int, list[int]]]:
    """Each layer's exemplars ({concept: rows}) picked again, e.g. once the duplicate `groups` are known."""
    out = []
    for labels in layers:
        d = describe_concepts(embeddings, labels, n_exemplars=n_exemplars, diversity=diversity, groups=groups)
        out.append({int(c): [int(i) for i in ex] for c, ex in zip(d.ids, d.exemplars)})
    return out


def nearest_words(vectors: np.ndarray, word_embeddings: np.ndarray, top_n: int) -> np.ndarray:
    """Indices of the `top_n` most similar words for each row, best first (chunked)."""
    top_n = min(top_n, len(word_embeddings))
    out = np.empty((len(vectors), top_n), dtype=np.int64)
    for start in range(0, len(vectors), CHUNK):
        sims = vectors[start:start + CHUNK] @ word_embeddings.T
        part = np.argpartition(-sims, top_n - 1, axis=1)[:, :top_n]
        order = np.argsort(-np.take_along_axis(sims, part, axis=1), axis=1, kind="stable")
        out[start:start + CHUNK] = np.take_along_axis(part, order, axis=1)
    return out


def words_by_ctfidf(embeddings: np.ndarray, labels: np.ndarray, ids: np.ndarray,
                    word_embeddings: np.ndarray, words: Sequence[str], top_n: int, *,
                    words_per_image: int = 5, vectorizer=None, max_images_per_concept: int = 2000,
                    random_state: int | None = None) -> list[list[tuple[str, float]]]:
    """Each concept's `top_n` words by c-TF-IDF, best first.

    Every member image becomes a pseudo-document made of its `words_per_image` nearest words;
    the documents are grouped per concept and scored by c-TF-IDF. With a scikit-learn
    `vectorizer` (e.g. CountVectorizer(ngram_range=(1, 2))) the grouped documents are
    tokenised by it, so multi-word docs yield their tokens; otherwise each word is a term.
    Large concepts are sampled (`max_images_per_concept`) to bound the cost.
    """
    if len(words) == 0:
        return [[] for _ in ids]
    rng = np.random.default_rng(random_state)
    rows, docs = [], []
    for row, concept in enumerate(ids):
        members = np.flatnonzero(labels == concept)
        if len(members) > max_images_per_concept:
            members = np.sort(rng.choice(members, max_images_per_concept, replace=False))
        nearest = nearest_words(embeddings[members], word_embeddings, words_per_image)
        rows.append(np.full(nearest.size, row))
        docs.append(nearest.ravel())
    if vectorizer is None:
        counts = sparse.csr_matrix(
            (np.ones(sum(d.size for d in docs)), (np.concatenate(rows), np.concatenate(docs))),
            shape=(len(ids), len(words)),
        )
        terms = list(words)
    else:
        texts = [" ".join(words[j] for j in d) for d in docs]
        counts = vectorizer.fit_transform(texts)
        terms = list(vectorizer.get_feature_names_out())
    return top_terms(ctfidf(counts), terms, top_n)
