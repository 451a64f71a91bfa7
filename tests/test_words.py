"""Concept words: concepts that read the same are told apart (issue 25), c-TF-IDF over captions
and distinctive words are covered in test_captions.py and test_representation.py."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from conftest import nested_blobs

from concept import ConceptModel, evaluate
from concept.embedding.base import l2_normalize
from concept.words import MAX_SHARED_WORDS, alike_groups, shared_words, tell_apart


def test_shared_words_and_alike_groups():
    tops = [["card", "gift", "pin", "red"], ["card", "gift", "pin", "queen"], ["dog", "cat"],
            ["card", "gift", "pin", "king"], ["dog", "wolf"]]
    assert shared_words(tops) == {(0, 1): 3, (0, 3): 3, (1, 3): 3, (2, 4): 1}
    assert alike_groups(tops, 2) == [[0, 1, 3]]
    assert alike_groups(tops, 3) == []


def test_tell_apart_keeps_two_common_words_then_telling_ones():
    words = ["card", "gift", "pin", "hearts", "queen", "king", "joker", "dog", "cat", "bone"]
    same = [("card", 0.9), ("gift", 0.8), ("pin", 0.7), ("hearts", 0.6), ("queen", 0.5)]
    described = [same, list(same), list(same), [("dog", 0.9), ("bone", 0.8), ("cat", 0.7)]]
    scores = np.array([[0.9, 0.8, 0.7, 0.6, 0.9, 0.1, 0.1, 0, 0, 0],    # the queens
                       [0.9, 0.8, 0.7, 0.6, 0.1, 0.9, 0.1, 0, 0, 0],    # the kings
                       [0.9, 0.8, 0.7, 0.6, 0.1, 0.1, 0.9, 0, 0, 0],    # the jokers
                       [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, .9, .7, .8]])
    out = tell_apart(described, lambda members: scores[members], words, top_n=3)
    assert [[w for w, _ in d] for d in out[:3]] == [["card", "gift", "queen"], ["card", "gift", "king"],
                                                   ["card", "gift", "joker"]]
    assert [w for w, _ in out[0]][:3] == ["card", "gift", "queen"]
    assert [w for w, _ in out[1]][:3] == ["card", "gift", "king"]
    assert [w for w, _ in out[2]][:3] == ["card", "gift", "joker"]
    assert out[3] == described[3]  # in no group: unchanged
    for a, b in itertools.combinations(range(3), 2):
        assert len({w for w, _ in out[a]} & {w for w, _ in out[b]}) <= MAX_SHARED_WORDS
    assert dict(out[0])["card"] == 0.9  # the common words keep their own scores


class GroupWords:
    """Words at the coarse groups' centres (the sub-concepts of one group all read alike) and
    unrelated filler words (a vocabulary of more than 100, as `tell_apart` needs)."""

    name = "base"

    def __init__(self, centres: np.ndarray, per: int = 16, fillers: int = 120, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.vectors = {}
        for g, c in enumerate(centres):
            for i in range(per):
                self.vectors[f"g{g}w{i}"] = c + 0.02 * rng.normal(size=len(c)) / np.sqrt(len(c))
        for i in range(fillers):
            self.vectors[f"filler{i}"] = rng.normal(size=len(centres[0]))

    def embed_images(self, images, batch_size=32):
        raise AssertionError("precomputed embeddings only")

    def embed_texts(self, texts, batch_size=64):
        return l2_normalize(np.asarray([self.vectors[t] for t in texts], np.float32))


@pytest.fixture(scope="module")
def alike_model():
    x, groups, subs = nested_blobs(groups=4, subs=4, per=40, dim=48, seed=1)
    centres = l2_normalize(np.stack([x[groups == g].mean(axis=0) for g in range(4)]))
    texts = GroupWords(centres)
    model = ConceptModel(min_concept_size=12, embedding_model=texts, random_state=0, verbose=False, n_words=5)
    return model.fit(image_embeddings=x, docs=list(texts.vectors))


def test_no_two_concepts_of_a_layer_read_the_same(alike_model):
    layers_with_siblings = 0
    for topics in alike_model.layer_topics_:
        tops = [[w for w, _ in topics[c][:5]] for c in sorted(topics)]
        assert max(shared_words(tops).values(), default=0) <= MAX_SHARED_WORDS
        layers_with_siblings += len(topics) > 4
    assert layers_with_siblings  # the finest layer splits the 4 groups, so the test means something


def test_tell_apart_was_needed_here(alike_model, monkeypatch):
    """Without telling apart, the sub-concepts of a group would share all their words."""
    import concept.describing

    monkeypatch.setattr(concept.describing, "tell_apart", lambda described, *a, **k: described)
    x = alike_model.embeddings_
    plain = ConceptModel(**alike_model.get_params()).fit(image_embeddings=x, docs=alike_model._docs)
    tops = [[w for w, _ in plain.layer_topics_[0][c][:5]] for c in sorted(plain.layer_topics_[0])]
    assert max(shared_words(tops).values()) > MAX_SHARED_WORDS


def test_evaluate_reports_how_distinct_the_concepts_are(alike_model):
    scores = evaluate(alike_model)
    assert scores["max_shared_words"] <= MAX_SHARED_WORDS and scores["alike_concepts"] == 0
    assert -1.0 <= scores["closest_concepts"] <= 1.0
    alike_model_copy = ConceptModel(**alike_model.get_params())
    alike_model_copy.__dict__.update(alike_model.__dict__)
    same = {c: alike_model.topics_[0] for c in alike_model.topics_}  # every concept with the same words
    alike_model_copy.topics_ = same
    scores = evaluate(alike_model_copy)
    assert scores["max_shared_words"] == len(alike_model.topics_[0][:5])
    assert alike_model.n_concepts_ > 1 and scores["alike_concepts"] == alike_model.n_concepts_


def test_candidate_terms_keeps_words_and_reads_documents_for_their_terms():
    from sklearn.feature_extraction.text import CountVectorizer

    from concept.words import candidate_terms

    words = ["playing card", "dog", "traffic light", "Eiffel tower"]
    assert candidate_terms(words) is words  # words and phrases: taken as they are
    assert candidate_terms(None) is None and candidate_terms([]) == []
    documents = ["The red car stopped at the old bridge over the river.",
                 "Two dogs and a cat slept in the sun all afternoon long."]
    assert candidate_terms(documents) == ["afternoon", "bridge", "car", "cat", "dogs", "long", "old", "red",
                                          "river", "slept", "stopped", "sun"]
    mine = CountVectorizer(ngram_range=(1, 2), stop_words="english")
    terms = candidate_terms(documents, mine)
    assert "red car" in terms and "cat" in terms and not hasattr(mine, "vocabulary_")  # a copy was fitted
    assert candidate_terms(["the and of it is a to in", "to be or not to be is it"]) == []  # no terms


def test_caption_terms_shared_by_members_beat_one_members_name():
    """Issue 28: an object-per-caption concept ("sparrow bird", "eagle bird", "robin", "owl") is
    described by the kind its members share, not by one member's name."""
    from concept.words import words_by_captions

    docs = [["sparrow", "bird"], ["eagle", "bird"], ["robin"], ["owl"],
            ["car"], ["car"], ["bus"], ["truck", "bird"]]
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    ids = np.array([0, 1])
    plain = words_by_captions(labels, ids, docs, 3, concentration=0.5)
    shared = words_by_captions(labels, ids, docs, 3, concentration=0.5, sharing=0.5)
    assert plain[0][0][0] != "bird"  # a name one member has scores higher: c-TF-IDF's idf
    assert shared[0][0][0] == "bird" and shared[1][0][0] == "car"
    # the share counts members through their weights (a predicted caption's weight, too)
    weighted = words_by_captions(labels, ids, docs, 3, np.array([1, 1, 1, 1, 1, 1, 1, 0.0]), 0.5, 0.5)
    assert weighted[1][0][0] == "car" and "bird" not in [w for w, _ in weighted[1]]
