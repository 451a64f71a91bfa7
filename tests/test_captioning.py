"""Captions made by a captioner (`concept.captioning`): a callable or a transformers BLIP, cached on
disk, and concept words and names from the captions of each concept's exemplars."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import ColorEmbedder, solid
from PIL import Image

from concept import ConceptError, ConceptModel
from concept.captioning import (
    HFCaptioner,
    caption_images,
    caption_model_name,
    concept_names,
    load_caption_model,
)
from concept.testing import write_random_blip
from concept.words import caption_analyzer

COLOURS = {"red": (230, 10, 10), "green": (10, 230, 10), "blue": (10, 10, 230)}
#: Candidate words that name no colour: every colour word in a concept's words came from a caption.
DOCS = ["apple", "car", "music", "house", "tree", "water", "stone", "paper", "glass", "metal", "wood"]


class ColourCaptioner:
    """A fake captioner: names each image's dominant colour; counts the images it was given."""

    def __init__(self, name: str | None = "fake-colours") -> None:
        if name is not None:
            self.name = name
        self.seen = 0

    def __call__(self, images: list[Image.Image]) -> list[str]:
        self.seen += len(images)
        out = []
        for im in images:
            assert isinstance(im, Image.Image) and im.mode == "RGB"
            rgb = np.asarray(im, dtype=np.float64).reshape(-1, 3).mean(axis=0)
            out.append(f"a {list(COLOURS)[int(np.argmax(rgb))]} square tile")
        return out


def _tiles(n_per: int = 20, seed: int = 0) -> tuple[list[Image.Image], np.ndarray]:
    rng = np.random.default_rng(seed)
    images, truth = [], []
    for k, colour in enumerate(COLOURS.values()):
        for _ in range(n_per):
            images.append(solid(tuple(int(np.clip(v + rng.integers(-25, 25), 0, 255)) for v in colour)))
            truth.append(k)
    return images, np.asarray(truth)


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CONCEPT_CACHE", str(tmp_path / "cache"))


def _model(captioner, **kwargs) -> ConceptModel:
    return ConceptModel(min_concept_size=5, embedding_model=ColorEmbedder(), caption_model=captioner,
                        random_state=0, verbose=False, **kwargs)


# -- the fit ------------------------------------------------------------------------------------
def test_words_and_names_come_from_the_captioners_captions():
    images, truth = _tiles()
    captioner = ColourCaptioner()
    model = _model(captioner).fit(images, docs=DOCS)
    assert model.n_concepts_ == 3 and captioner.seen > 0
    colours = list(COLOURS)
    for c in range(model.n_concepts_):
        colour = colours[int(np.bincount(truth[model.labels_ == c]).argmax())]
        assert model.topics[c][0] == colour  # the concept's own colour leads its words
        assert model.custom_labels_[c] == f"a {colour} square tile"
    info = model.get_concept_info()
    named = info[info.Concept >= 0]
    assert set(named.Name) == {f"a {c} square tile" for c in colours}
    # every layer's exemplars were captioned, and only they
    exemplars = {r for layer in model.layer_exemplars_ for rows in layer.values() for r in rows}
    assert captioner.seen == len(exemplars)


def test_without_a_captioner_nothing_changes():
    images, _ = _tiles()
    plain = _model(None).fit(images, docs=DOCS)
    assert plain.custom_labels_ == {}
    assert not {"red", "green", "blue"} & {w for ws in plain.topics.values() for w in ws}


def test_user_captions_take_precedence_and_custom_labels_win():
    images, truth = _tiles()
    captions = ["violin"] * len(images)  # every image has the user's caption: none is captioned
    captioner = ColourCaptioner()
    model = _model(captioner).fit(images, docs=DOCS, captions=captions)
    assert captioner.seen == 0
    assert all(ws[0] == "violin" for ws in model.topics.values())
    assert set(model.custom_labels_.values()) == {"violin"}
    model.set_concept_labels({0: "mine"})
    assert model.get_concept_info().set_index("Concept").Name[0] == "mine"


def test_precomputed_embeddings_are_not_captioned(caplog):
    images, _ = _tiles()
    x = ColorEmbedder().embed_images(images)
    captioner = ColourCaptioner()
    model = _model(captioner).fit(image_embeddings=x, docs=DOCS)
    assert captioner.seen == 0 and model.custom_labels_ == {}
    assert "caption_model needs images" in caplog.text


# -- the cache ----------------------------------------------------------------------------------
def test_the_cache_is_hit_the_second_time(tmp_path):
    images, _ = _tiles(n_per=4)
    paths = []
    for i, im in enumerate(images):
        paths.append(tmp_path / f"tile{i}.png")
        im.save(paths[-1])
    first = ColourCaptioner()
    texts = caption_images(first, paths + images[:3], batch_size=5, verbose=False)
    assert first.seen == 15 and all(texts)
    again = ColourCaptioner()  # the same name: read from the disk cache
    assert caption_images(again, paths + images[:3], verbose=False) == texts
    assert again.seen == 0
    Image.new("RGB", (40, 30), (10, 230, 10)).save(paths[0])  # a changed file is captioned again
    changed = caption_images(again, paths, verbose=False)
    assert again.seen == 1 and changed[0] == "a green square tile" and changed[1:] == texts[1:12]
    other = ColourCaptioner("another-captioner")  # another name: its own entries
    caption_images(other, paths, verbose=False)
    assert other.seen == 12


