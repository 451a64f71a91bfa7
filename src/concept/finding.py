"""The clustering stage of a fit: vectors -> the concept hierarchy (`clustering.Hierarchy`).

The default clustering core, or one layer from the user's reducer and clusterer; zero-shot
names (images that match a name form its concept, the rest are clustered) and seed word lists
(matching images are pulled together before clustering). Plain data in, a hierarchy out: the
model calls `find_hierarchy_for_fit` and never the other way round.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from concept._errors import ConceptError, EmbeddingError
from concept.clustering import (
    Hierarchy,
    cluster,
    default_clusterer,
    default_reducer,
    find_hierarchy,
    from_labels,
    layer_labels,
    sampled_min_size,
)
from concept.clustering.legacy import MIN_DISTINCT, distinct_rows
from concept.embedding.base import l2_normalize

__all__ = ["ClusterSettings", "Found", "cluster_hierarchy", "effective_min_size", "find_hierarchy_for_fit",
           "layer_attributes", "seeded_hierarchy",
           "zeroshot_hierarchy"]

logger = logging.getLogger("concept.model")


@dataclass(frozen=True)
class ClusterSettings:
    """The model's hyper-parameters that the clustering stage reads."""

    min_concept_size: int
    sample_size: int | None
    outlier_threshold: float
    random_state: int | None = None
    umap_model: Any = None
    hdbscan_model: Any = None

    @classmethod
    def of(cls, params: dict[str, Any]) -> ClusterSettings:
        """From a ConceptModel's `get_params()`."""
        return cls(int(params["min_concept_size"]), params["sample_size"], float(params["outlier_threshold"]),
                   params["random_state"], params["umap_model"], params["hdbscan_model"])


@dataclass
class Found:
    """What the clustering stage found: the hierarchy, {finest concept id: zero-shot name} and,
    for a seeded fit, each image's seed (-1: none; None without seeds)."""

    hierarchy: Hierarchy
    names: dict[int, str] = field(default_factory=dict)
    seed_matches: np.ndarray | None = None

    def names_at(self, layer: int) -> dict[int, str]:
        """The zero-shot names by the concept of `layer` their finest concept belongs to."""
        h = self.hierarchy
        to_layer = layer_labels(np.arange(len(h.centres)), h.parents[:layer])[layer]
        return {int(to_layer[f]): name for f, name in self.names.items()}


def effective_min_size(n: int, min_concept_size: int) -> int:
    """`min_concept_size`, lowered for small collections (to half the square root of the
    number of images, at least 3) so that they still get concepts; says so in the log.

    Half the square root lowers the default 30 below 3,600 images: OpenClipart's 2,262 then
    get 24 (about 20 concepts for its 17 folders, NMI 0.242 against 0.227 with 30;
    benchmarks/RESULTS.md), 73 images get 4."""
    size = int(min_concept_size)
    small = max(3, int(np.sqrt(n) / 2 + 0.5))
    if n < 3:
        raise ConceptError(f"Only {n} images: concepts need at least 3.")
    if small < size:
        logger.info("min_concept_size %d lowered to %d for a collection of %d images.", size, small, n)
        return small
    return size


def default_stages(settings: ClusterSettings, n: int, min_size: int | None = None) -> tuple[Any, Any]:
    """The reducer and clusterer for `n` images: the user's, or defaults sized for the sample."""
    min_size = int(settings.min_concept_size) if min_size is None else min_size
    fitted = n if settings.sample_size is None else min(n, int(settings.sample_size))
    reducer = settings.umap_model if settings.umap_model is not None else default_reducer(fitted,
                                                                                       settings.random_state)
    clusterer = (settings.hdbscan_model if settings.hdbscan_model is not None
                 else default_clusterer(sampled_min_size(min_size, fitted, n), fitted))
    return reducer, clusterer


