"""A map from image features to the text model's space, learned from the user's captions.

The offline model's shared space (ConSE) only knows ImageNet's 1,000 classes, so it cannot put
clip art, maps or playing cards near their words, while its CNN features separate them well.
Given captions for some images, a ridge regression from the image features to the (centred)
text embeddings of the captions puts every image, captioned or not, next to the words that
describe images like it. It is validated on held-out captions against the plain shared space
and kept only when it retrieves the held-out captions better.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from concept.embedding.base import l2_normalize

__all__ = ["MIN_CAPTIONED", "Alignment", "caption_ranks", "fit_alignment"]

logger = logging.getLogger(__name__)

#: Fewest captioned images a map is learned from (a fifth of them is held out to validate it).
MIN_CAPTIONED = 50
#: Ridge penalties tried, as multiples of the mean squared feature norm times the row count / d.
ALPHAS = (0.01, 0.1, 1.0)
#: Held-out captions at most (ranking is quadratic in their number).
MAX_VALIDATION = 2000
#: A rank counts as retrieved when it is at most this.
RECALL_AT = 10


@dataclass
class Alignment:
    """``text_vector = normalise(features @ weights + bias)``, and how it was validated."""

    weights: np.ndarray
    bias: np.ndarray
    alpha: float
    validation: dict[str, float] = field(default_factory=dict)

    def transform(self, features: np.ndarray, chunk: int = 65_536) -> np.ndarray:
        """Unit vectors in the (centred) text space, one per row of `features`."""
        out = np.empty((len(features), self.weights.shape[1]), np.float32)
        for start in range(0, len(features), chunk):
            part = features[start:start + chunk] @ self.weights + self.bias
            out[start:start + chunk] = l2_normalize(part.astype(np.float32, copy=False))
        return out


def caption_ranks(image_vectors: np.ndarray, caption_vectors: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """For each image i, the rank (1 = best) of its own caption i among all the captions, by
    cosine; identical captions (same `groups` id) do not count against each other."""
    sims = image_vectors @ caption_vectors.T
    own = np.diag(sims)[:, None]
    better = (sims > own) & (groups[None, :] != groups[:, None])
    # Several copies of one other caption count once: keep the first of each group.
    _, first = np.unique(groups, return_index=True)
    distinct = np.zeros(len(groups), bool)
    distinct[first] = True
    return 1 + (better & distinct[None, :]).sum(axis=1)


def _summary(ranks: np.ndarray) -> dict[str, float]:
    return {"median_rank": float(np.median(ranks)), f"recall_at_{RECALL_AT}": float((ranks <= RECALL_AT).mean())}


class _NormalEquations:
    """``[X 1]^T [X 1]`` and ``[X 1]^T Y`` of some rows, summed chunk by chunk.

    Ridge's solution for any penalty comes from these two small matrices, and the sums of two
    row sets add up, so the held-out split, every penalty and the final fit on all rows cost one
    pass over the data (scikit-learn's Ridge would recompute them per fit: 4 passes).
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, chunk: int = 8192) -> None:
        d = x.shape[1]
        self.gram = np.zeros((d + 1, d + 1))
        self.cross = np.zeros((d + 1, y.shape[1]))
        for start in range(0, len(x), chunk):
            # float32 products (twice as fast), summed per chunk in float64
            a = np.hstack([x[start:start + chunk], np.ones((len(x[start:start + chunk]), 1), np.float32)])
            self.gram += a.T @ a
            self.cross += a.T @ y[start:start + chunk].astype(np.float32, copy=False)

    def __add__(self, other: _NormalEquations) -> _NormalEquations:
        out = object.__new__(_NormalEquations)
        out.gram, out.cross = self.gram + other.gram, self.cross + other.cross
        return out

    def solve(self, alpha: float) -> tuple[np.ndarray, np.ndarray]:
        """Weights and bias minimising ``|XW + b - Y|^2 + alpha |W|^2`` (the bias is not penalised)."""
        from scipy.linalg import solve

        penalty = np.full(len(self.gram), alpha)
        penalty[-1] = 0.0
        solution = solve(self.gram + np.diag(penalty), self.cross, assume_a="pos")
        return solution[:-1].astype(np.float32), solution[-1].astype(np.float32)


def fit_alignment(features: np.ndarray, caption_vectors: np.ndarray, plain: np.ndarray,
                  groups: np.ndarray, random_state: int | None = None) -> tuple[Alignment | None, dict]:
    """Learn the map from the captioned images' `features` to their `caption_vectors`.

    `features` (m x d_in), `caption_vectors` (m x d_text, centred on their mean and unit
    norm), `plain` (m x d_text: the same images in the plain shared space, centred on the
    image mean and unit norm) and `groups` (m ids, equal for identical captions) are rows of
    the captioned images only. A fifth (at most MAX_VALIDATION) is held out; each penalty in
    ALPHAS is fitted on the rest and scored by the median rank of the held-out images' own
    captions among the held-out captions. The best map is kept when it ranks better than the
    plain space, refitted on every row; otherwise None. Returns (map or None, report).
    """
    m = len(features)
    report: dict = {"n_captioned": m}
    if m < MIN_CAPTIONED:
        report["reason"] = f"only {m} captioned images (at least {MIN_CAPTIONED} needed)"
        return None, report
    rng = np.random.default_rng(random_state)
    order = rng.permutation(m)
    n_val = min(MAX_VALIDATION, max(10, m // 5))
    val, train = np.sort(order[:n_val]), np.sort(order[n_val:])
    features = np.asarray(features, np.float32)
    # The penalty scales with the data: alpha x (sum of squared norms / dimensions).
    scale = float(np.einsum("ij,ij->", features[train], features[train], dtype=np.float64)) / features.shape[1]
    plain_score = _summary(caption_ranks(plain[val], caption_vectors[val], groups[val]))
    report["plain"] = plain_score
    fitted = _NormalEquations(features[train], caption_vectors[train])
    best = None
    for alpha in ALPHAS:
        weights, bias = fitted.solve(alpha * scale)
        aligned = Alignment(weights, bias, alpha * scale).transform(features[val])
        score = _summary(caption_ranks(aligned, caption_vectors[val], groups[val]))
        report[f"alpha_{alpha:g}"] = score
        if best is None or score["median_rank"] < best[1]["median_rank"]:
            best = (alpha, score)
    alpha, score = best
    report["aligned"], report["alpha"] = score, alpha
    if score["median_rank"] >= plain_score["median_rank"]:
        report["reason"] = (f"held-out captions ranked {score['median_rank']:.0f} (median) through the map, "
                            f"{plain_score['median_rank']:.0f} in the plain space")
        return None, report
    weights, bias = (fitted + _NormalEquations(features[val], caption_vectors[val])).solve(alpha * scale)
    validation = {f"plain_{k}": v for k, v in plain_score.items()}
    validation.update({f"aligned_{k}": v for k, v in score.items()})
    validation["n_validation"] = float(n_val)
    return Alignment(weights, bias, alpha * scale, validation), report
