"""concept: concept modeling, i.e. topic modeling for images and text."""

from __future__ import annotations

from typing import TYPE_CHECKING

from concept._errors import (
    ConceptError,
    EmbeddingError,
    ImageLoadError,
    ModelFileError,
    NotFittedError,
)
from concept._version import __version__

if TYPE_CHECKING:
    from concept.duplicates import find_duplicates
    from concept.editing import evaluate
    from concept.merging import merge_models
    from concept.model import ConceptModel

__all__ = [
    "ConceptError",
    "ConceptModel",
    "EmbeddingError",
    "ImageLoadError",
    "ModelFileError",
    "NotFittedError",
    "__version__",
    "evaluate",
    "find_duplicates",
    "merge_models",
]


def __getattr__(name: str):
    # ConceptModel is imported on first use, so that `import concept.embedding` (e.g. on a GPU
    # machine that only embeds) does not need the clustering stack (pandas, scipy, umap).
    if name == "ConceptModel":
        from concept.model import ConceptModel

        return ConceptModel
    if name == "evaluate":
        from concept.editing import evaluate

        return evaluate
    if name == "find_duplicates":
        from concept.duplicates import find_duplicates

        return find_duplicates
    if name == "merge_models":
        from concept.merging import merge_models

        return merge_models
    raise AttributeError(f"module 'concept' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | {"ConceptModel", "evaluate", "find_duplicates", "merge_models"})
