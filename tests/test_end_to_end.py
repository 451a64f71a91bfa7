"""The whole pipeline on a real collection: OpenClipart's subject folders, offline model.

Slow (embeds ~2,300 images and a 20,000-noun vocabulary on the CPU): marked `slow`, run in CI.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import normalized_mutual_info_score

from concept import ConceptModel
from concept.vocabulary import load_vocabulary

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def clipart():
    from concept import datasets

    if not (datasets.OPENCLIPART_ROOT / "png").is_dir():  # any other error is a failure, not a skip
        pytest.skip("Debian package openclipart-png is not installed")
    return datasets.openclipart()


@pytest.fixture(scope="module")
def fitted(clipart):
    model = ConceptModel(embedding_model="offline", random_state=0, verbose=False)
    labels = model.fit_transform(clipart.images)
    return model, labels


def test_concepts_are_found_and_match_the_folders(fitted, clipart):
    model, labels = fitted
    assert 5 <= model.n_concepts_ <= 80
    assert len(labels) == len(clipart.images)
    # One OpenClipart file is a real decompression bomb (623 megapixels): reported, not fatal.
    assert any("decompression bomb" in f.reason for f in model.failures_)
    nmi = normalized_mutual_info_score(clipart.labels, labels)
    assert nmi > 0.15, nmi  # k-means with the true k on the shared vectors scores 0.13


def test_words_are_present_and_come_from_the_vocabulary(fitted):
    model, _ = fitted
    vocabulary = set(load_vocabulary(model.vocabulary_size))
    assert all(len(words) == model.n_words for words in model.topics.values())
    assert all(set(words) <= vocabulary for words in model.topics.values())


def test_search_returns_a_related_concept(fitted, clipart):
    model, labels = fitted
    folder = {name: i for i, name in enumerate(clipart.label_names)}
    for query, category in [("animal", "animals"), ("car", "transportation"), ("fruit", "food")]:
        best = [c for c, _ in model.find_concepts(query, top_n=3)]
        members = np.isin(labels, best)
        share = (clipart.labels[members] == folder[category]).mean()
        base = (clipart.labels == folder[category]).mean()
        assert share > base, (query, share, base)  # the hits are enriched in that folder


def test_save_load_transform_round_trip(fitted, clipart, tmp_path):
    model, _ = fitted
    new = clipart.images[:40]
    before = model.transform(new)
    model.save(tmp_path / "model")
    loaded = ConceptModel.load(tmp_path / "model")
    np.testing.assert_array_equal(loaded.transform(new), before)
    assert loaded.find_concepts("car") == model.find_concepts("car")
    fig = loaded.visualize_concepts(top_n=6)
    fig.savefig(tmp_path / "concepts.png")


def test_concepts_are_steady_ahead_of_kmeans_and_read_apart(fitted, clipart):
    """Issue 25's targets at this collection's scale: another seed gives the same concepts, NMI
    above k-means with the true number of folders on the same vectors, at least 90% of the images
    in concepts, and no two concepts of `labels_` whose first 5 words share more than 2."""
    from sklearn.cluster import KMeans

    from concept import evaluate

    model, _ = fitted
    again = ConceptModel(embedding_model=model.embedder_, random_state=1, verbose=False)
    again.fit(image_embeddings=model.embeddings_, image_features=model.features_)
    np.testing.assert_array_equal(again.labels_, model.labels_)  # no seed enters below 3,000 images
    y = clipart.labels[model.image_indices_]
    k = len(clipart.label_names)
    kmeans = KMeans(k, n_init=1, random_state=0).fit_predict(model.features_)
    assert normalized_mutual_info_score(y, model.labels_) > normalized_mutual_info_score(y, kmeans)
    assert (model.labels_ >= 0).mean() >= 0.9
    assert evaluate(model)["max_shared_words"] <= 2
