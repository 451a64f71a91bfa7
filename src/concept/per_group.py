"""Concepts per group (BERTopic's `topics_per_class` for images): how a fitted model's concepts
spread over any per-image label (folder, camera, source, photographer), and which concepts a
group has more or fewer of than the whole collection.

The score is a smoothed log2 lift: log2 of the concept's share in the group over its share in
the whole collection, the group's share being pulled towards the overall one by `prior` images
drawn from the whole collection:

    share_smoothed = (n_gc + prior * p_c) / (n_g + prior),   p_c = n_c / N,
    Score          = log2(share_smoothed / p_c)

0 means "as common as everywhere", +1 twice as common, -1 half as common. Why not the raw lift:
a group of one image would score log2(1 / p_c) (often 5 or more) for its one concept and
minus infinity for every other, and sorting by score would list the tiniest groups first. The
prior bounds what a small group can show (one image, prior 10: at most log2((1 + 10 p_c) / (11 p_c)),
3.3 for a concept of 1 % of the images, and never below log2(10/11)), while a group of hundreds of
images keeps nearly its own shares (100 images, 20 of them in that 1 % concept: 4.2). A
standardised residual ((n_gc - E) / sqrt(E)) was the other candidate: it measures how sure the
difference is, not how large, and with E well below 1 for rare concepts in small groups its
normal approximation fails (one image of a 1 % concept scores about 10).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from concept._errors import ConceptError
from concept._validation import check_layer, check_number, check_per_image
from concept.tables import concept_names, concept_order

__all__ = ["DEFAULT_PRIOR", "NO_GROUP", "concepts_per_group", "group_labels", "per_group_table"]

#: Images from the whole collection a group's shares are smoothed with (see the module's docstring).
DEFAULT_PRIOR = 10.0
#: The group of images whose label is missing (None, NaN, "").
NO_GROUP = "(none)"


def group_labels(model, groups: Any) -> list:
    """One group per fitted image (rows of `labels_`): `groups` given per fitted image or per input image
    (see `_validation.check_per_image`), or "folder": each image file's folder name. Missing labels (None,
    NaN, "") become NO_GROUP."""
    if isinstance(groups, str):
        if groups != "folder":
            raise ConceptError(f"groups must be 'folder' or a sequence with one label per image, got {groups!r}.")
        if model.image_sources_ is None:
            raise ConceptError("groups='folder' needs a model fitted on image files; pass one label per image.")
        return [Path(os.fspath(s)).parent.name or NO_GROUP for s in model.image_sources_]
    rows = check_per_image("groups", groups, model.image_indices_, len(model.labels_) + len(model.failures_))
    return [NO_GROUP if _missing(g) else g for g in rows]


def _missing(value: Any) -> bool:
    if isinstance(value, str):
        return not value.strip()
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def per_group_table(labels: np.ndarray, groups: Sequence[Any], topics: dict[int, list[tuple[str, float]]],
                    names: dict[int, str] | None = None, prior: float = DEFAULT_PRIOR) -> pd.DataFrame:
    """One row per (group, concept), zeros included; groups largest first (ties by name), concepts by id with
    the outliers (-1) last: Group, Concept, Frequency (the group's images in the concept), Share in group
    (Frequency / the group's images), Expected (Frequency if the concept were spread evenly: group size x
    its share overall), Score (smoothed log2 lift, see the module's docstring), Name, Words.
    `attrs["prior"]` holds `prior`."""
    labels = np.asarray(labels)
    if len(groups) != len(labels):
        raise ConceptError(f"groups has {len(groups)} values for {len(labels)} images.")
    prior = check_number("prior", prior, 0.0, float("inf"))
    if not len(labels):
        raise ConceptError("The model has no images to group.")
    keys = pd.Series(list(groups), dtype=object)
    codes, uniques = pd.factorize(keys, sort=False)
    uniques = list(uniques)
    concepts = concept_order(labels)
    index = {c: j for j, c in enumerate(concepts)}
    col = np.array([index[c] for c in labels.tolist()], np.int64)
    counts = np.zeros((len(uniques), len(concepts)), np.int64)
    np.add.at(counts, (codes, col), 1)
    sizes = counts.sum(axis=1)
    order = sorted(range(len(uniques)), key=lambda g: (-sizes[g], str(uniques[g])))
    counts, sizes, uniques = counts[order], sizes[order], [uniques[g] for g in order]
    overall = counts.sum(axis=0) / len(labels)  # every concept here has an image, so > 0
    share = counts / sizes[:, None]
    smoothed = (counts + prior * overall) / (sizes[:, None] + prior)
    with np.errstate(divide="ignore"):  # prior 0: a concept absent from a group scores -inf
        score = np.log2(smoothed / overall)
    named = concept_names(topics, names)
    words = {c: ", ".join(w for w, _ in ws) for c, ws in topics.items()}
    k = len(concepts)
    df = pd.DataFrame({
        "Group": pd.Series(np.repeat(np.asarray(uniques, dtype=object), k), dtype=object),
        "Concept": np.tile(np.asarray(concepts, np.int64), len(uniques)),
        "Frequency": counts.reshape(-1),
        "Share in group": share.reshape(-1),
        "Expected": (sizes[:, None] * overall).reshape(-1),
        "Score": score.reshape(-1),
    })
    df["Name"] = [named.get(c, "") if c >= 0 else "(outliers)" for c in df.Concept.tolist()]
    df["Words"] = [words.get(c, "") if c >= 0 else "(outliers)" for c in df.Concept.tolist()]
    df.attrs["prior"] = prior
    return df


def concepts_per_group(model, groups: Any, layer: int | None = None, prior: float = DEFAULT_PRIOR) -> pd.DataFrame:
    """`per_group_table` of a fitted model's concepts of `layer` (default: `labels_`'s) over `groups`
    (`ConceptModel.concepts_per_group`; see `group_labels`)."""
    layer = check_layer(layer, len(model.layers_), model.layer_)
    return per_group_table(model.layers_[layer], group_labels(model, groups), model.layer_topics_[layer],
                           model.custom_labels_ if layer == model.layer_ else None, prior)
