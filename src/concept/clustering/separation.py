"""Which of the finest concepts are two concepts, and which are one concept cut in two.

HDBSCAN's finest ("leaf") groups over micro-clusters split a dense concept wherever a few
micro-clusters happen to lie a little apart: the 1,000,000-image mixture of 2,000 clusters gave
3,231-3,329 finest concepts. Whether two sibling concepts of the Ward tree are one is a
one-dimensional question: project the images of both onto the line through their two means.
Two concepts give two modes; one concept cut by a hyperplane gives one mode cut in half.

The score is the share of the projection's variance between the two sides,
`separation = p_a p_b (mean_a - mean_b)^2 / var`. One Gaussian cut through its mean scores
2/pi = 0.64 (less when cut off-centre); two Gaussians 4 SDs apart score 0.8, and concepts
far apart near 1. The projection leaves each image out of its own side's mean (with unit rows,
`x . mean_without_x = (n x . mean - 1) / (n - 1)`): in 384 dimensions a side of 30 images
otherwise projects its own members several SDs outwards and any cut looks like two modes.

`merge_inseparable` walks the Ward tree of the finest concepts from the leaves: a merge of two
concepts (or of two already merged subtrees) scoring below MERGE_BELOW is undone into one
concept. Each round scores every merge whose two sides are settled, in one pass over the rows
(`Rows.side_moments`), so it runs on shards in concept.distributed as it does in memory.
"""

from __future__ import annotations

import numpy as np

#: Sibling concepts whose separation is below this are one concept (see the module docstring:
#: 0.64 for one Gaussian cut in two, 0.8 for two Gaussians 4 SDs apart).
MERGE_BELOW = 0.75
#: Rounds of the walk up the tree at most (each a pass over the rows).
MAX_ROUNDS = 12
#: The finest concepts are clearly apart when all but CLEAR_SHARE of the merges kept apart
#: score at least CLEAR_ABOVE: mixtures of Gaussian clusters score 0.98 at the 5th percentile
#: (1,000,000 images, 2,000 clusters), real collections' concepts 0.75-0.8 (OpenClipart,
#: Fashion-MNIST), where the tree's shape, not the finest concepts, sets the default layer.
CLEAR_ABOVE, CLEAR_SHARE = 0.9, 0.05


def side_moments(x: np.ndarray, leaf: np.ndarray, pair: np.ndarray, side: np.ndarray,
                 ends: np.ndarray, counts: np.ndarray, chunk: int = 65_536) -> np.ndarray:
    """For each scored merge f and side s (0, 1): rows, sum and sum of squares of the rows'
    leave-one-out projections `x . (mean_0 - mean_1)` (`ends[f]`: the two sides' unnormalised
    means (2, d); `counts[f]`: their sizes in the whole collection). `leaf`: each row's finest
    concept; `pair[c]`: the merge concept c takes part in (-1: none); `side[c]`: its side.
    Returns an (f, 2, 3) array that adds up over any split of the rows (shards)."""
    f = len(ends)
    out = np.zeros((f, 2, 3))
    if f == 0:
        return out
    ends32 = np.asarray(ends, np.float32)
    for start in range(0, len(x), chunk):
        rows = x[start:start + chunk]
        lab = np.asarray(leaf[start:start + chunk], np.int64)
        p = np.where(lab >= 0, pair[np.maximum(lab, 0)], -1)
        keep = np.flatnonzero(p >= 0)
        if len(keep) == 0:
            continue
        p, s = p[keep], side[lab[keep]]
        r = np.asarray(rows[keep], np.float32)
        a = np.einsum("nd,nd->n", r, ends32[p, 0]).astype(np.float64)
        b = np.einsum("nd,nd->n", r, ends32[p, 1]).astype(np.float64)
        sq = np.einsum("nd,nd->n", r, r).astype(np.float64)
        own = np.where(s == 0, a, b)
        n_own = counts[p, s].astype(np.float64)
        loo = (n_own * own - sq) / np.maximum(n_own - 1.0, 1.0)
        z = np.where(s == 0, loo - b, a - loo)
        flat = p * 2 + s
        for j, w in enumerate((None, z, z * z)):
            out.reshape(-1, 3)[:, j] += np.bincount(flat, weights=w, minlength=2 * f)
    return out


