"""Whether two images are the same picture: the pixel check that confirms a near-duplicate candidate.

Embeddings find candidates but cannot decide: in the offline model's CNN features a JPEG of a 28 x 28
Fashion-MNIST image can sit further from its original (cosine 0.55-0.75) than two different drawings
of one series do (the cards of one deck, moon phases: 0.95-0.99). So `find_duplicates` takes
candidates from the embeddings *and* from the images' small grey thumbnails, and keeps a pair only
when its pixels agree once the two are aligned:

1. **Look**: every image is kept as a LOOK x LOOK RGB thumbnail (Lanczos-reduced from the decoded image, 12 kB
   per image) and its size in pixels.
2. **Align**: a copy may be a crop (up to MAX_CROP of each side) of the other. The crop box is found
   per axis by matching the thumbnails' grey row and column profiles (means over the other axis)
   against every box in steps of CROP_STEP: a crop keeps the axes, so the two 1-D searches find the
   2-D box at a fraction of the cost. Both directions are tried (either image may be the crop).
3. **Compare** at the resolution both images really have (COMPARE pixels a side, fewer when the
   smaller image, or the cropped box, has fewer: a 50% resize of a 28-pixel image is compared at 14
   pixels, so the detail the copy lost does not count against it), after fitting one gain and offset
   to all channels (brightness and contrast changes). A pair is the same picture when the grey
   correlation is at least MIN_CORRELATION, 95% of the pixels differ by at most MAX_RESIDUAL (of 255)
   in their worst channel, and no 3 x 3 patch differs by more than MAX_LOCAL on average: a copy
   differs a little everywhere (compression, resampling: scattered edge pixels), a variant a lot
   somewhere (a worm added to an apple, a pip, a colour changed). Where a pair fails on its residuals
   alone, the boxes one step away are tried (the profiles confuse a shift with a small change of scale).

The constants were set on benchmarks/duplicates.py's OpenClipart and Fashion-MNIST collection (see
RESULTS.md), the only labelled copies we have: they are not calibrated per collection.
"""

from __future__ import annotations

import numpy as np

__all__ = ["LOOK", "look_of", "pair_measures", "same_picture", "thumbnail_vectors"]

#: Side of the RGB thumbnail kept per image.
LOOK = 64
#: Largest side at which two images are compared.
COMPARE = 32
#: A copy may lose up to this share of each side to a crop; boxes are tried in steps of CROP_STEP.
MAX_CROP = 0.12
CROP_STEP = 0.01
#: The same picture: grey correlation at least this ...
MIN_CORRELATION = 0.98
#: ... and 95% of pixels within this many levels (of 255) in their worst channel, after gain and offset.
MAX_RESIDUAL = 20.0
RESIDUAL_QUANTILE = 0.95
#: ... and no 3 x 3 patch of pixels differs by more than this on average: 5% of pixels may hold a worm added to
#: an apple or a pip; scattered edge pixels of a resampled copy average down, a changed part does not.
MAX_LOCAL = 30.0
#: Pairs whose grey profiles correlate less than this on either axis are not compared further (their
#: pictures cannot correlate at MIN_CORRELATION).
MIN_PROFILE = 0.9
#: Side of the grey thumbnail whose nearest neighbours are candidates too.
THUMB_SIDE = 16
_GREY = np.array([0.299, 0.587, 0.114])
_GREY32 = _GREY.astype(np.float32)


def _area_matrix(lo: float, hi: float, n_out: int, n_in: int = LOOK) -> np.ndarray:
    """Weights that average `n_in` cells into `n_out` cells spanning [lo, 1 - hi] of the axis (exact areas)."""
    edges = lo + (1.0 - hi - lo) * np.arange(n_out + 1) / n_out
    src = np.arange(n_in + 1) / n_in
    w = np.clip(np.minimum(edges[1:, None], src[None, 1:]) - np.maximum(edges[:-1, None], src[None, :-1]), 0, None)
    return w / w.sum(axis=1, keepdims=True)


_STEPS = np.round(np.arange(0.0, MAX_CROP + 1e-9, CROP_STEP), 4)
_BOXES = [(lo, hi) for lo in _STEPS for hi in _STEPS]
_BOX_WEIGHTS = np.stack([_area_matrix(lo, hi, COMPARE) for lo, hi in _BOXES])  # (boxes, COMPARE, LOOK)
_PLAIN = _area_matrix(0.0, 0.0, COMPARE)
#: Moves of one CROP_STEP on one side of the box or more, tried where a pair fails on its residual alone.
_SHIFTS = [CROP_STEP * (np.array(m) - 1) for m in np.ndindex(3, 3, 3, 3) if m != (1, 1, 1, 1)]


def look_of(image) -> np.ndarray:
    """The LOOK x LOOK RGB uint8 thumbnail of a decoded PIL image, Lanczos-filtered: a box filter leaves a
    1.5 x reduction (a 75% copy of a 128-pixel image, 96 -> 64) nearly unfiltered while its original (128 ->
    64) is averaged, and the copy then differs by 40 levels in textured parts; a low-pass filter fitted to the
    reduction makes both the same picture at LOOK pixels (residual about 1 level)."""
    from PIL import Image

    return np.asarray(image.convert("RGB").resize((LOOK, LOOK), Image.LANCZOS), dtype=np.uint8)


