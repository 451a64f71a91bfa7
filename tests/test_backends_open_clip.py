"""The open_clip backend (`open_clip:`), on a tiny randomly initialised open_clip CLIP (the real
architecture and tokenizer, tiny sizes) written to tmp folders, with no network.

open_clip imports torchvision at import time (for its own transforms, which concept does not use:
its image pipeline resizes and normalises itself). Where torchvision is not installed (here: the
PyPI torchvision for torch 2.13 is a CUDA build that cannot load next to the CPU torch), the
tests import open_clip with a stand-in torchvision of the few names it imports, for this module
only; where a real torchvision is installed but broken, they are skipped.
"""

from __future__ import annotations

import importlib.util
import sys
import time
import types
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

COLORS = {"red": (220, 30, 30), "green": (30, 180, 60), "blue": (40, 60, 220)}
DOCS = ["red", "green", "blue", "sky", "grass", "fire"]


def _torchvision_stand_in(patch: pytest.MonkeyPatch) -> None:
    """Modules named like torchvision's that open_clip imports names from, holding inert classes."""
    from torch import nn
    from transformers.utils import import_utils

    import_utils.is_torchvision_available()  # cached as False before the stand-in exists

    class _Inert(type):
        def __getattr__(cls, attr):
            return cls

    class Inert(metaclass=_Inert):
        def __init__(self, *args, **kwargs):
            raise RuntimeError("torchvision stand-in: open_clip's own transforms are not available")

    def module(name: str) -> types.ModuleType:
        mod = types.ModuleType(name)
        mod.__getattr__ = lambda attr: Inert
        mod.__path__ = []
        patch.setitem(sys.modules, name, mod)
        return mod

    tv, transforms, functional = module("torchvision"), module("torchvision.transforms"), module(
        "torchvision.transforms.functional")
    ops, misc = module("torchvision.ops"), module("torchvision.ops.misc")
    misc.FrozenBatchNorm2d = type("FrozenBatchNorm2d", (nn.Module,), {})
    tv.transforms, transforms.functional, tv.ops, ops.misc = transforms, functional, ops, misc


@pytest.fixture(scope="module")
def open_clip():
    if importlib.util.find_spec("open_clip") is None:
        pytest.skip("open_clip_torch is not installed (pip install \"concept[open_clip]\")")
    patch = pytest.MonkeyPatch()
    stand_in = importlib.util.find_spec("torchvision") is None
    if stand_in:
        _torchvision_stand_in(patch)
    try:
        import open_clip
    except Exception as exc:  # noqa: BLE001 - a torchvision built for another torch
        patch.undo()
        pytest.skip(f"open_clip cannot be imported here ({type(exc).__name__}: {exc}); it needs the "
                    "torchvision built for this torch")
    yield open_clip
    patch.undo()
    if stand_in:  # the stand-in is gone: so is what imported it (open_clip, and timm through it)
        for name in [n for n in sys.modules if n.split(".")[0] in ("open_clip", "timm")]:
            del sys.modules[name]


@pytest.fixture(scope="module")
def folder(open_clip, tmp_path_factory) -> Path:
    from concept.testing import write_random_open_clip

    return write_random_open_clip(tmp_path_factory.mktemp("oc") / "tiny-open-clip")


@pytest.fixture
def tiny_tag(open_clip, folder, tmp_path, monkeypatch):
    """A built-in-like architecture "Tiny-Test" with a pretrained tag "tiny" whose weights are the
    hub repository someorg/tiny-open-clip, and an empty Hugging Face cache to put them in."""
    import copy
    import json

    from huggingface_hub import constants
    from open_clip import factory, pretrained

    cfg = json.loads((folder / "open_clip_config.json").read_text())
    monkeypatch.setitem(factory._MODEL_CONFIGS, "Tiny-Test", copy.deepcopy(cfg["model_cfg"]))
    monkeypatch.setitem(pretrained._PRETRAINED, "Tiny-Test",
                        {"tiny": {"url": "", "hf_hub": "someorg/tiny-open-clip/", "mean": (0.5, 0.5, 0.5),
                                  "std": (0.5, 0.5, 0.5), "interpolation": "bicubic", "resize_mode": "squash"}})
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


