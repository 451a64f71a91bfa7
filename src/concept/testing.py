"""Helpers for testing and benchmarking CLIP code paths with no weights to download.

`write_random_clip` saves a randomly initialised CLIP of the real architecture (transformers'
`CLIPModel` with a real, if trivial, byte-level tokenizer and CLIP's image processor) to a
folder that `CLIPEmbedder` loads like any local CLIP. Random weights exercise the code, and
give the real model's speed, but say nothing of its quality.
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["write_random_clip"]

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
