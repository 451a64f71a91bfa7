"""Duplicates and unusual images in a collection: exact copies, near duplicates, uniqueness.

Three questions a user asks before (or while) modelling a collection, answered from the pixels
and from the embeddings the model already has (the semantics of FiftyOne brain's
`compute_exact_duplicates` / `compute_near_duplicates` / `compute_uniqueness` and of fastdup's
similarity components; no code of theirs):

- **Exact duplicates**: the same file (equal SHA-256 of the bytes), or the same pixels after
  decoding (equal size and equal 32 x 32 RGB thumbnail, each cell the box mean of the decoded RGB
  image rounded to an integer: `thumbnail_key`). Decoding is `concept.images.load_image`'s (EXIF
  orientation, alpha on white, large files box-reduced while decoding as for the embedding), so a
  PNG saved again or stripped of its metadata, or converted losslessly to a format that keeps its
  pixel mode (WebP lossless, TIFF), is exact. A lossy re-encode (a JPEG of a PNG, a JPEG saved
  again) changes some of the 3,072 rounded means and so is never exact: it is a near duplicate.
  So may be a lossless copy of a large RGBA image flattened to RGB (the reduction rounds the two
  modes differently); small images are compared at full resolution.
- **Near duplicates**: with the images at hand (`images`, or a model's files), candidates are each image's
  nearest images in the embedding (cosine at least CANDIDATE_COSINE) and by grey thumbnail, and their pixels
  decide (`concept.pixel_match.same_picture`: aligned for crops, compared at the resolution both have, one
  gain and offset for brightness): a copy differs a little everywhere, a variant of one drawing a lot
  somewhere. With embeddings alone, or a `near` cosine given, images whose embeddings have a cosine of at
  least `near` (None: calibrated on the collection, `calibrated_near`). Either way pairs are joined
  transitively (union-find), among one representative of every exact group.
- **Uniqueness**: how unlike an image is to its nearest neighbours in the whole collection
  (`uniqueness`).

Every group keeps one representative (`kept`): the image with most pixels, then the largest
file, then the sharpest (variance of the Laplacian of its grey thumbnail), then the first row.
The others are the copies that could be dropped. Neighbours come from
`concept.clustering.blocks.nearest_rows` (every row against every row in chunks up to a few thousand
rows, within blocks of similar rows above): memory stays linear in the number of images, never an
all-pairs matrix.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from concept._errors import ConceptError

__all__ = ["Duplicates", "PixelIdentities", "calibrated_near", "duplicate_groups", "find_duplicates",
           "pixel_identities", "thumbnail_key", "typicality", "uniqueness"]

logger = logging.getLogger(__name__)

#: Side of the thumbnail whose rounded RGB means decide that two decodings have the same pixels.
THUMBNAIL = 32
#: Decoding for the thumbnail may reduce an image to no less than twice this side (`load_image`'s draft).
DRAFT = 4 * THUMBNAIL
#: Neighbours looked at per image (the image itself included); more copies of one image than
#: this still form one group through the copies' own neighbours.
NEIGHBOURS = 16
#: Neighbours whose mean similarity measures uniqueness.
UNIQUENESS_NEIGHBOURS = 5
#: The calibrated near threshold: the CALIBRATION_QUANTILE of how close each image's
#: CALIBRATION_RANK-th nearest other image comes...
CALIBRATION_RANK = 3
CALIBRATION_QUANTILE = 0.99
#: ... but never below NEAR_FLOOR nor above NEAR_CEILING (see `calibrated_near`).
NEAR_FLOOR = 0.90
NEAR_CEILING = 0.98
#: With the images at hand, near-duplicate candidates are the NEIGHBOURS nearest in the embedding with at least
#: this cosine, and the THUMB_NEIGHBOURS nearest grey thumbnails with at least THUMB_CORRELATION; their pixels
#: decide (`concept.pixel_match`).
CANDIDATE_COSINE = 0.75
#: The pixel check holds a 12 kB look per image: above this many images (2.4 GB) the cosine decides instead.
PIXEL_CHECK_MAX = 200_000
THUMB_NEIGHBOURS = 8
THUMB_CORRELATION = 0.9

@dataclass
class Duplicates:
    """The duplicates of a collection; rows are positions in the images (or embeddings) given.

    exact / near: groups of rows, each sorted with its kept representative first.
    kept_exact / kept_near: the representative of each group (its first row).
    near_threshold: the cosine that made two images near duplicates (given or calibrated); None where their
        pixels decided (`concept.pixel_match`).
    uniqueness: one value per row in [0, 1] (None without embeddings), see `uniqueness`.
    paths: the rows' file paths (None where the images were not files).
    """

    exact: list[list[int]]
    near: list[list[int]]
    near_threshold: float | None
    uniqueness: np.ndarray | None
    paths: list[str | None] | None = None
    n_images: int = 0
    failed: list[int] = field(default_factory=list)

    @property
    def kept_exact(self) -> list[int]:
        return [g[0] for g in self.exact]

    @property
    def kept_near(self) -> list[int]:
        return [g[0] for g in self.near]

    def droppable(self) -> list[int]:
        """Rows that could be dropped, keeping one image of every group (each row listed once)."""
        return sorted({r for g in [*self.exact, *self.near] for r in g[1:]})

    def table(self):
        """A pandas DataFrame, one line per (group, image): group (numbered exact groups first, then near), kind
        ("exact" or "near"), row, path (None when not a file), kept (the group's representative)."""
        import pandas as pd

        lines = []
        for kind, groups, offset in (("exact", self.exact, 0), ("near", self.near, len(self.exact))):
            for g, rows in enumerate(groups):
                for i, row in enumerate(rows):
                    path = None if self.paths is None else self.paths[row]
                    lines.append((offset + g, kind, int(row), path, i == 0))
        return pd.DataFrame(lines, columns=["group", "kind", "row", "path", "kept"])

    def summary(self) -> str:
        """One line: groups, images in them and copies that could be dropped."""
        in_groups = len({r for g in [*self.exact, *self.near] for r in g})
        near = " (pixel-checked)" if self.near_threshold is None else f" (cosine >= {self.near_threshold:.3f})"
        return (f"{len(self.exact):,} exact groups and {len(self.near):,} near-duplicate groups{near} among "
                f"{self.n_images:,} images: {in_groups:,} images in groups, {len(self.droppable()):,} copies "
                "could be dropped")


def duplicate_groups(found: Duplicates) -> np.ndarray:
    """Each row's duplicate group, exact and near joined (an exact group's copies join the near group of their kept
    image, if it has one), numbered from 0; -1 for a row in no group."""
    out = np.full(found.n_images, -1, np.int64)
    for g, rows in enumerate(found.near):
        out[rows] = g
    number = len(found.near)
    for rows in found.exact:
        if out[rows[0]] < 0:
            out[rows[0]], number = number, number + 1
        out[rows] = out[rows[0]]
    return out


def check_duplicates(found: Any, n: int) -> Duplicates | None:
    """`found` if it is a Duplicates of `n` rows (or None); a ConceptError saying what to pass otherwise."""
    if found is None:
        return None
    if not isinstance(found, Duplicates):
        raise ConceptError(f"duplicates_ takes a Duplicates (from find_duplicates(model=model)), got {type(found).__name__}")
    rows = [r for g in [*found.exact, *found.near] for r in g]
    if found.n_images != n or any(not 0 <= int(r) < n for r in rows) or (
            found.uniqueness is not None and len(found.uniqueness) != n):
        raise ConceptError(f"These duplicates are of {found.n_images} images, the model has {n}: find them again "
                           "with find_duplicates(model=model).")
    return found


# ---------------------------------------------------------------------------------------------- grouping
class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = np.arange(n)

    def find(self, a: int) -> int:
        parent = self.parent
        root = a
        while parent[root] != root:
            root = parent[root]
        while parent[a] != root:  # path compression
            parent[a], a = root, parent[a]
        return int(root)

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)

    def groups(self) -> list[list[int]]:
        """Sets of more than one element, each sorted, in order of their first element."""
        out: dict[int, list[int]] = {}
        for a in range(len(self.parent)):
            out.setdefault(self.find(a), []).append(a)
        return [g for g in out.values() if len(g) > 1]


