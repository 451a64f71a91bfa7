"""From the finest concepts to a hierarchy: refine the concepts on every image, measure how
typical each image is of its concept, and merge concepts into coarser layers.

- Refinement: every image joins the concept whose mean direction is nearest (a few of
  Lloyd's steps starting from the dense groups), and concepts left with fewer than
  `min_size` images are dissolved into their neighbours. Assignment is then by nearest
  centre, in the fit and in `transform` alike, so a loaded model assigns exactly as the fit.
- Confidence: an image's similarity to its concept's centre, against that concept's own
  spread: 1 at or above the median member, 0 at the outlier fence `median - threshold x
  robust SD` (1.4826 x the median absolute deviation); images below the fence are outliers.
- Layers: size-weighted Ward merging of the finest concepts. Coarser layers are cuts of that
  one tree, so every fine concept lies inside one coarse concept.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass

import numpy as np

from concept.clustering.kernels import SMALL, best_of_candidates, mean_directions, top_matches
from concept.clustering.passes import InMemory, Near, Rows

logger = logging.getLogger(__name__)

#: Lloyd's steps of the refinement at most, and the share of changed rows that ends it; above
#: LARGE rows at most MAX_ITER_LARGE steps (each is a pass over every image).
MAX_ITER, CONVERGED = 10, 0.001
LARGE, MAX_ITER_LARGE = 100_000, 4
#: Centres from which refinement's Lloyd's steps search only a few candidates a row
#: (`candidates`), and how many.
RESTRICT_CENTRES, CANDIDATES = 512, 8
#: Share of sampled rows whose best centre must be among their candidates (`narrowing`).
MIN_RECALL = 0.75
#: Default outlier fence, in robust standard deviations below a concept's median similarity.
OUTLIER_THRESHOLD = 3.0
#: A merge-height gap is a layer boundary when it is at least this share of the height above
#: it (measured: 0.63-0.77 at the true levels of the synthetic mixtures, at most 0.34 anywhere
#: on OpenClipart and Fashion-MNIST, where the largest is the last merge, into 2 concepts).
MIN_GAP_SHARE = 0.5
#: With no gap, the layer shown first keeps every merge at least this share of the last
#: (costliest) merge's height (`default_count`). Relative heights are nearly the same from seed
#: to seed where concept counts are not: on Fashion-MNIST 0.3 gave 11 concepts for all of 6
#: seeds (HDBSCAN's "eom" count, used before, 6-9), on OpenClipart every finest concept.
DEFAULT_SHARE = 0.3
#: Coarser layers are added until a layer has at most this many concepts.
COARSEST = 3
#: Successive layers differ in concept count by at least this factor (gap layers excepted).
LAYER_FACTOR = 3.0


def refine(x: np.ndarray, labels: np.ndarray, min_size: int, max_iter: int | None = None
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every row assigned to its nearest concept centre, starting from `labels` (-1 rows
    unassigned), by Lloyd's steps until fewer than CONVERGED of the rows change concept (at
    most `max_iter`); returns labels (all >= 0), centres (k, d) and each row's similarity.

    Running to convergence rather than 2 steps made Fashion-MNIST's concepts more alike from
    seed to seed (ARI 0.70-0.83 -> 0.78-0.84): each run settles near the same optimum.
    """
    start, k = starting_groups(labels)
    centres, _ = mean_directions(x, start, k)
    return refine_centres(InMemory(x), centres, min_size, max_iter)


