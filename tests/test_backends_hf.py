"""The transformers backend (`hf:`): CLIP and SigLIP, on tiny randomly initialised models of the
real architectures written to tmp folders (the code path, not quality), with no network."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import check_two_towers, solid
from PIL import Image

from concept import ConceptModel
from concept._errors import EmbeddingError
from concept.embedding import (
    UnconfirmedEmbeddingModel,
    load_embedding_model,
    stored_embedding_model,
)
from concept.embedding.hf import HFEmbedder
from concept.testing import write_random_clip, write_random_siglip

COLORS = {"red": (220, 30, 30), "green": (30, 180, 60), "blue": (40, 60, 220)}


@pytest.fixture(scope="module")
def siglip_folder(tmp_path_factory) -> Path:
    return write_random_siglip(tmp_path_factory.mktemp("siglip") / "tiny-siglip")


@pytest.fixture(scope="module")
def naflex_folder(tmp_path_factory) -> Path:
    return write_random_siglip(tmp_path_factory.mktemp("siglip2") / "tiny-siglip2-naflex", naflex=True)


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory) -> Path:
    return write_random_clip(tmp_path_factory.mktemp("hfclip") / "tiny-clip", "tiny", image_size=32, patch_size=8)


def fake_hub_cache(root: Path, repo: str, folder: Path) -> Path:
    """A Hugging Face cache at `root` holding `folder`'s files as the snapshot of `repo`."""
    commit = "0" * 40
    entry = root / f"models--{repo.replace('/', '--')}"
    (entry / "refs").mkdir(parents=True)
    (entry / "refs" / "main").write_text(commit)
    shutil.copytree(folder, entry / "snapshots" / commit)
    return root



@pytest.mark.parametrize("kind", ["siglip", "siglip2", "clip"])
def test_shapes_batching_and_unit_norm(kind, siglip_folder, naflex_folder, clip_folder, no_network):
    folder = {"siglip": siglip_folder, "siglip2": naflex_folder, "clip": clip_folder}[kind]
    model = HFEmbedder(str(folder), device="cpu", verbose=False)
    check_two_towers(model, 16 if kind == "clip" else 32, "a long " * 40)
    assert model.device == "cpu" and model.model.device.type == "cpu"
    assert not no_network


def test_siglip_matches_transformers_own_preprocessing_and_padding(siglip_folder):
    """Our squash resize + normalisation in torch, and max-length padding, give the vectors of
    transformers' own image processor and tokenizer."""
    import torch
    from transformers import AutoImageProcessor, AutoTokenizer

    model = HFEmbedder(str(siglip_folder), device="cpu", verbose=False)
    assert (model.resize, model.image_size, model.mean) == ("squash", 32, (0.5, 0.5, 0.5))
    rng = np.random.default_rng(1)
    photos = [Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)) for h, w in ((50, 80), (64, 40))]
    processor = AutoImageProcessor.from_pretrained(str(siglip_folder))
    tokenizer = AutoTokenizer.from_pretrained(str(siglip_folder))
    with torch.no_grad():
        pixels = processor(images=photos, return_tensors="pt")["pixel_values"]
        theirs = model.model.get_image_features(pixel_values=pixels).pooler_output.numpy()
        tokens = tokenizer(["a cat", "two dogs"], padding="max_length", max_length=16, return_tensors="pt")
        their_text = model.model.get_text_features(**tokens).pooler_output.numpy()
    theirs /= np.linalg.norm(theirs, axis=1, keepdims=True)
    their_text /= np.linalg.norm(their_text, axis=1, keepdims=True)
    assert (model.embed_images(photos) * theirs).sum(axis=1).min() > 0.995
    np.testing.assert_allclose(model.embed_texts(["a cat", "two dogs"]), their_text, atol=1e-5)


def test_naflex_siglip2_patches_match_transformers_own_processor(naflex_folder):
    """NaFlex SigLIP 2 gets square images of its whole patch budget, cut into patches in torch as
    transformers' Siglip2 image processor cuts them."""
    import torch
    from transformers import AutoImageProcessor, AutoTokenizer

    model = HFEmbedder(str(naflex_folder), device="cpu", verbose=False)
    assert (model.model_type, model.resize, model.image_size, model.patch_size) == ("siglip2", "squash", 32, 8)
    assert model.is_sigmoid
    rng = np.random.default_rng(2)
    squares = [Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)) for _ in range(3)]
    inputs = AutoImageProcessor.from_pretrained(str(naflex_folder))(images=squares, return_tensors="pt")
    tokens = AutoTokenizer.from_pretrained(str(naflex_folder))(["a cat"], padding="max_length", max_length=16,
                                                               return_tensors="pt")
    with torch.no_grad():
        theirs = model.model.get_image_features(**inputs).pooler_output.numpy()
        their_text = model.model.get_text_features(**tokens).pooler_output.numpy()
    theirs /= np.linalg.norm(theirs, axis=1, keepdims=True)
    their_text /= np.linalg.norm(their_text, axis=1, keepdims=True)
    np.testing.assert_allclose(model.embed_images(squares, batch_size=2), theirs, atol=1e-5)
    np.testing.assert_allclose(model.embed_texts(["a cat"]), their_text, atol=1e-5)


