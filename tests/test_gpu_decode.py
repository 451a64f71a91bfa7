"""The GPU JPEG path, run on the CPU: header checks, resize, batching and per-item fallback.

No GPU here, so `decode` is a stand-in: torchvision's CPU decoder when it imports, else PIL. All
the logic around it (which files the device takes, sub-batches, fallbacks, order, reports) is
the code that runs on a GPU; `benchmarks/gpu_embed.sh` exercises the real nvJPEG decoder.
"""

from __future__ import annotations

import functools
import io
import sys

import numpy as np
import pytest
import torch
from conftest import solid
from PIL import Image

from concept import ImageLoadError
from concept.embedding import gpu_decode
from concept.embedding.base import center_crop_resize
from concept.embedding.gpu_decode import (
    iter_device_pixel_batches,
    jpeg_decoder,
    parse_jpeg_header,
    resize_center_crop,
)
from concept.embedding.pipeline import iter_pixel_batches
from concept.images import LoadReport

SIZE = 32
PREPROCESS = functools.partial(center_crop_resize, size=SIZE)


def _pil_decode(data: list[torch.Tensor]) -> list[torch.Tensor]:
    out = []
    for t in data:
        with Image.open(io.BytesIO(t.numpy().tobytes())) as im:
            im.load()  # raises on truncated data, as nvJPEG fails on it
            out.append(torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1).contiguous())
    return out


def _cpu_decoder():
    try:
        from torchvision.io import ImageReadMode, decode_jpeg

        decode_jpeg(torch.frombuffer(bytearray(_jpeg_bytes(photo(8, 8))), dtype=torch.uint8))
    except Exception:  # noqa: BLE001 - not installed, or built for another torch
        return _pil_decode
    return functools.partial(decode_jpeg, mode=ImageReadMode.RGB, device="cpu")


class Counting:
    """Wraps a decoder and records how many images each call got; fails a call that holds
    one of the `refuse` files, as nvJPEG fails a whole batch on a file it cannot decode."""

    def __init__(self, decode, refuse=()):
        self.decode, self.calls = decode, []
        self.refuse = {p.read_bytes() for p in refuse}

    def __call__(self, data):
        self.calls.append(len(data))
        if any(t.numpy().tobytes() in self.refuse for t in data):
            raise RuntimeError("Failed to decode batch")
        return self.decode(data)


