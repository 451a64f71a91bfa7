"""Load images from paths, PIL images or arrays as RGB, lazily and batch by batch.

Every input becomes a fully decoded RGB `PIL.Image.Image`: EXIF orientation applied, first frame
of animations, alpha composited on white, 16/32-bit data scaled to 0..255. An input that cannot be
read becomes a `LoadFailure` with a one-line reason instead of an exception from deep inside PIL.
"""

from __future__ import annotations

import itertools
import logging
import os
import stat
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from concept._errors import ImageLoadError

__all__ = ["DEFAULT_MAX_PIXELS", "IMAGE_EXTENSIONS", "ImageInput", "LoadFailure", "LoadReport",
           "captions_from_metadata", "iter_image_batches", "list_image_files", "load_image", "metadata_caption"]

logger = logging.getLogger(__name__)

ImageInput = str | os.PathLike | Image.Image | np.ndarray

# Twice PIL's default Image.MAX_IMAGE_PIXELS (about 179M), where PIL's own default raises.
# A literal, so that it does not depend on whether someone changed PIL's global before import.
DEFAULT_MAX_PIXELS: int = 2 * 89_478_485

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".webp"})

_SUMMARY_FAILURES = 5  # failures listed by name in LoadReport.summary()


@dataclass(frozen=True)
class LoadFailure:
    """One input that could not be loaded: its position, a description and why."""

    index: int
    source: str
    reason: str


@dataclass
class LoadReport:
    """What happened to each input of `iter_image_batches`: indices loaded and failures."""

    loaded: list[int] = field(default_factory=list)
    failures: list[LoadFailure] = field(default_factory=list)

    def summary(self) -> str:
        """One line such as "2,261 images loaded, 2 failed: a.png (file not found); ..."."""
        n = len(self.loaded)
        text = f"{n:,} image{'' if n == 1 else 's'} loaded, {len(self.failures):,} failed"
        if not self.failures:
            return text
        shown = "; ".join(f"{f.source} ({f.reason})" for f in self.failures[:_SUMMARY_FAILURES])
        more = len(self.failures) - _SUMMARY_FAILURES
        return f"{text}: {shown}" + (f"; ... and {more:,} more" if more > 0 else "")


class _Unreadable(Exception):
    """Internal: carries the one-line reason an input could not be loaded."""


def _describe(item: object) -> str:
    """The path as given, or a short description of an in-memory input."""
    if isinstance(item, (str, os.PathLike)):
        return os.fsdecode(item)
    if isinstance(item, Image.Image):
        return f"<PIL.Image {item.width}x{item.height} {item.mode}>"
    if isinstance(item, np.ndarray):
        return f"<ndarray shape={item.shape} dtype={item.dtype}>"
    return f"<{type(item).__name__}>"


def _check_size(width: int, height: int, max_pixels: int | None) -> None:
    if max_pixels is not None and width * height > max_pixels:
        raise _Unreadable(
            f"decompression bomb: {width * height:,} pixels ({width}x{height}) "
            f"exceeds max_pixels={max_pixels:,}"
        )


def _u16_to_u8(a: np.ndarray) -> np.ndarray:
    """Map the full 16-bit range 0..65535 onto 0..255."""
    return np.round(a.astype(np.float32) / 257.0).astype(np.uint8)


def _wide_to_u8(im: Image.Image) -> Image.Image:
    """Scale a 16-bit, 32-bit integer or float single-band image to mode L."""
    a = np.asarray(im)
    if im.mode.startswith("I;16"):
        return Image.fromarray(_u16_to_u8(a))
    a = np.nan_to_num(a.astype(np.float64))
    hi = float(a.max())
    if im.mode == "F" and hi <= 1.0:
        a = a * 255.0  # float data in 0..1
    elif im.mode == "I" and 255 < hi <= 65535:
        a = a / 257.0  # 16-bit data held as 32-bit (e.g. from TIFF)
    elif im.mode == "I" and hi > 65535:
        a = a * (255.0 / hi)
    return Image.fromarray(np.clip(np.round(a), 0, 255).astype(np.uint8))


def _to_rgb(im: Image.Image) -> Image.Image:
    """Convert any PIL mode to RGB, compositing transparency on white."""
    if im.mode in ("I", "F") or im.mode.startswith("I;16"):
        return _wide_to_u8(im).convert("RGB")
    if im.has_transparency_data:  # alpha band, tRNS chunk or info["transparency"]
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im if im.mode == "RGB" else im.convert("RGB")