def test_hf_clip_gives_the_vectors_of_the_sentence_transformers_backend(clip_folder):
    from concept.embedding.clip import CLIPEmbedder

    ours = HFEmbedder(str(clip_folder), device="cpu", verbose=False)
    theirs = CLIPEmbedder(str(clip_folder), device="cpu", verbose=False)
    images = [solid(rgb, size=(30 + 7 * i, 45)) for i, rgb in enumerate(COLORS.values())]
    assert (ours.embed_images(images) * theirs.embed_images(images)).sum(axis=1).min() > 0.9999
    texts = ["a cat", "a dog on a beach"]
    np.testing.assert_allclose(ours.embed_texts(texts), theirs.embed_texts(texts), atol=1e-5)
    assert ours.resize == "shortest" and not ours.is_sigmoid
    with pytest.raises(EmbeddingError, match="softmax"):
        ours.text_image_probability(0.3)


def test_siglip_calibration_is_the_trained_sigmoid(siglip_folder):
    """text_image_probability of our vectors' cosine is the sigmoid of SigLIP's own pair logits."""
    import torch
    from transformers import AutoImageProcessor, AutoTokenizer

    model = HFEmbedder(str(siglip_folder), device="cpu", verbose=False)
    assert model.is_sigmoid and model.logit_scale == pytest.approx(10.0) and model.logit_bias == pytest.approx(-10.0)
    cos = np.array([-0.2, 0.0, 0.5, 1.0])
    np.testing.assert_allclose(model.text_image_probability(cos), 1 / (1 + np.exp(-(10 * cos - 10))))
    photos, texts = [solid(rgb) for rgb in COLORS.values()], ["red", "a green thing", "blue sky"]
    processor = AutoImageProcessor.from_pretrained(str(siglip_folder))
    tokens = AutoTokenizer.from_pretrained(str(siglip_folder))(texts, padding="max_length", max_length=16,
                                                               return_tensors="pt")
    with torch.no_grad():
        out = model.model(pixel_values=processor(images=photos, return_tensors="pt")["pixel_values"], **tokens)
    expected = torch.sigmoid(out.logits_per_image).numpy()
    ours = model.text_image_probability(model.embed_images(photos) @ model.embed_texts(texts).T)
    np.testing.assert_allclose(ours, expected, rtol=1e-3, atol=1e-6)


