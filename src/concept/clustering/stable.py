"""The layer shown first when the concept tree has no clear gap: a k-means partition that is
the same from seed to seed, with the finest concepts redrawn inside it.

Where a collection's concepts shade into each other (Fashion-MNIST's shirts, T-shirts, pullovers
and coats), every cut of a tree of finest concepts draws the borders where that seed's finest
concepts happened to fall: Ward cuts at a fixed count agreed from seed to seed only to ARI
0.7-0.8. k-means over every image started from that cut lands in nearly the same optimum
whatever the seed (ARI 0.98-0.99 at 11 concepts), so the default layer is that k-means
partition, and the finest concepts are redrawn inside it:

1. `coarse_partition`: spherical k-means (the refinement's Lloyd's steps, `refine`) over every
   image from the Ward cut.
2. `nested_pieces`: inside each coarse concept, k-means on its members started from the finest
   concepts that lie mostly in it; then one nearest-centre pass over every image
   (concepts under `min_size` dissolved), so that `transform` assigns as the fit does. About 5%
   of the images then sit in a finest concept of a neighbouring coarse concept; each finest
   concept's parent is the coarse concept of most of its images.
3. `forest_cuts`: layers between the finest and the default from Ward trees grown inside each
   coarse concept, so that every layer nests in the one above.
"""

from __future__ import annotations

import numpy as np

from concept.clustering.hierarchy import refine, weighted_ward
from concept.clustering.kernels import label_sums

#: Lloyd's steps of the default layer's k-means at most (each a pass over every image; on
#: Fashion-MNIST it settled in 6-26).
MAX_ITER = 30


def coarse_partition(x: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Spherical k-means labels (n,) of every row, started from `labels` (every row labelled):
    Lloyd's steps to convergence (at most MAX_ITER)."""
    return refine(x, labels, 1, max_iter=MAX_ITER)[0]


def nested_pieces(x: np.ndarray, coarse: np.ndarray, fine: np.ndarray, min_size: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The finest concepts redrawn inside the `coarse` partition, starting from `fine`.

    Returns each row's finest concept (nearest centre), the centres, each row's similarity to
    its centre, and each finest concept's parent (the coarse concept most of its rows are in).
    """
    k, k0 = int(coarse.max()) + 1, int(fine.max()) + 1
    votes = np.zeros((k0, k), np.int64)
    np.add.at(votes, (fine, coarse), 1)
    home = votes.argmax(axis=1)
    labels = np.empty(len(x), np.int64)
    offset = 0
    for c in range(k):
        rows = np.flatnonzero(coarse == c)
        if len(rows) == 0:
            continue
        own = [f for f in np.flatnonzero(home == c) if np.any(fine[rows] == f)]
        if len(own) <= 1:
            labels[rows] = offset
            offset += 1
            continue
        local = np.full(k0, -1, np.int64)
        local[own] = np.arange(len(own))
        labels[rows] = offset + refine(x[rows], local[fine[rows]], 1)[0]
        offset += len(own)
    nearest, centres, sims = refine(x, labels, min_size, max_iter=0)
    votes = np.zeros((len(centres), k), np.int64)
    np.add.at(votes, (nearest, coarse), 1)
    return nearest, centres, sims, votes.argmax(axis=1)


def forest_cuts(means: np.ndarray, sizes: np.ndarray, group: np.ndarray, counts: list[int]
                ) -> list[np.ndarray]:
    """Cuts (a label per concept) at each of `counts` of the size-weighted Ward trees grown
    inside each `group`: merges in order of height, none across groups, so every cut nests in
    the grouping (counts between the number of groups and len(means))."""
    merges: list[tuple[float, int, int]] = []
    for g in np.unique(group):
        members = np.flatnonzero(group == g)
        if len(members) < 2:
            continue
        rep = [int(m) for m in members]  # node id in the group's tree -> a concept in that node
        for a, b, height, _ in weighted_ward(means[members], sizes[members]):
            merges.append((float(height), rep[int(a)], rep[int(b)]))
            rep.append(rep[int(a)])
    merges.sort(key=lambda m: m[0])
    cuts = []
    for count in counts:
        root = np.arange(len(means))
        for _, a, b in merges[:max(0, len(means) - count)]:
            root[_root(root, a)] = _root(root, b)
        cuts.append(np.unique([_root(root, i) for i in range(len(means))], return_inverse=True)[1].astype(np.int64))
    return cuts


def _root(root: np.ndarray, i: int) -> int:
    """Union-find: the representative of `i`, halving the path on the way."""
    while root[i] != i:
        root[i] = root[root[i]]
        i = int(root[i])
    return i


def group_means(x: np.ndarray, labels: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Unnormalised means (k, d) and sizes of the rows of each label (for Ward)."""
    sums, sizes = label_sums(x, labels, k)
    return sums / np.maximum(sizes, 1)[:, None], sizes
