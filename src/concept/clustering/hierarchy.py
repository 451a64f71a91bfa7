"""From the finest concepts to a hierarchy: refine the concepts on every image, measure how
typical each image is of its concept, and merge concepts into coarser layers.

- Refinement: every image joins the concept whose mean direction is nearest (a few of
  Lloyd's steps starting from the dense groups), and concepts left with fewer than
  `min_size` images are dissolved into their neighbours. Assignment is then by nearest
  centre, in the fit and in `transform` alike, so a loaded model assigns exactly as the fit.
- Confidence: an image's similarity to its concept's centre, against that concept's own
  spread: 1 at or above the median member, 0 at the outlier fence `median - threshold x
  robust SD` (1.4826 x the median absolute deviation); images below the fence are outliers.
- Layers: average-linkage merging of the finest concepts' centres by cosine. Coarser layers
  are cuts of that one tree, so every fine concept lies inside one coarse concept.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from concept.clustering.kernels import mean_directions, top_matches

#: Default outlier fence, in robust standard deviations below a concept's median similarity.
OUTLIER_THRESHOLD = 3.0
#: A merge-height gap is a layer boundary when it is at least this large (cosine distance) ...
MIN_GAP = 0.1
#: ... and at least this share of the height above it.
MIN_GAP_SHARE = 0.35
#: Coarser layers are added until a layer has at most this many concepts.
COARSEST = 3
#: Successive layers differ in concept count by at least this factor (gap layers excepted).
LAYER_FACTOR = 3.0


def refine(x: np.ndarray, labels: np.ndarray, min_size: int, iters: int = 2
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every row assigned to its nearest concept centre, starting from `labels` (-1 rows
    unassigned); returns labels (all >= 0), centres (k, d) and each row's similarity."""
    ids = np.unique(labels[labels >= 0])
    if len(ids) == 0:  # nothing dense: the whole collection is one concept
        centres, _ = mean_directions(x, np.zeros(len(x), np.int64), 1)
    else:
        remap = np.full(int(ids.max()) + 1, -1, np.int64)
        remap[ids] = np.arange(len(ids))
        centres, _ = mean_directions(x, np.where(labels >= 0, remap[np.maximum(labels, 0)], -1), len(ids))
    for step in range(iters + 1):
        assigned = top_matches(x, centres, exact=False)[0][:, 0]
        counts = np.bincount(assigned, minlength=len(centres))
        small = counts < min_size
        if small.all():
            small[np.argmax(counts)] = False
        if small.any():  # dissolve, then let the next step reassign their images
            centres = centres[~small]
            continue
        if step < iters:
            centres, _ = mean_directions(x, assigned, len(centres))
    idx, sims = top_matches(x, centres)
    return idx[:, 0], centres, sims[:, 0]


def spread(labels: np.ndarray, sims: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each concept's median member similarity and robust SD (1.4826 x MAD; floor 1e-3)."""
    medians = np.zeros(k, np.float32)
    sds = np.full(k, 1e-3, np.float32)
    ok = labels >= 0
    lab, s = labels[ok], sims[ok]
    order = np.lexsort((s, lab))
    lab, s = lab[order], s[order]
    bounds = np.searchsorted(lab, np.arange(k + 1))
    for c in range(k):
        part = s[bounds[c]:bounds[c + 1]]
        if len(part):
            medians[c] = np.median(part)
            sds[c] = max(1e-3, 1.4826 * float(np.median(np.abs(part - medians[c]))))
    return medians, sds


def confidence(sims: np.ndarray, medians: np.ndarray, sds: np.ndarray, threshold: float
               ) -> np.ndarray:
    """Membership in [0, 1]: 0 at the fence `median - threshold x sd`, 1 from the median up.
    `sims` and the statistics broadcast (one concept per row, or a row per concept)."""
    fence = medians - threshold * sds
    return np.clip((sims - fence) / np.maximum(medians - fence, 1e-6), 0.0, 1.0)


@dataclass
class Layers:
    """Concept ids of each layer, finest first: `parents[i][c]` is the concept of layer i+1
    that concept c of layer i lies in; `default` is the layer shown first; `gaps` the layers
    that sit on a clear gap in the merge heights."""

    counts: list[int]
    parents: list[np.ndarray]
    default: int
    gaps: list[int]


def _cut(tree: np.ndarray, k0: int, count: int) -> np.ndarray:
    from scipy.cluster.hierarchy import fcluster

    return fcluster(tree, count, criterion="maxclust").astype(np.int64) - 1


def build_layers(centres: np.ndarray, preferred: int | None = None) -> Layers:
    """Coarser layers over the finest concepts (`centres`, (k0, d)) by average linkage.

    Layers: the finest; a cut at each clear gap in the merge heights (a jump of at least
    MIN_GAP in cosine distance and MIN_GAP_SHARE of the height above it: the concepts below
    it are far more alike than those above); a cut at `preferred` concepts (the count HDBSCAN
    itself chooses) when there is no gap; and cuts at every LAYER_FACTOR-fold reduction down
    to COARSEST. The default layer is the finest one on a gap, else the `preferred` one.
    """
    from scipy.cluster.hierarchy import linkage

    k0 = len(centres)
    if k0 <= 2:
        return Layers([k0], [], 0, [])
    tree = linkage(np.asarray(centres, np.float64), method="average", metric="cosine")
    heights = np.maximum.accumulate(tree[:, 2])
    gaps = np.diff(heights)
    # Cutting between merge i and i+1 leaves k0 - (i + 1) concepts.
    at_gap = [k0 - (i + 1) for i in np.flatnonzero((gaps >= MIN_GAP) & (gaps >= MIN_GAP_SHARE * heights[1:]))]
    at_gap = sorted({c for c in at_gap if 2 <= c < k0}, reverse=True)
    counts = {k0, *at_gap}
    if not at_gap and preferred is not None and 2 <= preferred < k0:
        counts.add(int(preferred))
    fill = k0
    while fill > COARSEST:
        fill = max(COARSEST, round(fill / LAYER_FACTOR))
        if all(abs(np.log(fill / c)) >= np.log(2.0) for c in counts):
            counts.add(fill)
    ordered = sorted(counts, reverse=True)
    cuts = [np.arange(k0)] + [_cut(tree, k0, c) for c in ordered[1:]]
    # fcluster may give fewer clusters than asked on ties; drop layers that repeat one.
    kept, seen = [], set()
    for cut in cuts:
        n = int(cut.max()) + 1
        if n not in seen:
            seen.add(n)
            kept.append(cut)
    parents = []
    for fine, coarse in itertools.pairwise(kept):
        parent = np.empty(int(fine.max()) + 1, np.int64)
        parent[fine] = coarse
        parents.append(parent)
    final = [int(c.max()) + 1 for c in kept]
    if at_gap:
        default = final.index(at_gap[0]) if at_gap[0] in final else 0
    elif preferred is not None:
        default = int(np.argmin([abs(np.log(c / max(preferred, 1))) for c in final]))
    else:
        default = 0
    return Layers(final, parents, default, [final.index(c) for c in at_gap if c in final])