def _groups_of_keys(keys: Sequence[Any]) -> list[list[int]]:
    """Rows sharing a key (None keys are never grouped)."""
    by_key: dict[Any, list[int]] = {}
    for row, key in enumerate(keys):
        if key is not None:
            by_key.setdefault(key, []).append(row)
    return [rows for rows in by_key.values() if len(rows) > 1]


# ---------------------------------------------------------------------------------------------- pixels
def _file_digest(path: str | os.PathLike) -> str | None:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError:
        return None
    return h.hexdigest()


def thumbnail_key(image: Any) -> tuple[tuple[int, int], bytes, float] | None:
    """The pixel identity of one image: its size, the bytes of its 32 x 32 thumbnail (the box mean of each
    cell of the decoded RGB image, rounded to an integer) and its sharpness (variance of the Laplacian of
    the grey thumbnail, to choose between copies). None when it cannot be loaded."""
    found = _decoded(image)
    return None if found is None else found[0]


def _decoded(image: Any) -> tuple[tuple[tuple[int, int], bytes, float], np.ndarray] | None:
    """`thumbnail_key` and the image's `pixel_match.look_of` thumbnail, from one decode; None when unreadable."""
    from PIL import Image

    from concept._errors import ImageLoadError
    from concept.images import load_image
    from concept.pixel_match import look_of

    try:
        size = None
        if isinstance(image, (str, os.PathLike)):
            with Image.open(image) as im:
                size = im.size
        # A reduced decode (JPEG draft, box reduction of other formats), as fast as the embedding's: a
        # 10,000 x 16,000 PNG takes seconds to decode in full. It depends on the pixels and on the mode the
        # file stores them in (RGBA is reduced premultiplied): see the module's docstring.
        im = load_image(image, draft_size=(DRAFT, DRAFT))
        size = size or im.size
    except (ImageLoadError, OSError, ValueError):
        return None
    a = np.asarray(im)
    thumb = np.round(_box_means(_box_means(a, 0), 1)).astype(np.uint8)
    grey = thumb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    lap = (grey[1:-1, :-2] + grey[1:-1, 2:] + grey[:-2, 1:-1] + grey[2:, 1:-1] - 4 * grey[1:-1, 1:-1])
    return (tuple(size), thumb.tobytes(), float(lap.var())), look_of(im)