def _array_to_image(a: np.ndarray) -> Image.Image:
    """HxW, HxWx1, HxWx3 or HxWx4 array of uint8, uint16, bool or float in [0, 1] to PIL."""
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (3, 4))) or a.size == 0:
        raise _Unreadable(f"unsupported array shape {a.shape}: expected HxW, HxWx1, HxWx3 or HxWx4")
    if a.dtype == np.bool_:
        a = a.astype(np.uint8) * 255
    elif a.dtype.kind == "u" and a.dtype.itemsize == 2:
        a = _u16_to_u8(a)
    elif a.dtype.kind == "f":
        if not np.isfinite(a).all() or a.min() < 0 or a.max() > 1:
            raise _Unreadable(
                f"unsupported array values: float data must lie in [0, 1], "
                f"got range [{a.min():g}, {a.max():g}]"
            )
        a = np.round(a * 255.0).astype(np.uint8)
    elif a.dtype != np.uint8:
        raise _Unreadable(
            f"unsupported array dtype {a.dtype}: use uint8, uint16, bool or float in [0, 1]"
        )
    return Image.fromarray(np.ascontiguousarray(a))


#: Modes `Image.reduce` handles (RGBA and LA premultiplied by Pillow, so edges stay clean).
_REDUCIBLE = {"L", "LA", "RGB", "RGBA", "I", "F"}


#: Rows of output a strip of `_shrink` makes at once (a strip of the input is `factor` times taller).
_STRIP_ROWS = 64


