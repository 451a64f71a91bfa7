"""The model folder's schema: the names of the settings, arrays, texts and images a fitted
`ConceptModel` is saved as (`concept.persistence` stores them; its FORMAT_VERSION versions the
folder). Save, load, the state check and the explorer all take the names from here."""

from __future__ import annotations

import re

__all__ = ["COLLAGE", "DUPLICATES", "MAP_2D", "SETTINGS", "collage_id", "collage_name", "duplicates_key", "layer_key", "parents_key"]

#: Hyper-parameters saved with a model and restored by `load`.
SETTINGS = ("min_concept_size", "diversity", "ctfidf", "cluster_space", "sample_size", "outlier_threshold",
            "n_exemplars", "n_words", "vocabulary_size", "batch_size", "random_state", "verbose",
            "n_concepts", "zeroshot_concepts", "zeroshot_threshold", "seed_concepts", "find_duplicates")

#: The 2-D map's array (computed on first use; the explorer saves it into an existing folder).
MAP_2D = "map_2d"
#: The duplicates' setting (their near threshold) once found; their groups and uniqueness are the arrays
#: `duplicates_key("exact" | "near", "rows" | "counts")` and `duplicates_key("uniqueness")`.
DUPLICATES = "duplicates"
#: A concept's collage image: concept_<id>.
COLLAGE = re.compile(r"concept_(\d+)")


def duplicates_key(*parts: str) -> str:
    """The array of the duplicates' `parts`: ("exact" | "near", "rows" | "counts") for the groups (their rows in
    one flat array, kept image first, and each group's size), ("uniqueness",) for each row's."""
    return "_".join([DUPLICATES, *parts])


def layer_key(layer: int, part: str) -> str:
    """The array of one layer's `part`: "embeddings", "exemplars" or "exemplar_counts"."""
    return f"layer_{layer}_{part}"


def parents_key(layer: int) -> str:
    """The array mapping layer `layer`'s concepts to their parents in layer `layer` + 1."""
    return f"parents_{layer}"


def collage_name(concept: int) -> str:
    return f"concept_{concept}"


def collage_id(name: str) -> int:
    """The concept a collage image belongs to (its name's trailing number)."""
    return int(name.rsplit("_", 1)[1])
