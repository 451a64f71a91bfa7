"""Concept 0.2.1's public API, called as its README, notebook and docstrings call it (issue 26).

The reference (github.com/MaartenGr/Concept, concept/_model.py at v0.2.1) downloaded 25,000
Unsplash photos, their CLIP embeddings and the 20 newsgroups; here the same calls run on local
OpenClipart PNGs (Debian `openclipart-png`) with the default model (offline when no CLIP is
on this machine), and a few local sentences stand in for the newsgroup posts. Each call is
written as in the reference; the lines that differ say why. The unit tests after them check the
parameters' meaning with a fast stand-in backend.
"""

from __future__ import annotations

import glob
import inspect
import os
import random
import shutil

import numpy as np
import pytest
from conftest import ColorEmbedder, blobs
from matplotlib.figure import Figure
from PIL import Image
from sklearn.feature_extraction.text import CountVectorizer

from concept import ConceptError, ConceptModel, EmbeddingError, ModelFileError
from concept.persistence import load_model_state, save_model_state
from concept.words import TOKEN_PATTERN

#: The reference's public signatures (name, default), in order; `...` marks a required parameter.
REFERENCE = {
    "__init__": [("min_concept_size", 30), ("diversity", 0.3), ("embedding_model", "clip-ViT-B-32"),
                 ("vectorizer_model", None), ("umap_model", None), ("hdbscan_model", None), ("ctfidf", False)],
    "fit_transform": [("images", ...), ("docs", None), ("image_names", None), ("image_embeddings", None)],
    "fit": [("images", ...), ("image_names", None), ("image_embeddings", None)],
    "transform": [("images", ...), ("image_embeddings", None)],
    "find_concepts": [("search_term", ...)],
    "visualize_concepts": [("top_n", 9), ("concepts", None), ("figsize", (20, 15))],
    "save": [("path", ...)],
    "load": [("path", ...)],
}

#: Stand-ins for the notebook's 20 newsgroups posts: documents, not words.
DOCUMENTS = [
    "The farmer keeps a brown horse and two cows in the barn behind his house.",
    "Our cat chased a small mouse across the kitchen floor this morning.",
    "A large dog barked at the birds sitting on the garden fence.",
    "The zoo bought a young tiger, and the lion keepers were worried.",
    "She baked fresh bread and an apple pie for the village market.",
    "Cheese, grapes and a bottle of wine were served after dinner.",
    "The restaurant makes its soup with carrots, onions and potatoes.",
    "He ate a banana and an orange before the long bicycle race.",
    "The old train left the station two hours late because of snow.",
    "A red car and a yellow bus stopped at the crossing near the bridge.",
    "The airplane landed safely although the weather over the airport was bad.",
    "Fishermen took their boat out to sea before the sun came up.",
]


# -- the README and the notebook, on local images -----------------------------------------------
@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """A folder of 60 OpenClipart PNGs (20 animals, 20 food, 20 transport), the README's photos/."""
    from concept import datasets

    if not (datasets.OPENCLIPART_ROOT / "png").is_dir():
        pytest.skip("Debian package openclipart-png is not installed")
    clipart = datasets.openclipart(("animals", "food", "transportation"))
    folder = tmp_path_factory.mktemp("photos")
    for c in range(3):
        for i in np.flatnonzero(clipart.labels == c)[:20]:
            shutil.copyfile(clipart.images[i], folder / f"{c}_{i}.png")
    return folder


@pytest.fixture(scope="module")
def readme_with_nouns(photos):
    """The README's second fit: 'feed our model with nouns from the English vocabulary'."""
    from concept.vocabulary import load_vocabulary

    img_names = list(glob.glob(str(photos / "*.png")))  # README: glob.glob('photos/*.jpg')
    # README: nltk's WordNet nouns; these are the bundled WordNet nouns. 500, not 50_000, for time.
    random.seed(0)
    all_nouns = [word for word in load_vocabulary(20_000) if "_" not in word]
    selected_nouns = random.sample(all_nouns, 500)

    concept_model = ConceptModel()
    concepts = concept_model.fit_transform(img_names, docs=selected_nouns)
    return concept_model, concepts, img_names, selected_nouns


@pytest.mark.slow  # the default vocabulary: 20,000 nouns embedded once per (cold) cache
def test_readme_quick_start(photos):
    img_names = list(glob.glob(str(photos / "*.png")))

    concept_model = ConceptModel()
    concepts = concept_model.fit_transform(img_names)
    fig = concept_model.visualize_concepts()

    assert len(concepts) == len(img_names) and set(np.unique(concepts)) <= {-1, *range(concept_model.n_concepts_)}
    assert concept_model.n_concepts_ >= 2
    assert isinstance(fig, Figure) and len(fig.axes) == min(9, concept_model.n_concepts_)


