"""Each row's nearest rows in a large collection, searched within blocks of similar rows.

Near duplicates (cosine >= ~0.9) are each other's nearest rows. Comparing every row with every
other finds them exactly but costs n^2 products: hours at 1,000,000 x 384 on 2 cores. Up to
BRUTE_FORCE_MAX rows `nearest_rows` does just that (`top_matches` of every row against every
row), so small collections get the neighbours they always got. Above it, it

1. projects the rows onto the SEARCH_DIM top eigenvectors of their second moments
   (`search_basis`, from a sample; the uncentred directions of `kernels.fit_projection`), at
   unit length: the space in which blocks are drawn and candidates scored;
2. draws PARTITIONS partitions of the rows into blocks of about BLOCK similar rows, each by a
   two-level spherical k-means from its own random start (`summary.coarse_cells` into cells of
   about CELL_SHARE x sqrt(blocks) blocks, then each cell's own `summary.spherical_kmeans`,
   fitted on a sample of its rows): a row joins the nearest block of its nearest cell, and is
   compared with the rows of that block and of its cell's next-nearest block (PROBES);
3. keeps each row's `k` + RESCORE best by the projected cosine over all partitions (one matrix
   product a block, merged by a numba kernel), rescores those on the rows themselves and keeps
   the `k` best: the similarities returned are exact float32 cosines.

A pair split by a block boundary lies near it, so one row has the other's block as its
next-nearest; a pair split by a cell's border is rarely split by the other partition's, drawn
elsewhere (LSH's several tables, with k-means cells for buckets). A pair is missed only when no
partition puts it in a searched block. The neighbours further away than near duplicates (the
3rd to 16th of a row without a copy) are the nearest among the rows searched: close
look-alikes, usually but not always the nearest ones.

Measured (benchmarks/duplicates_scale.py, tests/test_duplicates.py): on vectors near a
subspace, as embeddings are (10,000 rows, 10% planted copies, blocks forced), the near groups
at cosine 0.9 equal the exhaustive search's; on the worst case, isotropic noise around random
centres in 384 dimensions (the cluster benchmark's mixtures, 2% planted copies at cosine
0.94-0.99), 99% of the planted pairs at 100,000 rows, 94% at 1,000,000.

Cost: about n x PARTITIONS x PROBES x BLOCK x SEARCH_DIM multiply-adds and as many comparisons,
the partitions' k-means, and n x (k + RESCORE) x d multiply-adds of rescoring; memory: the
projected rows (n x SEARCH_DIM float32) and the candidates (n x (k + RESCORE)).
"""

from __future__ import annotations

import numba
import numpy as np

from concept.clustering.kernels import one_blas_thread, project, top_matches
from concept.clustering.summary import coarse_cells, spherical_kmeans

#: Collections of up to this many rows compare every row with every other (exact).
BRUTE_FORCE_MAX = 5_000
#: Rows per block aimed at.
BLOCK = 256
#: Partitions into blocks drawn: a pair split by a boundary in one is rarely split in all.
PARTITIONS = 2
#: Blocks of its cell a row is compared with in each partition: its own and the next-nearest.
PROBES = 2
#: Dimensions of the space in which blocks are drawn and candidates scored.
SEARCH_DIM = 32
#: Candidates per row (beyond the k asked for) rescored on the rows themselves.
RESCORE = 2
#: Cells hold about CELL_SHARE x sqrt(blocks) blocks each: fewer cells, fewer pairs split by a
#: cell's border (at 100,000 rows 99% of the planted pairs found with 4, 98% with 1).
CELL_SHARE = 4
#: Sample rows per block on which a cell's k-means is fitted, and rows on which the projection is.
SAMPLE_PER_BLOCK = 32
PROJECTION_SAMPLE = 10_000
#: Floats of block products made before each merge.
BATCH_FLOATS = 2**22


