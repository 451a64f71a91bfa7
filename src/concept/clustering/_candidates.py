"""The numba kernel of `kernels.best_of_candidates` (compiled on first use, cached on disk)."""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(parallel=True, fastmath=True, cache=True)
def best_of_candidates(x, centres, group, lists):  # pragma: no cover - compiled
    n, d = x.shape
    labels = np.full(n, -1, np.int64)
    scores = np.full(n, -np.inf, np.float32)
    for i in numba.prange(n):
        g = group[i]
        if g < 0:
            continue
        for j in range(lists.shape[1]):
            c = lists[g, j]
            if c < 0:
                continue
            s = np.float32(0.0)
            for t in range(d):
                s += x[i, t] * centres[c, t]
            if s > scores[i]:
                scores[i] = s
                labels[i] = c
    return labels, scores
