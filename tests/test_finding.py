"""The clustering stage of a fit (`concept.finding`): vectors in, the concept hierarchy out,
with the default core, a user's own reducer and clusterer, zero-shot names or seed words."""

from __future__ import annotations

import functools
import logging

import numpy as np
import pytest
from conftest import blobs, random_unit

from concept._errors import ConceptError, EmbeddingError
from concept.clustering import Hierarchy, assign, find_hierarchy, mean_directions
from concept.clustering.hierarchy import OUTLIER_THRESHOLD
from concept.embedding.base import l2_normalize
from concept.finding import (
    ClusterSettings,
    Found,
    cluster_hierarchy,
    effective_min_size,
    find_hierarchy_for_fit,
    seeded_hierarchy,
    shared_space_hierarchy,
    zeroshot_hierarchy,
)


def settings(**kw) -> ClusterSettings:
    base = {"min_concept_size": 10, "sample_size": None, "outlier_threshold": OUTLIER_THRESHOLD, "random_state": 0}
    return ClusterSettings(**{**base, **kw})


def core(vectors: np.ndarray, size: int) -> Hierarchy:
    return find_hierarchy(vectors, size, random_state=0)


@functools.cache
def plain() -> Hierarchy:
    """The default core's hierarchy of X (computed once for the tests that compare with it)."""
    return core(X, 10)


def purity(found: np.ndarray, truth: np.ndarray) -> float:
    """Share of the clustered rows whose concept's majority true label is their own."""
    rows = found >= 0
    hits = sum(np.bincount(truth[rows][found[rows] == c]).max() for c in np.unique(found[rows]))
    return hits / max(1, rows.sum())


#: Eight blobs in 64-d; names for blobs 0, 2 and 4 sit at their centres (calibrated matches
#: there: every image of a named blob scores above 3.8 robust SDs, none of the others above 2.4).
X, Y = blobs(40, 8, 64, seed=0)
CENTRES = l2_normalize(np.stack([X[Y == i].mean(axis=0) for i in range(8)]))
NAMED = {"cat": 0, "cup": 2, "rocket": 4}


class NameTexts:
    """A text 'model' that embeds each known name at its blob's centre."""

    name = "test-names"

    def __init__(self, vectors: dict[str, np.ndarray]):
        self.vectors = vectors
        self.calls: list[list[str]] = []

    def embed_texts(self, texts, batch_size=64):
        self.calls.append(list(texts))
        return np.stack([self.vectors[t] for t in texts]).astype(np.float32)


NAMES = NameTexts({name: CENTRES[b] for name, b in NAMED.items()} | {"feline": CENTRES[0]})


# -- effective_min_size ----------------------------------------------------------------------
@pytest.mark.parametrize(("n", "size", "expected"), [
    (100, 30, 5),      # half the square root of 100, rounded
    (3, 30, 3),        # never below 3
    (73, 30, 4),
    (3600, 30, 30),    # from 3,600 images the default is kept
    (100_000, 30, 30),
    (100, 4, 4),       # a size below the small-collection one is kept as given
])
def test_effective_min_size_lowers_the_size_for_small_collections(n, size, expected):
    assert effective_min_size(n, size) == expected


def test_effective_min_size_says_when_it_lowers(caplog):
    with caplog.at_level(logging.INFO, logger="concept.model"):
        effective_min_size(100, 30)
    assert "min_concept_size 30 lowered to 5 for a collection of 100 images" in caplog.text


@pytest.mark.parametrize("n", [0, 1, 2])
def test_effective_min_size_needs_three_images(n):
    with pytest.raises(ConceptError, match=f"Only {n} images"):
        effective_min_size(n, 30)


# -- cluster_hierarchy -----------------------------------------------------------------------
def test_default_core_finds_the_blobs_in_layers():
    x, y = blobs(60, 3, 8)
    h = cluster_hierarchy(x, 10, settings())
    labels = h.layers[h.default]
    assert int(labels.max()) + 1 == 3
    assert purity(labels, y) == 1.0
    assert (labels >= 0).mean() > 0.9
    # the default core is the one `find_hierarchy` runs
    expected = find_hierarchy(x, 10, max_units=None, threshold=OUTLIER_THRESHOLD, random_state=0)
    np.testing.assert_array_equal(h.fine, expected.fine)


def test_default_core_groups_identical_images_when_there_are_few_distinct_ones():
    three = random_unit(3, 8)
    x = np.repeat(three, [12, 8, 2], axis=0)
    h = cluster_hierarchy(x, 5, settings())
    labels = h.layers[h.default]
    np.testing.assert_array_equal(labels, np.repeat([0, 1, -1], [12, 8, 2]))


