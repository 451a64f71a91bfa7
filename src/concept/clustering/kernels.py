"""Numerical kernels shared by the clustering stages: exact and fast nearest-row searches,
unit mean directions, the linear pre-reduction, and the BLAS thread limit.

Every product runs in torch. `top_matches` scores in bfloat16 where the CPU multiplies it
natively (AMX or AVX512-BF16: 460 vs 100 GFLOP/s for float32 on one 2-core machine of this
project), else in float32 (an AVX512 CPU without BF16 ran bfloat16 at 25 GFLOP/s, float32 at 85:
the 1,000,000-image fit spent 50 s a pass there), and then rescores its few candidates in
float32, so the answer is the float32 answer and is the same whatever the chunking or the CPU,
which keeps `transform` after `load` exact.
"""

from __future__ import annotations

import functools
import platform

import numpy as np

#: Dimensions of the linear pre-reduction in which the legacy path searches neighbours.
PROJECTION_DIM = 64
#: Rows scored at once: bounds the scores buffer to CHUNK x len(candidates) floats.
CHUNK = 16_384
#: Rows scored at once in float32 (a 4,096-row buffer ran 8% faster than 16,384 rows).
F32_CHUNK = 4_096
#: Candidates kept from the bfloat16 scores beyond the k asked for, rescored in float32.
RESCORE = 8
#: The same from float32 scores, which differ from the rescored ones by rounding only.
RESCORE_F32 = 2
#: Problems up to this many multiply-adds (rows x centres x dims) skip torch: its thread pool
#: and bfloat16 conversions cost milliseconds per call when another process holds the cores,
#: which the k-means of each cell pays hundreds of times (4,000 cells x 70 centres x 384 dims
#: took 8 ms in torch, 3 ms in numpy's single-threaded float32 product).
SMALL = 2**28
#: Floats gathered at once for the float32 rescoring (bounds its memory to 8 MB: below glibc's
#: largest mmap threshold, so the gathers reuse heap memory instead of faulting in fresh pages).
RESCORE_FLOATS = 2**21


def _torch():
    import torch

    return torch


@functools.cache
def native_bfloat16() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (x86 AMX or AVX512-BF16, Arm BF16), read
    from /proc/cpuinfo; False where that cannot be read. Without it torch emulates bfloat16 at a
    quarter of float32's speed."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            words = set(f.read(1 << 20).split())
    except OSError:
        return False
    if platform.machine().lower() in ("aarch64", "arm64"):
        return "bf16" in words
    return bool(words & {"amx_bf16", "avx512_bf16"})


