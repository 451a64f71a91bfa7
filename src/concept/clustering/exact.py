"""Small collections: the finest concepts chosen from the exact Ward tree of the images.

When a collection is small enough to be clustered image by image (core.MIN_UNITS), its images'
own Ward tree is built (no randomness at all) and condensed as HDBSCAN condenses its tree: a
split where both sides hold at least `min_size` images starts two concepts, a side with fewer
falls out of its concept. HDBSCAN's excess-of-mass rule then picks the concepts that persist
longest (`excess_of_mass`). No layout and no seed are involved, so every `random_state` gives
the same concepts.

Before, UMAP and HDBSCAN's finest groups gave the *number* of concepts and the tree was cut
there: the cut had no randomness, but the number moved with the layout's seed
(OpenClipart 18-20, emoji 16-20), and seeds agreed to ARI 0.79-0.92 over 6 seeds. Measured in
docs/DESIGN-NOTES.md ("Small collections: excess of mass on the exact tree").
"""

from __future__ import annotations

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


def excess_of_mass(tree: np.ndarray, min_size: int) -> np.ndarray:
    """Labels of the concepts HDBSCAN's excess-of-mass selection picks from a linkage `tree`
    condensed at `min_size` rows, -1 for rows that fall out above every picked concept.

    Condensing, from the root down: where both sides of a merge hold `min_size` rows, the
    concept ends and each side starts one; otherwise the smaller side's rows fall out of it at
    that height. A concept's stability is the sum, over its rows, of 1/height when they leave
    minus 1/height when it began (how long its rows stay together as the tree is cut finer).
    Bottom-up, a concept is picked when it is at least as stable as its picked descendants
    together; the root is never picked while it splits (HDBSCAN's allow_single_cluster=False:
    its stability counts from an infinite height, which made 24 clip-art images of three
    folders one concept). A tree that never splits into two sides of `min_size` rows gives one
    concept of every row.
    """
    n = len(tree) + 1
    if n < 2:
        return np.zeros(n, np.int64)
    heights = np.maximum.accumulate(tree[:, 2])
    positive = heights[heights > 0]
    heights = np.maximum(heights, positive.min() if len(positive) else 1.0)  # identical rows: no 1/0
    children = tree[:, :2].astype(np.int64)
    size = np.concatenate([np.ones(n), tree[:, 3]])
    root = 2 * n - 2
    # Condensed concepts: their tree node, birth (1/height), stability and child concepts.
    node_of, birth, stability, kids = [root], [0.0], [0.0], [[]]
    walk = [(root, 0)]
    while walk:
        node, c = walk.pop()
        if node < n:
            continue
        lam = 1.0 / heights[node - n]
        big = [int(v) for v in children[node - n] if size[v] >= min_size]
        if len(big) == 2:
            stability[c] += size[node] * (lam - birth[c])
            for v in big:
                node_of.append(v), birth.append(lam), stability.append(0.0), kids.append([])
                kids[c].append(len(node_of) - 1)
                walk.append((v, len(node_of) - 1))
            continue
        fallen = size[node] - sum(size[v] for v in big)
        stability[c] += fallen * (lam - birth[c])
        walk.extend((v, c) for v in big)
    # Children are numbered after their parents: reverse order is bottom-up.
    best, picked = list(stability), [[c] for c in range(len(node_of))]
    for c in range(len(node_of) - 1, -1, -1):
        if not kids[c]:
            continue
        below = sum(best[k] for k in kids[c])
        if c == 0 or below > stability[c]:
            best[c], picked[c] = below, [p for k in kids[c] for p in picked[k]]
    labels = np.full(n, -1, np.int64)
    for label, c in enumerate(sorted(picked[0], key=lambda c: node_of[c])):
        stack = [node_of[c]]
        while stack:
            v = stack.pop()
            if v < n:
                labels[v] = label
            else:
                stack.extend(int(u) for u in children[v - n])
    return labels
