"""Which images match which texts (`concept.matching`): a sigmoid-trained model's (SigLIP's)
own probabilities in zero-shot names, seed matching and text search, the collection
calibration for every other model. A fake SigLIP with a chosen scale and bias on hand-made
vectors, where the images each text must match are known."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import blobs

from concept.clustering import Hierarchy, find_hierarchy
from concept.clustering.hierarchy import OUTLIER_THRESHOLD
from concept.editing import calibrated_matches
from concept.embedding.base import l2_normalize
from concept.finding import (
    ClusterSettings,
    find_hierarchy_for_fit,
    seeded_hierarchy,
    zeroshot_hierarchy,
)
from concept.matching import SIGMOID_MATCH, model_probability, text_image_matches
from concept.searching import rank
from concept.seeding import seed_matches

#: Eight blobs in 64-d. "cat" and "cup" sit at the centres of blobs 0 and 4 (raw cosine above
#: 0.9 for each of their images); "dog" leans towards blob 2 (cosine 0.34 to 0.51 there, at most
#: 0.13 elsewhere): the calibration of a softmax model matches all 40 images of blob 2 to it,
#: a SigLIP whose pairs need cosine 0.6 to be likely matches none.
X, Y = blobs(40, 8, 64, seed=0)
CENTRES = l2_normalize(np.stack([X[Y == i].mean(axis=0) for i in range(8)]))


def _leaning(towards: np.ndarray, cos: float, seed: int = 1) -> np.ndarray:
    """A unit vector at cosine `cos` to the unit vector `towards`."""
    u = np.random.default_rng(seed).normal(size=len(towards))
    u -= (u @ towards) * towards
    return (cos * towards + np.sqrt(1 - cos * cos) * u / np.linalg.norm(u)).astype(np.float32)


NAMES = ["cat", "dog", "cup"]
TEXTS = np.stack([CENTRES[0], _leaning(CENTRES[2], 0.45), CENTRES[4]])


class FakeSiglip:
    """Texts at chosen vectors, scored as SigLIP scores a pair: sigmoid(10 * cos - 6), so a pair
    is likely (probability 0.5) from cosine 0.6."""

    name = "fake-siglip"
    is_sigmoid = True
    logit_scale, logit_bias = 10.0, -6.0

    def __init__(self, vectors: dict[str, np.ndarray] | None = None):
        self.vectors = dict(zip(NAMES, TEXTS)) if vectors is None else vectors

    def embed_texts(self, texts, batch_size=64):
        return np.stack([self.vectors[t] for t in texts]).astype(np.float32)

    def text_image_probability(self, cos):
        return 1.0 / (1.0 + np.exp(-(self.logit_scale * np.asarray(cos, np.float64) + self.logit_bias)))


class FakeClip(FakeSiglip):
    """The same texts on a softmax-trained model: no absolute probability."""

    is_sigmoid = False


SIGLIP, CLIP = FakeSiglip(), FakeClip()


def expected_match() -> np.ndarray:
    """What SigLIP's probabilities say: blob 0 is "cat", blob 4 "cup", nothing else matches."""
    return np.select([Y == 0, Y == 4], [0, 2], -1)


def settings() -> ClusterSettings:
    return ClusterSettings(min_concept_size=10, sample_size=None, outlier_threshold=OUTLIER_THRESHOLD, random_state=0)


def core(vectors: np.ndarray, size: int) -> Hierarchy:
    return find_hierarchy(vectors, size, random_state=0)


# -- the decision -------------------------------------------------------------------------------
def test_only_a_sigmoid_model_gives_its_probability():
    assert model_probability(None) is None
    assert model_probability(object()) is None
    assert model_probability(CLIP) is None
    probability = model_probability(SIGLIP)
    assert probability is not None and probability(0.6) == pytest.approx(SIGMOID_MATCH)


def test_a_sigmoid_model_matches_by_its_own_probability_of_the_raw_cosine():
    match, score = text_image_matches(X, TEXTS, 3.0, SIGLIP)
    np.testing.assert_array_equal(match, expected_match())
    raw = l2_normalize(X) @ l2_normalize(TEXTS).T  # not centred
    np.testing.assert_allclose(score, SIGLIP.text_image_probability(raw.max(axis=1)), rtol=1e-6)
    assert (score[match >= 0] >= SIGMOID_MATCH).all() and (score[match < 0] < SIGMOID_MATCH).all()
    # the robust-SD threshold is the calibration's, not used here
    np.testing.assert_array_equal(text_image_matches(X, TEXTS, 100.0, SIGLIP)[0], match)


def test_any_other_model_keeps_the_collection_calibration():
    for embedder in (None, CLIP, object()):
        match, score = text_image_matches(X, TEXTS, 3.0, embedder)
        reference = calibrated_matches(X, TEXTS, 3.0)
        np.testing.assert_array_equal(match, reference[0])
        np.testing.assert_array_equal(score, reference[1])
    # which differs here: the calibration takes "dog" for blob 2, SigLIP's probabilities do not
    assert (match[Y == 2] == 1).all()


