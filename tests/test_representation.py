"""representation.py, mmr.py, ctfidf.py: exemplars, diversity and words."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import blobs

from concept.ctfidf import ctfidf, top_terms
from concept.mmr import mmr
from concept.representation import (
    describe_concepts,
    nearest_words,
    words_by_ctfidf,
)
from concept.words import distinctive_words


def unit(v):
    v = np.asarray(v, dtype=np.float32)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def test_mmr_trades_relevance_for_diversity():
    query = unit([1, 0, 0])
    cands = unit([[1, 0.01, 0], [1, 0.02, 0], [0.7, 0.7, 0], [0.7, 0, 0.7]])
    assert mmr(query, cands, 2, diversity=0.0) == [0, 1]  # the two near-duplicates
    assert mmr(query, cands, 2, diversity=0.7)[1] in (2, 3)  # something different instead
    assert mmr(query, cands, 10, 0.3) and len(mmr(query, cands, 10, 0.3)) == 4
    with pytest.raises(ValueError):
        mmr(query, cands, 2, diversity=1.5)


def test_describe_concepts_exemplars_are_members_and_concepts_are_unit_norm():
    x, y = blobs(n_per=40)
    concepts = describe_concepts(x, y, n_exemplars=5, diversity=0.3)
    np.testing.assert_array_equal(concepts.ids, [0, 1, 2])
    np.testing.assert_allclose(np.linalg.norm(concepts.embeddings, axis=1), 1, atol=1e-5)
    for c, ex in zip(concepts.ids, concepts.exemplars, strict=True):
        assert len(ex) == 5 and (y[ex] == c).all() and len(set(ex.tolist())) == 5


def test_ctfidf_prefers_terms_specific_to_a_concept():
    counts = np.array([[5, 5, 0], [5, 0, 5]])  # term 0 is everywhere
    scores = ctfidf(counts)
    assert scores[0, 1] > scores[0, 0] and scores[1, 2] > scores[1, 0]
    assert top_terms(scores, ["common", "a", "b"], 1) == [[("a", pytest.approx(scores[0, 1]))],
                                                         [("b", pytest.approx(scores[1, 2]))]]


def test_words_by_similarity_and_ctfidf_are_sorted_and_bounded():
    x, y = blobs(n_per=30)
    words = ["w%d" % i for i in range(6)]
    w = unit(np.random.default_rng(1).normal(size=(6, x.shape[1])))
    concepts = describe_concepts(x, y)
    by_sim = distinctive_words(concepts.embeddings, w, words, 10, weight=0.0)  # plain similarity
    assert all(len(ws) == 6 and [s for _, s in ws] == sorted((s for _, s in ws), reverse=True) for ws in by_sim)
    by_tfidf = words_by_ctfidf(x, y, concepts.ids, w, words, 3, words_per_image=2, random_state=0)
    assert all(1 <= len(ws) <= 3 for ws in by_tfidf)
    assert nearest_words(x[:5], w, 2).shape == (5, 2)


def test_top_words_by_partition_equal_a_stable_full_sort_even_on_ties():
    from concept.words import _top_columns

    rng = np.random.default_rng(0)
    for _ in range(30):
        scores = np.round(rng.normal(size=(7, 300)), 1)  # many equal scores
        n = int(rng.integers(1, 301))
        want = np.argsort(-scores, axis=1, kind="stable")[:, :n]
        for a, b in zip(_top_columns(scores, n), want, strict=True):
            np.testing.assert_array_equal(a, b)
