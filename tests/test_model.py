"""ConceptModel behaviour a user relies on, including every crash the reference had."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from conftest import ColorEmbedder, blobs, nested_blobs
from PIL import Image
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.metrics import normalized_mutual_info_score

from concept import (
    ConceptError,
    ConceptModel,
    EmbeddingError,
    ImageLoadError,
    ModelFileError,
    NotFittedError,
)
from concept.embedding.base import l2_normalize

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


def test_a_small_collection_gets_concepts_with_a_lowered_min_size(caplog):
    x, y = blobs(n_per=24, centers=3)  # 72 images, fewer than 3 x min_concept_size
    with caplog.at_level("INFO", logger="concept.model"):
        model = ConceptModel(min_concept_size=30, embedding_model=None, random_state=0).fit(image_embeddings=x)
    assert "min_concept_size 30 lowered to 4" in caplog.text
    # The three blobs exactly; the outlier fence (3 robust SDs) may leave out an edge image or two.
    kept = model.labels_ >= 0
    assert model.n_concepts_ == 3 and kept.mean() >= 0.95
    assert normalized_mutual_info_score(y[kept], model.labels_[kept]) == pytest.approx(1.0)
    with pytest.raises(ConceptError, match="at least 3"):
        ConceptModel(embedding_model=None).fit(image_embeddings=x[:2])


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
    # Images of three colours (a little noise in each), so the concept a search should find is known.
    rng = np.random.default_rng(0)
    colours = [(230, 20, 20), (20, 200, 30), (20, 30, 220)]
    y = np.repeat(np.arange(3), 20)
    images = [Image.fromarray(np.clip(np.array(colours[c]) + rng.integers(-15, 16, (8, 8, 3)), 0, 255)
                              .astype(np.uint8)) for c in y]
    model = ConceptModel(min_concept_size=5, embedding_model=ColorEmbedder(), random_state=0,
                         verbose=False).fit(images, docs=DOCS)
    assert model.n_concepts_ == 3
    for c, word in enumerate(["red", "green", "blue"]):
        labels = model.labels_[y == c]
        concept = int(np.bincount(labels[labels >= 0]).argmax())  # the concept of that colour
        best_text = model.find_concepts(word, top_n=1)[0][0]
        best_image = model.find_concepts(Image.new("RGB", (10, 10), ColorEmbedder.COLORS[word]), top_n=1)[0][0]
        assert best_text == best_image == concept
        assert model.topics[concept][0] == word


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
    assert len(model.layers_) == 1 and model.layer_ == 0  # a user's clusterer: its one layer
    np.testing.assert_array_equal(model.transform(image_embeddings=x), model.labels_)


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


def _tampered(path, change) -> None:
    """Rewrite the model folder with `change(state)` applied and valid checksums (as a hostile
    tool or a careless hand edit would)."""
    from concept.persistence import load_model_state, save_model_state

    state = load_model_state(path)
    change(state)
    save_model_state(state, path)


def _set(part: str, key: str, value):
    return lambda state: getattr(state, part).__setitem__(key, value)


def _del(part: str, key: str):
    return lambda state: getattr(state, part).pop(key)


@pytest.mark.parametrize(("change", "message"), [  # issue 11, item 9
    (_del("settings", "min_concept_size"), "settings has no 'min_concept_size'"),
    (_set("settings", "min_concept_size", "abc"), "min_concept_size"),
    (_set("settings", "batch_size", -5), "batch_size"),
    (_set("settings", "diversity", float("nan")), "diversity"),
    (_set("settings", "verbose", "yes"), "verbose"),
    (_set("settings", "cluster_space", "x"), "cluster_space"),
    (_set("settings", "embedding_model", ["a"]), "embedding_model"),
    (_set("settings", "random_state", 2**40), "random_state"),
    (lambda s: s.texts["topics"].pop("0"), "one entry per concept"),
    (lambda s: s.texts["topics"].__setitem__("1", [["red", "high"]]), "topics"),
    (_set("texts", "failures", [["x"]]), "failures"),
    (_set("texts", "image_sources", ["a.png"]), "image_sources"),
    (lambda s: s.arrays.__setitem__("labels", s.arrays["labels"][:-1]), "'labels' has shape"),
    (lambda s: s.arrays.__setitem__("labels", s.arrays["labels"] + 5), "'labels' holds values"),
    (lambda s: s.arrays.__setitem__("labels", s.arrays["labels"].astype(np.float32)), "not integer"),
    (_del("arrays", "probabilities"), "'probabilities' is missing"),
    (lambda s: s.arrays.__setitem__("image_indices", s.arrays["image_indices"][:3]), "image_indices"),
    (lambda s: s.arrays.__setitem__("reference_rows", s.arrays["reference_rows"] + 10**6), "reference_rows"),
    (lambda s: s.arrays.__setitem__("concept_embeddings", s.arrays["concept_embeddings"][:, :3]),
     "concept_embeddings"),
    (lambda s: s.arrays.__setitem__("exemplars", s.arrays["exemplars"] * 1000), "'exemplars' holds"),
    (lambda s: s.arrays.__setitem__("exemplar_counts", s.arrays["exemplar_counts"] + 1), "add up"),
    (lambda s: s.arrays.__setitem__("embeddings", s.arrays["embeddings"] * np.nan), "NaN"),
    (lambda s: s.arrays.__setitem__("map_2d", np.zeros((3, 2), np.float32)), "map_2d"),
    (lambda s: s.arrays.__setitem__("image_center", np.zeros(3, np.float32)), "image_center"),
    (lambda s: s.images.__setitem__("concept_99", Image.new("RGB", (4, 4))), "concept_99"),
])
def test_content_that_passes_the_checksums_is_validated_on_load(tmp_path, change, message):
    model, _ = fitted()
    path = model.save(tmp_path / "m")
    _tampered(path, change)
    with pytest.raises(ModelFileError, match="does not hold a valid fitted model") as info:
        ConceptModel.load(path, embedding_model=ColorEmbedder())
    assert message in str(info.value)


def test_extra_arrays_and_settings_of_a_newer_state_are_tolerated(tmp_path):
    model, _ = fitted()
    path = model.save(tmp_path / "m")

    def newer(state):
        state.arrays["future_labels"] = state.arrays["labels"].copy()
        state.settings["future_setting"] = 1
        state.settings.update(verbose=0, n_words=10.0)  # what a user may have passed, saved as given

    _tampered(path, newer)
    loaded = ConceptModel.load(path, embedding_model=ColorEmbedder())
    np.testing.assert_array_equal(loaded.labels_, model.labels_)


def test_an_embedding_model_path_stored_in_a_model_folder_is_not_loaded(tmp_path, monkeypatch):
    # issue 11, item 5: a downloaded model could name its own files (or any) to be loaded as weights
    from concept.embedding import clip

    def loaded(*args, **kwargs):
        raise AssertionError("weights were loaded from a path the model folder named")

    monkeypatch.setattr(clip, "load_sentence_transformer", loaded)
    model, _ = fitted()
    path = model.save(tmp_path / "m")
    _tampered(path, _set("settings", "embedding_model", str(path / "images")))
    loaded_model = ConceptModel.load(path)  # loads: everything but the embedding model works
    x = blobs(seed=1)[0]
    np.testing.assert_array_equal(loaded_model.transform(image_embeddings=x), model.transform(image_embeddings=x))
    for use in (lambda m: m.find_concepts("red"), lambda m: m.transform([Image.new("RGB", (8, 8))])):
        with pytest.raises(EmbeddingError, match="does not load on a model folder's say-so") as info:
            use(loaded_model)
        assert f"embedding_model={str(path / 'images')!r}" in str(info.value)
        assert "--embedding-model" in str(info.value)
    loaded_model.save(tmp_path / "again")  # saving keeps the stored choice as it was
    again = ConceptModel.load(tmp_path / "again")
    assert again.embedder_.spec == str(path / "images") and again.embedder_.name == "test-colors"
    # The user's own choice is used.
    mine = ConceptModel.load(path, embedding_model=ColorEmbedder())
    assert mine.find_concepts("red") == model.find_concepts("red")


@pytest.mark.parametrize("spec", ["offline", "offline-lite1-bf16", "clip-ViT-B-32",
                                  "sentence-transformers/clip-ViT-L-14"])
def test_bundled_and_known_model_names_stored_in_a_model_folder_are_used(tmp_path, monkeypatch, spec):
    model, _ = fitted()
    path = model.save(tmp_path / "m")
    _tampered(path, _set("settings", "embedding_model", spec))
    assert ConceptModel.load(path).embedding_model == spec  # loaded when first used
    monkeypatch.chdir(tmp_path)
    (tmp_path / spec).mkdir(parents=True)
    # The offline names never read a folder; a CLIP name would load a folder of that name.
    assert isinstance(ConceptModel.load(path).embedding_model, str) == spec.startswith("offline")


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


def test_large_collections_are_summarised_and_every_image_assigned():
    x, y = blobs(n_per=200)
    model = ConceptModel(min_concept_size=10, sample_size=150, embedding_model=None, random_state=0,
                         verbose=False).fit(image_embeddings=x)
    assert 100 <= model.hierarchy_.n_units <= 160 and len(model.labels_) == 600  # about 150
    inliers = model.labels_ >= 0
    assert inliers.mean() > 0.95 and normalized_mutual_info_score(y[inliers], model.labels_[inliers]) > 0.99
    np.testing.assert_array_equal(model.transform(image_embeddings=x), model.labels_)


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


def test_search_kind_says_whether_a_string_is_text_or_an_image_path(tmp_path, monkeypatch):
    """Issue 11 items 1 and 24: a string is searched as text when told so, whatever it spells,
    and "auto" never fails on a string that cannot be a file name."""
    model, _ = fitted()
    texts: list[list[str]] = []
    embed_texts = model.embedder_.embed_texts
    monkeypatch.setattr(model.embedder_, "embed_texts", lambda t, *a: texts.append(list(t)) or embed_texts(t, *a))
    red = tmp_path / "red.png"
    Image.new("RGB", (12, 12), (255, 0, 0)).save(red)
    as_image = model.find_concepts(Image.new("RGB", (12, 12), (255, 0, 0)))
    assert model.find_concepts(str(red), kind="image") == model.find_concepts(str(red)) == as_image
    assert texts == []
    model.search(str(red), kind="text", n_images=3)
    model.find_concepts(str(red), kind="text")
    assert texts == [[str(red)], [str(red)]]
    long_text = "a red apple on a table " * 20  # over 255 characters: no file can have this name
    for text in (long_text, "red\0apple"):
        texts.clear()
        assert len(model.find_concepts(text)) == 3 and texts == [[text]]
    with pytest.raises(ImageLoadError):
        model.find_concepts(str(tmp_path / "missing.png"), kind="image")
    with pytest.raises(ConceptError, match="kind"):
        model.find_concepts("red", kind="words")
    with pytest.raises(ConceptError, match="string"):
        model.search(Image.new("RGB", (4, 4)), kind="text")


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


# ---------------------------------------------------------------------------- layers (issue 10)
class HashTexts:
    """Words at fixed pseudo-random points of a `dim`-d space (for words on every layer)."""

    name = "test-hash-texts"

    def __init__(self, dim: int):
        self.dim = dim

    def embed_images(self, images, batch_size=32, report=None):
        raise AssertionError("only precomputed embeddings in these tests")

    def embed_texts(self, texts, batch_size=32):
        rows = [np.random.default_rng(sum(map(ord, t)) + 7 * len(t)).normal(size=self.dim) for t in texts]
        return l2_normalize(np.asarray(rows, dtype=np.float32))


WORDS = [f"word{i}" for i in range(40)]


def layered(seed: int = 0) -> tuple[ConceptModel, np.ndarray, np.ndarray, np.ndarray]:
    x, groups, subs = nested_blobs(groups=5, subs=4, per=40, dim=32)
    model = ConceptModel(min_concept_size=15, embedding_model=HashTexts(32), random_state=seed, verbose=False)
    return model.fit(image_embeddings=x, docs=WORDS), x, groups, subs


def test_layers_nest_and_every_layer_is_described():
    model, x, groups, subs = layered()
    layers, sizes = model.layers_, model.layer_sizes_
    assert len(layers) >= 2 and sizes == sorted(sizes, reverse=True)
    assert model.labels_ is layers[model.layer_]
    for fine, coarse in itertools.pairwise(layers):
        assert all(len(np.unique(coarse[fine == c])) == 1 for c in range(int(fine.max()) + 1))
    assert max(normalized_mutual_info_score(subs, layer) for layer in layers) > 0.9
    assert max(normalized_mutual_info_score(groups, layer) for layer in layers) > 0.9
    for k, emb, ex, topics in zip(sizes, model.layer_embeddings_, model.layer_exemplars_, model.layer_topics_,
                                  strict=True):
        assert emb.shape == (k, 32) and sorted(ex) == list(range(k)) and sorted(topics) == list(range(k))
        assert all(len(words) == 10 for words in topics.values())
    assert model.topics_ is model.layer_topics_[model.layer_]
    assert (model.labels_ >= 0).mean() > 0.9 and model.probabilities_.shape == (len(x),)
    for k, size in enumerate(sizes):
        info = model.get_concept_info(layer=k)
        assert (info.Concept >= 0).sum() == size and info.Frequency.sum() == len(x)
    assert model.get_concept_info().equals(model.get_concept_info(layer=model.layer_))


def test_transform_at_any_layer_and_after_load_is_exact(tmp_path):
    model, x, _, _ = layered()
    new = x[::3] + 0.01 * np.random.default_rng(5).normal(size=x[::3].shape).astype(np.float32)
    before = [model.transform(image_embeddings=new, layer=k, return_probabilities=True)
              for k in range(len(model.layers_))]
    for k, layer in enumerate(model.layers_):
        np.testing.assert_array_equal(model.transform(image_embeddings=x, layer=k), layer)
    model.save(tmp_path / "m")
    loaded = ConceptModel.load(tmp_path / "m", embedding_model=HashTexts(32))
    assert loaded.layer_ == model.layer_ and loaded.layer_sizes_ == model.layer_sizes_
    for k in range(len(model.layers_)):
        np.testing.assert_array_equal(loaded.layers_[k], model.layers_[k])
        labels, probs = loaded.transform(image_embeddings=new, layer=k, return_probabilities=True)
        np.testing.assert_array_equal(labels, before[k][0])
        np.testing.assert_array_equal(probs, before[k][1])
        assert loaded.layer_topics_[k] == model.layer_topics_[k]
        assert loaded.layer_exemplars_[k] == model.layer_exemplars_[k]
    np.testing.assert_array_equal(loaded.probabilities_, model.probabilities_)
    with pytest.raises(ConceptError, match="layer"):
        loaded.transform(image_embeddings=new, layer=len(model.layers_))


def test_another_random_state_gives_nearly_the_same_concepts():
    from sklearn.metrics import adjusted_rand_score

    labels = [layered(seed)[0].layers_[0] for seed in (0, 1, 2)]
    assert min(adjusted_rand_score(labels[0], other) for other in labels[1:]) > 0.9


def test_features_feed_the_layers_and_transform_at_each_layer():
    x, _, subs = nested_blobs(groups=4, subs=3, per=40, dim=32)
    shared = l2_normalize(x[:, :16].copy())
    model = ConceptModel(min_concept_size=15, embedding_model=None, random_state=0, verbose=False)
    model.fit(None, image_embeddings=shared, image_features=x)
    assert model.hierarchy_.centres.shape[1] == 32  # clustered on the features
    assert max(normalized_mutual_info_score(subs, layer) for layer in model.layers_) > 0.9
    for k in range(len(model.layers_)):
        np.testing.assert_array_equal(model.transform(image_embeddings=shared, image_features=x, layer=k),
                                      model.layers_[k])


def test_scikit_learn_conventions_hold():
    """get_params/set_params/clone work, nothing ending in `_` exists before fit, fit returns self,
    and set_params(embedding_model=...) is honoured by the next call (issue 24)."""
    from sklearn.base import clone

    model = ConceptModel(min_concept_size=15, embedding_model=HashTexts(32), random_state=3, verbose=False,
                         n_words=4)
    params = model.get_params()
    assert params["min_concept_size"] == 15 and params["n_words"] == 4 and params["random_state"] == 3
    assert [a for a in dir(model) if a.endswith("_") and not a.startswith("_") and hasattr(model, a)] == []
    with pytest.raises(NotFittedError):
        model.embedder_  # noqa: B018
    twin = clone(model)
    assert twin is not model and twin.get_params()["n_words"] == 4
    x, _, _ = nested_blobs(groups=5, subs=4, per=40, dim=32)
    assert model.fit(image_embeddings=x, docs=WORDS) is model
    assert all(len(ws) == 4 for ws in model.topics_.values())
    np.testing.assert_array_equal(twin.fit(image_embeddings=x, docs=WORDS).labels_, model.labels_)
    other = HashTexts(32)
    other.name = "other-hash-texts"
    model.set_params(embedding_model=other)
    assert model.embedder_ is other  # not the backend loaded for the first embedding_model
    assert "hierarchy" not in params  # fit's concepts found elsewhere are an argument of fit, not a setting
