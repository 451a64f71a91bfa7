"""Decode and preprocess images in worker processes, batch by batch, in input order.

`iter_pixel_batches` turns images (paths, PIL images, arrays; any iterable, generators
included) into `(indices, uint8 batch)` pairs ready for a model. With `num_workers > 0`, paths
are opened, converted to RGB and preprocessed (resized) in a pool of worker processes, a bounded
number of chunks ahead, so decoding the next batches overlaps the model running on the current
one in the main process, and memory stays flat in the number of images. In-memory inputs (PIL
images, arrays) are converted in the main process: sending decoded pixels to a worker costs
more than converting them here. With `num_workers=0` everything runs in the main process.

Only plain data crosses the process boundary: the paths, a picklable `preprocess` callable and
the uint8 results. The embedding backend (which holds torch models) is never pickled.
"""

from __future__ import annotations

import itertools
import logging
import math
import multiprocessing
import os
import pickle
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
from PIL import Image

from concept.images import (
    DEFAULT_MAX_PIXELS,
    ImageInput,
    LoadReport,
    _load,
    _Unreadable,
    record_failure,
)

__all__ = ["default_num_workers", "iter_pixel_batches", "resolve_num_workers"]

logger = logging.getLogger(__name__)

#: Batches submitted ahead of the one the model is working on (each split over the workers).
_BATCHES_AHEAD = 2
#: Most worker processes "auto" picks: PNG/JPEG decode rarely keeps more busy next to a CPU model.
_MAX_AUTO_WORKERS = 4

Preprocess = Callable[[Image.Image], np.ndarray]
#: One item's outcome: (input position, uint8 array or None, failure reason or None).
_Outcome = tuple[int, "np.ndarray | None", "str | None"]


def _available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def default_num_workers(gpu: bool = False) -> int:
    """Worker processes used when none are set: one per core (at most 4), 0 on one core.

    On a CPU the network's threads and the decoders share the cores: with one core left to the
    network (as before), the decoder was the bottleneck and the cores were half idle between
    batches (45% CPU use on 800x600 JPEGs); with a decoder per core they stay busy (the network
    runs in another thread meanwhile, `BaseEmbedder._map_images`). With `gpu=True` (the network
    runs on a GPU and needs no CPU) all cores but one, left to the process feeding the GPU.
    """
    cores = _available_cpus()
    if cores < 2:
        return 0
    return cores - 1 if gpu else min(_MAX_AUTO_WORKERS, cores)


def resolve_num_workers(num_workers: int | None, gpu: bool = False) -> int:
    """`None` means `default_num_workers(gpu)`; otherwise a non-negative integer, as given."""
    if num_workers is None:
        return default_num_workers(gpu)
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise ValueError(f"num_workers must be None (auto) or an integer >= 0, got {num_workers!r}")
    return num_workers


def _mp_context() -> multiprocessing.context.BaseContext:
    # fork starts in milliseconds and needs nothing re-imported; spawn where fork does not exist.
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


def _exit_with_parent(parent: int) -> None:
    """Worker initializer: exit when the main process is gone (e.g. killed with SIGKILL).

    A pool's workers otherwise outlive a killed parent, blocked forever on their task queue.
    """
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="concept-parent-watch").start()


def _load_items(items: list[tuple[int, ImageInput]], preprocess: Preprocess, max_pixels: int | None,
                draft_size: tuple[int, int] | None) -> list[_Outcome]:
    """Load, convert and preprocess each item (runs in a worker or in the main process)."""
    out: list[_Outcome] = []
    for index, item in items:
        try:
            image = _load(item, max_pixels, draft_size)
        except _Unreadable as exc:
            out.append((index, None, str(exc)))
            continue
        out.append((index, np.asarray(preprocess(image), dtype=np.uint8), None))
    return out


@dataclass
class _Chunk:
    """Consecutive inputs of one batch; the paths among them may be loading in a worker."""

    items: list[tuple[int, ImageInput]]
    future: Future | None = None


def _is_path(item: object) -> bool:
    return isinstance(item, (str, os.PathLike))


