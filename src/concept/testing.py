"""Helpers for testing and benchmarking CLIP code paths with no weights to download.

`LayeredMapModel` is the part of a fitted model the explorer reads, for a synthetic two-layer
map of any size, so that the explorer's tests and benchmarks need no fit.

`write_random_clip` saves a randomly initialised CLIP of the real architecture (transformers'
`CLIPModel` with a real, if trivial, byte-level tokenizer and CLIP's image processor) to a
folder that `CLIPEmbedder` loads like any local CLIP. Random weights exercise the code, and
give the real model's speed, but say nothing of its quality. `write_random_siglip` does the same
for transformers' `SiglipModel` (`hf:` backend) and `write_random_open_clip` for open_clip's CLIP
(an open_clip folder: `open_clip_config.json` and `open_clip_model.safetensors`); `write_random_blip`
writes a tiny BLIP captioner (`concept.captioning`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["LayeredMapModel", "write_random_blip", "write_random_clip", "write_random_open_clip",
           "write_random_siglip"]

#: Token ids of the start and end markers in `_byte_vocab`.
_BOS, _EOS = 512, 513


def _byte_vocab() -> dict[str, int]:
    """A byte-level BPE vocabulary without merges: every byte is a token, as in GPT-2/CLIP."""
    printable = [*range(33, 127), *range(161, 173), *range(174, 256)]
    chars, extra = [], 0
    for b in range(256):
        if b in printable:
            chars.append(chr(b))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": i + 256 for i, c in enumerate(chars)})
    vocab["<|startoftext|>"] = _BOS
    vocab["<|endoftext|>"] = _EOS
    return vocab


def write_random_clip(folder: str | Path, architecture: str = "tiny", *, image_size: int = 224,
                      patch_size: int = 32, seed: int = 0) -> Path:
    """Write a randomly initialised CLIP to `folder` and return it.

    architecture: "vit-b32" (transformers' `CLIPConfig` defaults: ViT-B/32, 12 layers of 768,
        224 px, patch 32; `image_size`/`patch_size` are then ignored) or "tiny" (2 layers of 32,
        for fast tests, at `image_size` with `patch_size`).
    """
    import torch
    from transformers import (
        CLIPConfig,
        CLIPImageProcessor,
        CLIPModel,
        CLIPProcessor,
        CLIPTokenizer,
    )

    text = {"vocab_size": 514, "max_position_embeddings": 77, "bos_token_id": _BOS,
            "eos_token_id": _EOS, "pad_token_id": _EOS}
    if architecture == "vit-b32":
        config, image_size = CLIPConfig(text_config=text), 224
    elif architecture == "tiny":
        small = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2}
        vision = {**small, "image_size": image_size, "patch_size": patch_size}
        config = CLIPConfig(text_config={**text, **small}, vision_config=vision, projection_dim=16)
    else:
        raise ValueError(f"unknown architecture {architecture!r}: use 'vit-b32' or 'tiny'")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    CLIPModel(config).save_pretrained(folder)
    (folder / "vocab.json").write_text(json.dumps(_byte_vocab()))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    # Like the real CLIP tokenizers: longer texts are cut at the 77 positions the model has.
    tokenizer = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=77)
    images = CLIPImageProcessor(size={"shortest_edge": image_size},
                                crop_size={"height": image_size, "width": image_size})
    CLIPProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(folder)
    return folder


def write_random_siglip(folder: str | Path, *, image_size: int = 32, patch_size: int = 8, seed: int = 0,
                        logit_scale: float = 10.0, logit_bias: float = -10.0, naflex: bool = False) -> Path:
    """Write a tiny randomly initialised SigLIP (transformers' `SiglipModel`: 2 layers of 32, a
    16-token text tower, `image_size` px) with SigLIP's image processor (squash, mean/std 0.5) to
    `folder` and return it, with SigLIP's initial temperature and bias (exp(logit_scale) = 10,
    -10) unless given. The tokenizer is the byte-level one of `write_random_clip` (real
    SigLIPs have a SentencePiece or Gemma tokenizer; AutoTokenizer loads either alike).
    naflex: SigLIP 2's NaFlex variant instead (`Siglip2Model`, a budget of (image_size /
    patch_size)^2 patches)."""
    import torch
    from transformers import (
        CLIPTokenizer,
        Siglip2Config,
        Siglip2ImageProcessor,
        Siglip2Model,
        SiglipConfig,
        SiglipImageProcessor,
        SiglipModel,
    )

    small = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2}
    text = {**small, "vocab_size": 514, "max_position_embeddings": 16, "bos_token_id": _BOS,
            "eos_token_id": _EOS, "pad_token_id": _EOS}
    patches = (image_size // patch_size) ** 2
    if naflex:
        config = Siglip2Config(text_config=text, vision_config={**small, "num_patches": patches,
                                                                "patch_size": patch_size})
    else:
        config = SiglipConfig(text_config=text, vision_config={**small, "image_size": image_size,
                                                               "patch_size": patch_size})
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = (Siglip2Model if naflex else SiglipModel)(config)
    with torch.no_grad():
        model.logit_scale.fill_(float(np.log(logit_scale)))
        model.logit_bias.fill_(logit_bias)
    model.save_pretrained(folder)
    (folder / "vocab.json").write_text(json.dumps(_byte_vocab()))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=16).save_pretrained(folder)
    if naflex:
        Siglip2ImageProcessor(patch_size=patch_size, max_num_patches=patches).save_pretrained(folder)
    else:
        SiglipImageProcessor(size={"height": image_size, "width": image_size}).save_pretrained(folder)
    return folder


#: The words of `write_random_blip`'s tokenizer (BERT's special tokens and BLIP's [DEC] first).
_BLIP_WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", "a", "photo", "of", "the", "red", "green",
               "blue", "square", "tile", "cat", "dog", "car", "tree", "house", "on", "with", "and", "small", "big"]


def write_random_blip(folder: str | Path, *, image_size: int = 32, patch_size: int = 8, seed: int = 0) -> Path:
    """Write a tiny randomly initialised BLIP captioner (transformers' `BlipForConditionalGeneration`:
    2 layers of 32, `image_size` px) with BLIP's processor (its image processor and a BERT
    tokenizer of a 25-word vocabulary, made offline) to `folder` and return it. It captions
    with real generation, in words of its vocabulary, saying nothing true of the image."""
    import torch
    from transformers import BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipImageProcessor, BlipProcessor

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    small = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2}
    text = {**small, "vocab_size": len(_BLIP_WORDS), "max_position_embeddings": 32, "bos_token_id": 5,
            "pad_token_id": 0, "sep_token_id": 3, "eos_token_id": 3}
    config = BlipConfig(text_config=text, vision_config={**small, "image_size": image_size, "patch_size": patch_size},
                        projection_dim=16)
    torch.manual_seed(seed)
    BlipForConditionalGeneration(config).save_pretrained(folder)
    (folder / "vocab.txt").write_text("\n".join(_BLIP_WORDS) + "\n")
    tokenizer = BertTokenizer(str(folder / "vocab.txt"), bos_token="[DEC]", model_max_length=32)
    BlipProcessor(image_processor=BlipImageProcessor(size={"height": image_size, "width": image_size}),
                  tokenizer=tokenizer).save_pretrained(folder)
    return folder


#: open_clip's model config of `write_random_open_clip` (the real CLIP architecture, tiny sizes;
#: the vocabulary is open_clip's own BPE tokenizer's, bundled with it).
TINY_OPEN_CLIP = {"embed_dim": 16,
                  "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "patch_size": 8, "head_width": 16},
                  "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2}}


def write_random_open_clip(folder: str | Path, *, seed: int = 0, resize_mode: str = "shortest",
                           mean: Sequence[float] = (0.48145466, 0.4578275, 0.40821073),
                           std: Sequence[float] = (0.26862954, 0.26130258, 0.27577711)) -> Path:
    """Write a tiny randomly initialised open_clip CLIP (`TINY_OPEN_CLIP`) to `folder` as open_clip
    lays a model out (``open_clip_config.json`` with the model and preprocessing config, and
    ``open_clip_model.safetensors``), the folder `OpenCLIPEmbedder` loads; return it."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = open_clip.CLIP(**TINY_OPEN_CLIP)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "open_clip_model.safetensors"))
    preprocess = {"size": TINY_OPEN_CLIP["vision_cfg"]["image_size"], "mean": list(mean), "std": list(std),
                  "interpolation": "bicubic", "resize_mode": resize_mode}
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_OPEN_CLIP,
                                                              "preprocess_cfg": preprocess}))
    return folder