def test_siglip_zero_shot_seeds_and_search_use_its_own_probabilities(siglip_folder, colour_images, no_network):
    """Random weights give meaningless scores, so the bias is set for the test: a pair is likely
    from a cosine between the images' best ones. Zero-shot names and seeds then take exactly the
    images whose most probable name is likely (`concept.matching`), and a text search reports
    SigLIP's probability of each raw cosine."""
    from concept.clustering.hierarchy import OUTLIER_THRESHOLD
    from concept.embedding.base import l2_normalize
    from concept.finding import ClusterSettings, find_hierarchy_for_fit
    from concept.seeding import MIN_MATCHED, seed_matches

    images = sorted(str(p) for p in colour_images.glob("*.png"))
    siglip = HFEmbedder(str(siglip_folder), device="cpu", verbose=False)
    names = ["red", "green", "blue"]
    x, texts = siglip.embed_images(images), l2_normalize(siglip.embed_texts(names))
    cos = x @ texts.T
    best = np.sort(cos.max(axis=1))
    threshold = float(best[len(best) // 2 - 1] + best[len(best) // 2]) / 2
    siglip.logit_bias = -siglip.logit_scale * threshold  # probability 0.5 at `threshold`
    expected = np.where(cos.max(axis=1) >= threshold, cos.argmax(axis=1), -1)
    assert 0 < (expected >= 0).sum() < len(x)
    counts = np.bincount(expected[expected >= 0], minlength=3)
    kept = [j for j in range(3) if counts[j] >= MIN_MATCHED]
    assert kept, counts

    settings = ClusterSettings(5, None, OUTLIER_THRESHOLD, 0)
    found = find_hierarchy_for_fit(x, x, 5, settings, embedder=siglip, zeroshot_names=names)
    assert sorted(found.names.values()) == sorted(names[j] for j in kept)
    for concept, name in found.names.items():
        np.testing.assert_array_equal(np.flatnonzero(found.hierarchy.fine == concept),
                                      np.flatnonzero(expected == names.index(name)))
    np.testing.assert_array_equal(seed_matches(x, texts, embedder=siglip),
                                  np.where(np.isin(expected, kept), expected, -1))

    model = ConceptModel(embedding_model=siglip, min_concept_size=5, random_state=0, verbose=False,
                         zeroshot_concepts=names).fit(images)
    for j in kept:  # the fitted model's zero-shot concepts are exactly those images
        members = np.unique(model.hierarchy_.fine[expected == j])
        assert len(members) == 1 and (model.hierarchy_.fine == members[0]).sum() == counts[j]
    concepts, nearest = model.search("red", top_n=3, n_images=5, kind="text")
    query = texts[0]
    for got, rows in ((concepts, model.concept_embeddings_), (nearest, model.embeddings_)):
        raw = rows @ query
        order = np.argsort(-raw, kind="stable")[:len(got)]
        assert [r for r, _ in got] == order.tolist()
        np.testing.assert_allclose([s for _, s in got], siglip.text_image_probability(raw[order]), rtol=1e-5)
    assert model.find_concepts("red", top_n=3, kind="text") == concepts
    assert not no_network


def test_hub_name_loads_from_the_cache_with_no_network_and_reloads_by_name(siglip_folder, tmp_path, monkeypatch,
                                                                          no_network, colour_images):
    from huggingface_hub import constants

    cache = fake_hub_cache(tmp_path / "hub", "someorg/tiny-siglip", siglip_folder)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.chdir(tmp_path)
    backend = load_embedding_model("hf:someorg/tiny-siglip", device="cpu", verbose=False)
    assert isinstance(backend, HFEmbedder)
    assert backend.name == "hf:someorg/tiny-siglip" and backend.spec == "hf:someorg/tiny-siglip"
    assert backend.embed_images([solid((1, 2, 3))]).shape == (1, 32)
    # a saved model names it, and loads it again by name from the user's cache
    assert stored_embedding_model("hf:someorg/tiny-siglip", tmp_path) == "hf:someorg/tiny-siglip"
    images = sorted(str(p) for p in colour_images.glob("*.png"))
    model = ConceptModel(embedding_model=backend, min_concept_size=5, verbose=False)
    model.fit(images, docs=["red", "green", "blue", "sky", "grass", "fire"])
    model.save(tmp_path / "saved")
    loaded = ConceptModel.load(tmp_path / "saved")
    assert loaded.embedding_model == "hf:someorg/tiny-siglip"
    np.testing.assert_array_equal(loaded.transform(images[:6]), model.transform(images[:6]))
    assert not no_network


def test_missing_model_fails_at_once_with_what_to_place_where(tmp_path, monkeypatch, no_network):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    start = time.monotonic()
    with pytest.raises(EmbeddingError) as info:
        load_embedding_model("hf:google/siglip2-base-patch16-224", device="cpu")
    assert time.monotonic() - start < 5
    message = str(info.value)
    for needle in ("not on this machine", str(tmp_path / "empty"), "hf download google/siglip2-base-patch16-224",
                   "allow_download=True", "save_pretrained"):
        assert needle in message
    with pytest.raises(EmbeddingError, match="does not exist"):
        load_embedding_model("hf:/no/such/folder")
    assert not no_network


def test_other_model_types_are_refused_clearly(tmp_path):
    from transformers import BertConfig, BertModel

    BertModel(BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                         vocab_size=100)).save_pretrained(tmp_path / "bert")
    with pytest.raises(EmbeddingError, match="'bert' model.*CLIP and SigLIP"):
        HFEmbedder(str(tmp_path / "bert"), device="cpu", verbose=False)


def test_fit_save_load_transform_round_trip_from_a_folder(siglip_folder, colour_images, tmp_path, no_network):
    images = sorted(str(p) for p in colour_images.glob("*.png"))
    spec = f"hf:{siglip_folder}"
    model = ConceptModel(embedding_model=spec, min_concept_size=5, verbose=False)
    model.fit(images, docs=["red", "green", "blue", "sky", "grass", "fire"])
    assert model.embeddings_.shape == (len(images), 32)
    assert model.n_concepts_ >= 1
    before = model.transform(images)
    model.save(tmp_path / "saved")
    # the folder names a path: not loaded on the folder's say-so, but the name is kept
    refused = ConceptModel.load(tmp_path / "saved")
    assert isinstance(refused.embedding_model, UnconfirmedEmbeddingModel)
    assert refused.embedding_model.name == model.embedder_.name
    with pytest.raises(EmbeddingError, match="pass it yourself"):
        refused.transform(images[:2])
    loaded = ConceptModel.load(tmp_path / "saved", embedding_model=spec)
    np.testing.assert_array_equal(loaded.transform(images), before)
    np.testing.assert_array_equal(loaded.labels_, model.labels_)
    assert loaded.embedder_.name == model.embedder_.name
    assert not no_network
