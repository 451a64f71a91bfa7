"""Collages: a grid of a concept's exemplar images, each scaled whole into its tile.

Unlike the reference package, images are never cropped or stretched: each one keeps its aspect
ratio and is letterboxed, centred, in a square tile. Small images (e.g. 28x28 Fashion-MNIST) are
scaled up to fill the tile so that they stay visible.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image

from concept._errors import ConceptError, ImageLoadError
from concept.images import ImageInput, load_image

__all__ = ["DEFAULT_TILE", "MIN_TILE", "collages_after", "concept_collages", "exemplar_collage", "make_collage", "remade_collages"]

logger = logging.getLogger(__name__)

MIN_TILE = 8  # pixels; below this a tile shows nothing recognisable
DEFAULT_TILE = 160  # pixels: a concept's collage in figures, saved models and the explorer

# From this upscaling factor on, pixels are repeated (NEAREST) rather than interpolated: a
# 28x28 image blown up 5x with LANCZOS is a blur with ringing, with NEAREST it is a sharp icon.
_NEAREST_FROM_SCALE = 3.0

Color = tuple[int, int, int] | str


def _fit(image: Image.Image, tile: int) -> Image.Image:
    """`image` scaled to the largest size that fits a tile x tile box, aspect ratio kept."""
    w, h = image.size
    scale = min(tile / w, tile / h)
    size = (max(1, min(tile, round(w * scale))), max(1, min(tile, round(h * scale))))
    if size == image.size:
        return image
    if scale >= _NEAREST_FROM_SCALE:
        return image.resize(size, Image.Resampling.NEAREST)
    # reducing_gap: shrink large photos by an integer factor first (fast, same quality).
    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0 if scale < 1 else None)


def _grid_shape(n: int, columns: int | None) -> tuple[int, int]:
    """(columns, rows) of the grid for `n` images; default columns is ceil(sqrt(n))."""
    cols = math.ceil(math.sqrt(n)) if columns is None else columns
    return cols, math.ceil(n / cols)


def make_collage(images: Sequence[ImageInput], *, tile: int = DEFAULT_TILE, columns: int | None = None,
                 padding: int = 4, background: Color = (255, 255, 255)) -> Image.Image:
    """A grid of `images`, each scaled whole (never cropped or stretched) into a square tile.

    Parameters: `images` PIL images of any mode (paths and arrays are loaded too; transparency
    is composited on white); `tile` the side of each tile in pixels, small images are scaled up
    to fill it; `columns` of the grid, default ceil(sqrt(n)), so 9 images make 3x3 and 8 make
    3 columns of 3, 3 and 2; `padding` pixels between tiles and around the grid; `background`
    the colour of padding and letterboxing.
    Returns an RGB image of (cols*tile + (cols+1)*padding) x (rows*tile + (rows+1)*padding).
    Raises `ConceptError` for no images or bad sizes, `ImageLoadError` for an unreadable image.
    """
    images = list(images)
    if not images:
        raise ConceptError("make_collage needs at least one image; got an empty sequence.")
    if isinstance(tile, bool) or not isinstance(tile, int) or tile < MIN_TILE:
        raise ConceptError(f"tile must be an integer of at least {MIN_TILE} pixels, got {tile!r}.")
    if columns is not None and (isinstance(columns, bool) or not isinstance(columns, int)
                                or columns < 1):
        raise ConceptError(f"columns must be a positive integer or None, got {columns!r}.")
    if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
        raise ConceptError(f"padding must be a non-negative integer, got {padding!r}.")

    cols, rows = _grid_shape(len(images), columns)
    step = tile + padding
    try:
        canvas = Image.new("RGB", (cols * step + padding, rows * step + padding), background)
    except (ValueError, TypeError) as exc:
        raise ConceptError(f"background must be an RGB tuple or colour name, got {background!r}."
                           ) from exc
    for i, item in enumerate(images):
        # load_image: any mode -> RGB with alpha on white; draft_size lets JPEG paths decode small.
        fitted = _fit(load_image(item, draft_size=(tile, tile)), tile)
        row, col = divmod(i, cols)
        x = padding + col * step + (tile - fitted.width) // 2
        y = padding + row * step + (tile - fitted.height) // 2
        canvas.paste(fitted, (x, y))
    logger.debug("Collage of %d images: %d x %d tiles of %d px", len(images), cols, rows, tile)
    return canvas


def exemplar_collage(items: Sequence[ImageInput], tile: int = DEFAULT_TILE) -> Image.Image | None:
    """A concept's collage from its exemplars, or None when none of them loads.

    Each exemplar is decoded small (`draft_size`: JPEG draft, other formats box-reduced right
    after decoding) and scaled to its tile before the next is read, so only one image is ever
    held at full size: OpenClipart's largest PNGs are 100 million pixels, and holding a
    concept's nine at full size took 5 GiB. One that cannot be read (changed on disk since it
    was embedded) is left out with a warning.
    """
    tiles = []
    for item in items:
        try:
            tiles.append(_fit(load_image(item, draft_size=(tile, tile)), tile))
        except ImageLoadError as exc:
            logger.warning("Exemplar left out of the collage: %s", exc)
    return make_collage(tiles, tile=tile) if tiles else None


def concept_collages(exemplars: dict[int, list[int]],
                     image_of: Callable[[int], ImageInput | None]) -> dict[int, Image.Image]:
    """{concept: collage} of each concept's exemplar rows; `image_of(row)` gives a row's image
    (None: not available). A concept none of whose exemplars loads has no collage."""
    collages = {}
    for concept, rows in exemplars.items():
        images = [image_of(row) for row in rows]
        collage = exemplar_collage([image for image in images if image is not None])
        if collage is not None:
            collages[concept] = collage
    return collages


def remade_collages(exemplars: dict[int, list[int]], labels: np.ndarray, old: dict[int, Image.Image],
                    old_labels: np.ndarray, image_of: Callable[[int], ImageInput | None] | None,
                    sources: Sequence[str] | None) -> dict[int, Image.Image]:
    """Collages after an edit, made again from the exemplars' images: `image_of(row)` (the
    running call's images), else the fitted files `sources`. A concept none of whose
    exemplars can be loaded keeps its collage if it has the same members (or, after rows were
    added, the same id) as before; the others are counted in a warning."""
    def image(row: int) -> ImageInput | None:
        given = image_of(row) if image_of is not None else None
        return given if given is not None else sources[row] if sources is not None else None

    collages, missing = {}, 0
    made = concept_collages(exemplars, image)
    for concept in exemplars:
        if concept in made:
            collages[concept] = made[concept]
            continue
        members = labels[:len(old_labels)] == concept
        before = np.unique(old_labels[members])
        if len(before) == 1 and int(before[0]) in old and np.array_equal(old_labels == before[0], members):
            collages[concept] = old[int(before[0])]  # the same members
        elif len(old_labels) < len(labels) and int(concept) in old:
            collages[concept] = old[int(concept)]  # new rows: the same concept, grown
        elif old:
            missing += 1
    if missing:
        logger.warning("%d changed concepts have no collage: their images were not files, so they "
                       "cannot be loaded again.", missing)
    return collages


def collages_after(exemplars: dict[int, list[int]], old_exemplars: dict[int, list[int]], labels: np.ndarray,
                   collages: dict[int, Image.Image], sources: Sequence[str] | None) -> dict[int, Image.Image]:
    """The collages once the exemplars were picked again for the same labels (e.g. one image per duplicate group):
    those of the concepts whose exemplars changed are made again from the files `sources` (without files they keep
    their collage), the others are kept."""
    changed = {c: rows for c, rows in exemplars.items() if rows != old_exemplars.get(c)}
    return {**collages, **remade_collages(changed, labels, collages, labels, None, sources)}
