"""Bad arguments to ConceptModel are refused with a clear ConceptError before any embedding."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import ColorEmbedder, blobs, solid

from concept import ConceptError, ConceptModel
from concept._validation import (
    check_array,
    check_docs,
    check_integer,
    check_number,
    check_random_state,
)


class SpyEmbedder:
    """Counts calls; any call before a bad argument is refused means work was wasted."""

    def __init__(self):
        self.calls = []

    def embed_images(self, images, batch_size=32, **kwargs):
        self.calls.append("images")
        return np.ones((len(images), 8), np.float32) / np.sqrt(8)

    def embed_texts(self, texts, batch_size=64):
        self.calls.append("texts")
        return np.ones((len(texts), 8), np.float32) / np.sqrt(8)


IMAGES = [solid((10 * i, 0, 0)) for i in range(40)]


@pytest.mark.parametrize("seed", [-1, 2**40, "abc", 1.5, True])
def test_a_bad_random_state_is_refused_before_embedding(seed):
    spy = SpyEmbedder()
    with pytest.raises(ConceptError, match=r"random_state must be None or an integer seed in \[0, 4294967295\]"):
        ConceptModel(min_concept_size=5, embedding_model=spy, random_state=seed, verbose=False).fit(IMAGES)
    assert spy.calls == []


@pytest.mark.parametrize(("params", "message"), [
    ({"diversity": "x"}, "diversity must be a number in"),
    ({"diversity": float("nan")}, "diversity must be a number in"),
    ({"min_concept_size": "abc"}, "min_concept_size must be an integer >= 2"),
    ({"batch_size": -5}, "batch_size must be an integer >= 1"),
    ({"n_words": "10"}, "n_words must be an integer >= 1"),
    ({"sample_size": 3}, "sample_size"),
])
def test_bad_parameters_give_a_clear_error_not_a_traceback(params, message):
    spy = SpyEmbedder()
    with pytest.raises(ConceptError, match=message):
        ConceptModel(**{"min_concept_size": 5, "embedding_model": spy, **params}).fit(IMAGES)
    assert spy.calls == []


def test_docs_that_are_not_strings_are_refused():
    spy = SpyEmbedder()
    with pytest.raises(ConceptError, match=r"docs\[1\] is None"):
        ConceptModel(min_concept_size=5, embedding_model=spy, verbose=False).fit(IMAGES, docs=["dog", None])
    assert spy.calls == []
    assert check_docs(w for w in ["a", "b"]) == ["a", "b"]  # any iterable of strings
    with pytest.raises(ConceptError, match="not a single string"):
        check_docs("dog")


@pytest.mark.parametrize("embeddings", [[[1.0, 2.0], [3.0]], [["a", "b"], ["c", "d"]], "x", [[]], [1.0, 2.0]])
def test_ragged_string_or_flat_embeddings_are_refused(embeddings):
    with pytest.raises(ConceptError, match="image_embeddings"):
        ConceptModel(min_concept_size=5, embedding_model=None).fit(image_embeddings=embeddings)


def test_a_generator_of_images_is_refused_with_what_to_do():
    spy = SpyEmbedder()
    with pytest.raises(ConceptError, match=r"list\(images\)"):
        ConceptModel(min_concept_size=5, embedding_model=spy).fit(iter(IMAGES))
    assert spy.calls == []


def test_transform_refuses_mismatched_embeddings_and_features():
    x, _ = blobs()
    model = ConceptModel(min_concept_size=10, embedding_model=ColorEmbedder(), random_state=0, verbose=False)
    model.fit(image_embeddings=x, image_features=x, docs=["red", "green"])
    with pytest.raises(ConceptError, match="10 image_embeddings but 7 image_features"):
        model.transform(image_embeddings=x[:10], image_features=x[:7])
    with pytest.raises(ConceptError, match="only used together with image_embeddings"):
        model.transform(IMAGES[:3], image_features=x[:3])
    with pytest.raises(ConceptError, match="image_features must be a 2-D array of numbers"):
        model.transform(image_embeddings=x[:2], image_features=[[0.1] * 8, [0.2]])
    assert len(model.transform(image_embeddings=x[:10], image_features=x[:10])) == 10


def test_the_checks_themselves():
    assert check_integer("n", np.int64(3), minimum=1) == 3 and check_integer("n", None, allow_none=True) is None
    assert check_number("d", np.float32(0.5), 0, 1) == 0.5
    assert check_random_state(2**32 - 1) == 2**32 - 1 and check_random_state(None) is None
    x = np.zeros((3, 2), np.float32)
    assert check_array("x", x) is x  # no copy of a valid array
