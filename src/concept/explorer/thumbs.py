"""Thumbnails for the explorer: every image as a small square tile, packed into JPEG sprite sheets.

One sheet holds `per_row` x `per_row` tiles, so 70,000 images make ~270 files instead of 70,000
and hovering over a point loads at most one sheet. Tiles keep the image's aspect ratio
(letterboxed on white); an image that cannot be read becomes a plain grey tile.
"""

from __future__ import annotations

import io
import logging
import math
import threading
from collections.abc import Sequence

from PIL import Image

from concept._errors import ImageLoadError
from concept.images import ImageInput, load_image

__all__ = ["PER_ROW", "TILE", "ThumbnailSheets", "collage_jpeg", "jpeg_bytes"]

logger = logging.getLogger(__name__)

TILE = 64  # pixels per thumbnail side
PER_ROW = 16  # tiles per sheet row and column: 256 thumbnails in a 1024 x 1024 JPEG
JPEG_QUALITY = 82
_BACKGROUND = (255, 255, 255)
_MISSING = (224, 224, 224)


def jpeg_bytes(image: Image.Image, quality: int = JPEG_QUALITY) -> bytes:
    """`image` encoded as an RGB JPEG."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality, optimize=True)
    return buffer.getvalue()


def collage_jpeg(image: Image.Image, width: int = 360) -> bytes:
    """A concept's collage shrunk to `width` pixels (never enlarged), as JPEG."""
    image = image.convert("RGB")
    if image.width > width:
        image = image.resize((width, max(1, round(image.height * width / image.width))), Image.LANCZOS)
    return jpeg_bytes(image)


def _tile(item: ImageInput, size: int) -> Image.Image | None:
    """`item` fitted whole into a `size` x `size` white square, or None if it cannot be read."""
    try:
        image = load_image(item, draft_size=(2 * size, 2 * size))
    except ImageLoadError as exc:
        logger.debug("No thumbnail: %s", exc)
        return None
    scale = size / max(image.width, image.height)
    new = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    # Tiny images (e.g. 28 x 28) are enlarged with NEAREST so they stay sharp, as in collages.
    image = image.resize(new, Image.NEAREST if scale >= 2 else Image.LANCZOS)
    tile = Image.new("RGB", (size, size), _BACKGROUND)
    tile.paste(image, ((size - new[0]) // 2, (size - new[1]) // 2))
    return tile


class ThumbnailSheets:
    """Sprite sheets of thumbnails of `sources` (paths, PIL images or arrays), made on demand.

    Thumbnail `i` is in sheet `i // per_sheet`, at column `i % per_row` and row
    `(i % per_sheet) // per_row`. `sheet(k)` is thread-safe and caches nothing: callers that
    serve sheets repeatedly keep the bytes.
    """

    def __init__(self, sources: Sequence[ImageInput], tile: int = TILE, per_row: int = PER_ROW) -> None:
        self.sources = sources
        self.tile = int(tile)
        self.per_row = int(per_row)
        self.per_sheet = self.per_row * self.per_row
        self._lock = threading.Lock()
        self.failed = 0  # images that could not be read so far

    @property
    def n_sheets(self) -> int:
        return math.ceil(len(self.sources) / self.per_sheet)

    def sheet(self, k: int) -> bytes:
        """Sheet `k` as JPEG bytes (IndexError when there is no such sheet)."""
        if not 0 <= k < self.n_sheets:
            raise IndexError(f"sheet {k} does not exist (there are {self.n_sheets})")
        first = k * self.per_sheet
        items = range(first, min(first + self.per_sheet, len(self.sources)))
        rows = math.ceil(len(items) / self.per_row)
        sheet = Image.new("RGB", (self.per_row * self.tile, rows * self.tile), _BACKGROUND)
        failed = 0
        for n, i in enumerate(items):
            tile = _tile(self.sources[i], self.tile)
            if tile is None:
                tile = Image.new("RGB", (self.tile, self.tile), _MISSING)
                failed += 1
            sheet.paste(tile, ((n % self.per_row) * self.tile, (n // self.per_row) * self.tile))
        with self._lock:
            self.failed += failed
        return jpeg_bytes(sheet)