def _shrink(im: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Decode `im` and box-average it by the largest integer factor that keeps it at least
    twice `size` (the model's input), before the full-size RGB conversion and compositing.

    What JPEG draft mode does for JPEGs, for every other format: on OpenClipart's PNGs,
    converting and compositing the full-size image on white took more time than decoding it.
    Twice the input size keeps the final bicubic resize as sharp as from the original.
    The reduction runs over strips of rows: reducing (or converting) the whole image at once
    makes a second full-size copy (Pillow premultiplies RGBA into a new image), 1.35 GB next to
    the 0.68 GB of a 10,562 x 16,000 RGBA PNG; a strip's copy is a few MB. Same pixels: strips
    start at multiples of the factor, so each box is averaged as in one pass.
    """
    im.load()
    factor = min(im.width // size[0], im.height // size[1]) // 2
    if factor < 2:
        return im
    mode = ("RGBA" if im.has_transparency_data else "RGB") if im.mode == "P" else im.mode
    if mode not in _REDUCIBLE:
        return im
    out = Image.new(mode, (-(-im.width // factor), -(-im.height // factor)))
    step = _STRIP_ROWS * factor
    for top in range(0, im.height, step):
        strip = im.crop((0, top, im.width, min(im.height, top + step)))
        if strip.mode != mode:
            strip = strip.convert(mode)
        out.paste(strip.reduce(factor), (0, top // factor))
    return out


def _finish(im: Image.Image) -> Image.Image:
    """Decode, apply EXIF orientation and convert to a new RGB image (never `im` itself)."""
    im.load()
    try:
        upright = ImageOps.exif_transpose(im)  # always a new image
    except Exception as exc:  # noqa: BLE001 -- a damaged EXIF block should not cost the whole image
        logger.info("Ignoring unreadable EXIF orientation of %s: %s", _describe(im), exc)
        upright = im.copy()
    return _to_rgb(upright)


def _check_regular_file(path: str | os.PathLike) -> None:
    """Raise `_Unreadable` unless `path` is (a link to) a regular file, without opening it:
    opening a FIFO blocks until something writes to it, a device may never end."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError as exc:
        if os.path.islink(path):
            raise _Unreadable("dangling symbolic link (its target does not exist)") from exc
        raise _Unreadable("file not found") from exc
    except OSError as exc:  # e.g. a name too long, a loop of links, no permission on a folder
        raise _Unreadable((exc.strerror or str(exc)).lower()) from exc
    except ValueError as exc:  # e.g. a NUL character in the path
        raise _Unreadable(f"invalid path: {exc}") from exc
    if stat.S_ISDIR(mode):
        raise _Unreadable("is a directory")
    if not stat.S_ISREG(mode):
        kind = ("a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
                else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "special")
        raise _Unreadable(f"not a regular file ({kind}); not opened")


#: After decoding an image of at least this many pixels, freed memory is handed back to the
#: system (`_return_freed_memory`): decoding holds the whole image (0.68 GB for OpenClipart's
#: 10,562 x 16,000 RGBA PNGs), and a decode worker otherwise kept that much for the whole run.
LARGE_DECODE_PIXELS = 40_000_000


def _return_freed_memory() -> None:
    """Hand memory freed by a large decode back to the system (glibc's `malloc_trim`).

    glibc raises its mmap threshold after freeing a large block, so a decoder process that
    decoded one 0.68 GB image kept that much resident for the rest of the run; elsewhere a no-op.
    """
    global _TRIM
    if _TRIM is None:
        try:
            import ctypes

            _TRIM = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _TRIM = False
    if _TRIM:
        _TRIM(0)


_TRIM: Any = None


def _open_path(path: str | os.PathLike, max_pixels: int | None,
               draft_size: tuple[int, int] | None) -> Image.Image:
    image, large = _decode_path(path, max_pixels, draft_size)
    if large:  # the full-size pixels are freed by now
        _return_freed_memory()
    return image


def _decode_path(path: str | os.PathLike, max_pixels: int | None,
                 draft_size: tuple[int, int] | None) -> tuple[Image.Image, bool]:
    """The image at `path` as RGB, and whether it was large (`LARGE_DECODE_PIXELS`)."""
    _check_regular_file(path)
    try:
        # Our own max_pixels check supersedes PIL's bomb warning. PIL's DecompressionBombError
        # (its global limit) cannot be lifted without changing global state; it is reported.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:  # opening reads only the header
                _check_size(im.width, im.height, max_pixels)
                large = im.width * im.height >= LARGE_DECODE_PIXELS
                if draft_size is not None and im.format in ("JPEG", "MPO"):
                    im.draft("RGB", draft_size)
                elif draft_size is not None:
                    return _finish(_shrink(im, draft_size)), large
                return _finish(im), large
    except (_Unreadable, MemoryError):
        raise
    except FileNotFoundError as exc:
        raise _Unreadable("file not found") from exc
    except (IsADirectoryError, PermissionError) as exc:
        if os.path.isdir(path):
            raise _Unreadable("is a directory") from exc
        raise _Unreadable("permission denied") from exc
    except UnidentifiedImageError as exc:
        if os.path.getsize(path) == 0:
            raise _Unreadable("empty file (0 bytes)") from exc
        raise _Unreadable("not an image file (cannot identify format)") from exc
    except Image.DecompressionBombError as exc:
        raise _Unreadable(f"decompression bomb: {exc}") from exc
    except Exception as exc:  # PIL's plugins raise OSError, SyntaxError, ValueError, ...
        raise _Unreadable(f"truncated or corrupt image data: {exc}") from exc


def _load(item: object, max_pixels: int | None, draft_size: tuple[int, int] | None) -> Image.Image:
    """Load one input as RGB or raise `_Unreadable` with the reason.

    Warnings raised while loading (PIL's "Corrupt EXIF data", ...) are logged once each, with
    the input's name; Python's own display of them names only PIL's source line.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            return _load_quietly(item, max_pixels, draft_size)
        finally:
            for message in dict.fromkeys(" ".join(str(w.message).split()) for w in caught):
                logger.warning("%s: %s", _describe(item), message)


def _load_quietly(item: object, max_pixels: int | None, draft_size: tuple[int, int] | None) -> Image.Image:
    if isinstance(item, (str, os.PathLike)):
        return _open_path(item, max_pixels, draft_size)
    if isinstance(item, Image.Image):
        _check_size(item.width, item.height, max_pixels)
        try:
            return _finish(item)
        except (MemoryError, _Unreadable):
            raise
        except Exception as exc:  # e.g. a lazily opened image whose file is gone or damaged
            raise _Unreadable(f"could not read the pixel data: {exc}") from exc
    if isinstance(item, np.ndarray):
        if item.ndim >= 2:
            _check_size(item.shape[1], item.shape[0], max_pixels)
        return _to_rgb(_array_to_image(item))
    raise _Unreadable(f"unsupported input type {type(item).__name__}: "
                      "expected a path, PIL image or ndarray")


def load_image(item: ImageInput, *, max_pixels: int | None = DEFAULT_MAX_PIXELS,
               draft_size: tuple[int, int] | None = None) -> Image.Image:
    """Load one image as a fully decoded RGB PIL image.

    Parameters: `item` a path, PIL image or array; `max_pixels` refuses larger images before
    decoding (None: no limit of ours); `draft_size` (width, height) lets JPEGs decode at a reduced
    scale that is still at least this size, and other files be box-reduced right after decoding
    to no less than twice this size (the image is then smaller than the file). Raises
    `ImageLoadError` naming the input and why.
    """
    try:
        return _load(item, max_pixels, draft_size)
    except _Unreadable as exc:
        raise ImageLoadError(f"Could not load image {_describe(item)}: {exc}") from exc.__cause__


def iter_image_batches(images: Iterable[ImageInput], batch_size: int, *, strict: bool = False,
                       report: LoadReport | None = None,
                       max_pixels: int | None = DEFAULT_MAX_PIXELS,
                       draft_size: tuple[int, int] | None = None,
                       ) -> Iterator[tuple[list[int], list[Image.Image]]]:
    """Yield `(indices, rgb_images)` for the inputs that loaded, pulling `batch_size` at a time.

    `images` may be any iterable, a generator included; it is never materialised. Failures are
    logged as warnings and appended to `report`; with `strict=True` the first one raises
    `ImageLoadError`. Batches in which nothing loaded are skipped. A stacked ndarray is iterated
    over its first axis.
    """
    if isinstance(images, (str, os.PathLike, Image.Image)):
        raise TypeError("iter_image_batches expects a sequence of images; use load_image for one")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    return _batches(iter(images), batch_size, strict, report, max_pixels, draft_size)


def record_failure(index: int, item: ImageInput, reason: str, report: LoadReport | None,
                   strict: bool, cause: BaseException | None = None) -> None:
    """Report an unreadable input: add it to `report` and log it, or raise when `strict`."""
    failure = LoadFailure(index, _describe(item), reason)
    if report is not None:
        report.failures.append(failure)
    if strict:
        raise ImageLoadError(
            f"Could not load image {index} ({failure.source}): {failure.reason}. "
            "Fix or remove it, or pass strict=False to skip unreadable images."
        ) from cause
    logger.warning("Skipping image %d (%s): %s", index, failure.source, failure.reason)


def _batches(items: Iterator[ImageInput], batch_size: int, strict: bool,
             report: LoadReport | None, max_pixels: int | None,
             draft_size: tuple[int, int] | None) -> Iterator[tuple[list[int], list[Image.Image]]]:
    start = 0
    while chunk := list(itertools.islice(items, batch_size)):
        indices: list[int] = []
        loaded: list[Image.Image] = []
        for index, item in enumerate(chunk, start):
            try:
                loaded.append(_load(item, max_pixels, draft_size))
            except _Unreadable as exc:
                record_failure(index, item, str(exc), report, strict, cause=exc.__cause__)
                continue
            indices.append(index)
            if report is not None:
                report.loaded.append(index)
        start += len(chunk)
        if indices:
            yield indices, loaded


def list_image_files(folder: str | os.PathLike, *, recursive: bool = True) -> list[Path]:
    """Sorted image files under `folder`, chosen by extension (case-insensitive).

    Hidden files and folders (name starting with ".", e.g. macOS "._x.png") are skipped, and
    so are links to folders. Entries with an image extension that are not regular files
    (dangling links, FIFOs, sockets) are listed, so that loading reports each of them as
    unreadable instead of skipping them unseen; they are never opened. Folders are walked
    without recursion (any depth); a subfolder that cannot be read is logged and skipped.
    Raises `ImageLoadError` if `folder` is not an existing, readable folder.
    """
    root = Path(folder)
    if not root.is_dir():
        what = "is not a folder" if root.exists() else "does not exist"
        raise ImageLoadError(f"Image folder {os.fsdecode(folder)} {what}; pass a folder of images.")
    found: list[Path] = []
    pending = [root]
    while pending:
        current = pending.pop()
        try:
            with os.scandir(current) as entries:
                for entry in entries:
                    if entry.name.startswith("."):
                        continue
                    if entry.is_dir(follow_symlinks=False):
                        if recursive:
                            pending.append(current / entry.name)
                    elif Path(entry.name).suffix.lower() in IMAGE_EXTENSIONS and not entry.is_dir():
                        found.append(current / entry.name)
        except OSError as exc:
            if current == root:
                raise ImageLoadError(f"Cannot read the image folder {os.fsdecode(folder)}: "
                                     f"{exc.strerror or exc}") from exc
            logger.warning("Skipping the folder %s: %s", current, exc.strerror or exc)
    return sorted(found)


# Captions the files carry (XMP/IPTC/EXIF/PNG text), read from the same headers; see concept.captions.
from concept.captions import captions_from_metadata, metadata_caption