def test_a_fit_reads_the_cache_and_a_callable_without_name_is_not_cached(tmp_path):
    images, _ = _tiles()
    named = ColourCaptioner()
    _model(named).fit(images, docs=DOCS)
    again = ColourCaptioner()
    second = _model(again).fit(images, docs=DOCS)
    assert named.seen > 0 and again.seen == 0 and len(second.custom_labels_) == 3
    anonymous = ColourCaptioner(name=None)
    caption_images(anonymous, images[:4], verbose=False)
    caption_images(anonymous, images[:4], verbose=False)
    assert anonymous.seen == 8 and caption_model_name(anonymous) is None


def test_a_captioner_must_return_one_text_per_image():
    with pytest.raises(ConceptError, match="one text per image"):
        caption_images(lambda ims: ["x"], [solid((1, 2, 3)), solid((3, 2, 1))], verbose=False)


def test_unreadable_images_get_no_caption(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    assert caption_images(ColourCaptioner(), [bad, solid((230, 10, 10))], verbose=False) == \
        [None, "a red square tile"]


# -- names --------------------------------------------------------------------------------------
def test_a_name_is_the_exemplar_caption_carrying_most_of_the_concepts_words():
    captions = ["a photo", "a red car on a road", "a red car", None, "something long " * 10]
    topics = {0: [("car", 0.9), ("red", 0.5), ("road", 0.1)], 1: [("zebra", 1.0)]}
    names = concept_names({0: [0, 2, 1], 1: [4, 3]}, captions, topics, caption_analyzer())
    assert names[0] == "a red car on a road"
    assert names[1].endswith("…") and len(names[1]) <= 61  # no word matches: the first, shortened


# -- specs and transformers models --------------------------------------------------------------
def test_a_missing_model_folder_is_a_clear_error(tmp_path):
    for spec in (tmp_path / "no-such-model", f"hf:{tmp_path / 'no-such-model'}"):
        with pytest.raises(ConceptError, match="caption model folder .* does not exist"):
            load_caption_model(spec)
    with pytest.raises(ConceptError, match="caption_model must be"):
        load_caption_model(42)
    images, _ = _tiles(n_per=4)
    with pytest.raises(ConceptError, match="does not exist"):  # before any embedding
        _model(str(tmp_path / "no-such-model")).fit(images)


def test_a_hub_model_not_in_the_cache_is_a_clear_error(tmp_path, monkeypatch, no_network):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(ConceptError, match="not on this machine.*hf download nobody/no-such-captioner"):
        load_caption_model("hf:nobody/no-such-captioner")
    with pytest.raises(ConceptError, match="not on this machine"):  # a model's spec is checked before any work
        _model("hf:nobody/no-such-captioner").fit([solid((1, 2, 3))] * 4)
    assert no_network == []


@pytest.fixture(scope="module")
def blip_folder(tmp_path_factory):
    return write_random_blip(tmp_path_factory.mktemp("blip") / "tiny-blip")


def test_a_tiny_random_blip_loads_offline_and_captions_in_batches(blip_folder, no_network):
    captioner = load_caption_model(f"hf:{blip_folder}")
    assert isinstance(captioner, HFCaptioner) and captioner.model_type == "blip"
    assert captioner.name == caption_model_name(str(blip_folder)) and captioner.name.startswith("hf:tiny-blip")
    batches = []

    def counting(images):  # no name: not cached
        batches.append(len(images))
        return captioner(images)

    images = [solid(c) for c in [(230, 10, 10), (10, 230, 10), (10, 10, 230), (200, 200, 0), (0, 0, 0)]]
    texts = caption_images(counting, images, batch_size=2, verbose=False)
    assert len(texts) == 5 and all(isinstance(t, str) and t for t in texts)
    assert batches == [2, 2, 1]
    words = set(" ".join(texts).split())
    assert words <= set(open(blip_folder / "vocab.txt").read().split())  # generated from its own vocabulary
    assert no_network == []


def test_a_blip_folder_captions_a_fit_and_its_cache_spares_the_model(blip_folder, no_network, monkeypatch):
    images, _ = _tiles(n_per=8)
    model = _model(str(blip_folder)).fit(images, docs=DOCS)
    assert len(model.custom_labels_) == model.n_concepts_ > 0
    assert all(isinstance(n, str) and n for n in model.custom_labels_.values())

    def no_loading(*args, **kwargs):
        raise AssertionError("the model was loaded although every caption is cached")

    monkeypatch.setattr(HFCaptioner, "__init__", no_loading)
    again = _model(str(blip_folder)).fit(images, docs=DOCS)
    assert again.custom_labels_ == model.custom_labels_
    assert no_network == []


# -- the command line ---------------------------------------------------------------------------
def test_cli_fit_with_a_caption_model_names_the_concepts(blip_folder, tiny_clip, tmp_path, capsys, no_network):
    from concept.cli import main

    images, _ = _tiles(n_per=8)
    (tmp_path / "tiles").mkdir()
    for i, im in enumerate(images):
        im.save(tmp_path / "tiles" / f"t{i:02d}.png")
    out = tmp_path / "m"
    (tmp_path / "docs.txt").write_text("\n".join(DOCS) + "\n")
    code = main(["fit", str(tmp_path / "tiles"), "--out", str(out), "--embedding-model", str(tiny_clip),
                 "--docs", str(tmp_path / "docs.txt"), "--min-concept-size", "5", "--caption-model",
                 str(blip_folder), "--quiet"])
    assert code == 0, capsys.readouterr().err
    model = ConceptModel.load(out, embedding_model=str(tiny_clip))
    assert model.custom_labels_ and all(isinstance(n, str) and n for n in model.custom_labels_.values())
    code = main(["fit", str(tmp_path / "tiles"), "--out", str(tmp_path / "m2"), "--embedding-model", str(tiny_clip),
                 "--caption-model", str(tmp_path / "nope"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "does not exist" in err and "Traceback" not in err