def cluster_hierarchy(space: np.ndarray, min_size: int, settings: ClusterSettings) -> Hierarchy:
    """The concept hierarchy of the clustering vectors: the default core, or one layer from
    the user's reducer/clusterer (fitted on a sample of `sample_size`, as before)."""
    threshold = float(settings.outlier_threshold)
    own = settings.umap_model is None and settings.hdbscan_model is None
    if own and len(space) >= MIN_DISTINCT and distinct_rows(space) >= MIN_DISTINCT:
        return find_hierarchy(space, min_size, max_units=settings.sample_size, threshold=threshold,
                              random_state=settings.random_state)
    reducer, clusterer = default_stages(settings, len(space), min_size)
    result = cluster(space, reducer, clusterer, sample_size=settings.sample_size, random_state=settings.random_state)
    return from_labels(space, result.labels, result.probabilities, threshold)


def _zeroshot_ids(h: Hierarchy, labels: np.ndarray) -> list[int]:
    """The finest concept id that each label 0..m-1 became (from_labels numbers by size)."""
    return [int(np.bincount(h.fine[labels == j][h.fine[labels == j] >= 0]).argmax()) for j in
            range(int(labels.max()) + 1)]


def zeroshot_hierarchy(x: np.ndarray, space: np.ndarray, texts: np.ndarray, names: Sequence[str],
                       threshold: float, min_size: int, settings: ClusterSettings,
                       clusterer: Callable[[np.ndarray, int], Hierarchy], embedder: Any = None
                       ) -> tuple[Hierarchy, dict[int, str]]:
    """Zero-shot concepts: images matching a name (`matching.text_image_matches` of `x` against
    the names' unit `texts`: calibrated at `threshold` robust SDs, or a sigmoid `embedder`'s own
    probability) form its concept, the others are clustered by `clusterer`; the hierarchy and
    {finest id: name}. Names that fewer than 3 images match are left out (logged)."""
    from concept.editing import add_concepts
    from concept.matching import text_image_matches

    if texts.shape[1] != x.shape[1]:
        raise EmbeddingError(f"The zero-shot names were embedded in {texts.shape[1]} dimensions, the images in "
                             f"{x.shape[1]}: pass the embedding_model that made the image embeddings.")
    match, _ = text_image_matches(x, texts, float(threshold), embedder)
    counts = np.bincount(match[match >= 0], minlength=len(names))
    kept = np.flatnonzero(counts >= 3)
    dropped = [names[j] for j in np.flatnonzero(counts < 3)]
    if dropped:
        logger.info("Zero-shot names matched by fewer than 3 images, left out: %s", ", ".join(dropped))
    remap = np.full(len(names), -1, np.int64)
    remap[kept] = np.arange(len(kept))
    labels = np.where(match >= 0, remap[np.maximum(match, 0)], -1)
    rest = np.flatnonzero(labels < 0)
    matched = np.flatnonzero(labels >= 0)
    logger.info("Zero-shot: %d of %d images match %d names.", len(matched), len(x), len(kept))
    if len(matched) == 0:
        return clusterer(space, min_size), {}
    if len(rest) < max(MIN_DISTINCT, min_size):  # too few left to cluster: they are outliers
        h = from_labels(space, labels, None, float(settings.outlier_threshold))
        return h, {int(f): names[kept[j]] for j, f in enumerate(_zeroshot_ids(h, labels))}
    h_rest = clusterer(space[rest], effective_min_size(len(rest), settings.min_concept_size))
    h = add_concepts(h_rest, space[rest], space[matched], labels[matched], keep=True)
    order = np.concatenate([rest, matched])
    fine, nearest, probs = (np.empty_like(a) for a in (h.fine, h.nearest, h.probabilities))
    fine[order], nearest[order], probs[order] = h.fine, h.nearest, h.probabilities
    k0 = len(h_rest.centres)
    h = dataclasses.replace(h, fine=fine, nearest=nearest, probabilities=probs)
    return h, {k0 + j: names[t] for j, t in enumerate(kept)}


