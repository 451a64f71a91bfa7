"""A fitted model's attributes <-> the model folder's `ModelState` (settings, arrays, texts,
collages), by the names in `schema`. `to_state` reads the fitted attributes; `from_state`
returns the hyper-parameters and the attributes to set, so the model only sets them."""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np

from concept.clustering import Hierarchy, from_labels
from concept.clustering.hierarchy import OUTLIER_THRESHOLD
from concept.images import LoadFailure
from concept.model_folder.schema import (
    DUPLICATES,
    MAP_2D,
    SETTINGS,
    collage_id,
    collage_name,
    duplicates_key,
    layer_key,
    parents_key,
)
from concept.persistence import ModelState
from concept.words import pack_documents, unpack_documents

__all__ = ["from_state", "to_state"]

logger = logging.getLogger("concept.model")


def _pack(exemplars: dict[int, list[int]], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exemplar rows of concepts 0..k-1 as one flat array and the count per concept."""
    rows = [exemplars.get(c, []) for c in range(k)]
    return (np.asarray([i for r in rows for i in r], dtype=np.int64),
            np.asarray([len(r) for r in rows], dtype=np.int64))


def _unpack(flat: np.ndarray, counts: np.ndarray) -> dict[int, list[int]]:
    ends = np.cumsum(counts)
    return {c: flat[e - n:e].tolist() for c, (n, e) in enumerate(zip(counts, ends)) if n}


def _duplicates_state(found: Any, settings: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    """A model's known duplicates (a `concept.duplicates.Duplicates`) into the settings and arrays."""
    settings[DUPLICATES] = {"near_threshold": found.near_threshold}
    for kind, groups in (("exact", found.exact), ("near", found.near)):
        arrays[duplicates_key(kind, "rows")] = np.asarray([r for g in groups for r in g], dtype=np.int64)
        arrays[duplicates_key(kind, "counts")] = np.asarray([len(g) for g in groups], dtype=np.int64)
    if found.uniqueness is not None:
        arrays[duplicates_key("uniqueness")] = np.asarray(found.uniqueness, np.float64)


def _duplicates_from_state(s: dict[str, Any], a: dict[str, np.ndarray], sources: list[str] | None, n: int) -> Any:
    """The saved duplicates (None when none were found before saving, or in folders older than them)."""
    if DUPLICATES not in s:
        return None
    from concept.duplicates import Duplicates

    groups = {kind: [g.tolist() for g in np.split(a[duplicates_key(kind, "rows")],
                                                   np.cumsum(a[duplicates_key(kind, "counts")])[:-1])]
              if len(a[duplicates_key(kind, "counts")]) else [] for kind in ("exact", "near")}
    return Duplicates(groups["exact"], groups["near"], s[DUPLICATES].get("near_threshold"),
                      a.get(duplicates_key("uniqueness")), sources, n)


def _topics_json(topics: dict[int, list[tuple[str, float]]]) -> dict[str, list]:
    return {str(c): [[w, s] for w, s in ws] for c, ws in topics.items()}


def _topics_from_json(topics: dict[str, list]) -> dict[int, list[tuple[str, float]]]:
    return {int(c): [(w, float(sc)) for w, sc in ws] for c, ws in topics.items()}


def to_state(model: Any) -> ModelState:
    """Every fitted attribute of `model` (a fitted ConceptModel) as a ModelState."""
    embedder = model.embedder_
    h = model.hierarchy_
    settings = {k: getattr(model, k) for k in SETTINGS}
    settings["embedding_model"] = getattr(embedder, "spec", None) if embedder is not None else None
    settings["embedding_name"] = getattr(embedder, "name", type(embedder).__name__) if embedder else None
    settings["umap_model"] = type(model.umap_model).__name__ if model.umap_model is not None else None
    settings["hdbscan_model"] = type(model.hdbscan_model).__name__ if model.hdbscan_model is not None else None
    settings["layer"] = model.layer_
    settings["n_layers"] = len(model.layers_)
    settings["n_units"] = int(h.n_units)
    settings["fitted_outlier_threshold"] = float(h.threshold)
    arrays = {
        "embeddings": model.embeddings_, "labels": model.labels_,
        "probabilities": model.probabilities_, "image_indices": model.image_indices_,
        "reference_rows": model.reference_rows_,
        "concept_embeddings": model.concept_embeddings_,
        "fine_labels": h.fine, "nearest": h.nearest, "centres": h.centres,
        "medians": h.medians, "sds": h.sds,
    }
    for i, parent in enumerate(h.parents):
        arrays[parents_key(i)] = parent
    for i, (emb, ex) in enumerate(zip(model.layer_embeddings_, model.layer_exemplars_)):
        arrays[layer_key(i, "embeddings")] = emb
        arrays[layer_key(i, "exemplars")], arrays[layer_key(i, "exemplar_counts")] = _pack(ex, len(emb))
    arrays["exemplars"], arrays["exemplar_counts"] = _pack(model.exemplars_, len(model.concept_embeddings_))
    if model.features_ is not None:
        arrays["features"] = model.features_
    arrays["image_center"] = model.image_center_
    if model.map_2d_ is not None:
        arrays[MAP_2D] = model.map_2d_
    if model.word_center_ is not None:
        arrays["word_center"] = model.word_center_
    if model.seed_matches_ is not None:
        arrays["seed_matches"] = model.seed_matches_
    from concept.deduplicated import known_duplicates

    found = known_duplicates(model)  # saved only once found (fit's find_duplicates=True, or duplicates_ used)
    if found is not None:
        _duplicates_state(found, settings, arrays)
    caption_docs = model._caption_docs
    if caption_docs is not None:
        caption_terms, arrays["caption_term_indptr"], arrays["caption_term_indices"] = pack_documents(caption_docs)
        arrays["captioned"] = model._captioned.astype(np.uint8)
    if model.alignment_ is not None:
        arrays["alignment_weights"] = model.alignment_.weights
        arrays["alignment_bias"] = model.alignment_.bias
        settings["alignment"] = {"alpha": float(model.alignment_.alpha),
                                 "validation": dict(model.alignment_.validation)}
    texts = {
        "topics": _topics_json(model.topics_),
        "layer_topics": [_topics_json(t) for t in model.layer_topics_],
        "image_sources": model.image_sources_,
        "image_names": getattr(model, "image_names_", None),
        "failures": [[f.index, f.source, f.reason] for f in model.failures_],
        "custom_labels": {str(c): name for c, name in model.custom_labels_.items()},
        "concept_mapping": model.concept_mapping_,
    }
    if model._docs != "unknown":
        texts["docs"] = model._docs  # the candidate words, to describe edited concepts alike
    if "captioned" in arrays:
        texts["caption_terms"] = caption_terms
    images = {collage_name(c): img for c, img in model.collages_.items()}
    return ModelState(settings, arrays, texts, images)


def from_state(state: ModelState, path: str | os.PathLike, embedding_model: Any = None
               ) -> tuple[dict[str, Any], dict[str, Any]]:
    """(hyper-parameters, fitted attributes) of a checked state (`check_fitted_state`) of the
    folder `path`. The embedding model is `embedding_model`, else the saved one rebuilt by name
    (a saved path is refused). The attributes hold `hierarchy_` and each layer's descriptions;
    the model derives `labels_` and the other per-layer attributes from the hierarchy."""
    from concept.embedding import stored_embedding_model

    s, a, t = state.settings, state.arrays, state.texts
    params = {k: s[k] for k in SETTINGS if k in s}
    params["embedding_model"] = embedding_model if embedding_model is not None else stored_embedding_model(
        s.get("embedding_model"), path, s.get("embedding_name"))
    if params["embedding_model"] is None and s.get("embedding_name"):
        logger.warning("The model was fitted with %s, which cannot be rebuilt by name: pass "
                       "load(path, embedding_model=...) to search or transform images.", s["embedding_name"])
    alignment = None
    if "alignment_weights" in a:
        from concept.alignment import Alignment

        saved = s.get("alignment") or {}
        alignment = Alignment(a["alignment_weights"], a["alignment_bias"], float(saved.get("alpha", 0.0)),
                              dict(saved.get("validation", {})))
    caption_docs, captioned = None, None
    if "captioned" in a:
        caption_docs = unpack_documents(t["caption_terms"], a["caption_term_indptr"], a["caption_term_indices"])
        captioned = a["captioned"].astype(bool)
    features = a.get("features")
    space = features if features is not None else a["embeddings"]
    if "centres" in a:
        n_layers = int(s.get("n_layers", 1))
        hierarchy = Hierarchy(
            a["fine_labels"], a["nearest"], a["probabilities"], a["centres"], a["medians"], a["sds"],
            [a[parents_key(i)] for i in range(n_layers - 1)], int(s.get("layer", 0)),
            float(s.get("fitted_outlier_threshold", OUTLIER_THRESHOLD)), int(s.get("n_units", 0)))
        layer_embeddings = [a[layer_key(i, "embeddings")] for i in range(n_layers)]
        layer_exemplars = [_unpack(a[layer_key(i, "exemplars")], a[layer_key(i, "exemplar_counts")])
                           for i in range(n_layers)]
        layer_topics = [_topics_from_json(topics) for topics in t["layer_topics"]]
    else:  # saved before layers: one layer, centres measured from its labels
        hierarchy = from_labels(space, a["labels"], a["probabilities"])
        layer_embeddings = [a["concept_embeddings"]]
        layer_exemplars = [_unpack(a["exemplars"], a["exemplar_counts"])]
        layer_topics = [_topics_from_json(t["topics"])]
    attrs = {
        "embeddings_": a["embeddings"], "features_": features, "image_center_": a["image_center"],
        "map_2d_": a.get(MAP_2D), "word_center_": a.get("word_center"), "alignment_": alignment,
        "reference_rows_": a["reference_rows"], "image_indices_": a["image_indices"],
        "seed_matches_": a.get("seed_matches"), "_caption_docs": caption_docs, "_captioned": captioned,
        "hierarchy_": hierarchy, "layer_embeddings_": layer_embeddings, "layer_exemplars_": layer_exemplars,
        "layer_topics_": layer_topics, "image_sources_": t.get("image_sources"),
        "image_names_": t.get("image_names"),  # absent from folders saved before names
        "failures_": [LoadFailure(*f) for f in t.get("failures", [])],
        "custom_labels_": {int(c): n for c, n in t.get("custom_labels", {}).items()},
        "concept_mapping_": list(t.get("concept_mapping", [])),
        "_docs": t.get("docs", "unknown"),
        "collages_": {collage_id(name): img for name, img in state.images.items()},
        "concept_embeddings_": layer_embeddings[hierarchy.default], "exemplars_": layer_exemplars[hierarchy.default],
        "topics_": layer_topics[hierarchy.default],
        "_duplicates": _duplicates_from_state(s, a, t.get("image_sources"), len(a["labels"])),
    }
    return params, attrs
