"""A fitted model's results as pandas tables: concept sizes, concepts with their words and
names, the concept tree, and one row per image. Plain data in (labels, words per concept), a DataFrame out."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = ["LABEL_WORDS", "concept_info", "concept_label", "concept_names", "concept_order", "duplicate_columns",
           "frequency_table", "hierarchy_table", "image_table"]

Topics = dict[int, list[tuple[str, float]]]


def frequency_table(labels: np.ndarray, left_out: Sequence[int] | None = None) -> pd.DataFrame:
    """Concept sizes, largest first; the outliers (-1), if any, in the last row. `left_out`: rows not
    counted (e.g. duplicates that could be dropped); every concept of `labels` is still listed."""
    ids, inverse = np.unique(np.asarray(labels), return_inverse=True)
    counted = None
    if left_out is not None:
        counted = np.ones(len(inverse), bool)
        counted[np.asarray(left_out, np.int64)] = False
    counts = np.bincount(inverse.ravel(), counted, len(ids))
    df = pd.DataFrame({"Concept": ids, "Frequency": counts.astype(np.int64)})
    inliers = df[df.Concept >= 0].sort_values(["Frequency", "Concept"], ascending=[False, True])
    return pd.concat([inliers, df[df.Concept < 0]], ignore_index=True)


def concept_info(labels: np.ndarray, topics: Topics, names: dict[int, str] | None = None,
                 exemplars: dict[int, list[int]] | None = None,
                 image_names: Sequence[str] | None = None) -> pd.DataFrame:
    """The frequency table with each concept's words, a Name column when `names` (custom
    labels) are given, and an Exemplars column (the names of its exemplar images, `exemplars`
    being rows) when `image_names` (one per fitted image) are given."""
    df = frequency_table(labels)
    df["Words"] = [", ".join(w for w, _ in topics.get(int(c), [])) if c >= 0 else "(outliers)"
                   for c in df.Concept]
    if names:
        df.insert(2, "Name", [names.get(int(c), "") for c in df.Concept])
    if image_names is not None:
        exemplars = exemplars or {}
        df["Exemplars"] = [[image_names[int(r)] for r in exemplars.get(int(c), [])] for c in df.Concept]
    return df


def hierarchy_table(parents: Sequence[np.ndarray], layers: Sequence[np.ndarray],
                    layer_topics: Sequence[Topics]) -> pd.DataFrame:
    """The concept tree: one row per concept of each layer but the coarsest, with its parent in
    the layer above (Layer, Concept, Parent layer, Parent, Size, Words)."""
    rows = []
    for i, parent in enumerate(parents):
        sizes = np.bincount(layers[i][layers[i] >= 0], minlength=len(parent))
        for c, p in enumerate(parent):
            rows.append({"Layer": i, "Concept": c, "Parent layer": i + 1, "Parent": int(p), "Size": int(sizes[c]),
                         "Words": ", ".join(w for w, _ in layer_topics[i].get(c, [])[:5])})
    return pd.DataFrame(rows, columns=["Layer", "Concept", "Parent layer", "Parent", "Size", "Words"])


#: Top words in a concept's name when it has no custom label (tables, figures, the explorer).
LABEL_WORDS = 3


def concept_label(words: Sequence[str], custom: str | None = None) -> str:
    """A concept's name: its custom label, else its first LABEL_WORDS words joined."""
    return custom if custom else ", ".join(words[:LABEL_WORDS])


def concept_names(topics: Topics, names: dict[int, str] | None = None) -> dict[int, str]:
    """Each concept's name (`concept_label`) from its (word, score) list and custom label."""
    names = names or {}
    return {c: concept_label([w for w, _ in ws], names.get(c)) for c, ws in topics.items()}


def concept_order(labels: np.ndarray) -> list[int]:
    """The concepts that have images in `labels`, by id, the outliers (-1) last if any."""
    ids = np.unique(np.asarray(labels)).tolist()
    return [c for c in ids if c >= 0] + [c for c in ids if c < 0]


def image_table(sources: Sequence[str] | None, image_indices: np.ndarray, layers: Sequence[np.ndarray],
                default: int, probabilities: np.ndarray, exemplars: dict[int, list[int]], topics: Topics,
                names: dict[int, str] | None = None, caption_docs: Sequence[Sequence[str] | None] | None = None,
                captioned: np.ndarray | None = None, image_names: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per fitted image (BERTopic's `get_document_info` for images): Image (its file, or
    None for arrays), Image name (when `image_names` were given to the fit), Input (its position in what was
    fitted), Concept (of the default layer),
    Name, Words, Probability, Representative (one of its concept's exemplars), the concept in
    every layer (Concept L0 the finest), and Caption terms when the fit had captions ("" for an
    image without a caption of its own)."""
    labels = np.asarray(layers[default])
    n = len(labels)
    named = concept_names(topics, names)
    words = {c: ", ".join(w for w, _ in ws) for c, ws in topics.items()}
    representative = np.zeros(n, bool)
    for rows in exemplars.values():
        representative[np.asarray(rows, np.int64)] = True
    df = pd.DataFrame({
        "Image": list(sources) if sources is not None else [None] * n,
        **({} if image_names is None else {"Image name": list(image_names)}),
        "Input": np.asarray(image_indices, np.int64),
        "Concept": labels,
        "Name": [named.get(int(c), "") if c >= 0 else "(outlier)" for c in labels],
        "Words": [words.get(int(c), "") if c >= 0 else "" for c in labels],
        "Probability": np.asarray(probabilities, np.float64),
        "Representative": representative,
    })
    for i, layer in enumerate(layers):
        df[f"Concept L{i}"] = np.asarray(layer)
    if caption_docs is not None:
        own = np.zeros(n, bool) if captioned is None else np.asarray(captioned, bool)
        df["Caption terms"] = [" ".join(t) if t and i < len(own) and own[i] else ""
                               for i, t in enumerate(list(caption_docs) + [None] * (n - len(caption_docs)))]
    return df


def duplicate_columns(df: pd.DataFrame, groups: np.ndarray, droppable: Sequence[int], uniqueness: np.ndarray,
                      typicality: np.ndarray) -> pd.DataFrame:
    """`image_table`'s rows with each image's Duplicate group (`groups`: exact and near joined, -1 for none), Kept
    (False only for the `droppable` rows: True for each group's kept image and for an image in no group),
    Uniqueness and Typicality (one value per row each), appended in that order."""
    kept = np.ones(len(df), bool)
    kept[np.asarray(droppable, np.int64)] = False
    df["Duplicate group"] = np.asarray(groups, np.int64)
    df["Kept"] = kept
    df["Uniqueness"] = np.asarray(uniqueness, np.float64)
    df["Typicality"] = np.asarray(typicality, np.float64)
    return df