def iter_pixel_batches(
    images: Iterable[ImageInput],
    batch_size: int,
    preprocess: Preprocess,
    *,
    num_workers: int = 0,
    strict: bool = False,
    report: LoadReport | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    draft_size: tuple[int, int] | None = None,
) -> Iterator[tuple[list[int], np.ndarray]]:
    """Yield `(indices, pixels)` for the inputs that loaded, `batch_size` inputs at a time, in order.

    Parameters
    ----------
    images: paths, PIL images or arrays; any iterable, read lazily (a bounded number ahead).
    batch_size: inputs per batch; a batch holds those of them that loaded (batches where none
        loaded are skipped), so batches are the same whatever `num_workers` is.
    preprocess: one RGB PIL image to a uint8 HxWx3 array; must be picklable when
        `num_workers > 0` (a module-level function or a `functools.partial` of one).
    num_workers: worker processes decoding paths (0: all in the main process).
    strict, report, max_pixels, draft_size: as in `concept.images.iter_image_batches`: failures
        are logged and appended to `report` with their input position; `strict=True` raises
        `ImageLoadError` at the first one (in input order).

    Returns an iterator of `(indices, pixels)`, `pixels` a uint8 array (n, H, W, 3).
    """
    if isinstance(images, (str, os.PathLike, Image.Image)):
        raise TypeError("iter_pixel_batches expects a sequence of images; use load_image for one")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    num_workers = resolve_num_workers(num_workers)
    if num_workers and not _picklable(preprocess):
        logger.warning("The preprocessing function %r cannot be sent to worker processes; "
                       "decoding in the main process instead.", preprocess)
        num_workers = 0
    return _pixel_batches(iter(images), batch_size, preprocess, num_workers, strict, report,
                          max_pixels, draft_size)


def _picklable(fn: object) -> bool:
    try:
        pickle.dumps(fn)
    except Exception:  # noqa: BLE001 - pickle raises many types (PicklingError, TypeError, ...)
        return False
    return True


def _pixel_batches(items: Iterator[ImageInput], batch_size: int, preprocess: Preprocess,
                   num_workers: int, strict: bool, report: LoadReport | None,
                   max_pixels: int | None, draft_size: tuple[int, int] | None,
                   ) -> Iterator[tuple[list[int], np.ndarray]]:
    # Each batch is split into up to `num_workers` chunks so that all workers share one batch;
    # `_BATCHES_AHEAD` batches are submitted ahead, i.e. about 2 x num_workers chunks in flight.
    chunk_size = math.ceil(batch_size / num_workers) if num_workers else batch_size
    pool: ProcessPoolExecutor | None = None
    pending: deque[list[_Chunk]] = deque()
    start = 0

    def submit_next() -> bool:
        nonlocal pool, start
        inputs = list(itertools.islice(items, batch_size))
        if not inputs:
            return False
        batch = []
        for offset in range(0, len(inputs), chunk_size):
            chunk = _Chunk(list(enumerate(inputs[offset:offset + chunk_size], start + offset)))
            paths = [(i, item) for i, item in chunk.items if _is_path(item)]
            if num_workers and paths:
                if pool is None:
                    pool = ProcessPoolExecutor(num_workers, mp_context=_mp_context(),
                                               initializer=_exit_with_parent, initargs=(os.getpid(),))
                chunk.future = pool.submit(_load_items, paths, preprocess, max_pixels, draft_size)
            batch.append(chunk)
        pending.append(batch)
        start += len(inputs)
        return True

    try:
        submit_next()
        while pending:
            batch = pending.popleft()
            if num_workers:  # keep the workers busy while this batch is collected and embedded
                while len(pending) < _BATCHES_AHEAD and submit_next():
                    pass
            indices, pixels = _collect(batch, preprocess, strict, report, max_pixels, draft_size)
            if indices:
                yield indices, np.stack(pixels)
            if not pending:
                submit_next()
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def _collect(batch: list[_Chunk], preprocess: Preprocess, strict: bool, report: LoadReport | None,
             max_pixels: int | None, draft_size: tuple[int, int] | None,
             ) -> tuple[list[int], list[np.ndarray]]:
    """Outcomes of one batch in input order (in-memory items converted here), report updated."""
    indices: list[int] = []
    pixels: list[np.ndarray] = []
    for chunk in batch:
        done = {index: (array, reason) for index, array, reason in chunk.future.result()} if chunk.future else {}
        for index, item in chunk.items:
            if index in done:
                array, reason = done[index]
            else:
                ((_, array, reason),) = _load_items([(index, item)], preprocess, max_pixels, draft_size)
            if reason is not None:
                record_failure(index, item, reason, report, strict)
                continue
            indices.append(index)
            pixels.append(array)
            if report is not None:
                report.loaded.append(index)
    return indices, pixels
