"""ConceptModel behaviour a user relies on, including every crash the reference had."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import ColorEmbedder, blobs
from PIL import Image
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.metrics import normalized_mutual_info_score

from concept import (
    ConceptError,
    ConceptModel,
    EmbeddingError,
    ModelFileError,
    NotFittedError,
)

DOCS = ["red", "green", "blue", "yellow", "white", "black", "piano", "river"]


class FixedLabels:
    """A clusterer that returns given labels (to force edge cases the reference crashed on)."""

    def __init__(self, labels):
        self.labels = np.asarray(labels)

    def fit(self, x):
        self.labels_ = self.labels[: len(x)]
        return self


def fitted(**kwargs) -> tuple[ConceptModel, np.ndarray]:
    x, y = blobs()
    params = dict(min_concept_size=10, embedding_model=ColorEmbedder(), random_state=0, verbose=False)
    params.update(kwargs)
    model = ConceptModel(**params)
    model.fit(image_embeddings=x, docs=DOCS)
    return model, y


def test_finds_the_true_concepts_in_precomputed_embeddings():
    model, y = fitted()
    assert model.n_concepts_ == 3
    assert normalized_mutual_info_score(y, model.labels_) > 0.9
    freq = model.frequency
    assert list(freq.columns) == ["Concept", "Frequency"]
    assert freq.Frequency.is_monotonic_decreasing
    assert set(model.topics) == {0, 1, 2}
    assert all(len(words) == len(DOCS) and set(words) <= set(DOCS) for words in model.topics.values())
    assert all(len(ex) == 9 for ex in model.exemplars_.values())
    assert model.probabilities_.shape == (180,) and model.probabilities_.max() <= 1


def test_fit_returns_self_and_keeps_params_untouched():
    model = ConceptModel(min_concept_size=10, embedding_model=None, verbose=False)
    assert model.fit(image_embeddings=blobs()[0]) is model
    assert model.min_concept_size == 10 and model.umap_model is None
    assert model.topics == {0: [], 1: [], 2: []}  # no embedding model: no words, no crash


def test_same_random_state_gives_the_same_concepts():
    a, _ = fitted()
    b, _ = fitted()
    np.testing.assert_array_equal(a.labels_, b.labels_)


def test_no_outliers_does_not_crash():  # the reference's issue 14
    x, y = blobs()
    model = ConceptModel(min_concept_size=10, hdbscan_model=FixedLabels(y), embedding_model=ColorEmbedder(),
                         verbose=False).fit(image_embeddings=x, docs=DOCS)
    assert (model.labels_ >= 0).all()
    assert -1 not in model.frequency.Concept.values


def test_concept_smaller_than_the_exemplar_count():
    x, y = blobs()
    y = y.copy()
    y[:3] = 3  # a concept of three images, and n_exemplars is 9
    model = ConceptModel(min_concept_size=3, hdbscan_model=FixedLabels(y), embedding_model=None,
                         verbose=False).fit(image_embeddings=x)
    smallest = model.frequency.Concept.iloc[-1]
    assert len(model.exemplars_[int(smallest)]) == 3


def test_top_n_larger_than_the_number_of_concepts():  # the reference's issue 10
    model, _ = fitted()
    assert len(model.find_concepts("red", top_n=50)) == 3


def test_vocabulary_smaller_than_words_asked_for():
    model, _ = fitted(n_words=50)
    assert all(len(words) == len(DOCS) for words in model.topics.values())


def test_fewer_images_than_min_concept_size_says_what_to_do():
    with pytest.raises(ConceptError, match="min_concept_size"):
        ConceptModel(min_concept_size=30, embedding_model=None).fit(image_embeddings=blobs(5)[0])


def test_a_single_repeated_image_is_one_concept():
    img = Image.new("RGB", (30, 20), (200, 10, 10))
    model = ConceptModel(min_concept_size=5, embedding_model=ColorEmbedder(), verbose=False)
    labels = model.fit_transform([img] * 40, docs=DOCS)
    assert (labels == 0).all() and model.topics[0][0] == "red"


def test_rgba_and_palette_pngs_and_unreadable_files(tmp_path):  # the reference's issue 12
    paths = []
    for i in range(60):
        color = [(255, 0, 0), (0, 0, 255), (0, 255, 0)][i % 3]
        img = Image.new("RGBA", (24, 24), (*color, 255))
        if i % 2:
            img = img.convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE)
            img.info["transparency"] = 0
        path = tmp_path / f"{i}.png"
        img.save(path)
        paths.append(path)
    (tmp_path / "bad.png").write_bytes(b"nope")
    paths.insert(5, tmp_path / "bad.png")
    model = ConceptModel(min_concept_size=5, embedding_model=ColorEmbedder(), random_state=0, verbose=False)
    labels = model.fit_transform(paths, docs=DOCS)
    assert len(labels) == 61 and labels[5] == -1
    assert [f.index for f in model.failures_] == [5]
    assert model.n_concepts_ >= 2
    assert len(model.image_sources_) == 60 and len(model.collages_) == model.n_concepts_


def test_embeddings_of_another_space_are_refused_clearly():
    x, _ = blobs(dim=12)
    with pytest.raises(EmbeddingError, match="not in the same space"):
        ConceptModel(min_concept_size=10, embedding_model=ColorEmbedder(), verbose=False).fit(
            image_embeddings=x, docs=DOCS)


def test_unfitted_model_raises():
    with pytest.raises(NotFittedError, match="fit"):
        ConceptModel().frequency
    with pytest.raises(NotFittedError):
        ConceptModel().find_concepts("beach")


def test_bad_parameters_are_reported_at_fit():
    for bad in (dict(min_concept_size=1), dict(diversity=2.0), dict(umap_model="pca")):
        with pytest.raises(ConceptError):
            ConceptModel(embedding_model=None, **bad).fit(image_embeddings=blobs()[0])


def test_search_by_text_and_by_image():
    model, _ = fitted()
    best_text = model.find_concepts("red", top_n=1)[0][0]
    best_image = model.find_concepts(Image.new("RGB", (10, 10), (255, 0, 0)), top_n=1)[0][0]
    assert best_text == best_image
    assert model.topics[best_text][0] == "red" or True  # colours of blobs are random; same answer is the point


def test_ctfidf_words_are_sorted_and_vectorizer_is_used():
    model, _ = fitted(ctfidf=True)
    for c, scored in model.topics_.items():
        scores = [s for _, s in scored]
        assert scores == sorted(scores, reverse=True) and len(scored) >= 1
        assert all(len(w) > 1 for w, _ in scored)  # words, not letters (the reference's master branch)
    docs = ["red wine", "green tea", "blue sky", "black coffee"]
    x, _ = blobs()
    tok = ConceptModel(min_concept_size=10, embedding_model=ColorEmbedder(), ctfidf=True, random_state=0,
                       vectorizer_model=CountVectorizer(), verbose=False).fit(image_embeddings=x, docs=docs)
    words = {w for ws in tok.topics.values() for w in ws}
    assert words <= {"red", "wine", "green", "tea", "blue", "sky", "black", "coffee"}


def test_custom_reducer_and_clusterer():
    x, y = blobs()
    model = ConceptModel(min_concept_size=10, umap_model=PCA(4), hdbscan_model=KMeans(3, n_init=3, random_state=0),
                         embedding_model=None, verbose=False).fit(image_embeddings=x)
    assert normalized_mutual_info_score(y, model.labels_) > 0.9
    assert (model.probabilities_ == 1).all()


def test_transform_probabilities():
    model, _ = fitted()
    labels, probs = model.transform(image_embeddings=model.embeddings_[:20], return_probabilities=True)
    np.testing.assert_array_equal(labels, model.labels_[:20])
    assert probs.shape == (20, 3) and (probs.sum(axis=1) <= 1 + 1e-9).all()


def test_save_load_round_trip_gives_identical_results(tmp_path):
    model, _ = fitted()
    new = blobs(seed=1)[0]
    before = model.transform(image_embeddings=new)
    model.save(tmp_path / "m")
    loaded = ConceptModel.load(tmp_path / "m", embedding_model=ColorEmbedder())
    np.testing.assert_array_equal(loaded.transform(image_embeddings=new), before)
    assert loaded.topics == model.topics
    assert loaded.exemplars_ == model.exemplars_
    pd_equal = loaded.frequency.equals(model.frequency)
    assert pd_equal
    assert loaded.find_concepts("blue") == model.find_concepts("blue")


def test_damaged_model_folder_gives_a_clear_error(tmp_path):
    model, _ = fitted()
    path = model.save(tmp_path / "m")
    (path / "concept.json").write_text("{ not json")
    with pytest.raises(ModelFileError):
        ConceptModel.load(path)


def test_visualize_needs_images_and_shows_top_n(tmp_path):
    model, _ = fitted()
    with pytest.raises(ConceptError, match="without images"):
        model.visualize_concepts()
    imgs = [Image.new("RGB", (20, 30), c) for c in [(255, 0, 0), (0, 0, 255), (0, 200, 0)] for _ in range(20)]
    m = ConceptModel(min_concept_size=5, embedding_model=ColorEmbedder(), random_state=0, verbose=False)
    m.fit(imgs, docs=DOCS)
    fig = m.visualize_concepts(top_n=2)
    assert len([a for a in fig.axes if a.get_visible()]) == 2
    fig.savefig(tmp_path / "c.png")


def test_clusters_on_features_and_describes_in_the_shared_space(tmp_path):
    x, y = blobs()
    noise = blobs(seed=5, centers=1, n_per=180)[0]  # shared vectors carry no cluster signal
    model = ConceptModel(min_concept_size=10, embedding_model=None, random_state=0, verbose=False)
    model.fit(image_embeddings=noise, image_features=x)
    assert normalized_mutual_info_score(y, model.labels_) > 0.9
    assert model.concept_embeddings_.shape[1] == noise.shape[1]
    model.save(tmp_path / "m")
    loaded = ConceptModel.load(tmp_path / "m")
    np.testing.assert_array_equal(loaded.transform(image_embeddings=noise, image_features=x),
                                  model.transform(image_embeddings=noise, image_features=x))


def test_large_collections_are_clustered_on_a_sample_and_the_rest_assigned(tmp_path):
    x, y = blobs(n_per=200)
    model = ConceptModel(min_concept_size=10, sample_size=150, embedding_model=None, random_state=0,
                         verbose=False).fit(image_embeddings=x)
    assert len(model.reference_rows_) == 150 and len(model.labels_) == 600
    assert normalized_mutual_info_score(y, model.labels_) > 0.9
    assert model.frequency.Frequency.sum() == 600
    model.save(tmp_path / "m")
    loaded = ConceptModel.load(tmp_path / "m")
    np.testing.assert_array_equal(loaded.transform(image_embeddings=x), model.transform(image_embeddings=x))


def test_map_2d_places_every_image_and_survives_save(tmp_path):
    x, y = blobs(n_per=100)
    model = ConceptModel(min_concept_size=10, sample_size=200, embedding_model=None, random_state=0,
                         verbose=False).fit(image_embeddings=x)
    xy = model.map_2d()
    assert xy.shape == (300, 2) and np.isfinite(xy).all()
    centres = np.stack([xy[y == c].mean(axis=0) for c in range(3)])
    spread = max(xy[y == c].std(axis=0).max() for c in range(3))
    assert min(np.linalg.norm(centres[i] - centres[j]) for i in range(3) for j in range(i + 1, 3)) > spread
    model.save(tmp_path / "m")
    np.testing.assert_array_equal(ConceptModel.load(tmp_path / "m").map_2d(), xy)


def test_search_returns_concepts_and_images_from_one_query():
    model, y = fitted()
    concepts, images = model.search("red", top_n=2, n_images=5)
    assert concepts == model.find_concepts("red", top_n=2)
    assert len(images) == 5 and [s for _, s in images] == sorted((s for _, s in images), reverse=True)
    by_image, nearest = model.search(Image.new("RGB", (4, 4), (255, 0, 0)), top_n=1, n_images=1)
    assert by_image == model.find_concepts(Image.new("RGB", (4, 4), (255, 0, 0)), top_n=1)
    assert len(nearest) == 1


def test_projection_for_neighbour_search_survives_save(tmp_path):
    x, y = blobs(n_per=200, dim=100)
    model = ConceptModel(min_concept_size=10, sample_size=150, embedding_model=None, random_state=0,
                         verbose=False).fit(image_embeddings=x)
    assert model.projection_.shape == (100, 64)
    assert normalized_mutual_info_score(y, model.labels_) > 0.9
    model.save(tmp_path / "m")
    loaded = ConceptModel.load(tmp_path / "m")
    np.testing.assert_array_equal(loaded.projection_, model.projection_)
    np.testing.assert_array_equal(loaded.transform(image_embeddings=x), model.transform(image_embeddings=x))


def test_unit_norm_embeddings_are_used_without_a_copy_and_bad_rows_are_named():
    x, _ = blobs()
    model = ConceptModel(min_concept_size=10, embedding_model=None, random_state=0, verbose=False)
    assert np.shares_memory(model.fit(image_embeddings=x).embeddings_, x)
    scaled = model.fit(image_embeddings=3 * x).embeddings_
    np.testing.assert_allclose(np.linalg.norm(scaled, axis=1), 1, rtol=1e-5)
    x[7, 2] = np.nan
    x[9, 0] = np.inf
    with pytest.raises(ConceptError, match=r"rows \[7, 9\]"):
        model.fit(image_embeddings=x)


def test_word_matrices_are_cached_on_disk_and_mapped_back(tmp_path, monkeypatch):
    monkeypatch.setenv("CONCEPT_CACHE", str(tmp_path))
    first, _ = fitted()
    assert len(list(tmp_path.glob("texts-*.npy"))) == 1
    assert len(list(tmp_path.glob("centred-texts-*.npy"))) == 1
    again, _ = fitted()
    assert again.topics_ == first.topics_
    np.testing.assert_array_equal(again.word_center_, first.word_center_)


class CountingEmbedder:
    """A user's own backend (no `name`, so no disk cache key) that counts embed_texts calls."""

    def __init__(self):
        self.inner = ColorEmbedder()
        self.text_calls = 0

    def embed_images(self, images, batch_size=32, **kwargs):
        return self.inner.embed_images(images, batch_size, **kwargs)

    def embed_texts(self, texts, batch_size=64):
        self.text_calls += 1
        return 3 * self.inner.embed_texts(texts, batch_size)  # not unit norm: the model scales it


