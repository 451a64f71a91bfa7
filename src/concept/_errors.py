"""The exceptions `concept` raises: one family, each message says what to do."""

from __future__ import annotations


class ConceptError(Exception):
    """Base class of every error raised on purpose by `concept`."""


class ImageLoadError(ConceptError):
    """An input could not be read as an image (missing, corrupt, too large, ...)."""


class EmbeddingError(ConceptError):
    """An embedding backend could not be loaded or used."""


class NotFittedError(ConceptError, AttributeError):
    """A method that needs a fitted model was called before `fit`."""


class ModelFileError(ConceptError):
    """A saved model folder is missing, damaged or of an unknown format version."""