def photo(w: int, h: int, seed: int = 0) -> Image.Image:
    """Smooth colour gradients with some noise: JPEG-friendly, unlike white noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    channels = [127 + 100 * np.sin(x / (7 + 5 * c + seed) + y / (11 + 3 * c)) for c in range(3)]
    a = np.stack(channels, axis=-1) + rng.normal(0, 4, (h, w, 3))
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))


def _jpeg_bytes(image: Image.Image, **kwargs) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=95, **kwargs)
    return buf.getvalue()


@pytest.fixture()
def jpegs(tmp_path):
    """Files the device path takes and files it must hand to the CPU path."""
    def write(name, image, **kwargs):
        path = tmp_path / name
        path.write_bytes(_jpeg_bytes(image, **kwargs))
        return path

    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: PIL applies it, nvJPEG would not
    gpu = [write("a.jpg", photo(120, 90, 1)), write("b.JPEG", photo(64, 100, 2), progressive=True),
           write("c.jpg", photo(120, 90, 3)), write("small.jpg", photo(20, 28, 4)),
           write("refused.jpg", photo(100, 80, 11))]  # a good file the device decoder refuses
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(_jpeg_bytes(photo(120, 90, 5))[:700])  # header fine, scan cut short
    cpu = {"gray": write("gray.jpg", photo(80, 60, 6).convert("L")),
           "cmyk": write("cmyk.jpg", photo(80, 60, 7).convert("CMYK")),
           "rotated": write("rotated.jpg", photo(90, 60, 8), exif=exif),
           "png": tmp_path / "d.png", "corrupt": corrupt, "missing": tmp_path / "missing.jpg",
           "misnamed": tmp_path / "png_named.jpg"}
    photo(70, 50, 9).save(cpu["png"])
    photo(70, 50, 10).save(cpu["misnamed"], format="PNG")
    return gpu, cpu


def test_headers_say_what_the_gpu_decodes(jpegs):
    gpu, cpu = jpegs
    a = parse_jpeg_header(gpu[0].read_bytes())
    assert (a.width, a.height, a.components, a.precision, a.sof, a.orientation) == (120, 90, 3, 8, 0xC0, 1)
    assert a.gpu_decodable(None) and not a.gpu_decodable(max_pixels=100)
    assert parse_jpeg_header(gpu[1].read_bytes()).sof == 0xC2  # progressive: nvJPEG decodes it
    assert parse_jpeg_header(cpu["gray"].read_bytes()).components == 1
    assert parse_jpeg_header(cpu["cmyk"].read_bytes()).components == 4
    assert parse_jpeg_header(cpu["rotated"].read_bytes()).orientation == 6
    for name in ("gray", "cmyk", "rotated"):
        assert not parse_jpeg_header(cpu[name].read_bytes()).gpu_decodable(None), name
    assert parse_jpeg_header(cpu["png"].read_bytes()) is None
    assert parse_jpeg_header(b"\xff\xd8\xff\xe0\x00") is None  # cut inside a segment
    assert parse_jpeg_header(b"") is None
    data = cpu["rotated"].read_bytes()
    for end in range(len(data) // 4):  # any cut, never an exception
        parse_jpeg_header(memoryview(data)[:end])


@pytest.mark.parametrize("size", [(120, 90), (64, 100), (20, 28), (300, 32)])
def test_resize_matches_the_cpu_preprocessing(size):
    image = photo(*size, seed=size[0])
    chw = torch.from_numpy(np.array(image)).permute(2, 0, 1).contiguous()
    got = resize_center_crop([chw, chw], SIZE).numpy()
    want = center_crop_resize(image, SIZE)
    assert got.shape == (2, SIZE, SIZE, 3) and got.dtype == np.uint8
    diff = np.abs(got[0].astype(int) - want.astype(int))
    assert diff.mean() < 0.6 and diff.max() <= 2  # same crop and filter; rounding differs


def run_device(images, batch_size=3, decode=None, **kwargs):
    report = LoadReport()
    decode = decode or _cpu_decoder()
    batches = list(iter_device_pixel_batches(images, batch_size, PREPROCESS, decode, device="cpu",
                                             size=SIZE, report=report, **kwargs))
    return batches, report


def run_cpu(images, batch_size=3):
    report = LoadReport()
    return list(iter_pixel_batches(images, batch_size, PREPROCESS, report=report)), report


@pytest.mark.parametrize(("workers", "background"), [(0, False), (2, True)])
def test_device_batches_equal_the_cpu_pipeline_and_fall_back_per_item(jpegs, workers, background):
    gpu, cpu = jpegs
    images = [gpu[0], cpu["gray"], gpu[1], cpu["png"], cpu["corrupt"], solid((255, 0, 0)), gpu[2],
              cpu["cmyk"], cpu["missing"], cpu["rotated"], np.zeros((10, 20, 3), np.uint8), gpu[3],
              cpu["misnamed"], gpu[4]]
    decode = Counting(_cpu_decoder(), refuse=[gpu[4]])
    got, report = run_device(images, decode=decode, num_workers=workers, background=background)
    want, want_report = run_cpu(images)
    assert report == want_report  # same loaded indices, same failures with the same reasons
    assert [f.index for f in report.failures] == [4, 8]
    assert "corrupt" in report.failures[0].reason and report.failures[1].reason == "file not found"
    assert [i for i, _ in got] == [i for i, _ in want]
    on_device = {0, 2, 6, 11}  # the refused 13 came from the CPU path: identical
    for (indices, a), (_, b) in zip(got, want):
        assert isinstance(a, torch.Tensor) and a.dtype == torch.uint8 and tuple(a.shape[1:]) == (SIZE, SIZE, 3)
        for k, index in enumerate(indices):
            if index in on_device:
                assert np.abs(a[k].numpy().astype(int) - b[k].astype(int)).mean() < 1.0
            else:  # the CPU path itself: identical
                np.testing.assert_array_equal(a[k].numpy(), b[k])
    # The device got the five whole JPEGs in batches of 3 inputs ([0, 2], [6], [11], [13]), then
    # the refused one alone, to find it; the truncated one never reached it.
    assert decode.calls == [2, 1, 1, 1, 1]


def test_a_huge_image_is_left_to_the_cpu_path_and_its_limit(jpegs):
    gpu, _ = jpegs
    decode = Counting(_cpu_decoder())
    got, report = run_device([gpu[0], gpu[3]], decode=decode, max_pixels=1000)
    assert decode.calls == [1]  # only the 20x28 image
    assert [f.index for f in report.failures] == [0] and "decompression bomb" in report.failures[0].reason
    assert got[0][0] == [1]


def test_sub_batches_stay_under_the_pixel_budget(jpegs, monkeypatch):
    gpu, _ = jpegs
    monkeypatch.setattr(gpu_decode, "_PIXEL_BUDGET", 120 * 90 * 2)
    decode = Counting(_cpu_decoder())
    got, _ = run_device([gpu[0], gpu[2], gpu[0], gpu[2], gpu[0]], batch_size=5, decode=decode)
    assert decode.calls == [2, 2, 1]
    assert got[0][0] == [0, 1, 2, 3, 4]
    torch.testing.assert_close(got[0][1][0], got[0][1][2])


@pytest.mark.parametrize("background", [False, True])
def test_strict_raises_at_the_first_failure(jpegs, background):
    gpu, cpu = jpegs
    with pytest.raises(ImageLoadError, match="missing.jpg"):
        run_device([gpu[0], cpu["missing"], gpu[1]], strict=True, background=background)


def test_the_background_producer_stops_when_the_consumer_does(jpegs):
    gpu, _ = jpegs
    batches = iter_device_pixel_batches(gpu * 20, 2, PREPROCESS, _cpu_decoder(), device="cpu",
                                        size=SIZE, background=True)
    next(batches)
    batches.close()  # joins the producer thread; nothing left running
    import threading

    assert not [t for t in threading.enumerate() if t.name == "concept-device-decode"]


def test_no_decoder_without_cuda_or_torchvision(monkeypatch):
    assert jpeg_decoder("cpu") is None and jpeg_decoder(None) is None
    gpu_decode._decoder_for.cache_clear()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setitem(sys.modules, "torchvision", None)  # import fails
    monkeypatch.setitem(sys.modules, "torchvision.io", None)
    assert jpeg_decoder("cuda") is None
    gpu_decode._decoder_for.cache_clear()


def test_no_decoder_when_the_probe_decode_fails(monkeypatch):
    """torchvision imports but cannot decode on the device (e.g. built without nvJPEG)."""
    import types

    fake = types.ModuleType("torchvision")
    fake.io = types.ModuleType("torchvision.io")
    monkeypatch.setitem(sys.modules, "torchvision", fake)
    monkeypatch.setitem(sys.modules, "torchvision.io", fake.io)
    gpu_decode._decoder_for.cache_clear()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)

    calls = []

    def broken(data, device):
        calls.append(device)
        raise RuntimeError("torchvision not compiled with nvJPEG support")

    monkeypatch.setattr(gpu_decode, "_torchvision_decode", broken)
    assert jpeg_decoder("cuda") is None
    assert calls == [torch.device("cuda", 0)]  # it was the probe that said no
    gpu_decode._decoder_for.cache_clear()


# --------------------------------------------------------------------------- through CLIPEmbedder
def test_clip_on_cpu_keeps_the_cpu_path_and_float32(tiny_clip, jpegs, monkeypatch):
    from concept.embedding import CLIPEmbedder

    clip = CLIPEmbedder(str(tiny_clip), verbose=False)
    assert clip.dtype_ == torch.float32 and clip.device == "cpu"
    called = []
    monkeypatch.setattr(gpu_decode, "iter_device_pixel_batches", lambda *a, **k: called.append(1))
    clip.embed_images(jpegs[0])
    assert not called  # on a CPU device the GPU path is never entered


def test_clip_embeds_the_same_through_the_device_path(tiny_clip, jpegs, monkeypatch):
    """The hook end to end with the stand-in decoder, as if the CPU were a GPU."""
    from concept.embedding import CLIPEmbedder

    gpu, cpu = jpegs
    images = [*gpu[:4], cpu["png"], cpu["gray"], cpu["missing"]]
    clip = CLIPEmbedder(str(tiny_clip), verbose=False)
    want = clip.embed_images(images)
    want_report = clip.last_report_
    decode = Counting(_cpu_decoder())
    monkeypatch.setattr(gpu_decode, "jpeg_decoder", lambda device: decode)
    monkeypatch.setattr(type(clip), "_on_cuda", lambda self: True)
    clip.gpu_batch_size = 4  # "on a GPU" batches grow to at least this
    got = clip.embed_images(images, batch_size=2)
    assert decode.calls == [4]  # one batch of 4 (not 2), the four JPEGs on the "device"
    assert clip.last_report_ == want_report
    assert got.shape == want.shape and got.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1, atol=1e-5)
    assert np.sum(got * want, axis=1).min() > 0.99


def test_clip_precision(tiny_clip, sample_photos):
    from concept import EmbeddingError
    from concept.embedding import CLIPEmbedder

    photos = list(sample_photos.values())
    fp32 = CLIPEmbedder(str(tiny_clip), verbose=False)
    bf16 = CLIPEmbedder(str(tiny_clip), precision="bf16", verbose=False)
    assert bf16.dtype_ == torch.bfloat16 and bf16.name == fp32.name
    a, b = fp32.embed_images(photos), bf16.embed_images(photos)
    assert b.dtype == np.float32 and np.sum(a * b, axis=1).min() > 0.98
    # The text tower stays float32, so texts embed exactly as before.
    np.testing.assert_allclose(bf16.embed_texts(["a cat"]), fp32.embed_texts(["a cat"]), atol=1e-6)
    with pytest.raises(EmbeddingError, match="precision"):
        CLIPEmbedder(str(tiny_clip), precision="int8", verbose=False)
