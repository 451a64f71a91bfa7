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

from concept.model import ConceptModel  # noqa: E402  (needs __version__)

__all__ = [
    "ConceptModel",
    "ConceptError",
    "EmbeddingError",
    "ImageLoadError",
    "ModelFileError",
    "NotFittedError",
    "__version__",
]
