"""The parallel decode pipeline: same pixels as in-process, order, failures, laziness, backends."""

from __future__ import annotations

import functools
import time

import numpy as np
import pytest
from conftest import ColorEmbedder, solid

from concept import ImageLoadError
from concept.embedding.base import center_crop_resize
from concept.embedding.pipeline import (
    default_num_workers,
    iter_pixel_batches,
    resolve_num_workers,
)
from concept.images import LoadReport

PREPROCESS = functools.partial(center_crop_resize, size=24)


@pytest.fixture()
def mixed_inputs(clipart_paths, tmp_path):
    """Good PNGs with a corrupt file, a missing file, an empty file and in-memory images among them."""
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    good = clipart_paths[:12]
    return [good[0], corrupt, *good[1:5], tmp_path / "missing.png", solid((255, 0, 0)),
            *good[5:9], empty, np.zeros((10, 20, 3), np.uint8), *good[9:12]]


def run(images, batch_size, workers, **kwargs):
    report = LoadReport()
    batches = list(iter_pixel_batches(images, batch_size, PREPROCESS, num_workers=workers,
                                      report=report, **kwargs))
    return batches, report


@pytest.mark.parametrize("workers", [1, 2])
def test_workers_give_exactly_the_in_process_batches(mixed_inputs, workers):
    expected, expected_report = run(mixed_inputs, 4, 0)
    got, report = run(mixed_inputs, 4, workers)
    assert [i for i, _ in got] == [i for i, _ in expected]
    for (_, a), (_, b) in zip(got, expected, strict=True):
        assert a.dtype == np.uint8 and a.shape[1:] == (24, 24, 3)
        np.testing.assert_array_equal(a, b)
    assert report == expected_report


@pytest.mark.parametrize("workers", [0, 2])
def test_order_is_kept_and_failures_carry_their_input_position(mixed_inputs, workers):
    batches, report = run(mixed_inputs, 3, workers)
    indices = [i for idx, _ in batches for i in idx]
    assert indices == sorted(indices) == report.loaded
    assert [f.index for f in report.failures] == [1, 6, 12]
    reasons = [f.reason for f in report.failures]
    assert reasons[1] == "file not found" and reasons[2] == "empty file (0 bytes)"
    assert reasons[0].startswith("truncated or corrupt") or reasons[0].startswith("not an image")
    assert report.failures[1].source.endswith("missing.png")
    assert len(indices) + len(report.failures) == len(mixed_inputs)
    assert all(len(idx) == len(px) for idx, px in batches)


@pytest.mark.parametrize("workers", [0, 1, 2])
def test_strict_raises_at_the_first_failure(mixed_inputs, workers):
    report = LoadReport()
    with pytest.raises(ImageLoadError, match=r"image 1 \(.*corrupt\.png\)"):
        list(iter_pixel_batches(mixed_inputs, 4, PREPROCESS, num_workers=workers, strict=True,
                                report=report))
    assert report.loaded == [0] and [f.index for f in report.failures] == [1]


@pytest.mark.parametrize("workers", [0, 2])
def test_a_generator_is_read_lazily_with_bounded_read_ahead(clipart_paths, workers):
    pulled = 0

    def gen():
        nonlocal pulled
        for i in range(200):
            pulled += 1
            yield clipart_paths[i % len(clipart_paths)]

    batch_size, consumed = 4, 0
    for indices, _ in iter_pixel_batches(gen(), batch_size, PREPROCESS, num_workers=workers):
        consumed += len(indices)
        # the batch being embedded plus at most two batches decoding ahead
        assert pulled - consumed <= (2 * batch_size if workers else 0)
        if consumed >= 40:
            break
    assert pulled <= 40 + 2 * batch_size


def test_validation_and_the_worker_count():
    with pytest.raises(ValueError, match="batch_size"):
        iter_pixel_batches([], 0, PREPROCESS)
    with pytest.raises(TypeError, match="sequence"):
        iter_pixel_batches("a.png", 4, PREPROCESS)
    with pytest.raises(ValueError, match="num_workers"):
        resolve_num_workers(-1)
    assert resolve_num_workers(None) == default_num_workers() >= 0
    assert resolve_num_workers(3) == 3
    assert list(iter_pixel_batches([], 4, PREPROCESS, num_workers=2)) == []


