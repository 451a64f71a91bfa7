"""OpenVINO networks kept in the cache folder, and int8 versions of the bundled ones.

`load_or_build` reads a converted network from the cache folder or builds and saves it there
(in one rename). The int8 networks come from NNCF's post-training quantization (`pip install
concept[int8]`), calibrated on fixed inputs, so every machine builds the same network:
- the image network on 300 crops of the photos bundled in scikit-image's wheel plus 150 drawn
  clip-art-like pictures (flat shapes with outlines on white: calibrating on photos alone moved
  OpenClipart's vectors most); its first convolution and its classifier stay float32 (they moved
  the vectors most when quantized: mean cosine 0.947 -> 0.987 on OpenClipart);
- the text network on 3,000 words of the bundled vocabulary.
int8 runs 2-3x faster where the CPU has VNNI instructions, at a measured cost in agreement
(benchmarks/RESULTS.md), so it is opt-in: `embedding_model="offline-int8"`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from concept._atomic import atomic_folder
from concept._errors import EmbeddingError

logger = logging.getLogger(__name__)

#: Photos in scikit-image's wheel (read from the package, never downloaded).
CALIBRATION_PHOTOS = ("astronaut", "brick", "camera", "cell", "chelsea", "clock", "coffee", "coins",
                      "colorwheel", "grass", "gravel", "horse", "hubble_deep_field",
                      "immunohistochemistry", "logo", "moon", "page", "retina", "rocket", "text")


def cache_folder(name: str) -> Path:
    """Where the network `name` is kept, per OpenVINO version (converted networks differ)."""
    import openvino as ov

    from concept._cache import cache_dir

    version = re.sub(r"[^0-9A-Za-z.]+", "_", ov.__version__)  # it may hold slashes
    return cache_dir() / "openvino" / f"{name}-ov{version}"


def compile_streams(network: Any, precision: str) -> list:
    """`network` compiled for the CPU, one infer request per stream.

    THROUGHPUT: one stream per core or so, each on its own thread(s); a batch split over the
    streams (`infer_over_streams`) keeps every core busy with no thread waiting on another inside
    a layer, which is what kept the cores partly idle (or spinning) while decoders ran beside it.
    The precision hint is set explicitly for float networks: OpenVINO's own default on CPUs with
    bfloat16 instructions is bf16.
    """
    import openvino as ov

    config = {"PERFORMANCE_HINT": "THROUGHPUT"}
    if precision != "int8":
        config["INFERENCE_PRECISION_HINT"] = precision
    compiled = ov.Core().compile_model(network, "CPU", config)
    return [compiled.create_infer_request() for _ in range(max(1, int(compiled.get_property("NUM_STREAMS"))))]


def infer_over_streams(requests: list, inputs: dict, n_outputs: int) -> list[np.ndarray]:
    """Run `inputs` (arrays of one batch, by input name or index) split by rows over `requests`
    at once; the first `n_outputs` outputs, float32, rows in order."""
    n = len(next(iter(inputs.values())))
    parts = [p for p in np.array_split(np.arange(n), min(len(requests), max(n, 1))) if len(p)]
    for request, part in zip(requests, parts):
        request.start_async({k: np.ascontiguousarray(v[part]) for k, v in inputs.items()})
    outputs = []
    for request, _ in zip(requests, parts):
        request.wait()
        outputs.append([np.array(request.get_output_tensor(i).data, np.float32) for i in range(n_outputs)])
    return [np.concatenate([o[i] for o in outputs]) for i in range(n_outputs)]


def load_or_build(folder: Path, build: Callable[[], Any]):
    """The OpenVINO network saved in `folder`, or `build()`'s, saved there for next time."""
    import openvino as ov

    xml = folder / "model.xml"
    damaged = False
    if xml.exists():
        try:
            return ov.Core().read_model(xml)
        except Exception as exc:  # noqa: BLE001 - a damaged cache entry is rebuilt
            logger.warning("Ignoring a damaged OpenVINO cache %s (%s)", folder, exc)
            damaged = True
    network = build()
    save_atomically(network, folder, replace=damaged)
    return network


