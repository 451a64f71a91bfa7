"""Merge fitted models into one (issue 26; the semantics of BERTopic's `merge_models`).

`merge_models([m1, m2, ...])` returns a new `ConceptModel` whose concepts are the union of the
models' concepts (those of their `labels_`). The first model's concepts keep their ids; each
concept of a later model is compared with every concept already in the merged model (the first
model's and those added by models before it): if its centre is similar enough to the most
similar one (`MIN_SIMILARITY`, or `min_similarity=`), it is merged into it, otherwise it is
added with the next free id. The models must have been fitted with the same embedding model.

How the merged model is built, so that `transform` and `save`/`load` keep working:

* Images: every image of every model, in model order (`embeddings_`, `features_`, ... stacked;
  `image_indices_` of a later model continue after the earlier models' inputs, as `partial_fit`
  numbers added rows).
* Finest layer: the union of the models' finest concepts, with their centres and outlier fences
  (rescaled to the first model's `outlier_threshold`), so a fitted concept's region of the space
  is kept as it was. Every image is then assigned by `transform`'s own rule (nearest finest
  centre, outlier below its fence) across the union: an image can move to a nearer concept of
  another model (how many did is logged), and `transform` on the models' own images gives exactly
  their merged labels.
* Layers: layer 1 is the merged concepts (the default layer, `labels_`), each finest concept
  mapped to the merged concept its model's concept went to; the coarser layers are rebuilt over
  the merged concepts by the size-weighted Ward merging of the fit (`editing.relayer`, as after
  an edit). The models' own layers between their finest and their default layer, and their
  coarser layers, are not kept. When nothing is merged and every model's `labels_` is its finest
  layer, layer 1 would repeat layer 0 and is left out.
* Words, exemplars and collages: described again over the merged layers with the first model's
  settings, candidate words and learned image-text map (the first model's that has one);
  collages are made again from the exemplars' files, else a concept keeps the collage of the
  first model concept merged into it. Custom labels follow their concepts (an earlier model's
  name wins); `concept_mapping_` records each later model's {its concept: merged concept}.
* Duplicates: when every model knows its duplicates (`duplicates_` found at fit, used, or loaded),
  they are found again over the merged rows (`find_duplicates(model=merged)`, its near threshold
  calibrated on the merged collection, so copies across models are grouped too) before the
  exemplars are picked, which then show one image per group; `uniqueness_` and `typicality_` are
  the model's own (computed from the merged rows on use). When any model does not know them, the
  merged model knows none and finds them on first use of `duplicates_`, as any model does.

Models that cluster on image features (the offline model's CNN features) are merged in that
space: all of the models must have features of the same size, or none.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from concept._errors import ConceptError, NotFittedError
from concept._validation import check_number
from concept.clustering import (
    Hierarchy,
    assign,
    layer_labels,
    one_blas_thread,
    reference_rows,
    top_matches,
)
from concept.collage import concept_collages
from concept.deduplicated import describing_settings, duplicates_of_merged
from concept.describing import Described, Images, describe_again, edit_words
from concept.editing import relayer
from concept.embedding.base import l2_normalize
from concept.embedding.inputs import Embedded, Rows, append_rows
from concept.finding import layer_attributes
from concept.model import MAP_SAMPLE, ConceptModel

__all__ = ["MIN_SIMILARITY", "match_concepts", "merge_models", "union_hierarchy"]

logger = logging.getLogger("concept.model")

#: A later model's concept is merged into the most similar concept before it when the cosine of their centres
#: (concept embeddings in the shared space, both centred on the mean of all the models' images) is at least this.
#: Uncentred cosines say little: every image shares one offset, so in the offline model's space two concepts that
#: a fit kept apart score up to 0.98. Centred, on disjoint random halves of OpenClipart (17 folders) and of
#: Fashion-MNIST's test split (10 classes), fitted with the offline model: two concepts one fit kept apart score at
#: most 0.82 (3 seeds), the concepts of one class in the two halves 0.94-1.0 on Fashion-MNIST and 0.7-1.0 on
#: OpenClipart (whose folders are loose). 0.9 sits above anything a fit keeps apart; over 4 seeds, OpenClipart's
#: merges at 0.9 were 22 within a folder and 1 across (at 0.8: 31 and 9), Fashion-MNIST's 39 and 4 at any value
#: from 0.75 to 0.9. A missed merge leaves two alike concepts that `merge_concepts` can join; a wrong one cannot
#: be undone. Measured with the offline model only: CLIP's spaces may want another value (`min_similarity=`).
MIN_SIMILARITY = 0.9


# -- checks ---------------------------------------------------------------------------------------
def _backend_name(model: ConceptModel) -> str | None:
    """The embedding backend's name as a saved model records it (None without a backend)."""
    embedder = model.embedder_
    return getattr(embedder, "name", type(embedder).__name__) if embedder is not None else None