def narrowing(x: np.ndarray, centres: np.ndarray, units: tuple[np.ndarray, np.ndarray],
              sample: int = 4_096) -> tuple[np.ndarray, np.ndarray] | None:
    """`units` (the summary's unit centres and each row's unit) if Lloyd's steps over `x` from
    `centres` should narrow their search to `candidates` (`refine_centres`' `units`), else None:
    when there are enough centres, and the units are pure enough: on `sample` rows spread over
    `x`, the candidates hold a row's best centre at least MIN_RECALL of the time (0.97 and 0.81
    on the mixtures at noise 1.5, 200,000 and 1,000,000 images, where narrowing kept every
    concept; 0.58 at noise 3.0, where it lost half of them, NMI 0.94 -> 0.66). Narrowed steps
    end on labels among candidates: the caller then ends with `exact_nearest`."""
    if len(centres) < RESTRICT_CENTRES or len(x) * len(centres) * x.shape[1] <= SMALL:
        return None
    rows = np.unique(np.linspace(0, len(x) - 1, min(sample, len(x))).astype(np.int64))
    part = np.asarray(x[rows], np.float32)
    full = top_matches(part, centres, exact=False)[0][:, 0]
    narrow = candidates((units[0], units[1][rows]), centres)
    got = best_of_candidates(part, centres, narrow.group, narrow.lists)[0]
    if float(np.mean(got == full)) >= MIN_RECALL:
        return units
    logger.info("Summary units too mixed to narrow refinement's search: every step scores every centre.")
    return None


def starting_groups(labels: np.ndarray) -> tuple[np.ndarray, int]:
    """The groups refinement starts from: `labels` renumbered 0..k-1 in id order (-1 kept),
    and k; with no label >= 0 (nothing dense), every row in one group."""
    ids = np.unique(labels[labels >= 0])
    if len(ids) == 0:
        return np.zeros(len(labels), np.int64), 1
    remap = np.full(int(ids.max()) + 1, -1, np.int64)
    remap[ids] = np.arange(len(ids))
    return np.where(labels >= 0, remap[np.maximum(labels, 0)], -1), len(ids)


def lloyd_steps(n: int, limit: int = MAX_ITER) -> int:
    """Lloyd's steps at most over `n` rows: `limit`, or MAX_ITER_LARGE above LARGE rows."""
    return limit if n <= LARGE else MAX_ITER_LARGE


