"""concept: concept modeling, i.e. topic modeling for images and text."""

from __future__ import annotations

from concept._errors import (
    ConceptError,
    EmbeddingError,
    ImageLoadError,
    ModelFileError,
    NotFittedError,
)

__version__ = "0.3.0.dev0"

__all__ = [
    "ConceptError",
    "EmbeddingError",
    "ImageLoadError",
    "ModelFileError",
    "NotFittedError",
    "__version__",
]