def seeded_hierarchy(x: np.ndarray, space: np.ndarray, texts: np.ndarray, seeds: list[list[str]],
                     min_size: int, clusterer: Callable[[np.ndarray, int], Hierarchy], embedder: Any = None
                     ) -> tuple[Hierarchy, np.ndarray]:
    """Seeded concepts (`concept.seeding`): match the images to the seed lists (`texts`, one
    vector per list) in the shared space (`seed_matches`, by `embedder`'s own probability
    when it is sigmoid-trained), pull the matched ones together in the clustering
    space, cluster, and measure the concepts again on the unpulled vectors; the hierarchy and
    each image's seed (-1: none)."""
    from concept.seeding import pull_towards_seeds, reanchor, seed_matches

    if texts.shape[1] != x.shape[1]:
        raise EmbeddingError(f"The seed words were embedded in {texts.shape[1]} dimensions, the images in "
                             f"{x.shape[1]}: pass the embedding_model that made the image embeddings.")
    match = seed_matches(x, texts, embedder=embedder)
    counts = np.bincount(match[match >= 0], minlength=len(seeds))
    logger.info("Seeded concepts: %d of %d images match %d of %d seeds (%s).", int((match >= 0).sum()), len(x),
                int((counts > 0).sum()), len(seeds),
                ", ".join(f"{ws[0]}: {int(c)}" for ws, c in zip(seeds, counts)))
    if not (match >= 0).any():
        return clusterer(space, min_size), match
    return reanchor(clusterer(pull_towards_seeds(space, match), min_size), space), match


def find_hierarchy_for_fit(x: np.ndarray, space: np.ndarray, min_size: int, settings: ClusterSettings, *,
                           embedder: Any = None,
                           zeroshot_names: Sequence[str] | None = None, zeroshot_threshold: float = 3.0,
                           seeds: list[list[str]] | None = None, given: Hierarchy | None = None) -> Found:
    """The clustering stage of `ConceptModel.fit`: zero-shot names, seed lists or neither.

    `embedder` embeds the names or seed words (and, when sigmoid-trained like SigLIP, its own
    probabilities decide which images match them: `concept.matching`). `given`: a hierarchy
    found elsewhere (e.g. by `concept.distributed` over every image of a cluster) that stands
    in for each clustering run here."""
    def clusterer(vectors: np.ndarray, size: int) -> Hierarchy:
        return given if given is not None else cluster_hierarchy(vectors, size, settings)

    from concept.embedding.inputs import require_embedder

    def embed_texts(texts: list[str]) -> np.ndarray:
        return require_embedder(embedder, "Zero-shot concepts" if zeroshot_names else "Seeded concepts"
                                ).embed_texts(texts)

    if zeroshot_names:
        names = [t.strip() for t in zeroshot_names]
        texts = l2_normalize(np.asarray(embed_texts(names), np.float32))
        h, found = zeroshot_hierarchy(x, space, texts, names, zeroshot_threshold, min_size, settings, clusterer,
                                      embedder)
        return Found(h, found)
    if seeds is not None:
        from concept.seeding import seed_vectors

        h, match = seeded_hierarchy(x, space, seed_vectors(embed_texts, seeds), seeds, min_size, clusterer, embedder)
        return Found(h, {}, match)
    return Found(clusterer(space, min_size))


def shared_space_hierarchy(h: Hierarchy, embeddings: np.ndarray, fine: np.ndarray,
                           centres: np.ndarray) -> Hierarchy:
    """A hierarchy fitted on features, measured again in the shared space: the same finest
    concepts (`fine`) with their shared-space `centres` and the spreads of their members
    around them, so images given only as shared-space embeddings can be assigned."""
    from concept.clustering.hierarchy import spread

    sims = np.einsum("nd,nd->n", embeddings, centres[np.maximum(fine, 0)])
    medians, sds = spread(fine, sims.astype(np.float32), len(centres))
    return dataclasses.replace(h, centres=centres, medians=medians, sds=sds)


def layer_attributes(h: Hierarchy) -> dict[str, Any]:
    """A fitted model's per-layer attributes from its hierarchy: `layers_` (finest first), `layer_`
    (the default), `labels_`, `probabilities_` (0 where a concept was deleted to outliers) and
    `nearest_labels_` (each image's nearest concept of the default layer, outliers too)."""
    layers, layer = h.layers, int(h.default)
    return {"layers_": layers, "layer_": layer, "labels_": layers[layer],
            "probabilities_": np.where(layers[layer] >= 0, h.probabilities, 0.0),
            "nearest_labels_": layer_labels(h.nearest, h.parents[:layer])[layer]}