def put_in_cache(cache: Path, repo: str, files: dict[str, Path]) -> None:
    commit = "0" * 40
    entry = cache / f"models--{repo.replace('/', '--')}"
    (entry / "refs").mkdir(parents=True)
    (entry / "refs" / "main").write_text(commit)
    (entry / "snapshots" / commit).mkdir(parents=True)
    for name, source in files.items():
        (entry / "snapshots" / commit / name).write_bytes(source.read_bytes())



def test_folder_shapes_batching_and_unit_norm(folder, no_network):
    from concept.embedding.openclip import OpenCLIPEmbedder

    model = load_embedding_model(f"open_clip:{folder}", device="cpu", verbose=False)
    assert isinstance(model, OpenCLIPEmbedder)
    check_two_towers(model, 16, "a long " * 100)  # cut at 77 tokens
    assert model.device == "cpu" and next(model.model.parameters()).device.type == "cpu"
    assert model.name.startswith("open_clip:tiny-open-clip@") and model.spec == f"open_clip:{folder}"
    assert not model.is_sigmoid
    assert not no_network


def test_vectors_are_open_clips_own(folder, open_clip):
    """Our resize and normalisation give open_clip's encode_image of its own preprocessing (done
    here in numpy: resize the short side bicubic, centre crop, CLIP's mean and std)."""
    import torch

    from concept.embedding.base import center_crop_resize

    model = load_embedding_model(f"open_clip:{folder}", device="cpu", verbose=False)
    rng = np.random.default_rng(1)
    photos = [Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)) for h, w in ((50, 80), (64, 40))]
    mean = np.array([0.48145466, 0.4578275, 0.40821073], np.float32)
    std = np.array([0.26862954, 0.26130258, 0.27577711], np.float32)
    x = np.stack([(center_crop_resize(p, 32) / 255.0 - mean) / std for p in photos]).astype(np.float32)
    net = open_clip.create_model(f"local-dir:{folder}")
    tokenizer = open_clip.get_tokenizer(f"local-dir:{folder}")
    with torch.no_grad():
        theirs = net.encode_image(torch.from_numpy(x).permute(0, 3, 1, 2), normalize=True).numpy()
        their_text = net.encode_text(tokenizer(["a cat", "two dogs"]), normalize=True).numpy()
    np.testing.assert_allclose(model.embed_images(photos), theirs, atol=1e-4)
    np.testing.assert_allclose(model.embed_texts(["a cat", "two dogs"]), their_text, atol=1e-5)


def test_a_tag_loads_from_the_cache_with_no_network(tiny_tag, folder, no_network):
    put_in_cache(tiny_tag, "someorg/tiny-open-clip", {"open_clip_model.safetensors": folder / "open_clip_model.safetensors"})
    model = load_embedding_model("open_clip:Tiny-Test/tiny", device="cpu", verbose=False)
    assert model.name == model.spec == "open_clip:Tiny-Test/tiny"
    assert (model.resize, model.mean, model.image_size) == ("squash", (0.5, 0.5, 0.5), 32)  # the tag's own
    from_folder = load_embedding_model(f"open_clip:{folder}", device="cpu", verbose=False)
    texts = ["a cat", "a dog"]
    np.testing.assert_allclose(model.embed_texts(texts), from_folder.embed_texts(texts), atol=1e-6)  # same weights
    assert model.embed_images([solid((9, 9, 9))]).shape == (1, 16)
    assert stored_embedding_model("open_clip:Tiny-Test/tiny", "/m") == "open_clip:Tiny-Test/tiny"
    assert not no_network


def test_a_missing_checkpoint_fails_at_once_with_what_to_place_where(tiny_tag, no_network):
    start = time.monotonic()
    with pytest.raises(EmbeddingError) as info:
        load_embedding_model("open_clip:Tiny-Test/tiny", device="cpu")
    assert time.monotonic() - start < 5
    message = str(info.value)
    for needle in ("not on this machine", "open_clip_model.safetensors", "'someorg/tiny-open-clip'", str(tiny_tag),
                   "hf download someorg/tiny-open-clip", "allow_download=True", "'offline'"):
        assert needle in message
    with pytest.raises(EmbeddingError, match="names no weights"):
        load_embedding_model("open_clip:Tiny-Test")
    with pytest.raises(EmbeddingError, match="neither a pretrained tag.*tiny"):
        load_embedding_model("open_clip:Tiny-Test/nope")
    with pytest.raises(EmbeddingError, match="no architecture 'No-Such'"):
        load_embedding_model("open_clip:No-Such/tiny")
    with pytest.raises(EmbeddingError, match="does not exist"):
        load_embedding_model("open_clip:/no/such/folder")
    assert not no_network