def _check_models(models: Any) -> list[ConceptModel]:
    """The models as a list, refused unless they are at least two fitted ConceptModels in one space."""
    if isinstance(models, ConceptModel) or not isinstance(models, Sequence) or isinstance(models, (str, bytes)):
        raise ConceptError("merge_models takes a list of fitted ConceptModels, e.g. merge_models([model_a, model_b]).")
    models = list(models)
    if len(models) < 2:
        raise ConceptError(f"merge_models needs at least two models, got {len(models)}.")
    for i, m in enumerate(models):
        if not isinstance(m, ConceptModel):
            raise ConceptError(f"Model {i} is a {type(m).__name__}, not a ConceptModel.")
        if "labels_" not in m.__dict__:
            raise NotFittedError(f"Model {i} is not fitted yet: fit or load every model before merging.")
    first = models[0]
    dim, name = first.embeddings_.shape[1], _backend_name(first)
    has_features = first.features_ is not None
    for i, m in enumerate(models[1:], 1):
        if m.embeddings_.shape[1] != dim:
            raise ConceptError(f"Model {i} has {m.embeddings_.shape[1]}-d embeddings, model 0 {dim}-d: only models "
                               "fitted with the same embedding model can be merged.")
        if _backend_name(m) != name:
            raise ConceptError(f"Model {i} was fitted with embedding model {_backend_name(m)!r}, model 0 with "
                               f"{name!r}: only models fitted with the same embedding model can be merged (a loaded "
                               "model takes its backend from load(path, embedding_model=...)).")
        if (m.features_ is not None) != has_features:
            raise ConceptError(f"Model {'0' if has_features else i} clusters on image features and model "
                               f"{i if has_features else '0'} on the shared embeddings: merge models fitted with "
                               "the same cluster_space (and, with precomputed vectors, both given image_features).")
        if has_features and m.features_.shape[1] != first.features_.shape[1]:
            raise ConceptError(f"Model {i} has {m.features_.shape[1]}-d image features, model 0 "
                               f"{first.features_.shape[1]}-d: only models with the same features can be merged.")
    return models