def separation(moments: np.ndarray) -> np.ndarray:
    """Between-side share of the projection's variance, from `side_moments`' (f, 2, 3)."""
    n = moments[:, :, 0]
    total = np.maximum(n.sum(axis=1), 1.0)
    mean = moments[:, :, 1] / np.maximum(n, 1.0)
    grand = moments[:, :, 1].sum(axis=1) / total
    var = moments[:, :, 2].sum(axis=1) / total - grand**2
    between = (n[:, 0] / total) * (n[:, 1] / total) * (mean[:, 0] - mean[:, 1]) ** 2
    return np.where(var > 0, between / np.maximum(var, 1e-30), 1.0)


def merge_inseparable(rows, nearest: np.ndarray, sums: np.ndarray, tree: np.ndarray,
                      below: float = MERGE_BELOW) -> tuple[np.ndarray, np.ndarray]:
    """Groups of the finest concepts that are one concept: (each concept's group, 0..g-1 in
    order of first concept; the separation of every scored merge that was kept apart).

    `rows`: the collection's passes (`passes.Rows`, with `side_moments`); `nearest`: each row's
    finest concept; `sums`: the concepts' sums of rows (k0, d); `tree`: their Ward tree
    (scipy linkage). A merge whose two sides are each one concept is scored; below `below`
    it joins them, and the merge above it can be scored in the next round."""
    k0 = len(sums)
    group = np.arange(k0)
    kept: list[float] = []
    if k0 < 2 or tree is None or len(tree) == 0:
        return group, np.asarray(kept)
    sizes = np.bincount(nearest[nearest >= 0], minlength=k0).astype(np.float64)
    node_sums = np.zeros((2 * k0 - 1, sums.shape[1]))
    node_sums[:k0] = sums
    node_n = np.zeros(2 * k0 - 1)
    node_n[:k0] = sizes
    children = tree[:, :2].astype(np.int64)
    for row, (a, b) in enumerate(children):
        node_sums[k0 + row] = node_sums[a] + node_sums[b]
        node_n[k0 + row] = node_n[a] + node_n[b]
    whole = np.zeros(2 * k0 - 1, bool)  # a node that is one concept
    whole[:k0] = True
    root = np.arange(k0)  # each concept's current top node (as one concept)
    scored = np.zeros(len(tree), bool)
    for _ in range(MAX_ROUNDS):
        frontier = np.flatnonzero(~scored & whole[children[:, 0]] & whole[children[:, 1]])
        if len(frontier) == 0:
            break
        scored[frontier] = True
        pair = np.full(k0, -1, np.int64)
        side = np.zeros(k0, np.int64)
        for f, row in enumerate(frontier):
            for s, child in enumerate(children[row]):
                members = np.flatnonzero(root == child)
                pair[members], side[members] = f, s
        ends = node_sums[children[frontier]] / np.maximum(node_n[children[frontier]], 1.0)[:, :, None]
        moments = rows.side_moments(nearest, pair, side, ends, node_n[children[frontier]])
        score = separation(moments)
        for row, sc in zip(frontier, score):
            if sc < below:
                whole[k0 + row] = True
                root[np.isin(root, children[row])] = k0 + row
            else:
                kept.append(float(sc))
    group = np.unique(root, return_inverse=True)[1]
    first = np.full(int(group.max()) + 1, k0)
    np.minimum.at(first, group, np.arange(k0))
    order = np.argsort(first, kind="stable")
    remap = np.empty_like(order)
    remap[order] = np.arange(len(order))
    return remap[group].astype(np.int64), np.asarray(kept)


def clearly_apart(kept: np.ndarray) -> bool:
    """Whether the separations of the merges kept apart say the finest concepts are the
    collection's concepts (CLEAR_ABOVE, CLEAR_SHARE); False with fewer than 2 merges."""
    return len(kept) >= 2 and float(np.quantile(kept, CLEAR_SHARE)) >= CLEAR_ABOVE