def test_a_hf_tokenizer_missing_from_the_cache_is_named(tiny_tag, folder, open_clip, monkeypatch, no_network):
    """SigLIP-like models have a Hugging Face tokenizer: it must be in the cache too."""
    from open_clip import factory

    put_in_cache(tiny_tag, "someorg/tiny-open-clip", {"open_clip_model.safetensors": folder / "open_clip_model.safetensors"})
    factory._MODEL_CONFIGS["Tiny-Test"]["text_cfg"]["hf_tokenizer_name"] = "someorg/tiny-tokenizer"
    with pytest.raises(EmbeddingError, match="tokenizer.*'someorg/tiny-tokenizer'.*hf download someorg/tiny-tokenizer"):
        load_embedding_model("open_clip:Tiny-Test/tiny", device="cpu")
    assert not no_network


def test_architecture_with_a_checkpoint_file(tiny_tag, folder, tmp_path):
    checkpoint = tmp_path / "weights" / "my.safetensors"
    checkpoint.parent.mkdir()
    checkpoint.write_bytes((folder / "open_clip_model.safetensors").read_bytes())
    model = load_embedding_model(f"open_clip:Tiny-Test/{checkpoint}", device="cpu", verbose=False)
    assert model.name.startswith("open_clip:Tiny-Test/my.safetensors@")
    assert isinstance(stored_embedding_model(model.spec, tmp_path), UnconfirmedEmbeddingModel)  # a path
    with pytest.raises(EmbeddingError, match="neither a pretrained tag"):
        load_embedding_model(f"open_clip:Tiny-Test/{tmp_path / 'missing.safetensors'}")


def test_fit_save_load_transform_round_trip(folder, colour_images, tmp_path, no_network):
    images = sorted(str(p) for p in colour_images.glob("*.png"))
    spec = f"open_clip:{folder}"
    model = ConceptModel(embedding_model=spec, min_concept_size=5, verbose=False)
    model.fit(images, docs=DOCS)
    assert model.embeddings_.shape == (len(images), 16) and model.n_concepts_ >= 1
    before = model.transform(images)
    model.save(tmp_path / "saved")
    refused = ConceptModel.load(tmp_path / "saved")  # a path is not loaded on the folder's say-so
    assert isinstance(refused.embedding_model, UnconfirmedEmbeddingModel)
    assert refused.embedding_model.spec == spec and refused.embedding_model.name == model.embedder_.name
    loaded = ConceptModel.load(tmp_path / "saved", embedding_model=spec)
    np.testing.assert_array_equal(loaded.transform(images), before)
    assert loaded.embedder_.name == model.embedder_.name
    concepts, _ = loaded.search("red", top_n=2)
    assert len(concepts) >= 1
    assert not no_network


def test_what_to_install_is_said_when_open_clip_or_torchvision_cannot_be_imported(open_clip, monkeypatch):
    from concept.embedding.openclip import import_open_clip

    for name in [n for n in sys.modules if n.split(".")[0] == "open_clip"]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "torchvision", None)  # as if torchvision were missing
    monkeypatch.setitem(sys.modules, "torchvision.transforms", None)
    monkeypatch.setitem(sys.modules, "torchvision.transforms.functional", None)
    with pytest.raises(EmbeddingError, match="could not be imported.*torchvision.*whl/cpu"):
        load_embedding_model("open_clip:ViT-B-32/laion2b_s34b_b79k")
    monkeypatch.setitem(sys.modules, "open_clip", None)  # as if open_clip_torch were not installed
    with pytest.raises(EmbeddingError, match=r"pip install \"concept\[open_clip\]\""):
        import_open_clip()
