"""What the torch two-tower backends share (open_clip in `openclip.py`, transformers' CLIP and
SigLIP in `hf.py`): the image resize each model was trained with, the hub kept offline while a
model loads, and a base class that normalises uint8 batches on the model's device, runs the
towers in batches and knows the model's own image-text calibration.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from concept._errors import EmbeddingError
from concept.embedding.base import BaseEmbedder, center_crop_resize
from concept.embedding.clip import DEFAULT_GPU_BATCH, digest_ends, resolve_precision

_RESAMPLE = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR,
             "nearest": Image.Resampling.NEAREST, "lanczos": Image.Resampling.LANCZOS}


def squash_resize(image: Image.Image, size: int, resample: str = "bicubic") -> np.ndarray:
    """Resize to `size` x `size` ignoring the aspect ratio (SigLIP's preprocessing), uint8 HxWx3."""
    return np.asarray(image.resize((size, size), _RESAMPLE[resample], reducing_gap=3.0), dtype=np.uint8)


def letterbox_resize(image: Image.Image, size: int, resample: str = "bicubic", fill: int = 0) -> np.ndarray:
    """Resize the longer side to `size` and pad the rest with `fill` (open_clip's "longest")."""
    w, h = image.size
    scale = size / max(w, h)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    canvas = Image.new("RGB", (size, size), (fill, fill, fill))
    canvas.paste(image.resize((new_w, new_h), _RESAMPLE[resample], reducing_gap=3.0),
                 ((size - new_w) // 2, (size - new_h) // 2))
    return np.asarray(canvas, dtype=np.uint8)


def resize_function(mode: str, size: int, resample: str = "bicubic", fill: int = 0
                    ) -> Callable[[Image.Image], np.ndarray]:
    """The picklable resize of a model's preprocessing: "shortest" (resize the short side, centre
    crop: CLIP), "squash" (SigLIP) or "longest" (letterbox)."""
    if resample not in _RESAMPLE:
        raise EmbeddingError(f"Unknown image interpolation {resample!r}; expected one of {sorted(_RESAMPLE)}")
    if mode == "shortest":
        # The default partial: the GPU JPEG path recognises it (bicubic, as CLIP's processor).
        return functools.partial(center_crop_resize, size=size)
    if mode == "squash":
        return functools.partial(squash_resize, size=size, resample=resample)
    if mode == "longest":
        return functools.partial(letterbox_resize, size=size, resample=resample, fill=fill)
    raise EmbeddingError(f"Unknown resize mode {mode!r}; expected 'shortest', 'squash' or 'longest'")


@contextmanager
def hub_offline(offline: bool = True) -> Iterator[None]:
    """Hugging Face's offline mode while a model loads (`huggingface_hub` and transformers both
    read `constants.HF_HUB_OFFLINE`): whatever the library tries, nothing reaches the network."""
    if not offline:
        yield
        return
    from huggingface_hub import constants

    was = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = was


def file_tag(path: str | Path) -> str:
    """A checkpoint file's name and a digest of its size and both ends, so two files of one name
    never share stored vectors (the folder counterpart is `clip._model_tag`)."""
    path = Path(path).expanduser()
    size = path.stat().st_size
    digest = hashlib.blake2b(f"{size}\0".encode(), digest_size=6)
    digest_ends(digest, path, size)
    return f"{path.name}@{digest.hexdigest()}"


class TwoTowerEmbedder(BaseEmbedder):
    """Base of a torch model with an image tower and a text tower in one space.

    A subclass loads `self.model` (on `self.device`), sets `image_size`, `resize`, `mean`, `std`
    (per channel, of [0, 1] pixels) and implements `_image_features` (normalised float pixels
    (N, 3, H, W) to vectors) and `_text_features` (a list of texts to vectors). It may set
    `logit_scale` and `logit_bias` (see `text_image_probability`).
    """

    accepts_device_pixels = True
    #: The resize of the model's preprocessing (see `resize_function`).
    resize: str = "shortest"
    interpolation: str = "bicubic"
    fill_color: int = 0
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    #: exp of the trained temperature; with `logit_bias` (SigLIP) an absolute calibration.
    logit_scale: float | None = None
    logit_bias: float | None = None

    def _setup_device(self, device: str | None, precision: str, gpu_batch_size: int | None,
                      gpu_decode: bool | None) -> None:
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.precision = precision
        self.dtype_ = resolve_precision(precision, self.device)
        self.gpu_batch_size = DEFAULT_GPU_BATCH if gpu_batch_size is None else gpu_batch_size
        self.gpu_decode = gpu_decode

    @property
    def preprocess_fn(self) -> Callable[[Image.Image], np.ndarray]:
        return resize_function(self.resize, self.image_size, self.interpolation, self.fill_color)

    @cached_property
    def _normalisation(self) -> tuple[torch.Tensor, torch.Tensor]:
        mean = torch.tensor(self.mean, dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32).view(1, 3, 1, 1)
        return mean.to(self.device) * 255.0, std.to(self.device) * 255.0

    def _device_batch(self, pixels: np.ndarray | torch.Tensor) -> torch.Tensor:
        if isinstance(pixels, torch.Tensor):
            return pixels.to(self.device, non_blocking=True)
        x = torch.from_numpy(np.ascontiguousarray(pixels))
        if self._on_cuda():  # untested here (no GPU): pinned memory, copy without blocking
            return x.pin_memory().to(self.device, non_blocking=True)
        return x.to(self.device)

    def embed_pixels(self, pixels: np.ndarray | torch.Tensor) -> np.ndarray:
        mean, std = self._normalisation
        x = self._device_batch(pixels)
        with torch.inference_mode():
            x = ((x.permute(0, 3, 1, 2).float() - mean) / std).to(self.dtype_)
            out = self._image_features(x)
        return out.float().cpu().numpy()

    def _encode_texts(self, texts: list[str], batch_size: int) -> np.ndarray:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        chunks = []
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                chunks.append(self._text_features(texts[start:start + batch_size]).float().cpu().numpy())
        return np.concatenate(chunks)

    def _image_features(self, pixels: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _text_features(self, texts: list[str]) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    @cached_property
    def dim(self) -> int:
        """Dimension of the shared space (of one text's vector)."""
        with torch.inference_mode():
            return int(self._text_features(["a"]).shape[-1])

    @property
    def is_sigmoid(self) -> bool:
        """True for a model trained with a sigmoid loss (SigLIP): its image-text scores are
        probabilities on their own, `text_image_probability`."""
        return self.logit_bias is not None

    def text_image_probability(self, cos: np.ndarray | float) -> np.ndarray:
        """The probability that a text matches an image, from their cosine: sigmoid(scale * cos
        + bias), as a SigLIP model was trained to score pairs. A softmax-trained CLIP has no
        such calibration (its logits only compare texts for one image): EmbeddingError."""
        if not self.is_sigmoid:
            raise EmbeddingError(f"{self.name} was trained with a softmax over texts and gives no "
                                 "absolute image-text probability; compare scores between texts instead.")
        z = float(self.logit_scale) * np.asarray(cos, dtype=np.float64) + float(self.logit_bias)
        return 1.0 / (1.0 + np.exp(-z))