class LayeredMapModel:
    """A fitted model's attributes for a synthetic two-layer map: `groups` coarse concepts of
    `per` fine concepts each, fine ids by size (as the model numbers them), with exemplars,
    words per layer and, optionally, image files for thumbnails.

    classes: each point's coarse concept (its fine concept is drawn within it); default
        `n` points spread uniformly over the fine concepts.
    spread / scatter / tightness / noise: the layout's scales: coarse centres in
        [-spread, spread]^2, fine centres that far (SD) around them, points that far around
        their fine centre, outliers that far around the origin; `outliers` is their share.
    """

    def __init__(self, n: int = 3000, groups: int = 5, per: int = 4, seed: int = 0, *,
                 classes: np.ndarray | None = None, spread: float = 12.0, scatter: float = 3.0,
                 tightness: float = 0.3, noise: float = 9.0, outliers: float = 0.04,
                 n_exemplars: int = 4, sources: Sequence[str] | None = None,
                 failures: Sequence[str] = ()) -> None:
        from concept.images import LoadFailure

        rng = np.random.default_rng(seed)
        if classes is not None:
            classes = np.asarray(classes, np.int64)
            n, groups = len(classes), int(classes.max()) + 1
        k = groups * per
        group_centres = rng.uniform(-spread, spread, size=(groups, 2))
        fine_centres = np.repeat(group_centres, per, axis=0) + rng.normal(scale=scatter, size=(k, 2))
        fine = (rng.integers(0, k, size=n) if classes is None
                else classes * per + rng.integers(0, per, size=n))
        fine[rng.random(n) < outliers] = -1
        xy = (np.where(fine[:, None] >= 0, fine_centres[np.maximum(fine, 0)], 0.0)
              + rng.normal(scale=np.where(fine >= 0, tightness, noise)[:, None], size=(n, 2)))
        sizes = np.bincount(fine[fine >= 0], minlength=k)
        perm = np.empty(k, np.int64)
        perm[np.argsort(-sizes, kind="stable")] = np.arange(k)
        fine = np.where(fine >= 0, perm[np.maximum(fine, 0)], -1)
        parent = np.empty(k, np.int64)
        parent[perm] = np.arange(k) // per
        coarse = np.where(fine >= 0, parent[np.maximum(fine, 0)], -1)
        self.layers_, self.layer_, self.labels_ = [fine, coarse], 0, fine
        self.parent = parent
        self._xy = xy
        self.probabilities_ = rng.uniform(0.3, 1.0, size=n)
        self.n_concepts_ = k
        self.topics = {c: [f"fine{c}", f"leaf{c}", f"twig{c}"] for c in range(k)}
        self.layer_topics_ = [{c: [(w, 1.0) for w in self.topics[c]] for c in range(k)},
                              {g: [(f"GROUP{g}", 1.0), (f"broad{g}", 0.5)] for g in range(groups)}]
        self.exemplars_ = {c: np.flatnonzero(fine == c)[:n_exemplars].tolist() for c in range(k)}
        self.layer_exemplars_ = [self.exemplars_, {g: np.flatnonzero(coarse == g)[:n_exemplars].tolist()
                                                   for g in range(groups)}]
        self.collages_ = {}
        self.image_sources_ = None if sources is None else list(sources)
        self.failures_ = [LoadFailure(i, s, "not an image file") for i, s in enumerate(failures)]

    def map_2d(self) -> np.ndarray:
        return self._xy
