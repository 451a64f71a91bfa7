"""Decode JPEG files on the GPU (nvJPEG through torchvision) and resize them there.

`iter_device_pixel_batches` is `pipeline.iter_pixel_batches` for a backend that runs on a CUDA
device: JPEG files are read as bytes in threads, decoded in batches on the GPU with
`torchvision.io.decode_jpeg`, resized (shorter side to `size`, bicubic, antialiased) and
centre-cropped there, so the pixels never travel back to host memory. Everything else takes the
CPU path of `pipeline`, item by item, with the same result and the same failure report as today:
other files (in the worker processes), in-memory images, and JPEGs the GPU path does not take
(CMYK, grayscale, 12-bit, lossless or arithmetic-coded, EXIF-rotated, larger than `max_pixels`)
or fails to decode. The batches come out in input order as uint8 tensors (n, size, size, 3) on
the device.

Why: on a GPU the network embeds ViT-B/32 images several times faster than 16 CPU processes can
decode JPEGs with PIL, so the decoder, not the network, sets the speed. The GPU's JPEG engine
takes that work off the CPUs. Decoding runs in a background thread on its own CUDA stream, so it
overlaps the network on the main stream.
"""

from __future__ import annotations

import functools
import io
import itertools
import logging
import math
import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from concept.embedding.pipeline import (
    _BATCHES_AHEAD,
    _exit_with_parent,
    _is_path,
    _load_items,
    _mp_context,
    resolve_num_workers,
)
from concept.images import DEFAULT_MAX_PIXELS, ImageInput, LoadReport, record_failure

__all__ = ["JpegHeader", "iter_device_pixel_batches", "jpeg_decoder", "parse_jpeg_header",
           "resize_center_crop"]

logger = logging.getLogger(__name__)

#: File name endings read as JPEG candidates; other files go straight to the CPU workers.
JPEG_SUFFIXES = frozenset({".jpg", ".jpeg", ".jpe", ".jfif"})
#: Start-of-frame markers nvJPEG decodes: baseline, extended sequential, progressive (Huffman).
_GPU_SOF = frozenset({0xC0, 0xC1, 0xC2})
#: Full-size pixels decoded in one call (128M: 384 MiB of uint8), and resized at once (64M:
#: 768 MiB as float32): bounds GPU memory whatever the image sizes.
_PIXEL_BUDGET = 1 << 27
_RESIZE_BUDGET = 1 << 26
#: Threads reading files (file reads release the GIL).
_MAX_READ_THREADS = 8

#: Encoded JPEGs in, decoded (3, H, W) uint8 tensors on the device out.
Decode = Callable[[list[torch.Tensor]], list[torch.Tensor]]
Preprocess = Callable[[Image.Image], np.ndarray]


# --------------------------------------------------------------------------- JPEG headers
@dataclass(frozen=True)
class JpegHeader:
    """What the frame header and the APP segments before the scan say about a JPEG."""

    width: int
    height: int
    components: int
    precision: int
    sof: int
    #: EXIF orientation (1: upright, also when there is no EXIF; 0: EXIF present but unreadable).
    orientation: int = 1
    #: The Adobe APP14 colour transform (0: RGB or CMYK stored as is), None without APP14.
    adobe_transform: int | None = None

    def gpu_decodable(self, max_pixels: int | None) -> bool:
        """True for an upright 8-bit YCbCr JPEG that nvJPEG decodes to what PIL gives."""
        return (self.sof in _GPU_SOF and self.precision == 8 and self.components == 3
                and self.adobe_transform != 0 and self.orientation == 1
                and self.width > 0 and self.height > 0
                and (max_pixels is None or self.width * self.height <= max_pixels))


def _exif_orientation(tiff: bytes | bytearray | memoryview) -> int:
    """The Orientation tag of IFD0 of an EXIF (TIFF) block; 1 when absent, 0 when unreadable."""
    if len(tiff) < 8 or tiff[:2] not in (b"II", b"MM"):
        return 0
    order = "little" if tiff[:2] == b"II" else "big"
    ifd = int.from_bytes(tiff[4:8], order)
    if ifd + 2 > len(tiff):
        return 0
    count = int.from_bytes(tiff[ifd:ifd + 2], order)
    if ifd + 2 + 12 * count > len(tiff):
        return 0
    for entry in range(ifd + 2, ifd + 2 + 12 * count, 12):
        if int.from_bytes(tiff[entry:entry + 2], order) == 0x0112:
            value = int.from_bytes(tiff[entry + 8:entry + 10], order)  # a SHORT, left-justified
            return value if 1 <= value <= 8 else 0
    return 1


