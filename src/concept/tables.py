"""A fitted model's results as pandas tables: concept sizes, concepts with their words and
names, and the concept tree. Plain data in (labels, words per concept), a DataFrame out."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = ["concept_info", "frequency_table", "hierarchy_table"]

Topics = dict[int, list[tuple[str, float]]]


def frequency_table(labels: np.ndarray) -> pd.DataFrame:
    """Concept sizes, largest first; the outliers (-1), if any, in the last row."""
    ids, counts = np.unique(labels, return_counts=True)
    df = pd.DataFrame({"Concept": ids, "Frequency": counts})
    inliers = df[df.Concept >= 0].sort_values(["Frequency", "Concept"], ascending=[False, True])
    return pd.concat([inliers, df[df.Concept < 0]], ignore_index=True)


def concept_info(labels: np.ndarray, topics: Topics, names: dict[int, str] | None = None) -> pd.DataFrame:
    """The frequency table with each concept's words, and a Name column when `names` (custom
    labels) are given."""
    df = frequency_table(labels)
    df["Words"] = [", ".join(w for w, _ in topics.get(int(c), [])) if c >= 0 else "(outliers)"
                   for c in df.Concept]
    if names:
        df.insert(2, "Name", [names.get(int(c), "") for c in df.Concept])
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