def _box_means(a: np.ndarray, axis: int) -> np.ndarray:
    """Means of THUMBNAIL nearly equal blocks of `a` along `axis` (integer block edges, so the same pixels always
    give the same means); an axis shorter than THUMBNAIL repeats its pixels instead."""
    length = a.shape[axis]
    if length < THUMBNAIL:
        return np.take(a, (np.arange(THUMBNAIL) * length) // THUMBNAIL, axis=axis).astype(np.float64)
    edges = (np.arange(THUMBNAIL + 1) * length) // THUMBNAIL
    sums = np.add.reduceat(a, edges[:-1], axis=axis, dtype=np.int64 if a.dtype.kind in "ui" else np.float64)
    shape = [1] * a.ndim
    shape[axis] = THUMBNAIL
    return sums / np.diff(edges).reshape(shape)


@dataclass
class PixelIdentities:
    """What the exact pass reads from each image's pixels, one entry per row: byte digest (files only, else None),
    pixel key (a digest of the size and 32 x 32 thumbnail; None when unreadable), sharpness, pixel count, file
    bytes, and the looks (n, LOOK, LOOK, 3; None above PIXEL_CHECK_MAX images) and sizes (n, 2) that
    `pixel_match.same_picture` compares (zeros where unreadable). Computed here (`pixel_identities`) or by
    workers (`concept.distributed.duplicates`) and joined with `concat`."""

    digests: list
    keys: list
    sharpness: np.ndarray
    pixels: np.ndarray
    file_bytes: np.ndarray
    looks: np.ndarray | None
    dims: np.ndarray

    @classmethod
    def concat(cls, parts: Sequence[PixelIdentities]) -> PixelIdentities:
        keep = all(p.looks is not None for p in parts) and sum(len(p.dims) for p in parts) <= PIXEL_CHECK_MAX
        return cls([d for p in parts for d in p.digests], [k for p in parts for k in p.keys],
                   *(np.concatenate([getattr(p, name) for p in parts]) for name in ("sharpness", "pixels", "file_bytes")),
                   np.concatenate([p.looks for p in parts]) if keep else None,
                   np.concatenate([p.dims for p in parts]))

    def take(self, rows: np.ndarray) -> PixelIdentities:
        """These identities of `rows` only, in that order."""
        return PixelIdentities([self.digests[i] for i in rows], [self.keys[i] for i in rows], self.sharpness[rows],
                               self.pixels[rows], self.file_bytes[rows],
                               None if self.looks is None else self.looks[rows], self.dims[rows])


def pixel_identities(images: Sequence[Any], keep_looks: bool | None = None) -> PixelIdentities:
    """The `PixelIdentities` of `images`, each decoded once; `keep_looks` None: up to PIXEL_CHECK_MAX images."""
    from concept.pixel_match import LOOK

    n = len(images)
    keep = n <= PIXEL_CHECK_MAX if keep_looks is None else keep_looks
    if not keep and keep_looks is None:
        logger.info("%s images: more than %s, so near duplicates are decided by their cosine, not their pixels",
                    f"{n:,}", f"{PIXEL_CHECK_MAX:,}")
    digests, keys = [], []
    sharpness, pixels, file_bytes = np.zeros(n), np.zeros(n, np.int64), np.zeros(n, np.int64)
    looks = np.zeros((n if keep else 0, LOOK, LOOK, 3), dtype=np.uint8)
    dims = np.zeros((n, 2), dtype=np.int64)
    for row, image in enumerate(images):
        is_file = isinstance(image, (str, os.PathLike))
        digests.append(_file_digest(image) if is_file else None)
        found = _decoded(image)
        key = None if found is None else found[0]
        keys.append(None if key is None else hashlib.sha256(repr(key[0]).encode() + key[1]).hexdigest())
        if key is not None:
            dims[row], sharpness[row], pixels[row] = key[0], key[2], key[0][0] * key[0][1]
            if keep:
                looks[row] = found[1]
        try:
            file_bytes[row] = os.path.getsize(image) if is_file else 0
        except OSError:
            pass
    return PixelIdentities(digests, keys, sharpness, pixels, file_bytes, looks if keep else None, dims)


# ---------------------------------------------------------------------------------------------- embeddings
def _neighbours(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's `k` nearest other rows by cosine and their similarities: every row against every row
    (chunked `top_matches`) up to `blocks.BRUTE_FORCE_MAX` rows, above it within blocks of similar rows
    (`concept.clustering.blocks.nearest_rows`: never an all-pairs search)."""
    from concept.clustering.blocks import nearest_rows

    idx, sims = nearest_rows(x, k + 1)
    # Drop each row itself: by index, not by position (an exact copy elsewhere may tie with it and come first);
    # a row whose own index is not among its matches drops its last match instead.
    own = idx == np.arange(len(x))[:, None]
    own[~own.any(axis=1), -1] = True
    own &= np.cumsum(own, axis=1) == 1  # one column per row
    order = np.argsort(own, axis=1, kind="stable")[:, :-1]
    return np.take_along_axis(idx, order, axis=1), np.take_along_axis(sims, order, axis=1)


def _candidate_pairs(nb_i: np.ndarray, nb_s: np.ndarray, looks: np.ndarray, dims: np.ndarray) -> np.ndarray:
    """Pairs of rows (p, 2), each once, that `pixel_match.same_picture` checks: each row's nearest rows in the
    embedding with a cosine of at least CANDIDATE_COSINE, and its THUMB_NEIGHBOURS nearest by grey thumbnail
    with a correlation of at least THUMB_CORRELATION (a resized or recompressed small image can move far in a
    CNN's space, not in its thumbnail's). Rows that could not be decoded (no size) take no part."""
    from concept.pixel_match import thumbnail_vectors

    t_i, t_s = _neighbours(thumbnail_vectors(looks), THUMB_NEIGHBOURS)
    found = []
    for idx, sims, floor in ((nb_i, nb_s, CANDIDATE_COSINE), (t_i, t_s, THUMB_CORRELATION)):
        a, j = np.nonzero(sims >= floor)
        found.append(np.column_stack([a, idx[a, j]]))
    pairs = np.sort(np.concatenate(found), axis=1)
    pairs = np.unique(pairs[pairs[:, 0] != pairs[:, 1]], axis=0)
    readable = (dims > 0).all(axis=1)
    return pairs[readable[pairs[:, 0]] & readable[pairs[:, 1]]]


def calibrated_near(neighbour_similarities: np.ndarray) -> float:
    """The near-duplicate threshold of a collection, from each image's cosines to its nearest other images (n, k),
    best first: the CALIBRATION_QUANTILE (99%) of the cosines to the CALIBRATION_RANK-th (3rd) nearest, clipped to
    [NEAR_FLOOR, NEAR_CEILING] (NEAR_CEILING for fewer than 20 images).

    Why: an image's third-nearest neighbour is a look-alike, not a copy, unless the image has more than two
    copies; how close look-alikes come in *this* collection and *this* embedding space is what a copy must beat.
    (The nearest neighbour itself would not do: with 10% copies a fifth of its values are copies.) So a pair is
    near when it is closer than 99% of images come to their third look-alike. A collection of look-alikes
    (product shots, the cards of one deck) gets a higher threshold, a collection of varied images a lower one.
    The floor keeps merely similar images apart where everything is far apart; the ceiling keeps copies
    findable in a space where everything is close (the offline model's shared ConSE space puts most images of
    one ImageNet class above 0.95). On benchmarks/duplicates.py's 3,300 images (OpenClipart, Fashion-MNIST,
    10% altered or exact copies) it gives 0.940 in the offline model's CNN features, near the threshold of the
    best F1 there (0.94); no threshold of those features both finds most altered copies and keeps the
    variants of one drawing (moon phases, the cards of a deck, smileys) apart: see that benchmark's table.
    """
    s = np.asarray(neighbour_similarities, dtype=np.float64)
    s = s.reshape(len(s), -1)
    rank = min(CALIBRATION_RANK, s.shape[1]) - 1
    column = s[:, rank] if rank >= 0 else np.empty(0)
    column = column[np.isfinite(column) & (column > -1.0)]
    if len(column) < 20:
        return NEAR_CEILING
    return float(np.clip(np.quantile(column, CALIBRATION_QUANTILE), NEAR_FLOOR, NEAR_CEILING))


def uniqueness(embeddings: Any, k: int = UNIQUENESS_NEIGHBOURS, *,
               neighbours: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """How unlike each image is to the rest of the collection, in [0, 1]: one minus its mean cosine to its `k`
    nearest other images, rescaled so that the collection's least unique image scores 0 and its most unique 1
    (all 0 when every image scores the same; 1 for a lone image).

    It measures an image against the whole collection; the model's `probabilities_` measure how typical an
    image is of its own concept (0 at the outlier fence, 1 at the concept's median member). An image can be
    typical of a small, tight concept and still unique in the collection, and an outlier of every concept
    (probability 0) can have near copies (low uniqueness). Exact and near copies lower each other's.
    `neighbours`: (indices, cosines) of each row's nearest other rows, best first, when already found.
    """
    from concept.embedding.inputs import as_embeddings

    x = as_embeddings(embeddings)
    if len(x) < 2:
        return np.ones(len(x))
    _, sims = neighbours if neighbours is not None else _neighbours(x, k)
    sims = sims[:, :k]
    raw = 1.0 - np.where(sims > -1.0, sims, np.nan).astype(np.float64)
    raw = np.nanmean(raw, axis=1)
    lo, hi = float(raw.min()), float(raw.max())
    return np.zeros(len(x)) if hi - lo < 1e-12 else (raw - lo) / (hi - lo)


def typicality(space: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """How central each image is to its concept, in (0, 1]: the share of its concept's members that are no closer
    to the concept's centre (the normalised mean of the members in `space`) than it is: 1 for the most central
    member, about 0.5 for the median one, 1 / size for the least central. 0 for outliers (label -1).

    `probabilities_` measures the same closeness against the finest concept's outlier fence and clips it at 1
    from the median member up; typicality ranks every member of the given layer's concept, unclipped, so the
    most typical images of a concept can be told apart from the merely typical ones."""
    from concept.clustering import mean_directions

    labels = np.asarray(labels, np.int64)
    x = np.asarray(space, np.float32)
    out = np.zeros(len(labels))
    rows = np.flatnonzero(labels >= 0)
    if len(rows) == 0:
        return out
    centres = mean_directions(x, labels, k)[0]
    sims = np.einsum("ij,ij->i", x[rows], centres[labels[rows]]).astype(np.float64)
    order = np.lexsort((sims, labels[rows]))  # by concept, then closeness
    lab, s = labels[rows][order], sims[order]
    bounds = np.searchsorted(lab, np.arange(k + 1))
    for c in range(k):
        part = s[bounds[c]:bounds[c + 1]]
        if len(part):  # members no closer than each: ties count all of them
            out[rows[order[bounds[c]:bounds[c + 1]]]] = np.searchsorted(part, part, side="right") / len(part)
    return out


# ---------------------------------------------------------------------------------------------- the call
def _embeddings_of(images, model, embeddings, batch_size: int, verbose: bool) -> tuple[np.ndarray | None, list, Any]:
    """The vectors to compare (a model's clustering features where it has them, else its embeddings; the given
    embeddings; or the offline model's CNN features of `images`), the rows that failed to load, and the images
    as the rows are (a model's sources)."""
    from concept.embedding.inputs import as_embeddings

    if embeddings is not None:
        return as_embeddings(embeddings), [], images
    if model is not None:
        if "labels_" not in model.__dict__:
            raise ConceptError("find_duplicates(model=...) needs a fitted model: call fit() or load() first.")
        x = model.features_ if model.features_ is not None else model.embeddings_
        return as_embeddings(x), [], images if images is not None else model.image_sources_
    if images is None:
        return None, [], images
    from concept.embedding import load_embedding_model
    from concept.embedding.inputs import embed_inputs

    embedder = load_embedding_model("offline", verbose=verbose)
    embedded = embed_inputs(embedder, list(images), None, features=True, batch_size=batch_size, verbose=verbose)
    x = as_embeddings(embedded.features if embedded.features is not None else embedded.x)
    full = np.full((len(images), x.shape[1]), np.nan, dtype=np.float32)
    full[embedded.kept] = x
    return full, [f.index for f in embedded.failures], images


def find_duplicates(images: Sequence[Any] | None = None, *, model: Any = None, embeddings: Any = None,
                    near: float | None = None, exact: bool = True, batch_size: int = 32,
                    verbose: bool = False, pixels: PixelIdentities | None = None) -> Duplicates:
    """Exact copies, near duplicates and the uniqueness of every image of a collection.

    Parameters
    ----------
    images: paths, PIL images or arrays (for the exact groups and the representatives' sizes); with a fitted
        `model` and no `images`, the model's `image_sources_` (files it was fitted on), in its row order.
    model: a fitted ConceptModel whose vectors are compared (its clustering features where it has them: the
        offline model's CNN features tell copies from look-alikes far better than its shared space).
    embeddings: precomputed vectors, one per image, instead. With neither `model` nor `embeddings`, `images` are
        embedded by the bundled offline model (its CNN features).
    near: None (default): with the images at hand, near-duplicate candidates are confirmed by their pixels
        (`concept.pixel_match`); without them, the cosine is calibrated on the collection (`calibrated_near`).
        A cosine: the images whose embeddings are at least this close are near duplicates, pixels unseen.
    exact: look for exact copies (decodes every image once more; without it the pixels are not compared).
    pixels: the images' `PixelIdentities` when already read (e.g. by Ray workers:
        `concept.distributed.duplicates.find_duplicates_on_ray`), so they are not decoded again here.

    Returns a `Duplicates`: groups of rows (positions in `images`, or the model's rows), each led by its kept
    representative, the threshold used, `uniqueness` per row, and `.table()`.
    """
    if near is not None and not 0.0 < float(near) <= 1.0:
        raise ConceptError(f"near must be a cosine in (0, 1], got {near!r}")
    images = None if images is None else list(images)
    x, failed, images = _embeddings_of(images, model, embeddings, batch_size, verbose)
    n = len(x) if x is not None else len(images) if images is not None else 0
    if n == 0:
        raise ConceptError("find_duplicates needs images, embeddings or a fitted model.")
    if images is not None and len(images) != n:
        raise ConceptError(f"Got {len(images)} images but {n} embeddings; they must match one to one.")
    paths = None if images is None else [os.fspath(i) if isinstance(i, (str, os.PathLike)) else None for i in images]
    if paths is not None and not any(paths):
        paths = None

    # Exact: equal bytes or equal decoded thumbnails (and size).
    order_key = np.zeros((n, 3))  # pixels, file bytes, sharpness: the representative is the largest
    exact_groups: list[list[int]] = []
    looks = dims = None  # the pixels that confirm near duplicates (decoded with the exact pass)
    if exact and images is not None:
        ids = pixels if pixels is not None else pixel_identities(images)
        if len(ids.dims) != n:
            raise ConceptError(f"Got pixel identities of {len(ids.dims)} images for {n} images.")
        looks, dims = ids.looks, ids.dims
        order_key = np.column_stack([ids.pixels, ids.file_bytes, ids.sharpness]).astype(np.float64)
        uf = _UnionFind(n)
        for group in [*_groups_of_keys(ids.digests), *_groups_of_keys(ids.keys)]:
            for row in group[1:]:
                uf.union(group[0], row)
        exact_groups = uf.groups()

    def lead(group: list[int]) -> list[int]:  # the representative first, the others in row order
        best = max(group, key=lambda r: (*order_key[r], -r))
        return [best, *[r for r in sorted(group) if r != best]]

    exact_groups = sorted((lead(g) for g in exact_groups), key=lambda g: min(g))
    near_groups: list[list[int]] = []
    unique = None
    threshold = None
    if x is not None:
        ok = np.isfinite(x).all(axis=1)
        copies = {r for g in exact_groups for r in g[1:]}
        reps = np.array([r for r in range(n) if ok[r] and r not in copies], dtype=np.int64)
        if len(reps) >= 2:
            nb_i, nb_s = _neighbours(x if len(reps) == n else x[reps], NEIGHBOURS)
            uf = _UnionFind(len(reps))
            if near is None and looks is not None:  # candidates confirmed by their pixels
                pairs = _candidate_pairs(nb_i, nb_s, looks[reps], dims[reps])
                from concept.pixel_match import same_picture

                for a, b in pairs[same_picture(looks[reps], dims[reps], pairs)]:
                    uf.union(int(a), int(b))
                unseen = ~(dims[reps] > 0).all(axis=1)  # rows whose pixels could not be read: by cosine
                if unseen.any():
                    cosine = calibrated_near(nb_s)
                    for a, b in zip(*np.nonzero((nb_s >= cosine) & (unseen[:, None] | unseen[nb_i]))):
                        uf.union(int(a), int(nb_i[a, b]))
            else:  # embeddings alone: a cosine threshold, given or calibrated
                threshold = float(near) if near is not None else calibrated_near(nb_s)
                for a, b in zip(*np.nonzero(nb_s >= threshold)):
                    uf.union(int(a), int(nb_i[a, b]))
            near_groups = sorted((lead([int(reps[r]) for r in g]) for g in uf.groups()), key=lambda g: min(g))
            # Uniqueness over every loaded row (copies included: a copy makes its original less unique).
            rows = np.flatnonzero(ok)
            unique = np.full(n, np.nan)
            same = len(rows) == len(reps)  # no copies, no failures: the neighbours are those found above
            unique[rows] = uniqueness(x if len(rows) == n else x[rows], neighbours=(nb_i, nb_s) if same else None)
        elif len(reps) == 1:
            unique = np.where(ok, 1.0, np.nan)
    result = Duplicates(exact_groups, near_groups, threshold, unique, paths, n, sorted(failed))
    logger.info("%s", result.summary())
    return result