# -- concepts -------------------------------------------------------------------------------------
def match_concepts(vectors: Sequence[np.ndarray], center: np.ndarray,
                   min_similarity: float = MIN_SIMILARITY) -> list[np.ndarray]:
    """Each model's concepts (rows of `vectors[j]`, shared-space concept embeddings) -> merged concept ids.

    The first model's concepts keep their ids. A later model's concept takes the id of the most similar
    concept already merged (the first model's or one added by a model before it; never one of its own
    model) when their cosine, after centring both on `center`, is at least `min_similarity`; the others get
    new ids after the existing ones, in their order. A zero row (an empty concept) matches nothing.
    """
    def unit(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        v = np.asarray(v, np.float32)
        live = np.linalg.norm(v, axis=1) > 0
        return l2_normalize(v - center) * live[:, None], live

    merged, live = unit(vectors[0])
    out = [np.arange(len(vectors[0]), dtype=np.int64)]
    for v in vectors[1:]:
        units, own_live = unit(v)
        ids = np.empty(len(v), np.int64)
        matched = np.zeros(len(v), bool)
        if len(merged) and len(v):
            sims = units @ merged.T
            sims[:, ~live] = -np.inf
            sims[~own_live] = -np.inf
            best = np.argmax(sims, axis=1)
            matched = sims[np.arange(len(v)), best] >= min_similarity
            ids[matched] = best[matched]
        ids[~matched] = len(merged) + np.arange(int((~matched).sum()))
        merged = np.vstack([merged, units[~matched]])
        live = np.concatenate([live, own_live[~matched]])
        out.append(ids)
    return out


def _finest_to_default(h: Hierarchy) -> np.ndarray:
    """Each finest concept's concept in the default layer (-1: deleted to outliers)."""
    return layer_labels(np.arange(len(h.centres)), h.parents[:h.default])[h.default]


def union_hierarchy(hierarchies: Sequence[Hierarchy], targets: Sequence[np.ndarray], space: np.ndarray
                    ) -> tuple[Hierarchy, list[np.ndarray]]:
    """The merged hierarchy over the stacked rows `space` (clustering space, the models' rows in order), and
    `targets` (model j's default concept -> merged id) as they end up.

    Finest layer: every model's finest concepts (their centres and fences, the fences rescaled to the first
    model's threshold so each stays where it was), every row assigned by `assign`'s rule among all of them.
    Layer 1, the default: the merged concepts, each finest concept in the one its model's concept went to;
    coarser layers by Ward over them (`editing.relayer`). Layer 1 is left out when it would repeat the finest
    layer. A finest concept left with no image (all nearer to other concepts; e.g. every concept of a model
    merged with itself) is dropped and the rows assigned again, until each has images; a merged concept left
    with none is dropped and the ids after it close up (-1 in `targets`): no layer has an empty id.
    """
    threshold = float(hierarchies[0].threshold)
    centres = np.vstack([h.centres for h in hierarchies]).astype(hierarchies[0].centres.dtype)
    medians = np.concatenate([h.medians for h in hierarchies]).astype(np.float32)
    # confidence() depends on threshold x sd only: scaling sd keeps every concept's fence and probabilities.
    sds = np.concatenate([h.sds * (float(h.threshold) / threshold) for h in hierarchies]).astype(np.float32)
    to_merged = np.concatenate([np.where(f >= 0, t[np.maximum(f, 0)], -1) if len(t) else np.full(len(f), -1)
                                for f, t in ((_finest_to_default(h), t) for h, t in zip(hierarchies, targets))])
    k = int(max((int(t.max(initial=-1)) for t in targets), default=-1)) + 1
    keep = np.ones(len(centres), bool)
    while True:  # finest concepts left with no image are dropped, until every one has images
        base = Hierarchy(np.zeros(len(space), np.int64), np.zeros(len(space), np.int64), np.zeros(len(space)),
                         centres[keep], medians[keep], sds[keep], [], 0, threshold,
                         int(sum(h.n_units for h in hierarchies)))
        fine, conf = assign(space, base, 0)
        empty = np.bincount(fine[fine >= 0], minlength=int(keep.sum())) == 0
        if not empty.any() or empty.all():
            break
        keep[np.flatnonzero(keep)[empty]] = False
    ids = np.full(k + 1, -1, np.int64)  # merged ids closed up over the concepts left; the last entry is for -1
    kept_ids = np.unique(to_merged[keep][to_merged[keep] >= 0])
    ids[kept_ids] = np.arange(len(kept_ids))
    if len(kept_ids) < k:
        logger.warning("%d merged concepts lost every image to nearer concepts of other models and were dropped.",
                       k - len(kept_ids))
    mapping = ids[to_merged[keep]]
    nearest = top_matches(space, centres[keep])[0][:, 0]
    base = dataclasses.replace(base, fine=fine, nearest=nearest, probabilities=np.asarray(conf, np.float64))
    h = relayer(base, 0, mapping, space)
    if np.array_equal(mapping, np.arange(len(mapping))):  # layer 1 is the finest layer again
        h = dataclasses.replace(h, parents=h.parents[1:], default=0)
    return h, [ids[t] for t in targets]


# -- the merged model's parts ----------------------------------------------------------------------
def _stacked_rows(models: list[ConceptModel]) -> Rows:
    """Every model's rows after the first's, input positions and failures continuing (`append_rows`)."""
    first = models[0]
    rows = Rows(first.embeddings_, first.features_, first.image_indices_, list(first.failures_), first.image_sources_)
    for m in models[1:]:
        rows = append_rows(rows, Embedded(m.embeddings_, m.features_, m.image_indices_, list(m.failures_)),
                           m.image_sources_)
    return rows


def _names(models: list[ConceptModel], rows: Rows) -> list[str] | None:
    """Image names when any model has them: the models' own, else each image's file name or input position."""
    if all(m.__dict__.get("image_names_") is None for m in models):
        return None
    out: list[str] = []
    for m in models:
        named, sources = m.__dict__.get("image_names_"), m.image_sources_
        start = len(out)
        out += list(named) if named is not None else [
            os.path.basename(sources[r]) if sources else str(int(rows.image_indices[start + r]))
            for r in range(len(m.labels_))]
    return out


def _captions(models: list[ConceptModel]) -> tuple[list | None, np.ndarray | None]:
    """The caption terms per image and which images had a caption, stacked (None when no model has captions)."""
    if all(m._caption_docs is None for m in models):
        return None, None
    docs: list = []
    for m in models:
        docs += list(m._caption_docs) if m._caption_docs is not None else [None] * len(m.labels_)
    captioned = np.concatenate([m._captioned if m._captioned is not None else np.zeros(len(m.labels_), bool)
                                for m in models])
    return docs, captioned


def _seed_matches(models: list[ConceptModel]) -> np.ndarray | None:
    """The first model's seed matches (the merged model's seeds are its), -1 for the other models' rows."""
    first = models[0]
    if first.seed_matches_ is None:
        return None
    rest = sum(len(m.labels_) for m in models[1:])
    return np.concatenate([first.seed_matches_, np.full(rest, -1, np.int64)])


def _collages(models: list[ConceptModel], targets: list[np.ndarray], exemplars: dict[int, list[int]]) -> dict:
    """Collages of the merged concepts from their exemplars' files; a concept none of whose exemplars is a
    file keeps the collage of the first model concept that went to it."""
    sources: list[str | None] = []
    for m in models:
        sources += list(m.image_sources_) if m.image_sources_ is not None else [None] * len(m.labels_)
    made = concept_collages(exemplars, lambda row: sources[row])
    for m, t in zip(models, targets):
        for concept, collage in m.collages_.items():
            if concept < len(t) and int(t[concept]) in exemplars:
                made.setdefault(int(t[concept]), collage)
    return made


def _custom_labels(models: list[ConceptModel], targets: list[np.ndarray]) -> dict[int, str]:
    out: dict[int, str] = {}
    for m, t in zip(models, targets):
        for concept, name in sorted(m.custom_labels_.items()):
            if concept < len(t) and t[concept] >= 0:
                out.setdefault(int(t[concept]), name)
    return out


# -- the merge ------------------------------------------------------------------------------------
def merge_models(models: Sequence[ConceptModel], min_similarity: float = MIN_SIMILARITY) -> ConceptModel:
    """One ConceptModel from fitted models whose concepts are the union of theirs (BERTopic's `merge_models`).

    The first model's concepts keep their ids; a later model's concept is merged into the most similar concept
    before it when the cosine of their centred shared-space centres is at least `min_similarity` (default
    `MIN_SIMILARITY`, 0.9; 1.0 merges hardly any, -1.0 every later concept into one before it), else it is
    added after the existing ids. The merged model holds every image of every model; see the module docstring for
    its layers, words and collages. When every model knows its duplicates (`duplicates_`), the merged model's are
    found again over all its rows (copies across models grouped too); else it knows none until `duplicates_` is
    used. Raises ConceptError unless the models are fitted with the same embedding model (backend name and
    dimensions, and the same kind of clustering features).
    """
    models = _check_models(models)
    min_similarity = check_number("min_similarity", min_similarity, -1.0, 1.0)
    first = models[0]
    rows = _stacked_rows(models)
    space = rows.features if rows.features is not None else rows.embeddings
    center = rows.embeddings.mean(axis=0)
    matched = match_concepts([m.concept_embeddings_ for m in models], center, min_similarity)
    merged = ConceptModel(**first.get_params(deep=False))
    embedder = first.embedder_
    merged._embedder = (merged.embedding_model, embedder)  # the first model's backend, not loaded again
    with one_blas_thread():
        h, targets = union_hierarchy([m.hierarchy_ for m in models], matched, space)
    attrs = layer_attributes(h)
    layers, k = attrs["layers_"], [int(layer.max(initial=-1)) + 1 for layer in attrs["layers_"]]
    alignment = next((m.alignment_ for m in models if m.alignment_ is not None), None)
    caption_docs, captioned = _captions(models)
    image_center = center if k[h.default] >= 2 else np.zeros(rows.embeddings.shape[1], np.float32)
    images = Images(rows.embeddings, image_center, None if alignment is None else alignment.transform(space))
    words = edit_words(first._docs, [t for m in models for t in m.layer_topics_])
    seeds = _seed_matches(models)
    merged.__dict__.update(
        hierarchy_=h, embeddings_=rows.embeddings, features_=rows.features, image_indices_=rows.image_indices,
        failures_=rows.failures, image_sources_=rows.sources, image_names_=_names(models, rows), seed_matches_=seeds,
        reference_rows_=reference_rows(len(rows.embeddings), MAP_SAMPLE, first.random_state), map_2d_=None,
        _docs=first._docs, _shared_hierarchy=None, _aligned=None, _aligned_default=None)
    merged._set_layers()
    merged._duplicates = duplicates_of_merged(merged, models)  # before the exemplars are picked (None: unknown)
    with one_blas_thread():
        described = describe_again(embedder, Described([], [], [], None, image_center, alignment, caption_docs,
                                                       captioned),
                                   layers, k, 0, words, images, describing_settings(merged, find=False), seeds)
    merged._take(described)
    merged.collages_ = _collages(models, targets, merged.exemplars_)
    merged.custom_labels_ = _custom_labels(models, targets)
    merged.concept_mapping_ = [*first.concept_mapping_, *(
        {"operation": f"merge_models (model {j + 1} of {len(models)})",
         "mapping": {str(c): int(t) for c, t in enumerate(targets[j])}} for j in range(1, len(models)))]
    _log(models, matched, targets, merged)
    return merged


def _log(models: list[ConceptModel], matched: list[np.ndarray], targets: list[np.ndarray],
         merged: ConceptModel) -> None:
    k0, later = len(matched[0]), sum(len(t) for t in matched[1:])
    added = int(max(t.max(initial=-1) for t in matched)) + 1 - k0
    own = np.concatenate([np.where(m.labels_ >= 0, t[np.maximum(m.labels_, 0)], -1) if len(t) else
                          np.full(len(m.labels_), -1) for m, t in zip(models, targets)])
    logger.info("Merged %d models: %d concepts (%d of the first model; of %d later concepts %d merged into one "
                "before them, %d added); %d of %d images have another concept than in their model, by the merged "
                "concepts' centres.", len(models), merged.n_concepts_, k0, later, later - added, added,
                int((own != merged.labels_).sum()), len(own))
