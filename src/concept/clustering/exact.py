"""Small collections: the finest concepts cut from the exact Ward tree of the images.

When a collection is small enough to be clustered image by image (core.MIN_UNITS), UMAP and
HDBSCAN still say how many dense groups there are, but not which images form them. One UMAP
layout is one random draw: on OpenClipart's 2,262 images HDBSCAN's groups agreed from seed
to seed only to ARI 0.78 (6 seeds, one run of 200 epochs, or three side by side), while
their number moved little (20, 21, 20, 20, 23, 20). Ward's agglomeration of the images
themselves has no randomness at all, so the same count gives the same concepts: cut at
HDBSCAN's count, OpenClipart's seeds agreed to ARI 0.96 over 6 seeds, NMI 0.248 as before, and
the fit took 0.6 s instead of 4 s (Fashion-MNIST's first 2,000 images: ARI 0.947 -> 0.961, NMI
0.656 -> 0.660). Measured in docs/DESIGN-NOTES.md ("Small collections: the exact tree").
"""

from __future__ import annotations

import heapq

import numpy as np

#: The largest collection whose images' tree is built: it holds n^2 / 2 distances in float64
#: (36 MB at 3,000), so it is only for collections clustered image by image.
MAX_IMAGES = 3_000


def similarities(x: np.ndarray) -> np.ndarray:
    """The rows' (n, n) float32 dot products: the neighbour graph and the tree both read them."""
    n = len(x)
    if n > MAX_IMAGES:
        raise ValueError(f"the exact tree is for collections of at most {MAX_IMAGES} rows, got {n}")
    rows = np.asarray(x, np.float32)
    return rows @ rows.T


def image_tree(x: np.ndarray, scores: np.ndarray | None = None) -> np.ndarray:
    """Ward's agglomeration of the unit rows of `x` (scipy linkage matrix) on their chord
    distances, sqrt(2 - 2 cos), from one product (or `scores`, `similarities(x)`): for unit
    vectors these are the Euclidean distances Ward minimises the within-concept sum of
    squares of."""
    from scipy.cluster.hierarchy import linkage
    from scipy.spatial.distance import squareform

    scores = similarities(x) if scores is None else scores
    dist = np.sqrt(np.maximum(2.0 - 2.0 * np.asarray(scores, np.float32), 0.0))
    np.fill_diagonal(dist, 0.0)
    return linkage(squareform(dist, checks=False).astype(np.float64), method="ward")


def sized_cut(tree: np.ndarray, count: int, min_size: int) -> np.ndarray:
    """Labels of `count` concepts of at least `min_size` rows from a linkage `tree`, -1 for
    rows left out.

    Top-down, the concept whose merge is costliest is split next; a split that sheds fewer
    than `min_size` rows does not count as a concept: those rows are left out (the fit gives
    them their nearest concept) and the larger side is split on, as HDBSCAN's condensed tree
    lets points fall out of a cluster. A concept is final when both sides are too small.
    """
    n = len(tree) + 1
    size = np.concatenate([np.ones(n), tree[:, 3]])
    children = tree[:, :2].astype(np.int64)
    # The root: the last merge, or the one row of a tree without merges.
    final, open_nodes = ([], [(-tree[-1, 2], 2 * n - 2)]) if n > 1 else ([0], [])
    while open_nodes and len(open_nodes) + len(final) < count:
        _, node = heapq.heappop(open_nodes)
        big = [c for c in children[node - n] if size[c] >= min_size]
        if not big:
            final.append(node)
        for c in big:
            if c < n:
                final.append(int(c))
            else:
                heapq.heappush(open_nodes, (-tree[c - n, 2], int(c)))
    labels = np.full(n, -1, np.int64)
    for label, node in enumerate(sorted(final + [node for _, node in open_nodes])):
        stack = [node]
        while stack:
            v = stack.pop()
            if v < n:
                labels[v] = label
            else:
                stack.extend(int(c) for c in children[v - n])
    return labels