def test_an_unpicklable_preprocess_falls_back_to_the_main_process(clipart_paths):
    expected, _ = run(clipart_paths[:5], 2, 0)
    got = list(iter_pixel_batches(clipart_paths[:5], 2, lambda im: PREPROCESS(im), num_workers=2))
    assert [list(i) for i, _ in got] == [list(i) for i, _ in expected] == [[0, 1], [2, 3], [4]]
    for (_, a), (_, b) in zip(got, expected, strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_subclass_overriding_only_preprocess_keeps_its_own_preprocessing(clipart_paths):
    embedder = ColorEmbedder()
    base = type(embedder)

    class Inverted(base):
        def preprocess(self, image):
            return 255 - center_crop_resize(image, 16)

    inverted = Inverted(verbose=False)
    inverted.num_workers = 2
    embedder.num_workers = 2
    a, b = embedder.embed_images(clipart_paths[:4]), inverted.embed_images(clipart_paths[:4])
    assert not np.allclose(a, b)  # the override ran (in the main process), not preprocess_fn
    assert inverted._pixel_preprocessing()[1] == 0 and embedder._pixel_preprocessing()[1] == 2


def test_color_backend_same_vectors_with_and_without_workers(mixed_inputs):
    embedder = ColorEmbedder()
    out = {}
    for workers in (0, 1, 2):
        embedder.num_workers = workers
        report = LoadReport()
        out[workers] = (embedder.embed_images(mixed_inputs, batch_size=5, report=report), report)
    for workers in (1, 2):
        np.testing.assert_array_equal(out[workers][0], out[0][0])
        assert out[workers][1] == out[0][1]


def test_offline_embedder_gives_the_same_embeddings_with_workers(offline_embedder, clipart_paths):
    paths = clipart_paths[:20]
    before = offline_embedder.num_workers
    try:
        offline_embedder.num_workers = 0
        ref_shared, ref_feats = offline_embedder.embed_images_and_features(paths, batch_size=8)
        offline_embedder.num_workers = 2
        shared, feats = offline_embedder.embed_images_and_features(paths, batch_size=8)
    finally:
        offline_embedder.num_workers = before
    assert ref_shared.shape == (20, 384)
    np.testing.assert_allclose(shared, ref_shared, atol=1e-5)
    np.testing.assert_allclose(feats, ref_feats, atol=1e-5)


def test_a_decoder_per_core_on_a_cpu_and_one_core_left_beside_a_gpu(monkeypatch):
    """On 2 cores one decoder (and the network on the other core) left the cores half idle
    while embedding (45% CPU use on 800x600 JPEGs): decoders now run beside the network."""
    import concept.embedding.pipeline as pipeline

    for cores, cpu, gpu in [(1, 0, 0), (2, 2, 1), (4, 4, 3), (16, 4, 15)]:
        monkeypatch.setattr(pipeline, "_available_cpus", lambda cores=cores: cores)
        assert (default_num_workers(), default_num_workers(gpu=True)) == (cpu, gpu)


def test_the_network_runs_in_its_own_thread_while_the_next_batch_is_collected(mixed_inputs):
    """While a batch is in the network, the main thread collects the next one: the network's
    calls run in one other thread, one at a time, and the rows keep their input order."""
    import threading

    seen, running, overlapped = [], [], []

    backend = ColorEmbedder()
    network = backend.embed_pixels

    def slow(pixels):
        seen.append(threading.get_ident())
        running.append(1)
        time.sleep(0.05)
        overlapped.append(len(running) > 1)
        running.pop()
        return network(pixels)

    backend.embed_pixels = slow
    backend.num_workers = 0
    plain = ColorEmbedder()
    plain.num_workers = 0
    got = backend.embed_images(mixed_inputs, batch_size=2)
    np.testing.assert_array_equal(got, plain.embed_images(mixed_inputs, batch_size=2))
    assert set(seen) and threading.get_ident() not in seen and len(set(seen)) == 1
    assert not any(overlapped)  # one batch in the network at a time