def nearest_rows(x: np.ndarray, k: int, *, brute_force_max: int | None = None, block: int = BLOCK,
                 partitions: int = PARTITIONS, probes: int = PROBES, random_state: int | None = 0
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Each row's `k` nearest rows of `x` (unit rows) by cosine, the row itself usually first, best
    first: indices (n, k) and float32 similarities, as `top_matches(x, x, k)` gives them. Up to
    `brute_force_max` rows (None: BRUTE_FORCE_MAX) that is the answer; above it each row is
    compared with the rows of its `probes` blocks in each of `partitions` partitions into blocks
    of about `block` rows (-1 and -inf where those are fewer than `k`)."""
    n = len(x)
    k = max(1, min(int(k), n))
    if n <= (BRUTE_FORCE_MAX if brute_force_max is None else brute_force_max):
        return top_matches(x, x, k)
    rng = np.random.default_rng(random_state)
    x = np.ascontiguousarray(x, dtype=np.float32)
    z = project(x, search_basis(x, rng))
    keep = min(n, k + RESCORE)
    cand = np.full((n, keep), -1, np.int64)
    score = np.full((n, keep), -np.inf, np.float32)
    with one_blas_thread():
        for drawn in range(max(1, int(partitions))):
            home, second = partition(z, block, rng, probes)
            order = np.argsort(home, kind="stable")
            bounds = np.searchsorted(home[order], np.arange(int(home.max()) + 2))
            compare_within(z, order, bounds, second, cand, score, bool(drawn))
    return _rescore(x, cand, order, k)


def compare_within(z: np.ndarray, order: np.ndarray, bounds: np.ndarray, second: np.ndarray,
                   cand: np.ndarray, score: np.ndarray, again: bool = True) -> None:
    """Offer each row the rows of its block (block b: `order[bounds[b]:bounds[b + 1]]`) and of its
    `second` block (-1: none), by cosine in `z`, keeping each row's best (`cand`, `score`, best
    first; `again`: some of them may be there already). The products are made a batch of blocks
    at a time (numpy, one thread), then merged by one parallel call a batch: a parallel call a
    block spent its time waiting for threads that other processes held."""
    m = len(bounds) - 1
    has = np.flatnonzero(second >= 0)
    guests = has[np.argsort(second[has], kind="stable")]
    guest_bounds = np.searchsorted(second[guests], np.arange(m + 1))
    sizes = np.diff(bounds)
    queries = sizes + np.diff(guest_bounds)
    ends = np.cumsum(sizes.astype(np.int64) * queries)
    first = 0
    while first < m:
        last = max(first + 1, int(np.searchsorted(ends, (ends[first - 1] if first else 0) + BATCH_FLOATS)))
        rows = np.concatenate([r for b in range(first, last) for r in
                               (order[bounds[b]:bounds[b + 1]], guests[guest_bounds[b]:guest_bounds[b + 1]])])
        blocks = np.repeat(np.arange(first, last), queries[first:last])
        widths = sizes[blocks]
        at = np.concatenate([[0], np.cumsum(widths)])
        sims = np.empty(int(at[-1]), np.float32)
        start = 0
        for b in range(first, last):
            if sizes[b]:
                q = rows[start:start + queries[b]]
                np.matmul(z[q], z[order[bounds[b]:bounds[b + 1]]].T,
                          out=sims[at[start]:at[start + queries[b]]].reshape(queries[b], sizes[b]))
            start += queries[b]
        _merge(cand, score, order, bounds, rows, blocks, at, sims, again)
        first = last


def search_basis(x: np.ndarray, rng: np.random.Generator) -> np.ndarray | None:
    """An orthonormal (d, SEARCH_DIM) basis of the top eigenvectors of the rows' second moments (on
    PROJECTION_SAMPLE rows), or None when d <= SEARCH_DIM: `kernels.fit_projection`'s uncentred
    directions from a d x d eigenproblem rather than a randomized SVD (1.2 s on 2 busy cores)."""
    if x.shape[1] <= SEARCH_DIM:
        return None
    sample = x[np.sort(rng.choice(len(x), min(len(x), PROJECTION_SAMPLE), replace=False))]
    with one_blas_thread():  # a d x d problem: BLAS threads only spin against numba's
        _, vectors = np.linalg.eigh((sample.T @ sample).astype(np.float64))
    return np.ascontiguousarray(vectors[:, ::-1][:, :SEARCH_DIM], dtype=np.float32)


def partition(z: np.ndarray, block: int, rng: np.random.Generator, probes: int = PROBES
              ) -> tuple[np.ndarray, np.ndarray]:
    """Each row's block and, with `probes` 2, its cell's next-nearest block (-1: none): blocks of
    about `block` rows of `z` drawn by a two-level spherical k-means; a row joins the nearest
    block of its nearest cell."""
    n = len(z)
    cell_centres = coarse_cells(lambda rows: z[rows], n, max(2, round(n / block / CELL_SHARE**2)), rng)
    cells = top_matches(z, cell_centres, exact=False)[0][:, 0]
    order = np.argsort(cells, kind="stable")
    bounds = np.searchsorted(cells[order], np.arange(len(cell_centres) + 1))
    home = np.empty(n, np.int64)
    second = np.full(n, -1, np.int64)
    offset = 0
    for cell in range(len(cell_centres)):
        rows = order[bounds[cell]:bounds[cell + 1]]
        if len(rows) == 0:
            continue
        m = max(1, round(len(rows) / block))
        fit = rows if len(rows) <= SAMPLE_PER_BLOCK * m else np.sort(rng.choice(rows, SAMPLE_PER_BLOCK * m,
                                                                                replace=False))
        centres = spherical_kmeans(z[fit], m, rng)[0]
        near = top_matches(z[rows], centres, min(len(centres), max(1, probes)), exact=False)[0]
        home[rows] = offset + near[:, 0]
        if near.shape[1] > 1:
            second[rows] = offset + near[:, 1]
        offset += len(centres)
    return home, second


# ---------------------------------------------------------------------------------------------- kernels
@numba.njit(parallel=True, cache=True)
def _merge(cand, score, order, bounds, rows, blocks, at, sims, again):  # pragma: no cover - compiled
    """Offer each row of `rows` the members of its block of `blocks` (their cosines: sims[at[t]:at[t + 1]]),
    keeping each row's best `keep`, each row once (`again`: look whether it is there already)."""
    keep = cand.shape[1]
    for t in numba.prange(len(rows)):
        i = rows[t]
        start = bounds[blocks[t]]
        best = score[i].copy()  # the row's list, in registers and cache while it is merged
        got = cand[i].copy()
        worst = best[keep - 1]
        changed = False
        for c in range(at[t + 1] - at[t]):
            s = sims[at[t] + c]
            if s <= worst:
                continue
            row = order[start + c]
            seen = False
            if again:
                for q in range(keep):
                    if got[q] == row:
                        seen = True
                        break
            if seen:
                continue
            q = keep - 1
            while q > 0 and best[q - 1] < s:
                best[q] = best[q - 1]
                got[q] = got[q - 1]
                q -= 1
            best[q] = s
            got[q] = row
            worst = best[keep - 1]
            changed = True
        if changed:
            score[i] = best
            cand[i] = got


@numba.njit(parallel=True, fastmath=True, cache=True)
def _rescore(x, cand, order, k):  # pragma: no cover - compiled
    """The exact cosines of each row's candidates, and its `k` best of them, best first (rows in
    `order`, a partition's blocks: a block's rows, most candidates, stay in cache)."""
    n, d = x.shape
    keep = cand.shape[1]
    idx = np.full((n, k), -1, np.int64)
    sims = np.full((n, k), -np.inf, np.float32)
    for t in numba.prange(n):
        i = order[t]
        score = np.full(keep, -np.inf, np.float32)
        for q in range(keep):
            c = cand[i, q]
            if c >= 0:
                s = np.float32(0.0)
                for j in range(d):
                    s += x[i, j] * x[c, j]
                score[q] = s
        ranked = np.argsort(-score, kind="mergesort")[:k]
        for q in range(len(ranked)):
            idx[i, q] = cand[i, ranked[q]]
            sims[i, q] = score[ranked[q]]
    return idx, sims
