"""CLIP through sentence-transformers: by model name (from the local cache) or local folder.

Image preprocessing is split from the network so it can run in worker processes:
`preprocess` resizes and crops to uint8 (what CLIP's processor does before normalising) and
`embed_pixels` normalises with the processor's mean and std and runs the vision tower.
On a CUDA device the vision tower runs in bfloat16 (float16 where bf16 is unsupported), batches
are large, host batches go through pinned memory, and JPEG files are decoded on the GPU
(`gpu_decode.py`) when torchvision can; on the CPU everything stays float32.
A text-only model (such as `clip-ViT-B-32-multilingual-v1`, trained to match CLIP's text
tower in many languages) is paired with a CLIP image model, so it can embed images too.
"""

from __future__ import annotations

import hashlib
import logging
import os
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from concept._errors import EmbeddingError
from concept._hub import cached_file, looks_like_folder
from concept.embedding.base import (
    BaseEmbedder,
    load_sentence_transformer,
)

logger = logging.getLogger(__name__)

#: Torch dtypes of the `precision` names.
PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
#: Images per batch at least, on a CUDA device (ViT-B/32 in bf16 keeps an H100 busy from about here).
DEFAULT_GPU_BATCH = 512


def resolve_precision(precision: str, device: str) -> torch.dtype:
    """The dtype of the image tower: "auto" is bf16 on a CUDA device that supports it (else
    fp16) and fp32 elsewhere; "fp32", "bf16", "fp16" as named."""
    if precision == "auto":
        if not str(device).startswith("cuda"):
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if precision not in PRECISIONS:
        raise EmbeddingError(f"precision must be 'auto', 'fp32', 'bf16' or 'fp16', got {precision!r}")
    return PRECISIONS[precision]

#: Text-only models trained to share a CLIP image model's space, and that image model.
TEXT_ONLY_PAIRS = {
    "clip-ViT-B-32-multilingual-v1": "clip-ViT-B-32",
    "sentence-transformers/clip-ViT-B-32-multilingual-v1": "sentence-transformers/clip-ViT-B-32",
}


def _hub_id(name: str) -> str:
    """The Hub repository sentence-transformers reads a bare name from ("clip-ViT-B-32" is
    "sentence-transformers/clip-ViT-B-32")."""
    return name if "/" in name else f"sentence-transformers/{name}"


def _cache_folder() -> str:
    """Where sentence-transformers looks for Hub models on this machine."""
    from huggingface_hub import constants

    return os.environ.get("SENTENCE_TRANSFORMERS_HOME") or constants.HF_HUB_CACHE


def _model_tag(model: str) -> str:
    """The part of a backend's `name` that identifies `model`: a hub name as it is; a local
    folder by its name and a digest of its files (relative paths, sizes, the bytes of small
    files and both ends of large ones), so that two folders that happen to share a name (say
    ".../v1/clip" and ".../v2/clip") never share stored vectors or cached word embeddings,
    while a copy of the same folder elsewhere keeps them."""
    folder = Path(model).expanduser()
    if not folder.is_dir():
        return Path(model).name
    digest = hashlib.blake2b(digest_size=6)
    for file in sorted(f for f in folder.rglob("*") if f.is_file() and not f.name.startswith(".")):
        size = file.stat().st_size
        digest.update(f"{file.relative_to(folder).as_posix()}\0{size}\0".encode())
        digest_ends(digest, file, size)
    return f"{folder.name}@{digest.hexdigest()}"


def digest_ends(digest, path: Path, size: int, edge: int = 1 << 20) -> None:
    """Feed `digest` a file's bytes: all of a small file, the first and last `edge` of a large one
    (a model's weights are told apart without reading gigabytes)."""
    with open(path, "rb") as fh:
        digest.update(fh.read(edge))
        if size > 2 * edge:
            fh.seek(size - edge)
            digest.update(fh.read(edge))


