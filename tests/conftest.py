"""Shared fixtures: real images (scikit-image samples, OpenClipart) and a tiny random CLIP."""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

OPENCLIPART = Path("/usr/share/openclipart/png")

# Tests never reach a model hub: everything they load is bundled or built in tmp folders.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    """Word embeddings and converted networks go to a cache of the test session's own, not the
    user's: tests see a cold cache the way CI does, and leave nothing behind in ~/.cache."""
    patch = pytest.MonkeyPatch()
    patch.setenv("CONCEPT_CACHE", str(tmp_path_factory.mktemp("concept-cache")))
    yield
    patch.undo()


@pytest.fixture(scope="session")
def sample_photos() -> dict[str, Image.Image]:
    """scikit-image's bundled photos of a cat, a cup of coffee and a rocket."""
    data = pytest.importorskip("skimage.data")
    return {name: Image.fromarray(getattr(data, name)()) for name in ("chelsea", "coffee", "rocket")}


@pytest.fixture(scope="session")
def clipart_paths() -> list[Path]:
    """A few dozen OpenClipart PNGs from three categories (Debian `openclipart-png`)."""
    if not OPENCLIPART.is_dir():
        pytest.skip("Debian package openclipart-png is not installed")
    paths = []
    for category in ("animals", "food", "transportation"):
        paths += sorted((OPENCLIPART / category).rglob("*.png"))[:8]
    return paths


def make_tiny_clip(folder: Path, seed: int = 0) -> Path:
    """Write a randomly initialised CLIP of the real architecture (tiny sizes) to `folder`."""
    from concept.testing import write_random_clip

    return write_random_clip(folder, "tiny", image_size=32, patch_size=8, seed=seed)


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory) -> Path:
    return make_tiny_clip(tmp_path_factory.mktemp("tiny_clip"))


@pytest.fixture(scope="session")
def offline_embedder():
    from concept.embedding import OfflineEmbedder

    return OfflineEmbedder(verbose=False)


def solid(color: tuple[int, int, int], size=(40, 30)) -> Image.Image:
    return Image.new("RGB", size, color)


def random_unit(n: int, d: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


class ColorEmbedder:
    """A fast, deterministic stand-in backend sharing a space between colours and colour words.

    Images embed as their mean RGB colour lifted to 8-d; the words "red", "green", "blue"...
    embed at their colour, any other word at a fixed pseudo-random point. It goes through
    concept's real image loading (via BaseEmbedder), so bad files are reported as usual.
    """

    COLORS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255),
              "yellow": (255, 255, 0), "white": (255, 255, 255), "black": (0, 0, 0)}

    def __new__(cls, *args, **kwargs):
        from concept.embedding.base import BaseEmbedder, center_crop_resize

        class _Impl(BaseEmbedder):
            name = "test-colors"
            image_size = 16

            @property
            def dim(self):
                return 8

            def preprocess(self, image):
                return center_crop_resize(image, 16)

            @staticmethod
            def lift(rgb):
                rgb = np.asarray(rgb, dtype=np.float32) / 255.0 - 0.5
                return np.concatenate([rgb, -rgb, [0.1, 0.1]], axis=-1)

            def embed_pixels(self, pixels):
                return np.stack([self.lift(p.reshape(-1, 3).mean(axis=0)) for p in pixels])

            def _encode_texts(self, texts, batch_size):
                out = []
                for t in texts:
                    if t in ColorEmbedder.COLORS:
                        out.append(self.lift(ColorEmbedder.COLORS[t]))
                    else:
                        seed = int.from_bytes(t.encode()[:8].ljust(8, b"\0"), "little") % 2**32
                        out.append(np.random.default_rng(seed).normal(size=8))
                return np.asarray(out, dtype=np.float32)

        return _Impl(verbose=False)


def blobs(n_per: int = 60, centers: int = 3, dim: int = 8, spread: float = 0.05, seed: int = 0):
    """Unit vectors around `centers` random directions, with their true labels."""
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(centers, dim))
    x = np.concatenate([c[i] + spread * np.linalg.norm(c[i]) * rng.normal(size=(n_per, dim))
                        for i in range(centers)])
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), np.repeat(np.arange(centers), n_per)