def test_readme_fit_with_nouns_search_and_visualize(readme_with_nouns):
    concept_model, concepts, img_names, selected_nouns = readme_with_nouns
    assert len(concepts) == len(img_names) and concept_model.n_concepts_ >= 2
    assert all(set(words) <= set(selected_nouns) for words in concept_model.topics.values())
    fig = concept_model.visualize_concepts()
    assert len(fig.axes) == min(9, concept_model.n_concepts_)

    results = concept_model.find_concepts("beach")
    assert len(results) == min(5, concept_model.n_concepts_)  # "The top 5 similar topics are returned."
    assert all(isinstance(c, int) and 0 <= c < concept_model.n_concepts_ for c, _ in results)
    assert [s for _, s in results] == sorted((s for _, s in results), reverse=True)

    fig = concept_model.visualize_concepts(concepts=[c for c, _ in results])
    assert [ax.get_title().split(" ·")[0] for ax in fig.axes] == [f"Concept {c}" for c, _ in results]


def test_docstring_calls(readme_with_nouns, photos, tmp_path, monkeypatch):
    concept_model, concepts, img_names, _ = readme_with_nouns

    results = concept_model.find_concepts(search_term="dog")
    assert results == concept_model.find_concepts("dog") and len(results) == min(5, concept_model.n_concepts_)

    new_images = img_names[:7]
    new_concepts = concept_model.transform(new_images)
    assert new_concepts.shape == (7,) and np.isin(new_concepts, [-1, *range(concept_model.n_concepts_)]).all()
    one = concept_model.transform(img_names[0])  # "A single images or a list of images to predict"
    assert one.shape == (1,) and one[0] == new_concepts[0]

    monkeypatch.chdir(tmp_path)
    concept_model.save("my_model")
    loaded = ConceptModel.load("my_model")
    np.testing.assert_array_equal(loaded.transform(new_images), new_concepts)

    model = ConceptModel(min_concept_size=3, embedding_model=concept_model.embedding_model)
    assert model.fit(img_names[:30]) is model  # `concepts = concept_model.fit(images)`: fit returns the model
    assert len(model.labels_) == 30


def test_notebook(photos):
    from concept.embedding import load_embedding_model
    from concept.explorer.data import page_data

    # The notebook downloaded unsplash-25k-photos-embeddings.pkl: (file names, CLIP embeddings).
    img_names = sorted(os.listdir(photos))
    img_embeddings = load_embedding_model(verbose=False).embed_images([str(photos / n) for n in img_names])

    images = [Image.open(str(photos) + "/" + filepath) for filepath in img_names[:5000]]  # "photos/" + filepath
    image_names = img_names[:5000]
    image_embeddings = img_embeddings[:5000]
    docs = DOCUMENTS  # fetch_20newsgroups(subset='all', remove=('headers', 'footers', 'quotes'))['data']

    concept_model = ConceptModel()
    concepts = concept_model.fit_transform(images=images,
                                           docs=docs,
                                           image_names=image_names,
                                           image_embeddings=image_embeddings)
    fig = concept_model.visualize_concepts()

    k = concept_model.n_concepts_
    assert len(concepts) == len(images) and k >= 2 and len(fig.axes) == min(9, k)
    # docs are documents, so the words are the terms found in them, as the reference's vectorizer found them.
    terms = set(CountVectorizer(stop_words="english", token_pattern=TOKEN_PATTERN).fit(docs).get_feature_names_out())
    assert all(words and set(words) <= terms for words in concept_model.topics.values())
    # image_names: the names shown with each image.
    assert concept_model.image_names_ == image_names
    info = concept_model.get_concept_info()
    for c, exemplars in zip(info.Concept, info.Exemplars, strict=True):
        assert exemplars == ([image_names[r] for r in concept_model.exemplars_[c]] if c >= 0 else [])
    assert concept_model.get_image_info()["Image name"].tolist() == image_names
    assert page_data(concept_model, title="t", mode="report")["names"] == image_names