def save_atomically(network: Any, folder: Path, replace: bool = False) -> None:
    """Write an OpenVINO network (xml + bin) to `folder` in one rename; failures only logged.

    An existing `folder` is kept unless `replace` (it is damaged): processes racing to build the
    same cache entry keep the first one.
    """
    import openvino as ov

    try:
        with atomic_folder(folder, replace=replace) as tmp:
            ov.save_model(network, tmp / "model.xml", compress_to_fp16=False)
    except FileExistsError:
        logger.debug("Another process cached the OpenVINO model in %s first", folder)
    except OSError as exc:  # a read-only home must not stop embedding
        logger.info("Could not cache the OpenVINO model in %s (%s)", folder, exc)


def _nncf():
    try:
        import nncf
    except ImportError as exc:
        raise EmbeddingError("The int8 offline model needs NNCF and scikit-image to build it: "
                             "pip install 'concept[int8]'") from exc
    return nncf


def nncf_version() -> str:
    return _nncf().__version__


def _clip_art(rng: np.random.Generator):
    """A picture of 2-11 flat shapes with black outlines on white, of random size."""
    from PIL import Image, ImageDraw

    w, h = int(rng.integers(200, 800)), int(rng.integers(200, 800))
    image = Image.new("RGB", (w, h), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(2, 12))):
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        x1, y1 = x0 + int(rng.integers(20, w)), y0 + int(rng.integers(20, h))
        box = (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        kind = int(rng.integers(0, 3))
        if kind == 0:
            draw.ellipse(box, fill=colour, outline=(0, 0, 0), width=int(rng.integers(1, 6)))
        elif kind == 1:
            draw.rectangle(box, fill=colour, outline=(0, 0, 0), width=int(rng.integers(1, 6)))
        else:
            points = [(int(rng.integers(0, w)), int(rng.integers(0, h))) for _ in range(int(rng.integers(3, 7)))]
            draw.polygon(points, fill=colour, outline=(0, 0, 0))
    return image


def image_calibration(preprocess: Callable, n_crops: int = 300, n_drawn: int = 150) -> list[np.ndarray]:
    """Fixed calibration batches (1, H, W, 3) uint8: crops and flips of scikit-image's photos,
    and drawn clip art, each through `preprocess` (the backend's)."""
    try:
        import skimage.data
    except ImportError as exc:
        raise EmbeddingError("The int8 offline model needs scikit-image's photos to calibrate: "
                             "pip install 'concept[int8]'") from exc
    from PIL import Image

    from concept.images import load_image

    photos = [load_image(np.asarray(getattr(skimage.data, name)())) for name in CALIBRATION_PHOTOS]
    rng = np.random.default_rng(0)
    batches = []
    for i in range(n_crops):
        photo = photos[i % len(photos)]
        w, h = photo.size
        scale = rng.uniform(0.4, 1.0)
        cw, ch = int(w * scale), int(h * scale)
        x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        crop = photo.crop((x0, y0, x0 + cw, y0 + ch))
        if rng.random() < 0.5:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        batches.append(np.asarray(preprocess(crop), np.uint8)[None])
    batches += [np.asarray(preprocess(_clip_art(rng)), np.uint8)[None] for _ in range(n_drawn)]
    return batches


def quantize_image_network(network: Any, preprocess: Callable) -> Any:
    """int8 image network: all convolutions but the first, the classifier kept float32."""
    nncf = _nncf()
    layers = [op.get_friendly_name() for op in network.get_ordered_ops()
              if op.get_type_name() in ("Convolution", "GroupConvolution", "MatMul")]
    kept = nncf.IgnoredScope(names=[layers[0], layers[-1]]) if len(layers) >= 2 else None
    data = image_calibration(preprocess)
    logger.info("Quantizing the offline image network to int8 (once, about 20 s; cached).")
    return nncf.quantize(network, nncf.Dataset(data), subset_size=len(data), ignored_scope=kept,
                         preset=nncf.QuantizationPreset.MIXED, fast_bias_correction=True)


def quantize_text_network(network: Any, features: Callable[[list[str]], dict[str, np.ndarray]]) -> Any:
    """int8 text network calibrated on batches of 30 words of the bundled vocabulary."""
    nncf = _nncf()
    from concept.vocabulary import load_vocabulary

    words = load_vocabulary(20000)[::5][:3000]
    data = [features(words[i:i + 30]) for i in range(0, len(words), 30)]
    logger.info("Quantizing the offline text network to int8 (once; cached).")
    return nncf.quantize(network, nncf.Dataset(data), subset_size=len(data),
                         model_type=nncf.ModelType.TRANSFORMER)
