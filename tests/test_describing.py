"""The describing stage of a fit (`concept.describing`): each layer's concepts -> concept
embeddings, exemplars and words; and again for the layers an edit changed."""

from __future__ import annotations

import logging
import zlib

import numpy as np
import pytest
from conftest import blobs

from concept._errors import EmbeddingError
from concept.describing import (
    Described,
    Images,
    Settings,
    Vocabulary,
    candidate_words,
    describe_again,
    describe_fit,
    describe_layer,
    edit_words,
    layer_words,
)
from concept.embedding.base import l2_normalize

DIM = 64
#: Four blobs of images; each has a word at its centre ("apple" for blob 0 ...), and sixteen
#: filler words sit at fixed pseudo-random points.
X, Y = blobs(40, 4, DIM, seed=2)
CENTRES = l2_normalize(np.stack([X[Y == i].mean(axis=0) for i in range(4)]))
BLOB_WORDS = ["apple", "boat", "cloud", "drum"]
FILLER = [f"filler{i}" for i in range(16)]
DOCS = BLOB_WORDS + FILLER
COARSE = np.array([0, 0, 1, 1])[Y]  # blobs 0+1 and 2+3


class Words:
    """A deterministic text 'model' in the images' space: a blob's word near its centre, any
    other word at a point seeded by its CRC32. No `name`: never cached on disk."""

    def __init__(self, dim: int = DIM):
        self.dim = dim
        self.calls = 0

    def embed_texts(self, texts, batch_size=64):
        self.calls += 1
        rows = []
        for t in texts:
            noise = np.random.default_rng(zlib.crc32(t.encode())).normal(size=self.dim) / np.sqrt(self.dim)
            rows.append(CENTRES[BLOB_WORDS.index(t)] + 0.3 * noise if t in BLOB_WORDS and self.dim == DIM
                        else noise)
        return l2_normalize(np.asarray(rows, np.float32))


def settings(**kw) -> Settings:
    base = {"n_words": 5, "n_exemplars": 4, "diversity": 0.3, "ctfidf": False, "vocabulary_size": 1000,
            "random_state": 0, "verbose": False}
    return Settings(**{**base, **kw})


def words_of(topics: dict[int, list[tuple[str, float]]]) -> dict[int, list[str]]:
    return {c: [w for w, _ in ws] for c, ws in topics.items()}


# -- candidate_words -------------------------------------------------------------------------
def test_candidate_words_are_the_docs_stripped_and_deduplicated():
    vocab = candidate_words(Words(), ["apple", " boat ", "apple", "", "   ", "boat", "cloud"], settings(), DIM)
    assert isinstance(vocab, Vocabulary)
    assert vocab.words == ["apple", "boat", "cloud"]
    assert vocab.vectors.shape == (3, DIM)
    np.testing.assert_allclose(np.linalg.norm(vocab.vectors, axis=1), 1.0, atol=1e-5)
    # fewer than ten words are not centred
    np.testing.assert_array_equal(vocab.center, np.zeros(DIM, np.float32))


def test_enough_candidate_words_are_centred_on_their_mean():
    embedder = Words()
    vocab = candidate_words(embedder, DOCS, settings(), DIM)
    raw = embedder.embed_texts(DOCS)
    np.testing.assert_allclose(vocab.center, raw.mean(axis=0), atol=1e-5)
    np.testing.assert_allclose(vocab.vectors, l2_normalize(raw - raw.mean(axis=0)), atol=1e-5)


def test_no_embedder_means_no_words(caplog):
    with caplog.at_level(logging.WARNING, logger="concept.model"):
        assert candidate_words(None, DOCS, settings(), DIM) is None
    assert "embedding_model is None" in caplog.text


@pytest.mark.parametrize("docs", [[], ["", "  "]])
def test_empty_docs_mean_no_words(docs, caplog):
    with caplog.at_level(logging.WARNING, logger="concept.model"):
        assert candidate_words(Words(), docs, settings(), DIM) is None
    assert "docs holds no words" in caplog.text