def test_a_users_reducer_and_clusterer_give_one_layer():
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA

    x, y = blobs(50, 4, 16, seed=3)
    s = settings(umap_model=PCA(n_components=5, random_state=0),
                 hdbscan_model=KMeans(n_clusters=4, n_init=4, random_state=0))
    h = cluster_hierarchy(x, 10, s)
    assert h.parents == [] and h.default == 0
    assert len(h.centres) == 4
    assert purity(h.fine, y) == 1.0 and (h.fine >= 0).all()  # KMeans leaves no outliers
    # ids by size, and `assign` gives the clusterer's concepts back for its members
    assert (np.diff(np.bincount(h.fine)) <= 0).all()
    np.testing.assert_array_equal(assign(x, h)[0], h.fine)


def test_a_users_density_clusterer_keeps_its_outliers():
    from sklearn.cluster import HDBSCAN
    from sklearn.decomposition import PCA

    x, y = blobs(50, 3, 16, seed=4)
    x = np.vstack([x, random_unit(2, 16, seed=99)])
    clusterer = HDBSCAN(min_cluster_size=10, copy=True)
    h = cluster_hierarchy(x, 10, settings(hdbscan_model=clusterer, umap_model=PCA(8, random_state=0)))
    assert len(h.centres) == 3
    assert purity(h.fine[:150], y) == 1.0
    outliers = clusterer.labels_ == -1
    assert outliers.any()
    np.testing.assert_array_equal(h.fine == -1, outliers)
    assert (h.probabilities[outliers] == 0).all() and (h.probabilities[~outliers] > 0).all()


def test_a_users_clusterer_fits_a_sample_and_the_rest_is_assigned():
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA

    class Counting(KMeans):
        def fit(self, X, y=None, sample_weight=None):
            self.fitted_rows = len(X)
            return super().fit(X, y, sample_weight)

    x, y = blobs(60, 3, 8, seed=5)
    clusterer = Counting(n_clusters=3, n_init=2, random_state=0)
    h = cluster_hierarchy(x, 10, settings(sample_size=60, hdbscan_model=clusterer, umap_model=PCA(4, random_state=0)))
    assert clusterer.fitted_rows == 60
    assert len(h.fine) == 180
    assert purity(h.fine, y) > 0.95


# -- zero-shot -------------------------------------------------------------------------------
def zeroshot(names: list[str], **kw):
    texts = l2_normalize(NAMES.embed_texts(names))
    return zeroshot_hierarchy(X, X, texts, names, 3.0, 10, settings(), core, **kw)


def test_images_matching_a_name_form_its_concept_and_the_rest_are_clustered():
    h, found = zeroshot(list(NAMED))
    assert sorted(found.values()) == sorted(NAMED)
    for concept, name in found.items():
        np.testing.assert_array_equal(np.flatnonzero(h.fine == concept), np.flatnonzero(Y == NAMED[name]))
    # named concepts come after the clustered ones
    assert min(found) == len(h.centres) - 3
    rest = ~np.isin(Y, list(NAMED.values()))
    assert not np.isin(h.fine[rest], list(found)).any()
    assert purity(h.fine[rest], Y[rest]) == 1.0
    assert len(np.unique(h.fine[rest & (h.fine >= 0)])) >= 5


def test_names_matched_by_fewer_than_three_images_are_left_out(caplog):
    # "feline" sits where "cat" does: every image prefers the first, so it matches none
    with caplog.at_level(logging.INFO, logger="concept.model"):
        _, found = zeroshot(["cat", "cup", "rocket", "feline"])
    assert sorted(found.values()) == ["cat", "cup", "rocket"]
    assert "left out: feline" in caplog.text


def test_when_no_image_matches_a_name_everything_is_clustered():
    h, found = zeroshot_hierarchy(X, X, l2_normalize(NAMES.embed_texts(["cat", "feline"])), ["cat", "feline"],
                                  100.0, 10, settings(), core)
    assert found == {}
    np.testing.assert_array_equal(h.fine, plain().fine)


def test_when_too_few_images_are_left_to_cluster_they_are_outliers():
    x, y = X[np.isin(Y, [0, 2, 4])], Y[np.isin(Y, [0, 2, 4])]
    texts = l2_normalize(NAMES.embed_texts(list(NAMED)))
    h, found = zeroshot_hierarchy(x, x, texts, list(NAMED), 3.0, 10, settings(), core)
    assert sorted(found.values()) == sorted(NAMED)
    for concept, name in found.items():
        np.testing.assert_array_equal(np.flatnonzero(h.fine == concept), np.flatnonzero(y == NAMED[name]))


def test_zeroshot_names_in_another_space_are_an_error():
    with pytest.raises(EmbeddingError, match="embedded in 32 dimensions, the images in 64"):
        zeroshot_hierarchy(X, X, random_unit(2, 32), ["a", "b"], 3.0, 10, settings(), core)


def test_fit_stage_embeds_the_stripped_names_and_reports_them_by_layer():
    embedder = NameTexts(NAMES.vectors)
    found = find_hierarchy_for_fit(X, X, 10, settings(), embedder=embedder,
                                   zeroshot_names=[" cat", "cup ", "rocket"])
    assert embedder.calls == [["cat", "cup", "rocket"]]
    assert isinstance(found, Found) and found.seed_matches is None
    assert sorted(found.names.values()) == ["cat", "cup", "rocket"]
    h = found.hierarchy
    for layer, labels in enumerate(h.layers):
        for concept, name in found.names_at(layer).items():
            assert (Y[labels == concept] == NAMED[name]).all()