def refine_centres(rows: Rows, centres: np.ndarray, min_size: int, max_iter: int | None = None,
                   units: tuple[np.ndarray, np.ndarray] | None = None
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`refine`'s Lloyd's steps from `centres`, each a pass over `rows` (`passes.py`: in
    memory, or tasks over shards in concept.distributed); returns what `refine` returns.
    `max_iter` None: `lloyd_steps(len(rows))`; `units`: see `candidates`."""
    if max_iter is None:
        max_iter = lloyd_steps(len(rows))
    previous = None
    for _ in range(max_iter + len(centres)):  # dissolving small concepts takes extra steps
        within = candidates(units, centres)
        step = rows.assign(centres, previous, within)
        small = to_dissolve(step.counts, min_size)
        if small.any():  # dissolve, then let the next step reassign their images
            previous = None
            if within is None:
                centres = centres[~small]
                continue
            # At scale this pass is also a step (each costs seconds); concepts still small when
            # the steps run out are dissolved by the exact pass that follows (`exact_nearest`).
            centres = step.means()[~small]
            max_iter -= 1
            if max_iter < 0:
                break
            continue
        if previous is not None and step.changed < CONVERGED:
            break
        max_iter -= 1
        if max_iter < 0:
            break
        previous = step
        centres = step.means()
    nearest, sims = rows.nearest(centres, candidates(units, centres))
    return nearest, centres, sims


def to_dissolve(counts: np.ndarray, min_size: int) -> np.ndarray:
    """The concepts with fewer than `min_size` images, which dissolve into their neighbours;
    never all of them: the largest stays."""
    small = counts < min_size
    if small.all():
        small[np.argmax(counts)] = False
    return small


def exact_nearest(rows: Rows, centres: np.ndarray, min_size: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every row's nearest of all `centres` (one exact pass), then concepts under `min_size`
    images dissolved: only their rows look again (`Rows.nearest_at`), since every other row's
    nearest centre is still there. Returns what `refine` returns and the concepts' sums."""
    nearest, sims = rows.nearest(centres)
    sums = np.asarray(rows.final_sums, np.float64)
    while True:
        small = to_dissolve(np.bincount(nearest, minlength=len(centres)), min_size)
        if not small.any():
            return nearest, centres, sims, sums
        keep = ~small
        moved = np.flatnonzero(small[nearest])
        centres, sums = centres[keep], sums[keep]
        nearest = (np.cumsum(keep) - 1)[nearest]
        nearest[moved], sims[moved], moved_sums = rows.nearest_at(moved, centres)
        sums = sums + moved_sums


def candidates(units: tuple[np.ndarray, np.ndarray] | None, centres: np.ndarray) -> Near | None:
    """For Lloyd's steps over many centres (at least RESTRICT_CENTRES): each row searches only
    the CANDIDATES centres nearest its summary unit's centre (`units`: the unit centres and each
    row's unit), not every centre: 3,400 centres over 1,000,000 images took 13 s a step, 0.9 s
    so. A unit of ~50 alike images lies inside one concept, so its nearest centres hold its
    rows' nearest. An exact pass over every centre follows (`core.merge_halves`)."""
    if units is None or len(centres) < RESTRICT_CENTRES:
        return None
    unit_centres, unit_of_row = units
    return Near(unit_of_row, top_matches(unit_centres, centres, CANDIDATES, exact=False)[0])


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
    """The coarser layers over the finest: `parents[i][c]` is the concept of layer i+1 that
    concept c of layer i lies in; `default` is the layer shown first."""

    parents: list[np.ndarray]
    default: int


def weighted_ward(means: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Ward's agglomeration of groups with `sizes` images and (unnormalised) `means`, as a
    scipy linkage matrix: each merge is the one that adds least to the images' within-concept
    sum of squares, the quantity k-means minimises, so a coarse layer is close to what k-means
    would find at its size. (scipy's ward treats each row as one point; a concept of 2,000
    images and one of 30 are not alike.) Nearest-neighbour chains with Lance-Williams updates:
    O(k^2) time and memory.
    """
    k = len(means)
    m = np.asarray(means, np.float64)
    n = np.asarray(sizes, np.float64).copy()
    sq = np.einsum("ij,ij->i", m, m)
    dist2 = np.maximum(sq[:, None] + sq[None, :] - 2 * m @ m.T, 0.0)
    d = 2 * n[:, None] * n[None, :] / (n[:, None] + n[None, :]) * dist2
    np.fill_diagonal(d, np.inf)
    leaves = np.ones(k)
    merges, chain, alive = [], [], k
    while alive > 1:
        if not chain:
            chain.append(int(np.argmin(np.where(np.isfinite(d).any(axis=1), 0, 1))))
        a = chain[-1]
        b = int(np.argmin(d[a]))
        if len(chain) >= 2 and d[a, chain[-2]] <= d[a, b]:
            b = chain[-2]
        if len(chain) >= 2 and b == chain[-2]:
            chain.pop()
            chain.pop()
            height = d[a, b]
            nk = n
            new = ((n[a] + nk) * d[a] + (n[b] + nk) * d[b] - nk * height) / (n[a] + n[b] + nk)
            merges.append((a, b, float(np.sqrt(max(height, 0.0))), leaves[a] + leaves[b]))
            n[a] += n[b]
            leaves[a] += leaves[b]
            d[a, :] = new
            d[:, a] = new
            d[b, :] = np.inf
            d[:, b] = np.inf
            d[a, a] = np.inf
            alive -= 1
        else:
            chain.append(b)
    order = sorted(range(len(merges)), key=lambda i: merges[i][2])  # stable: parents first on ties
    ids = np.arange(k)
    tree = np.zeros((len(merges), 4))
    for row, i in enumerate(order):
        a, b, height, count = merges[i]
        tree[row] = (min(ids[a], ids[b]), max(ids[a], ids[b]), height, count)
        ids[a] = k + row
    return tree


def cut_tree(tree: np.ndarray, k0: int, count: int) -> np.ndarray:
    from scipy.cluster.hierarchy import fcluster

    return fcluster(tree, count, criterion="maxclust").astype(np.int64) - 1


def gap_counts(tree: np.ndarray, k0: int) -> list[int]:
    """Concept counts (largest first) at the clear gaps of a Ward tree over `k0` concepts: where
    the merge height jumps by at least MIN_GAP_SHARE of the height above it."""
    heights = np.maximum.accumulate(tree[:, 2])
    gaps = np.diff(heights)
    # Cutting between merge i and i+1 leaves k0 - (i + 1) concepts.
    at_gap = [k0 - (i + 1) for i in np.flatnonzero(gaps >= MIN_GAP_SHARE * np.maximum(heights[1:], 1e-12))]
    return sorted({c for c in at_gap if 2 <= c < k0}, reverse=True)


def default_count(tree: np.ndarray) -> int:
    """Concepts left when every merge at least DEFAULT_SHARE of the last one's height is undone."""
    heights = np.maximum.accumulate(tree[:, 2])
    return int(1 + np.sum(heights >= DEFAULT_SHARE * heights[-1]))


def fill_counts(top: int, bottom: int, taken: set[int]) -> list[int]:
    """Counts from `top` down by LAYER_FACTOR while above `bottom`, each at least 2x from every
    count in `taken` (and from each other)."""
    counts, fill = [], top
    while fill > bottom:
        fill = max(bottom, round(fill / LAYER_FACTOR))
        if fill > bottom and all(abs(np.log(fill / c)) >= np.log(2.0) for c in (*taken, *counts)):
            counts.append(fill)
    return counts


def parents_of(cuts: list[np.ndarray]) -> list[np.ndarray]:
    """Parent maps between successive cuts (each a label per finest concept), dropping a cut
    that repeats the count of the one before (fcluster may give fewer clusters on ties)."""
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
    return parents


def build_layers(means: np.ndarray, sizes: np.ndarray, preferred: int | None = None,
                 tree: np.ndarray | None = None, finest_clear: bool = False) -> Layers:
    """Coarser layers over the finest concepts (their unnormalised `means` (k0, d) and image
    counts `sizes`) by size-weighted Ward merging (`weighted_ward`; or the given `tree`).

    Layers: the finest; a cut at each clear gap in the merge heights (`gap_counts`: the
    concepts below it are far more alike than those above); a cut at `preferred` concepts when
    there is no gap; and cuts at every LAYER_FACTOR-fold reduction down to COARSEST. The default
    layer is the finest one on a gap, else the finest layer when `finest_clear` (its concepts
    are each clearly apart from their siblings: `separation.py`), else the `preferred` one.
    """
    k0 = len(means)
    if k0 <= 2:
        return Layers([], 0)
    tree = weighted_ward(means, sizes) if tree is None else tree
    at_gap = gap_counts(tree, k0)
    counts = {k0, *at_gap}
    if not at_gap and not finest_clear and preferred is not None and 2 <= preferred < k0:
        counts.add(int(preferred))
    counts.update(fill_counts(k0, COARSEST, counts))
    if COARSEST < k0 and all(abs(np.log(COARSEST / c)) >= np.log(2.0) for c in counts):
        counts.add(COARSEST)
    ordered = sorted(counts, reverse=True)
    parents = parents_of([np.arange(k0)] + [cut_tree(tree, k0, c) for c in ordered[1:]])
    final = [k0] + [int(p.max()) + 1 for p in parents]
    if at_gap:
        default = final.index(at_gap[0]) if at_gap[0] in final else 0
    elif preferred is not None and not finest_clear:
        default = int(np.argmin([abs(np.log(c / max(preferred, 1))) for c in final]))
    else:
        default = 0
    return Layers(parents, default)