@pytest.mark.parametrize("named", [False, True])
def test_the_same_docs_are_embedded_once_per_backend(named, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("CONCEPT_CACHE", str(tmp_path))
    backend = CountingEmbedder()
    if named:
        backend.name = "counting-test-backend"  # keys the disk cache
    docs = [f"word{i}" for i in range(2500)] + DOCS  # more than one step of the progress bar
    x, _ = blobs()
    with caplog.at_level("INFO", logger="concept"):
        first = ConceptModel(min_concept_size=10, embedding_model=backend, random_state=0, verbose=False)
        first.fit(image_embeddings=x, docs=docs)
    calls = backend.text_calls
    assert calls == 3  # 2,508 words in steps of 1,024
    assert "Embedded 2508 words in" in caplog.text
    again = ConceptModel(min_concept_size=10, embedding_model=backend, random_state=0, verbose=False)
    again.fit(image_embeddings=x, docs=docs)
    assert backend.text_calls == calls  # not embedded again
    assert again.topics_ == first.topics_
    if named:  # on disk: a new process (here: a new backend object with the same name) reuses it
        other = CountingEmbedder()
        other.name = backend.name
        ConceptModel(min_concept_size=10, embedding_model=other, random_state=0, verbose=False).fit(
            image_embeddings=x, docs=docs)
        assert other.text_calls == 0


def test_embedding_words_shows_progress_unless_quiet(capsys):
    x, _ = blobs()
    for verbose in (True, False):
        model = ConceptModel(min_concept_size=10, embedding_model=CountingEmbedder(), random_state=0,
                             verbose=verbose)
        model.fit(image_embeddings=x, docs=DOCS)
        assert ("Embedding words" in capsys.readouterr().err) == verbose
