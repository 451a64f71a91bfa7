"""Searching a fitted model (`concept.searching`): what a query is, its vector, and the concepts
and images most similar to it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import ColorEmbedder, random_unit, solid

from concept._errors import ConceptError, EmbeddingError, ImageLoadError
from concept.embedding.base import l2_normalize
from concept.searching import best, query_is_text, query_vector, rank, similarities


# -- query_is_text ---------------------------------------------------------------------------
def test_kind_text_or_image_decides(tmp_path):
    photo = tmp_path / "cat.png"
    solid((10, 20, 30)).save(photo)
    assert query_is_text("a cat", "text") is True
    assert query_is_text(str(photo), "text") is True  # the user said so
    assert query_is_text("a cat", "image") is False
    assert query_is_text(solid((0, 0, 0)), "image") is False


def test_auto_reads_a_string_as_an_image_only_when_it_names_a_file(tmp_path):
    photo = tmp_path / "cat.png"
    solid((10, 20, 30)).save(photo)
    assert query_is_text(str(photo), "auto") is False
    assert query_is_text(str(tmp_path / "dog.png"), "auto") is True  # no such file: a text
    assert query_is_text(str(tmp_path), "auto") is True  # a folder is not an image
    assert query_is_text("a photo of a cat", "auto") is True


def test_auto_reads_objects_as_images(tmp_path):
    assert query_is_text(solid((0, 0, 0)), "auto") is False
    assert query_is_text(np.zeros((4, 4, 3), np.uint8), "auto") is False
    assert query_is_text(Path(tmp_path / "cat.png"), "auto") is False


@pytest.mark.parametrize("query", ["a" * 5000, "x/" * 3000, "nul\0byte"], ids=["long", "long-path", "nul"])
def test_strings_that_cannot_be_file_names_are_texts(query):
    assert query_is_text(query, "auto") is True


def test_bad_kind_is_an_error():
    with pytest.raises(ConceptError, match="kind must be 'auto', 'text' or 'image', not 'picture'"):
        query_is_text("a cat", "picture")


def test_kind_text_needs_a_string():
    with pytest.raises(ConceptError, match="kind='text' needs a string query, not Image"):
        query_is_text(solid((0, 0, 0)), "text")


# -- query_vector ----------------------------------------------------------------------------
def test_query_vector_embeds_texts_and_images():
    embedder = ColorEmbedder()
    vec, is_text = query_vector(embedder, "red", "auto", 8)
    assert is_text is True
    np.testing.assert_allclose(vec, l2_normalize(embedder.embed_texts(["red"]))[0], atol=1e-6)
    vec, is_text = query_vector(embedder, solid((255, 0, 0)), "auto", 8)
    assert is_text is False
    assert vec.shape == (8,)
    np.testing.assert_allclose(np.linalg.norm(vec), 1.0, atol=1e-6)
    # a red image and the word "red" sit at the same point of this backend's space
    assert float(vec @ query_vector(embedder, "red", "text", 8)[0]) > 0.99


def test_query_vector_needs_an_embedder():
    with pytest.raises(EmbeddingError, match="Searching needs an embedding model"):
        query_vector(None, "a cat", "text", 8)


def test_query_vector_in_another_space_is_an_error():
    with pytest.raises(EmbeddingError, match="embedded in 8 dimensions but the concepts live in 512"):
        query_vector(ColorEmbedder(), "red", "text", 512)


def test_an_unreadable_query_image_is_an_error(tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    with pytest.raises(ImageLoadError, match="Could not load the query image"):
        query_vector(ColorEmbedder(), str(broken), "image", 8)


# -- similarities ----------------------------------------------------------------------------
IMAGE_CENTER = np.array([1.0, 0.0, 0.0], np.float32)
WORD_CENTER = np.array([0.0, 1.0, 0.0], np.float32)
#: Row 0 leans towards e2 from the image mean, row 1 sits at the word mean.
ROWS = l2_normalize(np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.0]], np.float32))
QUERY = l2_normalize(np.array([0.0, 1.0, 1.0], np.float32))


def test_a_text_is_compared_after_centring_each_modality():
    plain = ROWS @ QUERY
    centred = similarities(QUERY, True, ROWS, IMAGE_CENTER, WORD_CENTER)
    assert plain[1] > plain[0]  # raw cosine favours the row at the word mean...
    assert centred[0] > 0.8 and centred[1] < 0  # ...centred, the row that leans where the text does
    expected = l2_normalize(ROWS - IMAGE_CENTER) @ l2_normalize(QUERY - WORD_CENTER)
    np.testing.assert_allclose(centred, expected, atol=1e-6)


def test_an_image_or_an_uncentred_text_is_compared_directly():
    np.testing.assert_allclose(similarities(QUERY, False, ROWS, IMAGE_CENTER, WORD_CENTER), ROWS @ QUERY)
    np.testing.assert_allclose(similarities(QUERY, True, ROWS, IMAGE_CENTER, None), ROWS @ QUERY)


# -- best ------------------------------------------------------------------------------------
def test_best_gives_the_highest_first_and_ties_in_row_order():
    sims = np.array([0.1, 0.5, -1.0, 0.5, 0.3])
    assert best(sims, 3) == [(1, 0.5), (3, 0.5), (4, 0.3)]
    assert best(sims, 10) == [(1, 0.5), (3, 0.5), (4, 0.3), (0, 0.1), (2, -1.0)]
    assert best(sims, 0) == [] and best(sims, -2) == []
    assert all(type(i) is int and type(s) is float for i, s in best(sims, 5))


# -- rank ------------------------------------------------------------------------------------
def test_rank_gives_concepts_and_images_best_first():
    concepts, images = random_unit(6, 3, seed=1), random_unit(20, 3, seed=2)
    top_concepts, top_images = rank(QUERY, True, 2, 4, concepts, images, IMAGE_CENTER, WORD_CENTER)
    assert top_concepts == best(similarities(QUERY, True, concepts, IMAGE_CENTER, WORD_CENTER), 2)
    assert top_images == best(similarities(QUERY, True, images, IMAGE_CENTER, WORD_CENTER), 4)
    assert len(top_concepts) == 2 and len(top_images) == 4
    assert rank(QUERY, True, 2, 0, concepts, images, IMAGE_CENTER, WORD_CENTER)[1] == []


def test_rank_compares_a_text_in_the_learned_space_when_aligned():
    concepts, images = random_unit(6, 3, seed=1), random_unit(20, 3, seed=2)
    aligned_concepts, aligned_images = random_unit(6, 3, seed=3), random_unit(20, 3, seed=4)
    query = l2_normalize(QUERY - WORD_CENTER)
    top_concepts, top_images = rank(QUERY, True, 3, 5, concepts, images, IMAGE_CENTER, WORD_CENTER,
                                    aligned=(aligned_concepts, aligned_images))
    assert top_concepts == best(aligned_concepts @ query, 3)
    assert top_images == best(aligned_images @ query, 5)
    assert top_concepts != rank(QUERY, True, 3, 5, concepts, images, IMAGE_CENTER, WORD_CENTER)[0]
    # without a word centre the query is used as it is
    assert rank(QUERY, True, 3, 5, concepts, images, IMAGE_CENTER, None,
                aligned=(aligned_concepts, aligned_images))[0] == best(aligned_concepts @ QUERY, 3)


def test_rank_compares_an_image_query_directly_even_when_aligned():
    concepts, images = random_unit(6, 3, seed=1), random_unit(20, 3, seed=2)
    aligned = (random_unit(6, 3, seed=3), random_unit(20, 3, seed=4))
    top_concepts, top_images = rank(QUERY, False, 3, 5, concepts, images, IMAGE_CENTER, WORD_CENTER, aligned)
    assert top_concepts == best(concepts @ QUERY, 3)
    assert top_images == best(images @ QUERY, 5)