def parse_jpeg_header(data: bytes | bytearray | memoryview) -> JpegHeader | None:
    """Read the markers up to the first scan; None when `data` is not a well-formed JPEG start."""
    if len(data) < 4 or data[0] != 0xFF or data[1] != 0xD8:
        return None
    pos, orientation, adobe, frame = 2, 1, None, None
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a length
            pos += 2
            continue
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        if length < 2 or pos + 2 + length > len(data):
            return None
        segment = data[pos + 4:pos + 2 + length]
        if marker == 0xDA:  # start of scan: everything we need comes before it
            break
        if marker == 0xE1 and segment[:6] == b"Exif\0\0":
            orientation = _exif_orientation(segment[6:])
        elif marker == 0xEE and segment[:5] == b"Adobe" and len(segment) >= 12:
            adobe = segment[11]
        elif 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC) and frame is None:
            if len(segment) < 6:
                return None
            frame = (segment[0], int.from_bytes(segment[1:3], "big"),
                     int.from_bytes(segment[3:5], "big"), segment[5], marker)
        pos += 2 + length
    if frame is None:
        return None
    precision, height, width, components, sof = frame
    return JpegHeader(width, height, components, precision, sof, orientation, adobe)


#: A JPEG read for the device: its bytes as a uint8 CPU tensor, and its header.
_Encoded = tuple[torch.Tensor, JpegHeader]


def _read_jpeg(path: str | os.PathLike, max_pixels: int | None) -> _Encoded | None:
    """The file's bytes and header if the device path should decode it, else None."""
    if not os.path.isfile(path):  # opening a FIFO would block; the CPU path reports it
        return None
    try:
        with open(path, "rb") as f:
            data = bytearray(os.fstat(f.fileno()).st_size)
            if f.readinto(data) != len(data):
                return None
    except OSError:  # missing, unreadable, a directory: the CPU path reports why
        return None
    head = 1 << 16  # the markers before the scan rarely take more
    try:
        with memoryview(data) as view:  # parsed without copies
            header = parse_jpeg_header(view[:head])
            if header is None and len(data) > head:  # long APP segments (ICC profiles, thumbnails)
                header = parse_jpeg_header(view)
    except Exception:  # noqa: BLE001 - whatever is odd about the file, the CPU path handles it
        return None
    if header is None or not header.gpu_decodable(max_pixels):
        return None
    if data[-2:] != b"\xff\xd9":  # no end-of-image marker: truncated (nvJPEG may not notice) or
        return None              # trailing data; PIL decides, as on the CPU path
    return torch.frombuffer(data, dtype=torch.uint8), header


def _read_many(items: list[tuple[int, ImageInput]], max_pixels: int | None,
               ) -> list[tuple[int, _Encoded | None]]:
    return [(index, _read_jpeg(item, max_pixels)) for index, item in items]