def test_a_sigmoid_model_can_match_what_the_calibration_cannot():
    # one name that every image is likely to match: the calibration finds no image above the
    # others, the model's probability matches them all
    everything = FakeSiglip()
    everything.logit_bias = 6.0
    match, _ = text_image_matches(X, TEXTS[:1], 3.0, everything)
    assert (match == 0).all()
    assert (calibrated_matches(X, TEXTS[:1], 3.0)[0] == -1).mean() > 0.5


# -- zero-shot names ----------------------------------------------------------------------------
def test_zero_shot_on_a_sigmoid_model_assigns_exactly_the_likely_images():
    h, found = zeroshot_hierarchy(X, X, TEXTS, NAMES, 3.0, 10, settings(), core, SIGLIP)
    assert sorted(found.values()) == ["cat", "cup"]  # "dog" matched no image
    for concept, name in found.items():
        np.testing.assert_array_equal(np.flatnonzero(h.fine == concept),
                                      np.flatnonzero(expected_match() == NAMES.index(name)))


def test_the_fit_stage_passes_its_embedder_to_zero_shot_matching():
    found = find_hierarchy_for_fit(X, X, 10, settings(), embedder=SIGLIP, zeroshot_names=NAMES)
    assert sorted(found.names.values()) == ["cat", "cup"]
    fine = found.hierarchy.fine
    for concept, name in found.names.items():
        np.testing.assert_array_equal(np.flatnonzero(fine == concept),
                                      np.flatnonzero(expected_match() == NAMES.index(name)))
    # the same texts on a softmax model: calibrated, blob 2 becomes "dog"
    calibrated = find_hierarchy_for_fit(X, X, 10, settings(), embedder=CLIP, zeroshot_names=NAMES)
    assert sorted(calibrated.names.values()) == ["cat", "cup", "dog"]


# -- seeds --------------------------------------------------------------------------------------
def test_a_seed_on_a_sigmoid_model_matches_exactly_the_likely_images():
    np.testing.assert_array_equal(seed_matches(X, TEXTS, embedder=SIGLIP), expected_match())
    assert (seed_matches(X, TEXTS, embedder=CLIP)[Y == 2] == 1).all()
    _, match = seeded_hierarchy(X, X, TEXTS, [["cat"], ["dog"], ["cup"]], 10, core, SIGLIP)
    np.testing.assert_array_equal(match, expected_match())
    found = find_hierarchy_for_fit(X, X, 10, settings(), embedder=SIGLIP, seeds=[["cat"], ["dog"], ["cup"]])
    np.testing.assert_array_equal(found.seed_matches, expected_match())


# -- search -------------------------------------------------------------------------------------
IMAGE_CENTER = np.array([1.0, 0.0, 0.0], np.float32)
WORD_CENTER = np.array([0.0, 1.0, 0.0], np.float32)
#: Centred (a softmax model's text search) row 0 is nearer the query, by raw cosine row 1.
ROWS = l2_normalize(np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.0]], np.float32))
QUERY = l2_normalize(np.array([0.0, 1.0, 1.0], np.float32))


def test_text_search_on_a_sigmoid_model_reports_its_probability():
    raw = ROWS @ QUERY
    expected = [(1, SIGLIP.text_image_probability(raw[1])), (0, SIGLIP.text_image_probability(raw[0]))]
    concepts, images = rank(QUERY, True, 2, 2, ROWS, ROWS, IMAGE_CENTER, WORD_CENTER, None, SIGLIP)
    for got in (concepts, images):
        assert [c for c, _ in got] == [1, 0]
        np.testing.assert_allclose([s for _, s in got], [s for _, s in expected])
    # a learned text map is not used either: the model's own scores are
    aligned = (ROWS[::-1].copy(), ROWS[::-1].copy())
    assert rank(QUERY, True, 2, 2, ROWS, ROWS, IMAGE_CENTER, WORD_CENTER, aligned, SIGLIP) == (concepts, images)
    assert rank(QUERY, True, 1, 0, ROWS, ROWS, IMAGE_CENTER, WORD_CENTER, None, SIGLIP) == (concepts[:1], [])


def test_search_on_other_models_and_by_image_is_unchanged():
    centred = rank(QUERY, True, 2, 2, ROWS, ROWS, IMAGE_CENTER, WORD_CENTER)
    assert [c for c, _ in centred[0]] == [0, 1]
    assert rank(QUERY, True, 2, 2, ROWS, ROWS, IMAGE_CENTER, WORD_CENTER, None, CLIP) == centred
    by_image = rank(QUERY, False, 2, 2, ROWS, ROWS, IMAGE_CENTER, WORD_CENTER, None, SIGLIP)
    assert by_image == rank(QUERY, False, 2, 2, ROWS, ROWS, IMAGE_CENTER, WORD_CENTER)
    np.testing.assert_allclose([s for _, s in by_image[0]], np.sort(ROWS @ QUERY)[::-1], rtol=1e-6)
