"""The one protocol every embedding backend follows, and the shared batching loop.

A backend turns images and texts into vectors of ONE shared space: float32 rows of unit
norm, so that cosine similarity is a dot product and image-to-word search makes sense.
"""

from __future__ import annotations

import functools
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from concept._errors import EmbeddingError
from concept.embedding.pipeline import iter_pixel_batches, resolve_num_workers
from concept.images import ImageInput, LoadReport

logger = logging.getLogger(__name__)


@runtime_checkable
class EmbeddingModel(Protocol):
    """What `ConceptModel` needs from an embedding backend (any object with these two methods)."""

    def embed_images(self, images: Sequence[ImageInput], batch_size: int = 32) -> np.ndarray:
        """Return one row per image, float32, in the same space as `embed_texts`."""
        ...

    def embed_texts(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Return one row per text, float32, in the same space as `embed_images`."""
        ...


@contextmanager
def _transformers_progress(verbose: bool) -> Iterator[None]:
    """Silence transformers' own "Loading weights" bar when not verbose, then restore it."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:  # pragma: no cover - installed with sentence-transformers
        yield
        return
    was_enabled = hf_logging.is_progress_bar_enabled()
    if not verbose:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def load_sentence_transformer(name_or_path: str, device: str | None, *, allow_download: bool = False,
                              verbose: bool = True):
    """Load a SentenceTransformer from a folder or the local cache; the hub only if allowed."""
    from sentence_transformers import SentenceTransformer

    local = Path(name_or_path).expanduser()
    if local.is_dir():
        name_or_path = str(local)
    try:
        with _transformers_progress(verbose):
            return SentenceTransformer(name_or_path, device=device or "cpu",
                                       local_files_only=not allow_download and not local.is_dir())
    except Exception as exc:  # many causes: missing cache, bad folder, no network
        where = "folder" if local.is_dir() else "model"
        hint = "" if allow_download or local.is_dir() else (
            " It is not in the local Hugging Face cache and downloads are off: pass a local folder, "
            "or allow_download=True on a machine with network."
        )
        raise EmbeddingError(f"Could not load the {where} {name_or_path!r}: {exc}.{hint}") from exc


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit norm as float32; all-zero rows stay zero instead of becoming NaN."""
    x = np.asarray(x, dtype=np.float32)
    # einsum makes no (n, d) temporary, unlike np.linalg.norm: large arrays cost page faults.
    norms = np.sqrt(np.einsum("...i,...i->...", x, x))[..., None]
    return x / np.maximum(norms, np.float32(1e-12))


def center_crop_resize(image: Image.Image, size: int) -> np.ndarray:
    """Resize the shorter side to `size` (bicubic) and cut the central square, as uint8 HxWx3.

    This is the standard evaluation transform of ImageNet CNNs and CLIP; it is cheap enough
    to run in worker processes, and uint8 keeps the batch four times smaller than float32.
    """
    w, h = image.size
    scale = size / min(w, h)
    new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
    left, top = (new_w - size) // 2, (new_h - size) // 2
    resized = image.resize((new_w, new_h), Image.Resampling.BICUBIC, reducing_gap=3.0)
    return np.asarray(resized.crop((left, top, left + size, top + size)), dtype=np.uint8)


def _as_float32(fn: Callable[[np.ndarray], np.ndarray], pixels: np.ndarray) -> np.ndarray:
    return np.asarray(fn(pixels), dtype=np.float32)


class BaseEmbedder(ABC):
    """Shared image loop of the bundled backends: lazy loading in worker processes, per-item
    failure report, progress bar, unit-norm float32 output.

    Subclasses split image embedding into preprocessing (one PIL image to a uint8 array at the
    model's input size) and `embed_pixels` (a uint8 batch to vectors), and implement
    `_encode_texts`. Preprocessing is `preprocess_fn`, a picklable callable that runs in the
    worker processes; the default resizes the short side and centre-crops to `image_size`.
    A backend with other preprocessing overrides `preprocess_fn` (overriding only `preprocess`
    still works, but decodes in the main process when it differs from `preprocess_fn`).
    """

    #: Short identifier of the model and its settings; keys caches and saved models.
    name: str = "base"
    #: Side of the square input the image model expects.
    image_size: int = 224
    #: Worker processes decoding and resizing images (None: auto, one core left to the model,
    #: at most 4; 0: everything in the main process). Set on an instance to change it.
    num_workers: int | None = None
    #: Torch device of the image model; a backend on "cuda" gets the GPU path below.
    device: str = "cpu"
    #: On a CUDA device, batches hold at least this many images (a GPU idles on 32).
    #: None: `batch_size` as given.
    gpu_batch_size: int | None = None
    #: Decode JPEG files on the GPU (`gpu_decode.py`) when the device is CUDA: None (auto) when
    #: torchvision can, False never, True asks for it (a warning when it cannot). Only taken by
    #: a backend whose `embed_pixels` accepts a uint8 tensor on its device
    #: (`accepts_device_pixels`) and whose preprocessing is the default `center_crop_resize`.
    gpu_decode: bool | None = None
    accepts_device_pixels: bool = False

    def __init__(self, *, verbose: bool = True) -> None:
        self.verbose = verbose
        self.last_report_: LoadReport | None = None

    @property
    def preprocess_fn(self) -> Callable[[Image.Image], np.ndarray]:
        """One RGB image to a uint8 HxWx3 array at the model's input size; picklable, so that it
        runs in worker processes without the backend (which holds the networks)."""
        return functools.partial(center_crop_resize, size=self.image_size)

    def preprocess(self, image: Image.Image) -> np.ndarray:
        """One RGB image to a uint8 HxWx3 array at the model's input size (`preprocess_fn`)."""
        return self.preprocess_fn(image)

    def _pixel_preprocessing(self) -> tuple[Callable[[Image.Image], np.ndarray], int]:
        """The preprocessing to run and the number of worker processes to run it in.

        A subclass that overrides `preprocess` but not `preprocess_fn` (the extension point
        before workers existed) gets its `preprocess` in the main process, unless both agree on
        a small test image, as the bundled backends' `preprocess` does.
        """
        workers = resolve_num_workers(self.num_workers, gpu=self._on_cuda())
        cls = type(self)
        if cls.preprocess is BaseEmbedder.preprocess or cls.preprocess_fn is not BaseEmbedder.preprocess_fn:
            return self.preprocess_fn, workers
        if workers and getattr(self, "_preprocess_agrees", None) is None:
            probe = Image.fromarray(np.arange(37 * 23 * 3, dtype=np.uint8).reshape(23, 37, 3))
            try:
                self._preprocess_agrees = bool(np.array_equal(self.preprocess(probe), self.preprocess_fn(probe)))
            except Exception:  # noqa: BLE001 - any failure means: use the subclass's own method
                self._preprocess_agrees = False
        if workers and self._preprocess_agrees:
            return self.preprocess_fn, workers
        return self.preprocess, 0

    def _on_cuda(self) -> bool:
        return str(self.device).startswith("cuda")

    def _device_decoder(self, preprocess: Callable[[Image.Image], np.ndarray]):
        """The batched GPU JPEG decoder to use, or None for the CPU pipeline."""
        if self.gpu_decode is False or not self.accepts_device_pixels or not self._on_cuda():
            return None
        default = (isinstance(preprocess, functools.partial) and preprocess.func is center_crop_resize
                   and preprocess.keywords == {"size": self.image_size} and not preprocess.args)
        from concept.embedding.gpu_decode import jpeg_decoder  # imports torch

        decoder = jpeg_decoder(self.device) if default else None
        if decoder is None and self.gpu_decode:
            logger.warning("gpu_decode=True, but %s; decoding JPEGs on the CPU.",
                           "torchvision cannot decode JPEGs on this device" if default else
                           "this backend's preprocessing is not the default centre crop")
        return decoder

    @abstractmethod
    def embed_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """A uint8 batch (N, H, W, 3) from `preprocess` to (N, d) vectors (not yet normalised).

        A backend with `accepts_device_pixels = True` also takes the batch as a uint8 torch
        tensor on its device (from the GPU JPEG path).
        """

    @abstractmethod
    def _encode_texts(self, texts: list[str], batch_size: int) -> np.ndarray:
        """Texts to (N, d) vectors (not yet normalised)."""

    @property
    @abstractmethod
    def dim(self) -> int:
        """Dimension of the shared space."""

    def embed_images(
        self,
        images: Iterable[ImageInput],
        batch_size: int = 32,
        *,
        strict: bool = False,
        report: LoadReport | None = None,
    ) -> np.ndarray:
        """Embed images, one row per image that loaded (unit norm, float32).

        Images are opened lazily, `batch_size` at a time. Inputs that cannot be read are left
        out and listed in `report` (and in `self.last_report_`) with the reason; with
        `strict=True` the first one raises `ImageLoadError` instead.
        """
        vectors = self._map_images(images, self.embed_pixels, batch_size, strict=strict, report=report)
        return l2_normalize(vectors) if len(vectors) else np.zeros((0, self.dim), dtype=np.float32)

    def _map_images(
        self,
        images: Iterable[ImageInput],
        fn: Callable[[np.ndarray], np.ndarray],
        batch_size: int,
        *,
        strict: bool = False,
        report: LoadReport | None = None,
    ) -> np.ndarray:
        """Load, preprocess and apply `fn` batch by batch; the raw outputs stacked (maybe 0 rows).

        Paths are decoded and preprocessed in `num_workers` worker processes, ahead of the
        batch `fn` is running on (see `concept.embedding.pipeline`).
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if self.gpu_batch_size and self._on_cuda():
            batch_size = max(batch_size, self.gpu_batch_size)
        report = report if report is not None else LoadReport()
        total = len(images) if isinstance(images, Sequence) else None
        preprocess, workers = self._pixel_preprocessing()
        decoder = self._device_decoder(preprocess)
        if decoder is not None:  # JPEGs decoded on the GPU, the rest as below
            from concept.embedding.gpu_decode import iter_device_pixel_batches

            batches = iter_device_pixel_batches(
                images, batch_size, preprocess, decoder, device=self.device, size=self.image_size,
                num_workers=workers, strict=strict, report=report,
                draft_size=(self.image_size, self.image_size))
        else:
            batches = iter_pixel_batches(
                images, batch_size, preprocess, num_workers=workers, strict=strict, report=report,
                draft_size=(self.image_size, self.image_size))
        chunks: list[np.ndarray] = []
        done = 0
        # The network runs in a thread of its own, one batch at a time, while this thread
        # collects (and the workers decode) the next: OpenVINO and torch release the GIL.
        with tqdm(total=total, disable=not self.verbose, unit="img", desc="Embedding images") as bar, \
                closing(batches), ThreadPoolExecutor(1, thread_name_prefix="concept-embed") as network:
            running: Future | None = None
            for _, pixels in batches:
                if running is not None:
                    chunks.append(running.result())
                running = network.submit(_as_float32, fn, pixels)
                seen = len(report.loaded) + len(report.failures)
                bar.update(seen - done)
                done = seen
            if running is not None:
                chunks.append(running.result())
            bar.update(len(report.loaded) + len(report.failures) - done)
        self.last_report_ = report  # each failure was logged once as it happened: no second list
        return np.concatenate(chunks) if chunks else np.zeros((0, 0), dtype=np.float32)

    def embed_texts(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Embed texts, one unit-norm float32 row per text."""
        if isinstance(texts, str):
            raise TypeError("embed_texts expects a list of strings, not a single string")
        texts = [str(t) for t in texts]
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return l2_normalize(self._encode_texts(texts, batch_size))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"
