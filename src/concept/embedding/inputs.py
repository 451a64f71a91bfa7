"""The embedding stage of a fit: the user's images or precomputed vectors -> checked unit rows.

One function for `fit`, `transform` and `partial_fit`: images are embedded by the backend (and,
with a `store`, only files not embedded before), precomputed embeddings are checked; either way
the result says which inputs the rows came from and which failed to load.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from concept._errors import ConceptError, EmbeddingError, ImageLoadError
from concept.embedding.base import l2_normalize
from concept.images import ImageInput, LoadFailure, LoadReport

__all__ = ["Embedded", "Rows", "append_names", "append_rows", "as_embeddings", "embed_inputs", "embed_more", "image_sources", "require_embedder", "unseen_images"]

logger = logging.getLogger("concept.model")


@dataclass
class Embedded:
    """Shared-space rows `x`, clustering features (or None), the input positions the rows came
    from, and the inputs that failed to load."""

    x: np.ndarray
    features: np.ndarray | None
    kept: np.ndarray
    failures: list[LoadFailure] = field(default_factory=list)


def as_embeddings(x: Any, dim: int | None = None) -> np.ndarray:
    """Checked float32 rows at unit norm; float32 rows already at unit norm are not copied
    (a million 1280-d features are 5 GB)."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2 or len(x) == 0:
        raise ConceptError(f"image_embeddings must be a non-empty 2-D array (n_images, dim), got shape {x.shape}")
    # A NaN or infinity anywhere in a row makes its squared norm non-finite; no n x d mask.
    squared = np.einsum("ij,ij->i", x, x, dtype=np.float64)
    if not np.isfinite(squared).all():
        bad = np.flatnonzero(~np.isfinite(squared))
        raise ConceptError(f"image_embeddings has NaN or infinite values in rows {bad[:10].tolist()}")
    if dim is not None and x.shape[1] != dim:
        raise ConceptError(f"These embeddings have {x.shape[1]} dimensions but the model was fitted on {dim}.")
    if np.abs(squared - 1.0).max() < 1e-4:
        return x
    return l2_normalize(x)


def require_embedder(embedder: Any, what: str) -> Any:
    """`embedder`, or a clear error saying that `what` needs one."""
    if embedder is None:
        raise EmbeddingError(
            f"{what} needs an embedding model, but embedding_model is None: create the model "
            "with the embedding_model that made your embeddings (or load(path, embedding_model=...))."
        )
    return embedder


def embed_inputs(embedder: Any, images: Sequence[ImageInput] | None, image_embeddings: Any, *,
                 dim: int | None = None, features: bool = False, store: str | os.PathLike | None = None,
                 batch_size: int = 32, verbose: bool = True) -> Embedded:
    """Embed `images` with `embedder` (features too when asked and the backend has them), or
    check `image_embeddings`; with a `store` and file paths, only new files are embedded."""
    if isinstance(images, (str, os.PathLike, Image.Image)):
        raise ConceptError("images must be a list; to use every image in a folder, pass "
                           "concept.images.list_image_files(folder).")
    if image_embeddings is not None:
        x = as_embeddings(image_embeddings, dim)
        if images is not None and len(images) != len(x):
            raise ConceptError(f"Got {len(images)} images but {len(x)} image_embeddings; they must match one to one.")
        return Embedded(x, None, np.arange(len(x)))
    if images is None:
        raise ConceptError("Pass images (paths, PIL images or arrays) or image_embeddings.")
    report = LoadReport()
    embedder = require_embedder(embedder, "Embedding images")
    feats = None
    name = getattr(embedder, "name", None)
    use_store = store is not None and all(isinstance(i, (str, os.PathLike)) for i in images)
    if use_store and (not isinstance(name, str) or name == "base"):
        logger.warning("Not using the embedding store: %s has no `name` to key its embeddings by.",
                       type(embedder).__name__)
        use_store = False
    if use_store:
        from concept.store import EmbeddingStore

        x, feats = EmbeddingStore(store, name).embed(embedder, images, batch_size, report=report, verbose=verbose)
        feats = feats if features else None
    elif features and hasattr(embedder, "embed_images_and_features"):
        x, feats = embedder.embed_images_and_features(images, batch_size, report=report)
    else:
        x = embedder.embed_images(images, batch_size, report=report)
    if len(x) == 0:
        raise ImageLoadError(f"None of the {len(images)} images could be loaded: {report.summary()}")
    return Embedded(as_embeddings(x, dim), feats, np.asarray(report.loaded, dtype=np.int64), report.failures)