# --------------------------------------------------------------------------- decode + resize
def _torchvision_decode(data: list[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
    from torchvision.io import ImageReadMode, decode_jpeg

    return decode_jpeg(data, mode=ImageReadMode.RGB, device=device)


def _probe_jpeg() -> torch.Tensor:
    """A small baseline 4:2:0 JPEG (64x48), the kind the GPU path will be given."""
    buf = io.BytesIO()
    ramp = np.linspace(0, 255, 64 * 48 * 3).astype(np.uint8).reshape(48, 64, 3)
    Image.fromarray(ramp).save(buf, format="JPEG", quality=90)
    return torch.frombuffer(bytearray(buf.getvalue()), dtype=torch.uint8)


@functools.cache
def _decoder_for(device: torch.device) -> Decode | None:
    if device.type != "cuda" or not torch.cuda.is_available():
        return None
    try:
        import torchvision.io  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - missing, or built for another torch
        logger.info("GPU JPEG decoding is off: torchvision cannot be imported (%s)", exc)
        return None
    decode = functools.partial(_torchvision_decode, device=device)
    try:  # nvJPEG may be missing from the build, or the device may not support it
        (image,) = decode([_probe_jpeg()])
        if tuple(image.shape) != (3, 48, 64) or image.device.type != "cuda":
            raise RuntimeError(f"unexpected output {tuple(image.shape)} on {image.device}")
    except Exception as exc:  # noqa: BLE001
        logger.info("GPU JPEG decoding is off: torchvision.io.decode_jpeg failed on %s (%s)", device, exc)
        return None
    return decode


def jpeg_decoder(device: str | torch.device | None) -> Decode | None:
    """A batched JPEG decoder onto `device`, or None where that is not possible (a CPU device,
    no CUDA, no torchvision, torchvision without nvJPEG). Probed once per device."""
    if device is None:
        return None
    device = torch.device(device)
    if device.type == "cuda" and device.index is None and torch.cuda.is_available():
        device = torch.device("cuda", torch.cuda.current_device())
    return _decoder_for(device)


def _resized_shape(height: int, width: int, size: int) -> tuple[int, int]:
    """The same arithmetic as `base.center_crop_resize`, so both paths crop the same region."""
    scale = size / min(width, height)
    return max(size, round(height * scale)), max(size, round(width * scale))


def resize_center_crop(images: Sequence[torch.Tensor], size: int, out: torch.Tensor | None = None,
                       ) -> torch.Tensor:
    """(3, H, W) uint8 tensors to one (n, size, size, 3) uint8 tensor on their device.

    The shorter side goes to `size` (bicubic with antialiasing, PIL's filter), then the central
    square is kept, as `base.center_crop_resize` does on the CPU. Images of one shape are
    resized together, a bounded number of pixels at a time.
    """
    if out is None:
        device = images[0].device if images else "cpu"
        out = torch.empty((len(images), size, size, 3), dtype=torch.uint8, device=device)
    groups: dict[tuple[int, int], list[int]] = {}
    for i, image in enumerate(images):
        groups.setdefault(tuple(image.shape[1:]), []).append(i)
    for (height, width), members in groups.items():
        new_h, new_w = _resized_shape(height, width, size)
        top, left = (new_h - size) // 2, (new_w - size) // 2
        step = max(1, _RESIZE_BUDGET // (height * width))
        for start in range(0, len(members), step):
            rows = members[start:start + step]
            x = torch.stack([images[i] for i in rows]).float()
            if (new_h, new_w) != (height, width):
                x = F.interpolate(x, size=(new_h, new_w), mode="bicubic", antialias=True,
                                  align_corners=False)
            x = x[:, :, top:top + size, left:left + size].round_().clamp_(0, 255)
            _put(out, rows, x.to(torch.uint8).permute(0, 2, 3, 1))
    return out


def _put(out: torch.Tensor, rows: list[int], values: torch.Tensor) -> None:
    """`out[rows] = values`; a slice when the rows are consecutive, as they usually are, and
    otherwise an index copied without blocking (a blocking copy would wait for the stream)."""
    if rows == list(range(rows[0], rows[0] + len(rows))):
        out[rows[0]:rows[0] + len(rows)] = values
    else:
        out[torch.tensor(rows).to(out.device, non_blocking=True)] = values


def _take(source: torch.Tensor, rows: list[int]) -> torch.Tensor:
    """`source[rows]`, as `_put`."""
    if rows == list(range(rows[0], rows[0] + len(rows))):
        return source[rows[0]:rows[0] + len(rows)]
    return source[torch.tensor(rows).to(source.device, non_blocking=True)]


# --------------------------------------------------------------------------- batches
@dataclass
class _Pending:
    """One batch in flight: its inputs, the JPEGs being read, the other paths being decoded."""

    items: list[tuple[int, ImageInput]]
    reads: list[Future] = field(default_factory=list)
    cpu: list[Future] = field(default_factory=list)


class _DeviceBatches:
    """The serial producer: read ahead, decode on the device, fall back per item, in order."""

    def __init__(self, items: Iterator[ImageInput], batch_size: int, preprocess: Preprocess,
                 decode: Decode, device: torch.device, size: int, num_workers: int, read_threads: int,
                 strict: bool, report: LoadReport | None, max_pixels: int | None,
                 draft_size: tuple[int, int] | None) -> None:
        self.items, self.batch_size, self.preprocess, self.decode = items, batch_size, preprocess, decode
        self.device, self.size, self.num_workers = device, size, num_workers
        self.read_threads = read_threads
        self.strict, self.report, self.max_pixels, self.draft_size = strict, report, max_pixels, draft_size
        self.readers: ThreadPoolExecutor | None = None
        self.pool: ProcessPoolExecutor | None = None
        self.start = 0

    # -- the worker pools, created on first use
    def _readers(self) -> ThreadPoolExecutor:
        if self.readers is None:
            self.readers = ThreadPoolExecutor(self.read_threads, thread_name_prefix="concept-jpeg-read")
        return self.readers

    def _pool(self) -> ProcessPoolExecutor:
        if self.pool is None:
            self.pool = ProcessPoolExecutor(self.num_workers, mp_context=_mp_context(),
                                            initializer=_exit_with_parent, initargs=(os.getpid(),))
        return self.pool

    def _submit_cpu(self, items: list[tuple[int, ImageInput]]) -> list[Future]:
        """Decode `items` on the CPU in the worker processes, split over them."""
        if not items or not self.num_workers:
            return []
        step = math.ceil(len(items) / self.num_workers)
        return [self._pool().submit(_load_items, items[i:i + step], self.preprocess, self.max_pixels,
                                    self.draft_size) for i in range(0, len(items), step)]

    def submit(self) -> _Pending | None:
        inputs = list(itertools.islice(self.items, self.batch_size))
        if not inputs:
            return None
        pending = _Pending(list(enumerate(inputs, self.start)))
        self.start += len(inputs)
        jpegs, others = [], []
        for index, item in pending.items:
            if _is_path(item):
                suffix = os.path.splitext(os.fsdecode(item))[1].lower()
                (jpegs if suffix in JPEG_SUFFIXES else others).append((index, item))
        if jpegs:
            step = math.ceil(len(jpegs) / self.read_threads)
            pending.reads = [self._readers().submit(_read_many, jpegs[i:i + step], self.max_pixels)
                             for i in range(0, len(jpegs), step)]
        pending.cpu = self._submit_cpu(others)
        return pending

    def _decode_on_device(self, encoded: list[tuple[int, _Encoded]],
                          ) -> tuple[dict[int, int], torch.Tensor | None, list[int]]:
        """Decode and resize on the device: {input index: row of the returned tensor}, that
        tensor, and the input indices that failed to decode."""
        if not encoded:
            return {}, None, []
        out = torch.empty((len(encoded), self.size, self.size, 3), dtype=torch.uint8, device=self.device)
        rows: dict[int, int] = {}
        failed: list[int] = []
        # Consecutive runs of at most _PIXEL_BUDGET full-size pixels, decoded in one call each.
        runs: list[list[int]] = [[]]
        pixels = 0
        for r, (_, (_, header)) in enumerate(encoded):
            cost = header.width * header.height
            if runs[-1] and pixels + cost > _PIXEL_BUDGET:
                runs.append([])
                pixels = 0
            runs[-1].append(r)
            pixels += cost
        for run in runs:
            data = [encoded[r][1][0] for r in run]
            try:
                images = list(self.decode(data))
            except Exception:  # noqa: BLE001 - one bad file fails the call; find which
                images = [self._decode_one(one) for one in data]
            good = []
            for r, image in zip(run, images):
                header = encoded[r][1][1]
                if image is None or tuple(image.shape) != (3, header.height, header.width):
                    failed.append(encoded[r][0])
                else:
                    good.append((r, image))
            if good:
                _put(out, [r for r, _ in good], resize_center_crop([image for _, image in good], self.size))
                rows.update((encoded[r][0], r) for r, _ in good)
        return rows, out, failed

    def _decode_one(self, data: torch.Tensor) -> torch.Tensor | None:
        try:
            return self.decode([data])[0]
        except Exception:  # noqa: BLE001 - the CPU path decodes it again and reports why
            return None

    def collect(self, pending: _Pending) -> tuple[list[int], torch.Tensor] | None:
        items = dict(pending.items)
        encoded: list[tuple[int, _Encoded]] = []
        fallback: list[tuple[int, ImageInput]] = []
        for future in pending.reads:
            for index, read in future.result():
                if read is None:
                    fallback.append((index, items[index]))
                else:
                    encoded.append((index, read))
        rows, decoded, failed = self._decode_on_device(encoded)
        fallback += [(index, items[index]) for index in failed]
        outcomes = {index: (array, reason) for future in pending.cpu
                    for index, array, reason in future.result()}
        if len(fallback) > 1 and self.num_workers:  # the JPEGs the device did not take
            outcomes.update((index, (array, reason)) for future in self._submit_cpu(fallback)
                            for index, array, reason in future.result())
        # Whatever is left (in-memory images, single fallbacks, all of it without workers).
        rest = [(i, item) for i, item in pending.items if i not in rows and i not in outcomes]
        outcomes.update((index, (array, reason)) for index, array, reason in
                        _load_items(rest, self.preprocess, self.max_pixels, self.draft_size))
        return self._assemble(pending.items, rows, decoded, outcomes)

    def _assemble(self, items, rows, decoded, outcomes) -> tuple[list[int], torch.Tensor] | None:
        """Report each input in order and put the batch together on the device."""
        indices: list[int] = []
        device_rows: list[int] = []
        host: list[np.ndarray] = []
        host_at: list[int] = []
        for index, item in items:
            if index in rows:
                device_rows.append(rows[index])
            else:
                array, reason = outcomes[index]
                if reason is not None:
                    record_failure(index, item, reason, self.report, self.strict)
                    continue
                host_at.append(len(indices))
                host.append(array)
            indices.append(index)
            if self.report is not None:
                self.report.loaded.append(index)
        if not indices:
            return None
        if not host and decoded is not None and device_rows == list(range(len(decoded))):
            return indices, decoded  # the common case: every item decoded on the device
        batch = torch.empty((len(indices), self.size, self.size, 3), dtype=torch.uint8, device=self.device)
        if host:
            _put(batch, host_at, _to_device(np.stack(host), self.device))
        if device_rows:
            on_host = set(host_at)
            _put(batch, [k for k in range(len(indices)) if k not in on_host], _take(decoded, device_rows))
        return indices, batch

    def __iter__(self) -> Iterator[tuple[list[int], torch.Tensor]]:
        pending: list[_Pending] = []
        try:
            while True:
                while len(pending) <= _BATCHES_AHEAD:
                    nxt = self.submit()
                    if nxt is None:
                        break
                    pending.append(nxt)
                if not pending:
                    return
                batch = self.collect(pending.pop(0))
                if batch is not None:
                    yield batch
        finally:
            if self.readers is not None:
                self.readers.shutdown(wait=True, cancel_futures=True)
            if self.pool is not None:
                self.pool.shutdown(wait=True, cancel_futures=True)


def _to_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """A host array onto `device`, through pinned memory without blocking when it is a GPU."""
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


_DONE = object()


def _in_background(batches: Iterable[tuple[list[int], torch.Tensor]], device: torch.device,
                   depth: int = 2) -> Iterator[tuple[list[int], torch.Tensor]]:
    """Run the producer in a thread (on its own CUDA stream), `depth` batches ahead.

    The consumer's stream waits for each batch's event, and the batch's memory is marked as
    used by that stream, so the two streams never race.
    """
    slots: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    cuda = device.type == "cuda"

    def put(item) -> bool:
        while not stop.is_set():
            try:
                slots.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            stream = torch.cuda.Stream(device) if cuda else None
            with torch.cuda.device(device) if cuda else nullcontext(), \
                    torch.cuda.stream(stream) if cuda else nullcontext():
                for indices, pixels in batches:
                    event = None
                    if cuda:
                        event = torch.cuda.Event()
                        event.record(stream)
                    if not put((indices, pixels, event)):
                        return
            put(_DONE)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            put(exc)
        finally:
            close = getattr(batches, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, daemon=True, name="concept-device-decode")
    thread.start()
    try:
        while True:
            item = slots.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            indices, pixels, event = item
            if event is not None:
                current = torch.cuda.current_stream(device)
                current.wait_event(event)
                pixels.record_stream(current)
            yield indices, pixels
    finally:
        stop.set()
        while thread.is_alive():
            try:
                slots.get(timeout=0.1)
            except queue.Empty:
                pass
        thread.join()


def iter_device_pixel_batches(
    images: Iterable[ImageInput],
    batch_size: int,
    preprocess: Preprocess,
    decode: Decode,
    *,
    device: str | torch.device,
    size: int,
    num_workers: int = 0,
    read_threads: int | None = None,
    strict: bool = False,
    report: LoadReport | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    draft_size: tuple[int, int] | None = None,
    background: bool | None = None,
) -> Iterator[tuple[list[int], torch.Tensor]]:
    """Yield `(indices, pixels)` like `pipeline.iter_pixel_batches`, `pixels` a uint8 tensor
    (n, size, size, 3) on `device`.

    Parameters
    ----------
    preprocess: the CPU preprocessing (must be `center_crop_resize` at `size`, which the device
        path reproduces); used for every item the device path does not take.
    decode: encoded JPEGs (uint8 CPU tensors) to (3, H, W) uint8 tensors on `device`
        (`jpeg_decoder(device)`; tests pass a CPU stand-in).
    read_threads: threads reading JPEG files (None: up to 8).
    background: produce batches in a thread, ahead of the consumer (None: on CUDA devices).
    The other parameters are those of `pipeline.iter_pixel_batches`.
    """
    if isinstance(images, (str, os.PathLike, Image.Image)):
        raise TypeError("iter_device_pixel_batches expects a sequence of images; use load_image for one")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    device = torch.device(device)
    threads = read_threads or max(1, min(_MAX_READ_THREADS, os.cpu_count() or 1))
    batches = iter(_DeviceBatches(iter(images), batch_size, preprocess, decode, device, size,
                                  resolve_num_workers(num_workers), threads, strict, report,
                                  max_pixels, draft_size))
    if background if background is not None else device.type == "cuda":
        return _in_background(batches, device)
    return batches