def require_local_weights(name: str) -> None:
    """Raise EmbeddingError at once, with what to do, unless `name` is a local folder or a model
    in the local Hugging Face cache (a file lookup, no network; loading it would fail later,
    after a long traceback about the internet connection)."""
    if Path(name).expanduser().is_dir():
        return
    if looks_like_folder(name):
        raise EmbeddingError(f"The embedding model folder {name!r} does not exist: pass the folder of a "
                             "saved CLIP (sentence-transformers) model, or embedding_model='offline' "
                             "(the bundled model, which works now).")
    cache = _cache_folder()
    if any(cached_file(repo, ("modules.json", "config.json"), cache) for repo in dict.fromkeys((_hub_id(name), name))):
        return
    raise EmbeddingError(
        f"The weights of {name!r} are not on this machine: they were looked for as {_hub_id(name)!r} in "
        f"the Hugging Face cache {cache} (set by HF_HOME / HF_HUB_CACHE / SENTENCE_TRANSFORMERS_HOME) "
        f"and as a local folder, and concept never downloads by default. Pass the local folder of "
        f"the model instead (embedding_model='/path/to/clip-ViT-B-32', e.g. one written by "
        f"SentenceTransformer(...).save(folder) on a machine with network), or use "
        f"embedding_model='offline', the bundled model, which works now.")


def _dimension(model) -> int:
    """Output dimension of a SentenceTransformer (the method was renamed in version 6)."""
    getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return int(getter())