# -- the reference's parameters and what they mean (fast stand-in backend) -----------------------
def test_every_reference_parameter_is_there_in_its_order_with_its_default():
    for method, params in REFERENCE.items():
        ours = [p for p in inspect.signature(getattr(ConceptModel, method)).parameters.values()
                if p.name not in ("self", "cls")]
        assert [p.name for p in ours[:len(params)]] == [name for name, _ in params], method
        for p, (name, default) in zip(ours, params):
            assert p.kind == p.POSITIONAL_OR_KEYWORD, (method, name)
            if default is not ... and (method, name) not in {("__init__", "embedding_model"),
                                                          ("visualize_concepts", "figsize")}:
                assert p.default == default, (method, name)
    # Differences by design: embedding_model "auto" (CLIP when on this machine, else the offline
    # model), figsize None (sized to the grid of panels).
    assert inspect.signature(ConceptModel).parameters["embedding_model"].default == "auto"
    assert inspect.signature(ConceptModel.visualize_concepts).parameters["figsize"].default is None


def _colour_images(n_per: int = 20, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    out = []
    for base in ((220, 30, 30), (30, 200, 40), (40, 40, 210)):
        for _ in range(n_per):
            rgb = np.clip(np.asarray(base) + rng.integers(-25, 26, 3), 0, 255)
            out.append(Image.new("RGB", (24, 18), tuple(int(v) for v in rgb)))
    return out


def _model(**kwargs) -> ConceptModel:
    return ConceptModel(**{"min_concept_size": 5, "embedding_model": ColorEmbedder(), "random_state": 0,
                           "verbose": False, **kwargs})


COLOUR_WORDS = ["red", "green", "blue", "yellow", "piano", "river"]


def test_fit_takes_image_names_second_and_keeps_those_of_the_images_that_loaded(tmp_path):
    images = _colour_images()
    images[3] = str(tmp_path / "missing.png")
    names = [f"photo {i}" for i in range(len(images))]
    model = _model().fit(images, names)  # the reference's fit(images, image_names, image_embeddings)
    assert 3 not in model.image_indices_ and [f.index for f in model.failures_] == [3]
    assert model.image_names_ == [names[i] for i in model.image_indices_]

    labels = _model().fit_transform(images, COLOUR_WORDS, names)  # fit_transform(images, docs, image_names)
    np.testing.assert_array_equal(labels[model.image_indices_], model.labels_)
    x = model.embeddings_
    named = _model().fit(None, [f"v{i}" for i in range(len(x))], x)  # precomputed, third
    assert named.image_names_ == [f"v{i}" for i in range(len(x))]


def test_image_names_go_into_the_tables_and_survive_save_and_load(tmp_path):
    names = [f"img_{i:02d}.jpg" for i in range(60)]
    model = _model()
    model.fit_transform(_colour_images(), docs=COLOUR_WORDS, image_names=names)
    info = model.get_concept_info()
    assert list(info.columns) == ["Concept", "Frequency", "Words", "Exemplars"]
    for c, shown in zip(info.Concept, info.Exemplars, strict=True):
        assert shown == ([names[r] for r in model.exemplars_[c]] if c >= 0 else []) and (shown or c < 0)
    assert model.get_image_info()["Image name"].tolist() == names

    model.save(tmp_path / "m")
    loaded = ConceptModel.load(tmp_path / "m", embedding_model=ColorEmbedder())
    assert loaded.image_names_ == names
    assert loaded.get_concept_info().equals(info)
    assert loaded.get_image_info()["Image name"].tolist() == names

    unnamed = _model().fit(_colour_images())
    assert unnamed.image_names_ is None
    assert "Exemplars" not in unnamed.get_concept_info() and "Image name" not in unnamed.get_image_info()


def test_a_model_folder_saved_before_image_names_still_loads(tmp_path):
    model = _model().fit(_colour_images(), [f"n{i}" for i in range(60)])
    model.save(tmp_path / "m")
    state = load_model_state(tmp_path / "m")
    del state.texts["image_names"]
    save_model_state(state, tmp_path / "old")
    old = ConceptModel.load(tmp_path / "old", embedding_model=ColorEmbedder())
    assert old.image_names_ is None and "Image name" not in old.get_image_info()
    np.testing.assert_array_equal(old.labels_, model.labels_)

    state.texts["image_names"] = ["only one"]
    save_model_state(state, tmp_path / "bad")
    with pytest.raises(ModelFileError, match="image_names"):
        ConceptModel.load(tmp_path / "bad", embedding_model=ColorEmbedder())


def test_image_names_that_do_not_fit_the_images_are_refused():
    with pytest.raises(ConceptError, match="59 image_names"):
        _model().fit(_colour_images(), [str(i) for i in range(59)])
    with pytest.raises(ConceptError, match="list of names"):
        _model().fit(_colour_images(), "one name")


def test_partial_fit_names_the_new_images_by_their_files(tmp_path):
    model = _model().fit(_colour_images(), [f"n{i}" for i in range(60)])
    paths = []
    for i, image in enumerate(_colour_images(3, seed=1)):
        paths.append(str(tmp_path / f"new_{i}.png"))
        image.save(paths[-1])
    model.partial_fit(paths)
    assert model.image_names_ == [f"n{i}" for i in range(60)] + [f"new_{i}.png" for i in range(9)]
    model.partial_fit(np.stack([np.asarray(im) for im in _colour_images(1, seed=2)]))  # arrays: positions
    assert model.image_names_[-3:] == [str(p) for p in model.image_indices_[-3:]]


def test_transform_takes_a_single_image(tmp_path):
    model = _model().fit(_colour_images())
    red = _colour_images(1, seed=5)[0]
    red.save(tmp_path / "red.png")
    expected = model.transform([red])
    assert expected.shape == (1,) and expected[0] >= 0
    for single in (red, str(tmp_path / "red.png"), tmp_path / "red.png", np.asarray(red),
                   np.asarray(red.convert("L")), np.asarray(red.convert("RGBA"))):
        got = model.transform(single)
        assert got.shape == (1,), type(single)
        if not (isinstance(single, np.ndarray) and single.ndim == 2):  # grey is another colour
            np.testing.assert_array_equal(got, expected)
    labels, probs = model.transform(red, return_probabilities=True)
    assert labels.shape == (1,) and probs.shape == (1, model.n_concepts_)
    stack = np.stack([np.asarray(im) for im in _colour_images(2)])  # (6, 18, 24, 3): six images
    assert model.transform(stack).shape == (6,)
    with pytest.raises(ConceptError, match="must be a list"):
        _model().fit(red)  # one image cannot be clustered


def test_find_concepts_by_search_term_or_by_one_image():
    model = _model().fit(_colour_images(), docs=COLOUR_WORDS)
    by_word = model.find_concepts(search_term="red")
    assert model.topics[by_word[0][0]][0] == "red"
    red = _colour_images(1, seed=7)[0]
    assert model.find_concepts(red)[0][0] == by_word[0][0]
    assert model.find_concepts(np.asarray(red))[0][0] == by_word[0][0]
    assert len(model.find_concepts("red")) == 3  # the reference's top 5, fewer when there are fewer


def test_visualize_concepts_takes_figsize_third():
    model = _model().fit(_colour_images(), docs=COLOUR_WORDS)
    fig = model.visualize_concepts(2, None, (8, 6))
    assert tuple(fig.get_size_inches()) == (8.0, 6.0) and len(fig.axes) == 2
    assert tuple(model.visualize_concepts(figsize=(20, 15)).get_size_inches()) == (20.0, 15.0)
    assert len(model.visualize_concepts(concepts=[]).axes) == 3  # the reference: no concepts -> the top_n
    assert tuple(model.visualize_concepts(top_n=1).get_size_inches()) != (20.0, 15.0)  # None: sized to the panels
    with pytest.raises(ConceptError, match="figsize"):
        model.visualize_concepts(figsize=(8, -1))


def test_the_reference_constructor_positionally_and_its_sub_models():
    import hdbscan
    from umap import UMAP

    vectorizer = CountVectorizer()
    model = ConceptModel(30, 0.3, ColorEmbedder(), vectorizer, None, None, True)
    params = model.get_params()
    assert (params["min_concept_size"], params["diversity"], params["vectorizer_model"], params["ctfidf"]) == (
        30, 0.3, vectorizer, True)

    # The reference's own default sub-models, passed in as its README's users did.
    x, y = blobs(60, 3, 8, seed=3)
    model = ConceptModel(10, embedding_model=None, verbose=False, random_state=0,
                         umap_model=UMAP(n_neighbors=15, n_components=5, min_dist=0.0, metric="cosine", random_state=0),
                         hdbscan_model=hdbscan.HDBSCAN(min_cluster_size=10, metric="euclidean",
                                                       cluster_selection_method="eom", prediction_data=True))
    labels = model.fit_transform(image_embeddings=x)
    assert model.n_concepts_ == 3 and len(set(zip(labels, y))) == 3
    np.testing.assert_array_equal(model.transform(image_embeddings=x), labels)


def test_clip_names_are_the_references_and_are_not_downloaded():
    from concept.embedding import _clip_in_local_cache, load_embedding_model

    model = ConceptModel(embedding_model="clip-ViT-B-32-multilingual-v1")
    assert model.get_params()["embedding_model"] == "clip-ViT-B-32-multilingual-v1"
    if _clip_in_local_cache():
        pytest.skip("CLIP weights are on this machine")
    with pytest.raises(EmbeddingError, match="clip-ViT-B-32"):
        load_embedding_model("clip-ViT-B-32", verbose=False)