def _unit_centred(v: np.ndarray) -> np.ndarray:
    v = v - v.mean(axis=-1, keepdims=True)
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-9)


def _grey(looks: np.ndarray) -> np.ndarray:
    return looks.astype(np.float64) @ _GREY


def thumbnail_vectors(looks: np.ndarray) -> np.ndarray:
    """Each look's THUMB_SIDE x THUMB_SIDE grey thumbnail, centred and of unit length (n, THUMB_SIDE**2), float32:
    nearest neighbours here are candidates that the embedding may place far apart."""
    w = _area_matrix(0.0, 0.0, THUMB_SIDE).astype(np.float32)
    out = np.empty((len(looks), THUMB_SIDE * THUMB_SIDE), dtype=np.float32)
    for start in range(0, len(looks), 4096):  # a chunk at a time: a float copy of every look is 48 kB an image
        grey = w @ _grey(looks[start:start + 4096]).astype(np.float32) @ w.T
        out[start:start + len(grey)] = _unit_centred(grey.reshape(len(grey), -1))
    return out


def _profiles(looks: np.ndarray) -> np.ndarray:
    """Each look's grey column and row profiles (means over the other axis): (n, 2, LOOK) float32."""
    grey = looks.astype(np.float32) @ _GREY32
    return np.stack([grey.mean(axis=1), grey.mean(axis=2)], axis=1)


