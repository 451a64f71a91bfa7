"""The image-to-text map learned from captions: when it is kept, what it changes, its fallback,
and its save/load."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from conftest import ColorEmbedder, blobs, random_unit

from concept import ConceptModel, ModelFileError
from concept.alignment import MIN_CAPTIONED, caption_ranks, fit_alignment

NAMES = ["apple", "racing", "violin"]


def _data(seed: int = 0):
    """Features in three blobs; plain shared-space embeddings that know nothing of them (random);
    the blob's name as caption for every other image."""
    feats, y = blobs(n_per=60, dim=16, seed=seed)
    x = random_unit(len(y), 8, seed=seed + 1)
    captions = [NAMES[label] if i % 2 == 0 else None for i, label in enumerate(y)]
    return x, feats, y, captions


def _fit(captions, x=None, feats=None, **kwargs):
    if x is None:
        x, feats, _, _ = _data()
    model = ConceptModel(min_concept_size=10, embedding_model=ColorEmbedder(), random_state=0, verbose=False,
                         **kwargs)
    return model.fit(image_embeddings=x, image_features=feats, docs=NAMES + ["red", "green", "blue"],
                     captions=captions)


def test_caption_ranks_count_identical_captions_once():
    images = np.eye(3, dtype=np.float32)
    captions = np.array([[0.6, 0.8, 0], [0, 0.5, 0.5], [0, 0.5, 0.5]], np.float32)
    # Image 1's own caption is beaten by caption 0; caption 2 is the same text as its own.
    ranks = caption_ranks(images, captions, np.array([0, 1, 1]))
    assert ranks.tolist() == [1, 2, 1]


def test_the_map_is_kept_when_it_retrieves_held_out_captions_better(caplog):
    x, feats, y, captions = _data()
    with caplog.at_level(logging.INFO, logger="concept"):
        model = _fit(captions, x, feats)
    assert model.alignment_ is not None and "Learned an image-text map" in caplog.text
    v = model.alignment_.validation
    assert v["aligned_median_rank"] < v["plain_median_rank"]
    assert model.aligned_embeddings_.shape == (len(x), 8)
    # Uncaptioned images are named through the map: every concept's first word is its blob's name.
    for c, words in model.topics.items():
        assert words[0] == NAMES[np.bincount(y[model.labels_ == c]).argmax()]
    # Text search compares the query with the images in the learned space.
    for name in NAMES:
        concept = model.find_concepts(name, top_n=1, kind="text")[0][0]
        assert model.topics[concept][0] == name
        _, images = model.search(name, n_images=10, kind="text")
        assert all(NAMES[y[i]] == name for i, _ in images)


def test_without_captions_the_plain_space_cannot_name_the_blobs():
    x, feats, y, _ = _data()
    model = _fit(None, x, feats)
    assert model.alignment_ is None and model.aligned_embeddings_ is None
    named = sum(model.topics[c][0] == NAMES[np.bincount(y[model.labels_ == c]).argmax()]
                for c in model.topics)
    assert named < len(model.topics)  # what the learned map fixes in the test above


def test_falls_back_to_the_plain_space_when_the_map_does_not_help(caplog):
    # The plain space already holds each image at its caption's text vector; features are noise.
    feats = random_unit(180, 16, seed=3)
    y = np.repeat(np.arange(3), 60)
    x = ColorEmbedder().embed_texts([NAMES[label] for label in y]) + 0.01 * random_unit(180, 8, seed=4)
    captions = [NAMES[label] for label in y]
    with caplog.at_level(logging.INFO, logger="concept"):
        model = _fit(captions, x, feats)
    assert model.alignment_ is None
    assert "No learned image-text map" in caplog.text and "plain space" in caplog.text


def test_too_few_captions_fall_back_with_a_log_line(caplog):
    x, feats, y, _ = _data()
    captions = [NAMES[label] if i < MIN_CAPTIONED - 1 else None for i, label in enumerate(y)]
    with caplog.at_level(logging.INFO, logger="concept"):
        model = _fit(captions, x, feats)
    assert model.alignment_ is None and f"at least {MIN_CAPTIONED} needed" in caplog.text


def test_fit_alignment_reports_both_spaces():
    feats, y = blobs(n_per=40, dim=16)
    texts = np.eye(8, dtype=np.float32)[y]
    plain = random_unit(len(y), 8, seed=5)
    alignment, report = fit_alignment(feats, texts, plain, y, random_state=0)
    assert alignment is not None and alignment.weights.shape == (16, 8) and alignment.bias.shape == (8,)
    assert report["aligned"]["median_rank"] == 1 and report["plain"]["median_rank"] > 1
    assert np.allclose(np.linalg.norm(alignment.transform(feats), axis=1), 1, atol=1e-5)


def test_the_learned_map_survives_save_and_load(tmp_path):
    x, feats, y, captions = _data()
    model = _fit(captions, x, feats)
    path = model.save(tmp_path / "m")
    loaded = ConceptModel.load(path, embedding_model=ColorEmbedder())
    np.testing.assert_array_equal(loaded.alignment_.weights, model.alignment_.weights)
    np.testing.assert_array_equal(loaded.alignment_.bias, model.alignment_.bias)
    assert loaded.alignment_.validation == model.alignment_.validation
    np.testing.assert_array_equal(loaded.aligned_embeddings_, model.aligned_embeddings_)
    assert loaded.topics == model.topics
    for name in NAMES:
        assert loaded.search(name, n_images=5, kind="text") == model.search(name, n_images=5, kind="text")


@pytest.mark.parametrize(("change", "message"), [
    (lambda s: s.arrays.__setitem__("alignment_weights", s.arrays["alignment_weights"][:, :3]),
     "'alignment_weights' has shape"),
    (lambda s: s.arrays.pop("alignment_bias"), "saved together"),
    (lambda s: s.arrays.__setitem__("alignment_bias", s.arrays["alignment_bias"] * np.nan), "NaN"),
    (lambda s: s.settings.__setitem__("alignment", {"alpha": "big"}), "settings['alignment']"),
])
def test_a_damaged_learned_map_is_a_clear_error_on_load(tmp_path, change, message):
    from concept.persistence import load_model_state, save_model_state

    x, feats, _, captions = _data()
    path = _fit(captions, x, feats).save(tmp_path / "m")
    state = load_model_state(path)
    change(state)
    save_model_state(state, path)
    with pytest.raises(ModelFileError, match="does not hold a valid fitted model") as info:
        ConceptModel.load(path, embedding_model=ColorEmbedder())
    assert message in str(info.value)
