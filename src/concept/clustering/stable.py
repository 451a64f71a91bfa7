"""The layer shown first when the concept tree has no clear gap: a k-means partition that is
the same from seed to seed, with the finest concepts redrawn inside it.

Where a collection's concepts shade into each other (Fashion-MNIST's shirts, T-shirts, pullovers
and coats), every cut of a tree of finest concepts draws the borders where that seed's finest
concepts happened to fall: Ward cuts at a fixed count agreed from seed to seed only to ARI
0.7-0.8. k-means over every image started from that cut lands in nearly the same optimum
whatever the seed (ARI 0.98-0.99 at 11 concepts), so the default layer is that k-means
partition, and the finest concepts are redrawn inside it:

1. Spherical k-means (the refinement's Lloyd's steps, `refine_centres`) over every image from
   the Ward cut's concepts.
2. Inside each coarse concept, k-means of its images started from the finest concepts that lie
   mostly in it (the same steps, each row restricted to its coarse concept's centres:
   `passes.Restricted`); then one nearest-centre pass over every image (concepts under
   `min_size` dissolved), so that `transform` assigns as the fit does. About 5% of the images
   then sit in a finest concept of a neighbouring coarse concept; each finest concept's parent
   is the coarse concept of most of its images.
3. `forest_cuts`: layers between the finest and the default from Ward trees grown inside each
   coarse concept, so that every layer nests in the one above; coarser ones by Ward over the
   default concepts.

Each step is a pass over the rows (`passes.Rows`), so concept.distributed runs the same code
with every pass a Ray task over shards.
"""

from __future__ import annotations

import numpy as np

from concept.clustering.hierarchy import (
    build_layers,
    cut_tree,
    fill_counts,
    lloyd_steps,
    parents_of,
    refine_centres,
    weighted_ward,
)
from concept.clustering.kernels import directions
from concept.clustering.passes import Restricted, Rows

#: Lloyd's steps of the default layer's k-means at most (each a pass over every image; on
#: Fashion-MNIST it settled in 6-26); above hierarchy.LARGE images hierarchy.MAX_ITER_LARGE,
#: as the refinement takes (the 200,000 mixture at noise 3.0: 42 s against EVoC's 31 s with 30).
MAX_ITER = 30


def steady_layers(rows: Rows, fine: np.ndarray, fine_centres: np.ndarray, fine_sums: np.ndarray,
                  tree: np.ndarray, count: int, min_size: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[np.ndarray], int, np.ndarray]:
    """The layers over `rows` when the tree of the finest concepts (`fine` per row, their
    centres and sums) has no gap: the default layer from k-means at `count` concepts, the
    finest concepts redrawn inside it. Returns each row's finest concept, the centres, each
    row's similarity, the parent maps (finest first), the default layer's index and the
    finest concepts' sums. Every step is a pass over `rows` (in memory, or tasks over shards:
    `passes.py`)."""
    k0 = len(fine_centres)
    steps = lloyd_steps(len(rows), MAX_ITER)
    cut = cut_tree(tree, k0, count)
    start = np.zeros((int(cut.max()) + 1, fine_sums.shape[1]))
    np.add.at(start, cut, fine_sums)
    coarse, coarse_centres, _ = refine_centres(rows, directions(start), 1, steps)
    home = _majority(fine, coarse, k0, len(coarse_centres))
    pieces, piece_centres, _ = refine_centres(Restricted(rows, (coarse_centres, home)), fine_centres, 0, steps)
    used = np.bincount(pieces[pieces >= 0], minlength=len(piece_centres)) > 0
    nearest, centres, sims = refine_centres(rows, piece_centres[used], min_size, 0)
    sums = np.asarray(rows.final_sums, np.float64)
    parent = np.unique(_majority(nearest, coarse, len(centres), len(coarse_centres)),
                       return_inverse=True)[1].astype(np.int64)  # ids of the used ones
    k0, k = len(centres), int(parent.max()) + 1
    sizes = np.bincount(nearest, minlength=k0)
    means = sums / np.maximum(sizes, 1)[:, None]
    if k < 2 or k >= k0:  # nothing left between: the finest layer under ordinary layers
        return nearest, centres, sims, build_layers(means, sizes).parents, 0, sums
    cuts = [np.arange(k0), *forest_cuts(means, sizes, parent, fill_counts(k0, k, {k0, k})), parent]
    below = parents_of(cuts)
    coarse_sums = np.zeros((k, sums.shape[1]))
    np.add.at(coarse_sums, parent, sums)
    coarse_sizes = np.bincount(parent, weights=sizes, minlength=k)
    above = build_layers(coarse_sums / np.maximum(coarse_sizes, 1)[:, None], coarse_sizes).parents
    return nearest, centres, sims, below + above, len(below), sums


def _majority(labels: np.ndarray, coarse: np.ndarray, k: int, m: int) -> np.ndarray:
    """For each label 0..k-1, the coarse label most of its rows have."""
    votes = np.zeros((k, m), np.int64)
    ok = labels >= 0
    np.add.at(votes, (labels[ok], coarse[ok]), 1)
    return votes.argmax(axis=1)


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


