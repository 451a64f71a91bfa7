"""A fitted model's duplicates and how typical or unusual each of its images is: the bodies of
`ConceptModel.duplicates_`, `uniqueness_`, `typicality_` and of the describing settings that make
exemplars show one image of each duplicate group (`concept.duplicates` finds the groups).

The functions take the fitted model (they read its vectors, labels and files, and the setter
writes its exemplars and collages); they never import it, as `concept.over_time` does not.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from concept.collage import collages_after
from concept.describing import Settings
from concept.duplicates import (
    Duplicates,
    check_duplicates,
    duplicate_groups,
    find_duplicates,
    typicality,
    uniqueness,
)
from concept.representation import layer_exemplars
from concept.tables import duplicate_columns

__all__ = ["describing_settings", "duplicates_at_fit", "duplicates_of_merged", "image_info_duplicates",
           "known_duplicates", "model_duplicates", "model_typicality", "model_uniqueness", "set_model_duplicates"]


def known_duplicates(model: Any, find: bool = False) -> Duplicates | None:
    """The duplicates of the model's rows if known (rows added by partial_fit make them unknown), else, with `find`,
    found now (without picking exemplars again: the caller describes the concepts next)."""
    model._check_fitted()
    n = len(model.labels_)
    if find and getattr(model.__dict__.get("_duplicates"), "n_images", -1) != n:
        model._duplicates = find_duplicates(model=model, verbose=model.verbose)
    found = model.__dict__.get("_duplicates")
    return found if found is not None and found.n_images == n else None


def duplicates_at_fit(model: Any, images: list | None, kept: np.ndarray, space: np.ndarray) -> Duplicates | None:
    """With `find_duplicates=True`, the duplicates of the rows being fitted (`images[kept]`, compared in `space`),
    found before their exemplars are picked; else None. Forgets the uniqueness of an earlier fit."""
    model._uniqueness = None
    if not model.find_duplicates:
        return None
    return find_duplicates(None if images is None else [images[i] for i in kept], embeddings=space,
                           verbose=model.verbose)


def describing_settings(model: Any, find: bool | None = None) -> Settings:
    """The describing stage's settings of `model`, with each row's duplicate group when the duplicates are known
    (found first with `find`, by default the model's `find_duplicates`): its exemplars then show one image of each
    group."""
    found = known_duplicates(model, find=bool(model.find_duplicates if find is None else find))
    return replace(Settings.of(model.get_params()), groups=None if found is None else duplicate_groups(found))


def model_duplicates(model: Any) -> Duplicates:
    """The fitted images' exact and near duplicates (`concept.duplicates.Duplicates`; rows are the model's rows):
    found by `fit` with `find_duplicates=True`, else on first use, from the model's clustering vectors (near) and,
    when it knows its files (`image_sources_`) or was given the images at fit, their pixels (exact); saved with the
    model. Whenever they are known, every layer's exemplars, and so the collages, show one image of each group:
    on first use they are picked again. Set it (e.g. `model.duplicates_ = find_duplicates(model=model, near=0.95)`)
    to use other groups, or None to forget them; rows added by `partial_fit` find them again."""
    if known_duplicates(model) is None:
        set_model_duplicates(model, find_duplicates(model=model, verbose=model.verbose))
    return model._duplicates


def set_model_duplicates(model: Any, found: Duplicates | None) -> None:
    """Make `found` the model's duplicates and pick every layer's exemplars again (one image per group); the
    collages of the concepts whose exemplars changed are made again from the model's files."""
    model._check_fitted()
    model._duplicates = check_duplicates(found, len(model.labels_))
    s, old = describing_settings(model), model.exemplars_
    model.layer_exemplars_ = layer_exemplars(model.embeddings_, model.layers_, n_exemplars=s.n_exemplars,
                                             diversity=s.diversity, groups=s.groups)
    model.exemplars_ = model.layer_exemplars_[model.layer_]
    model.collages_ = collages_after(model.exemplars_, old, model.labels_, model.collages_, model.image_sources_)


def model_uniqueness(model: Any) -> np.ndarray:
    """How unlike each fitted image is to its 5 nearest other images, 0 (the least unique) .. 1 (the most), in the
    space the model clustered in (`concept.duplicates.uniqueness`): the same values as `duplicates_.uniqueness`,
    without the pixel work. An image with copies scores low; an outlier of every concept can too."""
    model._check_fitted()
    cached = model.__dict__.get("_uniqueness")
    if cached is None or len(cached) != len(model.labels_):
        model._uniqueness = cached = uniqueness(model._space())
    return cached


def model_typicality(model: Any) -> np.ndarray:
    """How central each fitted image is to its concept of `labels_`, in (0, 1]: the share of the concept's members
    no closer to its centre (cosine, in the clustering space) than it is, so 1 for the most central, about 0.5 for
    the median member; 0 for outliers (`concept.duplicates.typicality`). `probabilities_` reads the same closeness
    against the finest concept's outlier fence and is clipped at 1 from the median member up; typicality is never
    clipped, so it orders the typical half too."""
    model._check_fitted()
    return typicality(model._space(), model.labels_, model.n_concepts_)


def image_info_duplicates(model: Any, df: Any) -> Any:
    """`get_image_info`'s table `df` with each image's Duplicate group (`duplicate_groups`, -1 for none), Kept (its
    group's kept image, or in no group: not in `duplicates_.droppable()`), Uniqueness and Typicality
    (`uniqueness_`, `typicality_`) when the model's duplicates are known (found at fit, by using `duplicates_`, or
    loaded); else `df` unchanged (nothing is found for it)."""
    found = known_duplicates(model)
    if found is None:
        return df
    return duplicate_columns(df, duplicate_groups(found), found.droppable(), model_uniqueness(model),
                             model_typicality(model))


def duplicates_of_merged(merged: Any, models: list) -> Duplicates | None:
    """The duplicates of a merged model's rows (`concept.merging.merge_models`: `merged` has its stacked vectors,
    files and layers, not yet its exemplars), found again over all of them (`find_duplicates(model=merged)`, the
    near threshold calibrated on the merged collection: copies across the models are grouped too) when every one
    of `models` knows its duplicates; else None, and the merged model finds them on first use of `duplicates_`."""
    if not all(known_duplicates(m) is not None for m in models):
        return None
    return find_duplicates(model=merged, verbose=merged.verbose)