def test_seed_words_are_always_candidates():
    vocab = candidate_words(Words(), ["apple", "boat"], settings(seeds=[["zebra", "apple"], ["yak"]]), DIM)
    assert vocab.words == ["apple", "boat", "zebra", "yak"]
    assert vocab.vectors.shape == (4, DIM)


def test_frequent_caption_terms_are_candidates():
    terms = [["red", "apple"], ["red"], None, ["sky", "red"]]
    vocab = candidate_words(Words(), ["apple", "boat"], settings(), DIM, caption_terms=terms)
    assert vocab.words[:2] == ["apple", "boat"]
    assert vocab.words[2] == "red"  # the most frequent first
    assert set(vocab.words) == {"apple", "boat", "red", "sky"}


def test_words_from_another_space_are_an_error():
    with pytest.raises(EmbeddingError, match="embedded in 16 dimensions.*images have 64"):
        candidate_words(Words(16), DOCS, settings(), DIM)


# -- describe_layer --------------------------------------------------------------------------
def test_describe_layer_gives_k_rows_with_zero_rows_for_empty_ids():
    labels = np.where(Y == 1, 3, np.where(Y == 3, -1, Y))  # ids 0, 2, 3 used; 1 empty; blob 3 outliers
    embeddings, exemplars = describe_layer(X, labels, 5, settings())
    assert embeddings.shape == (5, DIM) and embeddings.dtype == np.float32
    assert not embeddings[[1, 4]].any()
    for c in (0, 2, 3):
        np.testing.assert_allclose(embeddings[c], l2_normalize(X[labels == c].mean(axis=0)), atol=1e-5)
    assert sorted(exemplars) == [0, 2, 3]


def test_exemplars_are_members_of_their_concept():
    _, exemplars = describe_layer(X, Y, 4, settings(n_exemplars=6))
    for c, rows in exemplars.items():
        assert len(rows) == 6 and len(set(rows)) == 6
        assert all(isinstance(r, int) for r in rows)
        assert (Y[rows] == c).all()


# -- layer_words -----------------------------------------------------------------------------
def fine_words(**kw) -> dict[int, list[str]]:
    s = settings(**kw)
    vocab = candidate_words(Words(), DOCS, s, DIM)
    concepts, _ = describe_layer(X, Y, 4, s)
    return words_of(layer_words(vocab, Y, concepts, Images(X, X.mean(axis=0)), s))


@pytest.mark.parametrize("ctfidf", [False, True], ids=["cosine", "ctfidf"])
def test_the_word_at_a_concepts_centre_comes_first(ctfidf):
    words = fine_words(ctfidf=ctfidf)
    assert [ws[0] for ws in words.values()] == BLOB_WORDS
    assert all(len(ws) == 5 for ws in words.values())


def test_without_a_vocabulary_every_concept_gets_no_words():
    concepts, _ = describe_layer(X, Y, 4, settings())
    assert layer_words(None, Y, concepts, Images(X, X.mean(axis=0)), settings()) == {0: [], 1: [], 2: [], 3: []}


def test_a_seeded_concept_has_its_seed_words_first():
    s = settings(seeds=[["zebra", "filler9"]])
    vocab = candidate_words(Words(), DOCS, s, DIM)
    concepts, _ = describe_layer(X, Y, 4, s)
    match = np.where(Y == 1, 0, -1)
    topics = layer_words(vocab, Y, concepts, Images(X, X.mean(axis=0)), s, seed_matches=match)
    words = words_of(topics)
    assert set(words[1][:2]) == {"zebra", "filler9"} and "boat" in words[1]
    assert len(words[1]) == 5
    assert topics[1][0][1] >= topics[1][1][1]  # seed words ordered by their similarity
    # the other concepts are described as without seeds
    unseeded = fine_words()
    assert {c: words[c] for c in (0, 2, 3)} == {c: unseeded[c] for c in (0, 2, 3)}


def test_caption_terms_come_before_the_vocabulary_words():
    s = settings()
    vocab = candidate_words(Words(), DOCS, s, DIM)
    concepts, _ = describe_layer(X, Y, 4, s)
    terms = [["striped", "sail"] if y == 1 else None for y in Y]
    words = words_of(layer_words(vocab, Y, concepts, Images(X, X.mean(axis=0)), s, terms))
    assert set(words[1][:2]) == {"sail", "striped"} and words[1][2] == "boat"
    assert words[0][0] == "apple"


