"""CLIP and SigLIP (SigLIP 2 included) through transformers, by hub name or local folder.

``hf:ORG/NAME`` (e.g. ``hf:google/siglip2-base-patch16-224``, ``hf:openai/clip-vit-base-patch32``)
is read from the Hugging Face cache, ``hf:/path/to/folder`` from a folder written by
``save_pretrained`` (model, tokenizer and image processor). Nothing is downloaded unless
``allow_download=True``. The fixed-resolution SigLIP 2 checkpoints are SigLIP models to
transformers (model type ``siglip``, with a Gemma tokenizer); the NaFlex ones (``siglip2``, e.g.
``google/siglip2-base-patch16-naflex``) get square images of their full patch budget (16 x 16
patches of 16 px: 256 px, squashed like SigLIP's), not their native aspect ratio.

SigLIP was trained with a sigmoid loss, so its pair scores are probabilities on their own:
`text_image_probability(cos)` = sigmoid(exp(logit_scale) * cos + logit_bias).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from concept._errors import EmbeddingError
from concept._hub import cached_file, looks_like_folder
from concept.embedding.clip import _model_tag
from concept.embedding.towers import TwoTowerEmbedder, hub_offline

#: The model types `HFEmbedder` runs.
SUPPORTED = ("clip", "siglip", "siglip2")
#: transformers' PIL resampling codes.
_RESAMPLE_NAMES = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic"}


def _features(out) -> torch.Tensor:
    """transformers 5 returns a ModelOutput whose pooler_output holds the projected vectors."""
    return getattr(out, "pooler_output", out)


def _require_local(name: str, cache_dir: str | None) -> None:
    """EmbeddingError with what to do unless `name` is a folder or a hub model in the cache."""
    if Path(name).expanduser().is_dir():
        return
    if looks_like_folder(name):
        raise EmbeddingError(f"The model folder {name!r} does not exist: pass a folder written by "
                             "save_pretrained (model, tokenizer, image processor), or a hub name.")
    from huggingface_hub import constants

    if cached_file(name, ("config.json",), cache_dir) is None:
        raise EmbeddingError(
            f"The model {name!r} is not on this machine: it was looked for in the Hugging Face cache "
            f"{cache_dir or constants.HF_HUB_CACHE} (set by HF_HOME / HF_HUB_CACHE) and concept never downloads "
            f"by default. Place it there with `hf download {name}` on a machine with network (then copy the "
            f"cache), pass the folder written by save_pretrained ('hf:/path/to/folder'), pass "
            f"allow_download=True, or use embedding_model='offline', the bundled model, which works now.")


class HFEmbedder(TwoTowerEmbedder):
    """A transformers CLIPModel, SiglipModel (SigLIP and fixed-resolution SigLIP 2) or Siglip2Model
    (NaFlex SigLIP 2).

    Parameters
    ----------
    model: a hub name (``google/siglip2-base-patch16-224``) or a local folder.
    device: torch device (None: "cuda" when available, else "cpu").
    allow_download: let transformers fetch the model from the hub; off by default.
    cache_dir: the Hugging Face cache to read (None: HF_HUB_CACHE).
    precision: "auto" (bf16 on CUDA, fp32 on CPU), "fp32", "bf16", "fp16".
    gpu_batch_size / gpu_decode: as `CLIPEmbedder`'s (CUDA only; untested without a GPU).
    """

    def __init__(self, model: str, *, device: str | None = None, allow_download: bool = False,
                 cache_dir: str | None = None, precision: str = "auto", gpu_batch_size: int | None = None,
                 gpu_decode: bool | None = None, verbose: bool = True) -> None:
        super().__init__(verbose=verbose)
        self._setup_device(device, precision, gpu_batch_size, gpu_decode)
        self.allow_download = allow_download
        self.model_name = model
        self.spec = f"hf:{model}"
        local = Path(model).expanduser()
        source = str(local) if local.is_dir() else model
        if not allow_download:
            _require_local(model, cache_dir)
        self.name = f"hf:{_model_tag(source)}" if local.is_dir() else f"hf:{model}"
        options = {"local_files_only": not allow_download and not local.is_dir(), "cache_dir": cache_dir}
        from transformers import (
            AutoConfig,
            AutoImageProcessor,
            AutoModel,
            AutoTokenizer,
        )
        from transformers.utils import logging as hf_logging

        try:
            with hub_offline(not allow_download):
                config = AutoConfig.from_pretrained(source, **options)
                self.model_type = config.model_type
                if self.model_type not in SUPPORTED:
                    raise EmbeddingError(
                        f"{model!r} is a {self.model_type!r} model; hf: takes CLIP and SigLIP models "
                        f"({', '.join(SUPPORTED)}); other image-text models may run through open_clip "
                        "('open_clip:ARCH/TAG').")
                was = hf_logging.is_progress_bar_enabled()
                if not verbose:
                    hf_logging.disable_progress_bar()
                try:
                    net = AutoModel.from_pretrained(source, **options)
                finally:
                    if was:
                        hf_logging.enable_progress_bar()
                self.tokenizer = AutoTokenizer.from_pretrained(source, **options)
                processor = AutoImageProcessor.from_pretrained(source, **options)
        except EmbeddingError:
            raise
        except Exception as exc:  # many causes: a missing file, a bad folder
            raise EmbeddingError(f"Could not load the transformers model {self.spec!r}: {exc}") from exc
        net.eval().to(self.device)
        if self.dtype_ != torch.float32:  # CUDA only (untested here)
            net.to(self.dtype_)
        self.model = net
        self._read_processor(processor)
        self.max_length = int(config.text_config.max_position_embeddings)
        self.logit_scale = float(net.logit_scale.detach().float().exp())
        bias = getattr(net, "logit_bias", None)
        self.logit_bias = None if bias is None else float(bias.detach().float().reshape(-1)[0])

    def _read_processor(self, proc) -> None:
        """Size, resize, mean and std of the model's image processor (CLIP: short side and centre
        crop; SigLIP: squash to the square size; NaFlex: squash to the square of its patch budget)."""
        self.patch_size = None
        if self.model_type == "siglip2":
            self.patch_size = int(proc.patch_size)
            self.image_size, self.resize = self.patch_size * math.isqrt(int(proc.max_num_patches)), "squash"
        elif getattr(proc, "do_center_crop", False) and getattr(proc, "crop_size", None):
            crop = proc.crop_size
            self.image_size = int(crop["height"] if isinstance(crop, dict) else crop.height)
            self.resize = "shortest"
        else:
            size = proc.size
            size = dict(size) if not isinstance(size, dict) else size
            if "height" in size:
                if size["height"] != size["width"]:
                    raise EmbeddingError(f"{self.spec!r} expects non-square {size} images, which concept's "
                                         "image pipeline does not make.")
                self.image_size, self.resize = int(size["height"]), "squash"
            else:
                self.image_size, self.resize = int(size["shortest_edge"]), "shortest"
        resample = getattr(proc, "resample", 3)
        self.interpolation = _RESAMPLE_NAMES.get(int(getattr(resample, "value", resample)), "bicubic")
        self.mean = tuple(float(v) for v in proc.image_mean)
        self.std = tuple(float(v) for v in proc.image_std)

    def _image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        if self.patch_size is None:
            return _features(self.model.get_image_features(pixel_values=pixels))
        # NaFlex: the image as a sequence of patches, each flattened (row, column, channel), as
        # transformers' Siglip2 image processor lays them out; every patch is real (mask of ones)
        n, c, h, w = pixels.shape
        p = self.patch_size
        rows, cols = h // p, w // p
        patches = (pixels.reshape(n, c, rows, p, cols, p).permute(0, 2, 4, 3, 5, 1)
                   .reshape(n, rows * cols, p * p * c))
        mask = torch.ones((n, rows * cols), dtype=torch.long, device=pixels.device)
        shapes = torch.tensor([[rows, cols]] * n, dtype=torch.long, device=pixels.device)
        return _features(self.model.get_image_features(pixel_values=patches, pixel_attention_mask=mask,
                                                       spatial_shapes=shapes))

    def _text_features(self, texts: list[str]) -> torch.Tensor:
        padding = True
        if self.model_type in ("siglip", "siglip2"):
            # SigLIP was trained on texts padded to its full length (its text tower pools the last
            # token), and lowercased (SigLIP 2's Gemma tokenizer does not lowercase by itself)
            padding, texts = "max_length", [t.lower() for t in texts]
        tokens = self.tokenizer(texts, padding=padding, truncation=True, max_length=self.max_length,
                                return_tensors="pt")
        inputs = {k: v.to(self.device) for k, v in tokens.items() if k in ("input_ids", "attention_mask")}
        return _features(self.model.get_text_features(**inputs))