def _crop_boxes(prof_a: np.ndarray, prof_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per pair, the box (left, right, top, bottom shares) of A that best matches the whole of B, (p, 4), and the
    worse of the two axes' profile correlations at that box (p,): per axis, the box whose resampled profile of A
    correlates best with B's (one matrix product for every box)."""
    p = len(prof_a)
    out, score = np.empty((p, 4)), np.ones(p)
    boxes = np.array(_BOXES)
    weights = _BOX_WEIGHTS.astype(np.float32).reshape(-1, LOOK)  # (boxes * COMPARE, LOOK)
    plain = _PLAIN.T.astype(np.float32)
    for axis in (0, 1):  # column profiles give left and right, row profiles top and bottom
        va = _unit_centred((prof_a[:, axis] @ weights.T).reshape(p, len(_BOXES), COMPARE))
        vb = _unit_centred(prof_b[:, axis] @ plain)
        s = np.einsum("pko,po->pk", va, vb)
        best = s.argmax(axis=1)
        out[:, 2 * axis], out[:, 2 * axis + 1] = boxes[best].T
        score = np.minimum(score, s[np.arange(p), best])
    return out, score


def _area_matrices(lo: np.ndarray, hi: np.ndarray, n_out: int, n_in: int = LOOK) -> np.ndarray:
    """`_area_matrix` for many boxes at once: (p, n_out, n_in), float32."""
    edges = lo[:, None] + (1.0 - hi - lo)[:, None] * np.arange(n_out + 1) / n_out
    src = np.arange(n_in + 1) / n_in
    w = np.clip(np.minimum(edges[:, 1:, None], src[None, None, 1:])
                - np.maximum(edges[:, :-1, None], src[None, None, :-1]), 0, None)
    return (w / w.sum(axis=2, keepdims=True)).astype(np.float32)


def _compare(a: np.ndarray, b: np.ndarray, boxes: np.ndarray, nx: int, ny: int
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per pair, the grey correlation, the RESIDUAL_QUANTILE worst-channel residual and the largest local mean
    residual (3 x 3 pixels) of B (p, LOOK, LOOK, 3) against the box of A, both reduced to nx x ny, after one
    gain and offset fitted to all channels."""
    p = len(a)
    wx, wy = _area_matrices(boxes[:, 0], boxes[:, 1], nx), _area_matrices(boxes[:, 2], boxes[:, 3], ny)
    vx, vy = _area_matrix(0.0, 0.0, nx).astype(np.float32), _area_matrix(0.0, 0.0, ny).astype(np.float32)
    planes_a = np.moveaxis(a, -1, 1).astype(np.float32)  # (p, 3, LOOK, LOOK)
    planes_b = np.moveaxis(b, -1, 1).astype(np.float32)
    ra = wy[:, None] @ planes_a @ np.swapaxes(wx, 1, 2)[:, None]  # (p, 3, ny, nx)
    rb = vy @ planes_b @ vx.T
    grey = _GREY32[None, :, None, None]
    corr = np.einsum("pi,pi->p", _unit_centred((ra * grey).sum(axis=1).reshape(p, -1)),
                     _unit_centred((rb * grey).sum(axis=1).reshape(p, -1)))
    ca, fb = ra.reshape(p, -1), rb.reshape(p, -1)
    ca = ca - ca.mean(axis=1, keepdims=True)
    cb = fb - fb.mean(axis=1, keepdims=True)
    gain = np.einsum("pi,pi->p", ca, cb) / np.maximum(np.einsum("pi,pi->p", ca, ca), 1e-6)
    residual = np.abs(cb - gain[:, None] * ca).reshape(rb.shape).max(axis=1)  # (p, ny, nx)
    padded = np.pad(residual, ((0, 0), (1, 1), (1, 1)), mode="edge")
    local = sum(padded[:, dy:dy + ny, dx:dx + nx] for dy in range(3) for dx in range(3)) / 9.0
    flat = residual.reshape(p, -1)
    k = min(flat.shape[1] - 1, int(np.ceil(RESIDUAL_QUANTILE * (flat.shape[1] - 1))))
    return corr, np.partition(flat, k, axis=1)[:, k], local.reshape(p, -1).max(axis=1)


def _compare_by_size(looks: np.ndarray, pairs: np.ndarray, boxes: np.ndarray, n_side: np.ndarray) -> np.ndarray:
    """`_compare` of each pair (A, B) of rows of `looks` at its box and comparison size (nx, ny), batched by
    size: (3, p) correlation, residual, local residual."""
    out = np.empty((3, len(pairs)))
    for nx, ny in {(int(x), int(y)) for x, y in n_side}:
        sel = (n_side[:, 0] == nx) & (n_side[:, 1] == ny)
        out[:, sel] = _compare(looks[pairs[sel, 0]], looks[pairs[sel, 1]], boxes[sel], nx, ny)
    return out


def _refine(looks: np.ndarray, both: np.ndarray, boxes: np.ndarray, n_side: np.ndarray, measures: np.ndarray
            ) -> None:
    """Where a pair fails on its residuals alone (by up to twice their bounds), try the boxes one CROP_STEP away
    on each side: the profiles confuse a shift with a small change of scale (an 8% crop of one edge is found
    as 7% and 9%). Updates `measures` (correlation, residual, local residual per row) in place with the best
    box's (least residual at MIN_CORRELATION)."""
    corr, residual, local = measures
    near = np.flatnonzero((corr >= MIN_CORRELATION) & ((residual > MAX_RESIDUAL) | (local > MAX_LOCAL))
                          & (residual <= 2 * MAX_RESIDUAL) & (local <= 2 * MAX_LOCAL))
    if len(near) == 0:
        return
    for shift in _SHIFTS:
        c, r, m = _compare_by_size(looks, both[near], np.clip(boxes[near] + shift, 0.0, MAX_CROP), n_side[near])
        better = (c >= MIN_CORRELATION) & (np.maximum(r / MAX_RESIDUAL, m / MAX_LOCAL)
                                           < np.maximum(residual[near] / MAX_RESIDUAL, local[near] / MAX_LOCAL))
        measures[:, near[better]] = c[better], r[better], m[better]


def same_picture(looks: np.ndarray, sizes: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """For each pair of rows (p, 2), whether the two images are the same picture (module docstring); `looks`:
    (n, LOOK, LOOK, 3) uint8, `sizes`: (n, 2) width and height of each decoded image."""
    corr, residual, local = pair_measures(looks, sizes, pairs)
    return (corr >= MIN_CORRELATION) & (residual <= MAX_RESIDUAL) & (local <= MAX_LOCAL)


def pair_measures(looks: np.ndarray, sizes: np.ndarray, pairs: np.ndarray,
                  chunk: int = 4096) -> np.ndarray:
    """For each pair, the grey correlation, the residual and the local residual (of 255) of the better aligned
    direction, (3, p); pairs whose profiles do not match (MIN_PROFILE) get correlation -1, residuals inf."""
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    sizes = np.asarray(sizes, dtype=np.float64).reshape(-1, 2)
    out = np.empty((3, len(pairs)))
    for start in range(0, len(pairs), chunk):
        part = pairs[start:start + chunk]
        rows, inverse = np.unique(part, return_inverse=True)
        profiles = _profiles(looks[rows])
        both = np.concatenate([part, part[:, ::-1]])  # each image in turn the one that may be cropped
        local = np.concatenate([inverse.reshape(-1, 2), inverse.reshape(-1, 2)[:, ::-1]])
        boxes, profile_match = _crop_boxes(profiles[local[:, 0]], profiles[local[:, 1]])
        kept = 1.0 - boxes[:, 0::2] - boxes[:, 1::2]  # share of the first image's width, height in its box
        n_side = np.minimum(np.minimum(COMPARE, sizes[both[:, 1]]), sizes[both[:, 0]] * kept).astype(np.int64)
        n_side = np.maximum(n_side, 4)
        measures = np.empty((3, len(both)))
        measures[0], measures[1:] = -1.0, np.inf
        sel = np.flatnonzero(profile_match >= MIN_PROFILE)
        measures[:, sel] = _compare_by_size(looks, both[sel], boxes[sel], n_side[sel])
        _refine(looks, both, boxes, n_side, measures)
        half = len(part)
        first_better = measures[0, :half] >= measures[0, half:]
        out[:, start:start + half] = np.where(first_better, measures[:, :half], measures[:, half:])
    return out