def top_matches(x: np.ndarray, centres: np.ndarray, k: int = 1, *, exact: bool = True,
                chunk: int = CHUNK, rows: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The `k` rows of `centres` with the largest dot product with each row of `x`, best first:
    indices (n, k) and their float32 similarities.

    Scores are computed in bfloat16 (float32 on CPUs without native bfloat16:
    `native_bfloat16`); with `exact` the best `k + RESCORE` candidates are
    rescored in float32 (ties and near-ties then resolve as float32 would). `exact=False` is
    for the inner loops of k-means, where a rare near-tie flip does not matter. `rows`: the
    size of the whole pass `x` is a piece of (concept.distributed's shards), so that the
    piece is scored as the whole would be (numpy's float32 or torch's bfloat16).
    """
    n, m = len(x), len(centres)
    k = max(1, min(k, m))
    if (n if rows is None else rows) * m * x.shape[1] <= SMALL:
        return _top_matches_numpy(x, centres, k)
    torch = _torch()
    low = torch.bfloat16 if native_bfloat16() else torch.float32
    if low == torch.float32:
        chunk = min(chunk, F32_CHUNK)
    keep = min(m, k + (RESCORE if low == torch.bfloat16 else RESCORE_F32)) if exact else k
    piece = max(16, RESCORE_FLOATS // (keep * max(1, x.shape[1])))
    idx = np.empty((n, k), dtype=np.int64)
    sims = np.empty((n, k), dtype=np.float32)
    with torch.inference_mode():
        c32 = torch.from_numpy(np.ascontiguousarray(centres, dtype=np.float32))
        cb = c32.to(low).T.contiguous()
        # Buffers reused by every chunk: a fresh (chunk x m) score matrix per chunk is an mmap
        # of 100 MB at m = 3,000, and its page faults cost more system time than the product.
        rows_b = torch.empty((min(chunk, n), x.shape[1]), dtype=low) if low != torch.float32 else None
        scores_b = torch.empty((min(chunk, n), m), dtype=low)
        for start in range(0, n, chunk):
            part = torch.from_numpy(np.ascontiguousarray(x[start:start + chunk], dtype=np.float32))
            size = len(part)
            low_part = part if rows_b is None else rows_b[:size].copy_(part)
            scores = torch.mm(low_part, cb, out=scores_b[:size])
            if keep == 1:  # max is 3x faster than argmax on bfloat16 rows (torch 2.13, CPU)
                cand = scores.max(dim=1).indices[:, None]
            else:
                cand = torch.topk(scores, keep, dim=1, sorted=False).indices
            if exact:  # float32 rescoring of the candidates, a piece at a time
                s = torch.cat([torch.einsum("nd,nkd->nk", part[i:i + piece], c32[cand[i:i + piece]])
                               for i in range(0, size, piece)])
            else:
                s = torch.gather(scores, 1, cand).float()
            order = torch.argsort(s, dim=1, descending=True, stable=True)[:, :k]
            idx[start:start + size] = torch.gather(cand, 1, order).numpy()
            sims[start:start + size] = torch.gather(s, 1, order).numpy()
    return idx, sims


def _top_matches_numpy(x: np.ndarray, centres: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """`top_matches` for small problems: exact float32 products in numpy, no thread pools."""
    return top_of_scores(np.asarray(x, np.float32) @ np.asarray(centres, np.float32).T, k)


def top_of_scores(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """`top_matches` from a full score matrix (n, m) already computed: the k best columns of
    each row, best first (ties by column), and their scores."""
    k = max(1, min(k, scores.shape[1]))
    if k == 1:
        idx = scores.argmax(axis=1)[:, None]
    else:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
        idx = np.take_along_axis(part, order, axis=1)
    return idx.astype(np.int64), np.take_along_axis(scores, idx, axis=1).astype(np.float32)


def mean_directions(x: np.ndarray, labels: np.ndarray, k: int, chunk: int = 262_144
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Unit mean direction (k, d) of the rows of each label 0..k-1 (labels < 0 ignored), and
    the counts; an empty label gets a zero row."""
    sums, counts = label_sums(x, labels, k, chunk)
    return directions(sums), counts


def directions(sums: np.ndarray) -> np.ndarray:
    """Unit rows (float32) of per-concept sums; a zero row stays zero."""
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    return (sums / np.maximum(norms, 1e-12)).astype(np.float32)


def label_sums(x: np.ndarray, labels: np.ndarray, k: int, chunk: int = 262_144
               ) -> tuple[np.ndarray, np.ndarray]:
    """Sum (k, d), in float64, and count of the rows of each label 0..k-1 (labels < 0 ignored).

    A sparse (k x n) indicator times the rows: one pass, no thread pool. (torch's index_add_
    took 48 ms for 140 rows when another process held the cores: its threads waited on each
    other; this is the k-means inner loop, called hundreds of times.)
    """
    from scipy import sparse

    labels = np.asarray(labels, dtype=np.int64)
    sums = np.zeros((k, x.shape[1]), dtype=np.float64)
    for start in range(0, len(x), chunk):
        lab = labels[start:start + chunk]
        ok = np.flatnonzero(lab >= 0)
        if len(ok) == 0:
            continue
        part = x[start:start + chunk]
        part = part if len(ok) == len(lab) else part[ok]
        indicator = sparse.csr_matrix((np.ones(len(ok), np.float32), (lab[ok], np.arange(len(ok)))),
                                      shape=(k, len(ok)))
        sums += indicator @ np.asarray(part, dtype=np.float32)
    return sums, np.bincount(labels[labels >= 0], minlength=k)[:k]


def fit_projection(x: np.ndarray, dim: int = PROJECTION_DIM, random_state: int | None = None
                   ) -> np.ndarray | None:
    """An orthonormal (d, dim) basis of the top singular directions of `x`, or None if d <= dim.

    Not centred: for unit vectors it keeps the dot products (cosines) as well as a linear map
    of this size can, and neighbour searches get d / dim times cheaper (1280 / 64 = 20).
    """
    from sklearn.utils.extmath import randomized_svd

    if x.shape[1] <= dim or len(x) <= dim:
        return None
    _, _, vt = randomized_svd(np.asarray(x, np.float32), dim, n_iter=2, random_state=random_state)
    return np.ascontiguousarray(vt.T, dtype=np.float32)




def project(x: np.ndarray, basis: np.ndarray | None, rows: np.ndarray | None = None,
            chunk: int = 65_536) -> np.ndarray:
    """Rows of `x` (only `rows`, if given) in `basis`, at unit length; `x` as it is if no basis."""
    if basis is None:
        return x if rows is None else x[rows]
    n = len(x) if rows is None else len(rows)
    out = np.empty((n, basis.shape[1]), dtype=np.float32)
    for start in range(0, n, chunk):
        part = x[start:start + chunk] if rows is None else x[rows[start:start + chunk]]
        out[start:start + chunk] = part @ basis
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.maximum(norms, 1e-12, dtype=np.float32)




def one_blas_thread():
    """A context in which numpy's BLAS runs on the calling thread only.

    The fit alternates small numpy products (projections, exemplars, words) with torch's
    top-k and numba's UMAP and HDBSCAN, each with a thread pool of its own. After a product,
    BLAS's idle threads keep spinning and slow the next stage's threads on the same cores
    (a 20,000 x 5,000 top-k took 0.17 s right after a product, 0.10 s otherwise); with one
    BLAS thread the whole 25,000-image fit went from 1.5 s (varying 1.4-1.65) to 1.3 s
    (1.25-1.31) on 2 cores. The products are small enough that one thread does them fast.
    Only BLAS is limited: torch and numba keep their threads.
    """
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")




def nearest(queries: np.ndarray, base: np.ndarray, k: int, chunk: int = 512, *, ordered: bool = True
            ) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-`k` by dot product: indices (n, k) into `base` and the similarities, best first
    (in no particular order with `ordered=False`, which is faster).

    One matrix product into a reused buffer and a `torch.topk` per chunk of queries: far faster
    than numpy's `argpartition`, with memory bounded by `chunk` x len(base). Both steps run in
    torch: with numpy's BLAS for the product, its threads and torch's spun against each other
    on every chunk, and the search took twice as long (0.46 s instead of 0.24 s for 20,000
    queries against 5,000 on 2 cores).
    """
    import torch

    k = max(1, min(k, len(base)))
    indices = np.empty((len(queries), k), dtype=np.int64)
    sims = np.empty((len(queries), k), dtype=np.float32)
    with torch.inference_mode():
        base_t = torch.from_numpy(np.ascontiguousarray(base, dtype=np.float32)).T
        # One buffer for every chunk: fresh 100 MB arrays cost more in page faults than the product.
        buffer = torch.empty((min(chunk, len(queries)), len(base)), dtype=torch.float32)
        for start in range(0, len(queries), chunk):
            q = torch.from_numpy(np.ascontiguousarray(queries[start:start + chunk], dtype=np.float32))
            scores = torch.mm(q, base_t, out=buffer[:len(q)])
            top = torch.topk(scores, k, dim=1, sorted=ordered)
            sims[start:start + len(q)] = top.values.numpy()
            indices[start:start + len(q)] = top.indices.numpy()
    return indices, sims


def best_of_candidates(x: np.ndarray, centres: np.ndarray, group: np.ndarray, lists: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Each row's best centre among its group's candidates (`lists[group[i]]`, -1 padded) by
    dot product, and that score (float32 sums; -1 and -inf where a row has no candidate).

    A few candidates a row instead of every centre: a numba loop over the rows reads each row
    once and the candidates from cache, where a gathered (rows x candidates x d) product would
    move gigabytes."""
    from concept.clustering._candidates import best_of_candidates as kernel

    return kernel(np.ascontiguousarray(x, np.float32), np.ascontiguousarray(centres, np.float32),
                  np.ascontiguousarray(group, np.int64), np.ascontiguousarray(lists, np.int64))