def test_fit_stage_needs_an_embedder_for_names_or_seeds():
    with pytest.raises(EmbeddingError, match="Zero-shot concepts needs an embedding model"):
        find_hierarchy_for_fit(X, X, 10, settings(), zeroshot_names=["cat"])
    with pytest.raises(EmbeddingError, match="Seeded concepts needs an embedding model"):
        find_hierarchy_for_fit(X, X, 10, settings(), seeds=[["cat"]])


def test_fit_stage_without_names_or_seeds_is_the_plain_clustering():
    found = find_hierarchy_for_fit(X, X, 10, settings())
    assert found.names == {} and found.seed_matches is None
    np.testing.assert_array_equal(found.hierarchy.fine, plain().fine)


def test_a_given_hierarchy_stands_in_for_the_clustering():
    given = plain()
    found = find_hierarchy_for_fit(X, X, 10, settings(umap_model="not used"), given=given)
    assert found.hierarchy is given


# -- names_at ----------------------------------------------------------------------------------
def test_names_at_follows_the_parent_maps():
    n = np.zeros(4)
    h = Hierarchy(np.arange(4), np.arange(4), np.ones(4), random_unit(4, 3), n, n,
                  parents=[np.array([1, 1, 0, 0]), np.array([0, 0])])
    found = Found(h, {0: "cat", 3: "cup"})
    assert found.names_at(0) == {0: "cat", 3: "cup"}
    assert found.names_at(1) == {1: "cat", 0: "cup"}
    # two names in one coarse concept: one of them is kept
    assert list(found.names_at(2)) == [0]


# -- seeds -----------------------------------------------------------------------------------
def test_seeded_concepts_gather_their_matching_images():
    seeds = [["cat", "feline"], ["cup"]]
    texts = l2_normalize(np.stack([CENTRES[0], CENTRES[2]]))
    h, match = seeded_hierarchy(X, X, texts, seeds, 10, core)
    assert (match[Y == 0] == 0).all() and (match[Y == 2] == 1).all()
    assert (match >= 0).sum() < 100  # most of the other blobs' 240 images match no seed
    labels = h.layers[0]
    for blob in (0, 2):  # each seeded blob is one concept, and the pull merged no blobs
        assert len(np.unique(labels[Y == blob])) == 1 and labels[Y == blob][0] >= 0
    assert purity(labels, Y) == 1.0
    # measured again on the unpulled vectors: `assign` places the images where the fit did
    np.testing.assert_array_equal(assign(X, h)[0], h.fine)


def test_fit_stage_with_seeds_returns_each_images_seed():
    embedder = NameTexts(NAMES.vectors)
    found = find_hierarchy_for_fit(X, X, 10, settings(), embedder=embedder, seeds=[["cat", "feline"], ["rocket"]])
    assert found.names == {}
    assert (found.seed_matches[Y == 0] == 0).all() and (found.seed_matches[Y == 4] == 1).all()
    assert set(embedder.calls[0]) == {"cat", "feline", "rocket"}


def test_seeds_that_match_no_image_leave_the_clustering_alone():
    h, match = seeded_hierarchy(X, X, l2_normalize(np.stack([CENTRES[0], CENTRES[0]])), [["a"], ["b"]], 10, core)
    # two identical seeds: every image prefers the first, so neither gets a calibrated majority
    np.testing.assert_array_equal(match, np.full(len(X), -1))
    np.testing.assert_array_equal(h.fine, plain().fine)


def test_seed_words_in_another_space_are_an_error():
    with pytest.raises(EmbeddingError, match="seed words were embedded in 5 dimensions"):
        seeded_hierarchy(X, X, random_unit(1, 5), [["a"]], 10, core)


# -- shared_space_hierarchy ------------------------------------------------------------------
def test_a_hierarchy_on_features_is_measured_again_in_the_shared_space():
    x, _ = blobs(50, 3, 16, seed=7)
    features = l2_normalize(x @ np.random.default_rng(0).normal(size=(16, 24)).astype(np.float32))
    h = find_hierarchy(features, 10, random_state=0)
    centres, _ = mean_directions(x, h.fine, len(h.centres))
    shared = shared_space_hierarchy(h, x, h.fine, centres)
    np.testing.assert_array_equal(shared.fine, h.fine)
    assert shared.parents is h.parents and shared.centres is centres
    assert shared.medians.shape == shared.sds.shape == (len(centres),)
    # images given only as shared-space embeddings are assigned to the concepts they had
    labels, _ = assign(x, shared)
    inliers = h.fine >= 0
    assert (labels[inliers] == h.fine[inliers]).mean() > 0.95
