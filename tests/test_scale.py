"""The clustering core at scale, through the public API: a summarised collection with a clear
gap between its concepts must give every concept (issue 22: the 1,000,000-image mixture had
fallen from 1,975 concepts to 1,174 while no test said so). Quality only; time is benchmarked
(benchmarks/cluster.py)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import normalized_mutual_info_score

from concept import ConceptModel


def mixture(n: int, k: int, noise: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """benchmarks/cluster.py's mixture: k random unit centres in 384-d, sizes 100 + a
    Dirichlet share of the rest, rows normalise(centre + noise * g / sqrt(384))."""
    rng = np.random.default_rng(seed)
    d = 384
    centres = rng.standard_normal((k, d)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    sizes = 100 + rng.multinomial(n - 100 * k, rng.dirichlet(np.ones(k)))
    y = rng.permutation(np.repeat(np.arange(k), sizes))
    x = centres[y] + np.float32(noise / np.sqrt(d)) * rng.standard_normal((n, d), dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True), y


@pytest.mark.slow
def test_a_100000_image_mixture_of_400_clusters_gives_every_concept():
    x, y = mixture(100_000, 400, 1.5)
    model = ConceptModel(embedding_model=None, random_state=0, verbose=False).fit(None, image_embeddings=x)
    labels = model.labels_
    found = len(np.unique(labels[labels >= 0]))
    assert abs(found - 400) <= 20  # within 5%
    assert normalized_mutual_info_score(y, labels) >= 0.98
    assert np.mean(labels >= 0) >= 0.95
    # The finest layer does not over-split either (3,231 finest for 2,000 clusters before).
    assert len(np.unique(model.layers_[0][model.layers_[0] >= 0])) <= 420


def test_a_nested_mixture_gives_one_layer_per_level():
    # 20 groups x 10 sub-clusters x 40 images (8,000, summarised): a layer for each level.
    rng = np.random.default_rng(0)
    d = 384
    groups = rng.standard_normal((20, d))
    groups /= np.linalg.norm(groups, axis=1, keepdims=True)
    subs = groups[np.repeat(np.arange(20), 10)] + 0.6 / np.sqrt(d) * rng.standard_normal((200, d))
    fine = rng.permutation(np.repeat(np.arange(200), 40))
    x = subs[fine] + 0.25 / np.sqrt(d) * rng.standard_normal((len(fine), d))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    model = ConceptModel(embedding_model=None, random_state=0, verbose=False,
                         min_concept_size=20).fit(None, image_embeddings=x)
    sizes = [len(np.unique(layer[layer >= 0])) for layer in model.layers_]
    assert 200 in sizes and 20 in sizes, sizes
    by_size = {len(np.unique(layer[layer >= 0])): layer for layer in model.layers_}
    assert normalized_mutual_info_score(fine, by_size[200]) >= 0.99
    assert normalized_mutual_info_score(fine // 10, by_size[20]) >= 0.99