def embed_more(embedder: Any, images: Sequence[ImageInput] | None, image_embeddings: Any, image_features: Any, *,
               dim: int, feature_dim: int | None, use_features: bool, required: bool = False, store: Any = None,
               batch_size: int = 32, verbose: bool = True) -> Embedded:
    """New inputs embedded in a fitted model's spaces (`dim`-d embeddings; with `use_features` its `feature_dim`-d
    clustering features too) for transform and partial_fit; `required`: features must come too."""
    if required and image_embeddings is not None and image_features is None:
        raise ConceptError("This model clusters on image features: pass image_features with image_embeddings "
                           "(e.g. from embed_images_and_features).")
    e = embed_inputs(embedder, images, image_embeddings, dim=dim, features=use_features, store=store,
                     batch_size=batch_size, verbose=verbose)
    if image_features is not None and use_features:
        e.features = as_embeddings(image_features, feature_dim)
    if required and e.features is None:
        raise EmbeddingError("This model clusters on image features, but the embedding model gave none.")
    return e


def image_sources(images: Sequence[ImageInput] | None, kept: np.ndarray) -> list[str] | None:
    """File paths of the fitted images when they were given as paths (kept for display)."""
    if images is None or not all(isinstance(images[i], (str, os.PathLike)) for i in kept):
        return None
    return [os.fspath(images[i]) for i in kept]


def append_names(names: list[str] | None, new_sources: list[str] | None, new_positions: np.ndarray) -> list[str] | None:
    """A named model's image names after `partial_fit` added rows: each new row is called by its file's name, else
    by its input position (the reference's default names were positions); None for a model fitted without names."""
    if names is None:
        return None
    return names + [os.path.basename(s) for s in new_sources] if new_sources is not None else names + [
        str(int(p)) for p in new_positions]


def unseen_images(images: Sequence[ImageInput] | None, known: list[str] | None) -> Sequence[ImageInput] | None:
    """`images` without the paths in `known` (a fitted model's sources), logging how many were
    skipped; `images` itself when there is nothing to compare."""
    if images is None or isinstance(images, (str, os.PathLike)) or known is None:
        return images
    seen = set(known)
    fresh = [p for p in images if not (isinstance(p, (str, os.PathLike)) and os.fspath(p) in seen)]
    if len(fresh) < len(images):
        logger.info("%d of the %d images are already in the model; skipped.", len(images) - len(fresh), len(images))
    return fresh


@dataclass
class Rows:
    """A fitted model's per-image data: shared-space rows, features (or None), input positions,
    the inputs that failed, and the file paths (None unless every image was a path)."""

    embeddings: np.ndarray
    features: np.ndarray | None
    image_indices: np.ndarray
    failures: list[LoadFailure]
    sources: list[str] | None


def append_rows(rows: Rows, new: Embedded, sources: list[str] | None) -> Rows:
    """`rows` with the `new` inputs after them: their input positions (and failures') continue
    after the earliest inputs, features are kept when the model has them."""
    offset = max([int(rows.image_indices.max(initial=-1)) + 1, *(f.index + 1 for f in rows.failures)])
    return Rows(np.vstack([rows.embeddings, new.x]),
                None if rows.features is None else np.vstack([rows.features, new.features]),
                np.concatenate([rows.image_indices, offset + new.kept]),
                [*rows.failures, *(dataclasses.replace(f, index=offset + f.index) for f in new.failures)],
                rows.sources + sources if rows.sources is not None and sources is not None else None)