class CLIPEmbedder(BaseEmbedder):
    """CLIP (or any sentence-transformers model that embeds images and texts in one space).

    Parameters
    ----------
    model: image model name (sentence-transformers' `clip-ViT-B-32`, the reference's
        default) or a local folder. A known text-only multilingual name is paired with its
        image model automatically.
    text_model: optional separate text model sharing `model`'s space (e.g. the multilingual one).
    device: torch device ("cuda" when available, else "cpu").
    allow_download: let sentence-transformers fetch weights from the hub; off by default so
        nothing is downloaded at run time.
    precision: dtype of the image tower: "auto" (bf16 on CUDA, fp32 on CPU), "fp32", "bf16",
        "fp16". Vectors stay float32 and keep the same `name` (bf16 and fp32 vectors of one
        model agree closely; `benchmarks/embed.py` measures it).
    gpu_batch_size: on CUDA, batches hold at least this many images (None: 512).
    gpu_decode: decode JPEG files on the GPU: None (when torchvision can), True, False.
    """

    accepts_device_pixels = True

    def __init__(self, model: str = "clip-ViT-B-32", *, text_model: str | None = None,
                 device: str | None = None, allow_download: bool = False,
                 precision: str = "auto", gpu_batch_size: int | None = None,
                 gpu_decode: bool | None = None, verbose: bool = True) -> None:
        super().__init__(verbose=verbose)
        if text_model is None and model in TEXT_ONLY_PAIRS:
            model, text_model = TEXT_ONLY_PAIRS[model], model
        self.model_name = model
        self.text_model_name = text_model
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.allow_download = allow_download
        self.precision = precision
        self.dtype_ = resolve_precision(precision, self.device)
        self.gpu_batch_size = DEFAULT_GPU_BATCH if gpu_batch_size is None else gpu_batch_size
        self.gpu_decode = gpu_decode
        self.name = f"clip:{_model_tag(model)}" + (f"+{_model_tag(text_model)}" if text_model else "")
        if not allow_download:  # fail at once, not deep inside transformers
            for name in filter(None, (model, text_model)):
                require_local_weights(name)
        self._check_image_model()
        self.image_size = self._crop_size()
        text_dim = _dimension(self.text_model)
        if text_dim != self.dim:
            raise EmbeddingError(
                f"The text model {text_model!r} gives {text_dim}-d vectors but the image model "
                f"{model!r} gives {self.dim}-d: they do not share a space; pair models trained together."
            )

    @cached_property
    def image_model(self):
        return load_sentence_transformer(self.model_name, self.device, allow_download=self.allow_download,
                                         verbose=self.verbose)

    @cached_property
    def text_model(self):
        if self.text_model_name is None:
            return self.image_model
        return load_sentence_transformer(self.text_model_name, self.device, allow_download=self.allow_download,
                                         verbose=self.verbose)

    def _check_image_model(self) -> None:
        modalities = getattr(self.image_model, "modalities", None)
        if modalities is None:  # sentence-transformers before 6: a CLIP module has an image tower
            modalities = ["image"] if hasattr(getattr(self._module, "model", None), "get_image_features") else []
        if "image" not in modalities:
            raise EmbeddingError(
                f"{self.model_name!r} is a text-only model and cannot embed images. Pass a CLIP "
                f"image model as `model` and this one as `text_model`, e.g. "
                f"CLIPEmbedder('clip-ViT-B-32', text_model={self.model_name!r})."
            )

    @property
    def spec(self) -> str | None:
        """What `load_embedding_model` rebuilds this backend from (None if not rebuildable)."""
        if self.text_model_name is None:
            return self.model_name
        if TEXT_ONLY_PAIRS.get(self.text_model_name) == self.model_name:
            return self.text_model_name
        return None

    @property
    def _module(self):
        return self.image_model[0]

    def _crop_size(self) -> int:
        processor = getattr(getattr(self._module, "processor", None), "image_processor", None)
        crop = getattr(processor, "crop_size", None)
        if crop is None:
            return 224
        height = crop.get("height") if isinstance(crop, dict) else getattr(crop, "height", crop)
        return int(height)

    @cached_property
    def _normalisation(self) -> tuple[torch.Tensor, torch.Tensor]:
        proc = self._module.processor.image_processor
        mean = torch.tensor(proc.image_mean, dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(proc.image_std, dtype=torch.float32).view(1, 3, 1, 1)
        return mean.to(self.device) * 255.0, std.to(self.device) * 255.0

    @property
    def dim(self) -> int:
        return _dimension(self.image_model)

    @cached_property
    def _vision(self):
        """The CLIP model with its image tower (vision model + projection) in `dtype_`, or None
        when the module is not a plain CLIP. The text tower is left in float32."""
        model = getattr(self._module, "model", None)
        if model is None or not hasattr(model, "get_image_features"):
            return None
        if self.dtype_ != torch.float32:
            for part in ("vision_model", "visual_projection"):
                tower = getattr(model, part, None)
                if tower is not None:
                    tower.to(self.dtype_)
        return model

    def _device_batch(self, pixels: np.ndarray | torch.Tensor) -> torch.Tensor:
        """The uint8 batch on the model's device; a host batch goes through pinned memory and
        is copied without blocking the host (the normalisation queues behind the copy)."""
        if isinstance(pixels, torch.Tensor):
            return pixels.to(self.device, non_blocking=True)
        x = torch.from_numpy(np.ascontiguousarray(pixels))
        if self._on_cuda():
            return x.pin_memory().to(self.device, non_blocking=True)
        return x.to(self.device)

    def embed_pixels(self, pixels: np.ndarray | torch.Tensor) -> np.ndarray:
        model = self._vision
        if model is None:
            # Not a plain CLIP module: let sentence-transformers preprocess again itself.
            if isinstance(pixels, torch.Tensor):
                pixels = pixels.cpu().numpy()
            return self.image_model.encode([Image.fromarray(p) for p in pixels], convert_to_numpy=True,
                                           show_progress_bar=False)
        mean, std = self._normalisation
        x = self._device_batch(pixels)
        with torch.inference_mode():
            x = ((x.permute(0, 3, 1, 2).float() - mean) / std).to(self.dtype_)
            out = model.get_image_features(pixel_values=x)
        out = getattr(out, "pooler_output", out)
        return out.float().cpu().numpy()

    def _encode_texts(self, texts: list[str], batch_size: int) -> np.ndarray:
        return self.text_model.encode(texts, batch_size=batch_size, convert_to_numpy=True,
                                      show_progress_bar=False)