def nested_blobs(groups: int = 6, subs: int = 5, per: int = 40, dim: int = 64, seed: int = 0):
    """Unit vectors in `groups` groups of `subs` sub-clusters each; (x, group labels, sub labels)."""
    rng = np.random.default_rng(seed)
    g = rng.normal(size=(groups, dim))
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    centres = g[np.repeat(np.arange(groups), subs)] + 0.6 * rng.normal(size=(groups * subs, dim)) / np.sqrt(dim)
    sub = np.repeat(np.arange(groups * subs), per)
    x = centres[sub] + 0.25 * rng.normal(size=(len(sub), dim)) / np.sqrt(dim)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), sub // subs, sub


@pytest.fixture(scope="module")
def cluster():
    """A fresh local Ray cluster of 2 CPUs for a test module of concept.distributed (no
    dashboard, a small object store, quiet; workers inherit PYTHONPATH and the test session's
    private cache), shut down after the module."""
    import ray
    import ray.data

    from concept.distributed import connect

    if ray.is_initialized():
        ray.shutdown()
    connect("local", num_cpus=2, include_dashboard=False, object_store_memory=150 * 2**20,
            log_to_driver=False, configure_logging=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield ray
    ray.shutdown()


@contextmanager
def serving(server):
    """Run an HTTP server in a daemon thread for the duration of the block."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture(scope="session")
def clipart_model(clipart_paths, offline_embedder):
    """A model fitted with the offline model on the OpenClipart images of `clipart_paths`, with
    the titles of half of them as captions (for the tables and figures that read a fit)."""
    from concept import ConceptModel

    captions = [p.stem.replace("_", " ") if i % 2 else None for i, p in enumerate(clipart_paths)]
    model = ConceptModel(min_concept_size=3, embedding_model=offline_embedder, random_state=0, verbose=False,
                         vocabulary_size=2000)
    return model.fit([str(p) for p in clipart_paths], captions=captions)


@pytest.fixture(scope="module")
def colour_images(tmp_path_factory) -> Path:
    """Red, green and blue images (12 each) of varied sizes, with a little noise, in one folder."""
    from PIL import Image

    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for name, rgb in {"red": (220, 30, 30), "green": (30, 180, 60), "blue": (40, 60, 220)}.items():
        for i in range(12):
            h, w = 30 + 2 * i, 50 - i
            pixels = np.clip(np.array(rgb) + rng.normal(0, 8, (h, w, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / f"{name}_{i:02d}.png")
    return root


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection is recorded and refused, with the Hugging Face hub's own
    offline flag off, so that only the code under test keeps itself from the network."""
    import socket

    from huggingface_hub import constants

    attempts: list = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    return attempts


def write_dated_jpeg(path: Path, original: str | None, changed: str | None = None,
                     rgb: tuple[int, int, int] = (200, 40, 40), size: tuple[int, int] = (32, 24)) -> Path:
    """A JPEG whose EXIF holds `original` as DateTimeOriginal and `changed` as DateTime (None: left
    out; both None: no EXIF at all)."""
    from PIL import ExifTags, Image

    from concept.over_time import DATE_TIME, DATE_TIME_ORIGINAL

    image = Image.new("RGB", size, rgb)
    if original is None and changed is None:
        image.save(path)
        return path
    exif = Image.Exif()
    if changed is not None:
        exif[DATE_TIME] = changed
    if original is not None:
        exif.get_ifd(ExifTags.IFD.Exif)[DATE_TIME_ORIGINAL] = original
    image.save(path, exif=exif)
    return path


def check_two_towers(model, dim: int, long_text: str) -> None:
    """A two-tower backend's images and texts: (n, dim) float32 unit vectors, the same whatever the
    batch size, different images apart (four solid images, five texts, one of them `long_text`)."""
    images = [solid(rgb) for rgb in ((220, 30, 30), (30, 180, 60), (40, 60, 220))] + [solid((0, 0, 0), size=(20, 70))]
    whole = model.embed_images(images, batch_size=16)
    batched = model.embed_images(images, batch_size=3)  # batches of 3 and 1
    texts = ["a red square", "a green square", "a blue square", "x", long_text]
    words = model.embed_texts(texts, batch_size=2)
    assert whole.shape == (4, dim) and words.shape == (5, dim)
    assert whole.dtype == np.float32 and words.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(whole, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(words, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(batched, whole, atol=1e-5)
    np.testing.assert_allclose(model.embed_texts(texts, batch_size=64), words, atol=1e-5)
    assert not np.allclose(whole[0], whole[1])