# -- describe_fit / describe_again -----------------------------------------------------------
def fit(**kw) -> tuple[Described, Words]:
    embedder = Words()
    s = settings()
    return describe_fit(embedder, X, X, [Y, COARSE], [4, 2], 0, DOCS, s, **kw), embedder


def test_describe_fit_describes_every_layer():
    described, _ = fit()
    assert [e.shape for e in described.layer_embeddings] == [(4, DIM), (2, DIM)]
    assert [sorted(ex) for ex in described.layer_exemplars] == [[0, 1, 2, 3], [0, 1]]
    assert [ws[0] for ws in words_of(described.layer_topics[0]).values()] == BLOB_WORDS
    # a coarse concept's words come from both of its blobs
    coarse = words_of(described.layer_topics[1])
    assert {"apple", "boat"} <= set(coarse[0]) and {"cloud", "drum"} <= set(coarse[1])
    np.testing.assert_allclose(described.image_center, X.mean(axis=0), atol=1e-6)
    assert described.word_center is not None and described.caption_docs is None


def test_describe_fit_with_captions_keeps_each_images_terms():
    captions = [f"A striped {BLOB_WORDS[y]}" if i % 2 == 0 else None for i, y in enumerate(Y)]
    described, _ = fit(captions=captions)
    np.testing.assert_array_equal(described.captioned, [c is not None for c in captions])
    assert described.caption_docs[0] == ["striped", BLOB_WORDS[Y[0]]]
    words = words_of(described.layer_topics[0])
    assert all(BLOB_WORDS[c] in ws[:2] for c, ws in words.items())


def test_describe_again_keeps_the_lower_layers_and_recomputes_from_first():
    previous, embedder = fit()
    edited = np.where(Y == 0, 1, 0)  # blob 0 alone, the rest merged
    s = settings()
    out = describe_again(embedder, previous, [Y, edited], [4, 2], 1, DOCS, Images(X, previous.image_center), s)
    assert out.layer_embeddings[0] is previous.layer_embeddings[0]
    assert out.layer_exemplars[0] is previous.layer_exemplars[0]
    assert out.layer_topics[0] is previous.layer_topics[0]
    expected, exemplars = describe_layer(X, edited, 2, s)
    np.testing.assert_allclose(out.layer_embeddings[1], expected, atol=1e-6)
    assert out.layer_exemplars[1] == exemplars
    assert words_of(out.layer_topics[1])[1][0] == "apple"
    # the previous description is left as it was
    assert len(previous.layer_embeddings) == 2
    assert not np.allclose(previous.layer_embeddings[1], out.layer_embeddings[1])


def test_describe_again_gives_rows_added_since_the_fit_no_caption():
    captions = [f"striped {BLOB_WORDS[y]}" for y in Y]
    previous, embedder = fit(captions=captions)
    x = np.vstack([X, X[:5]])
    labels = np.concatenate([Y, Y[:5]])
    out = describe_again(embedder, previous, [labels, np.array([0, 0, 1, 1])[labels]], [4, 2], 0, DOCS,
                         Images(x, previous.image_center), settings())
    assert len(out.captioned) == len(x)
    assert out.captioned[: len(X)].all() and not out.captioned[len(X):].any()
    assert len(out.caption_docs) == len(x)
    assert [ws[0] for ws in words_of(out.layer_topics[0]).values()] == BLOB_WORDS


# -- edit_words ------------------------------------------------------------------------------
def test_edit_words_are_the_fits_docs():
    assert edit_words(["a", "b"], []) == ["a", "b"]
    assert edit_words(None, [{0: [("x", 1.0)]}]) is None  # the bundled vocabulary


def test_edit_words_of_an_old_folder_are_the_words_its_concepts_have():
    topics = [{0: [("cat", 0.5), ("dog", 0.4)]}, {0: [("dog", 0.3)], 1: [("ant", 0.2)]}]
    assert edit_words("unknown", topics) == ["ant", "cat", "dog"]
    assert edit_words("unknown", [{0: []}]) is None

