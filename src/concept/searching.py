"""Search a fitted model by text or image: the query's vector and its similarity to concepts
and images, compared as words are (each modality centred on its mean) or, with a learned
image-text map, in that map's text space. A text on a sigmoid-trained model (SigLIP) is
ranked by its raw cosine and scored by the model's own match probability (`concept.matching`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from concept._errors import ConceptError, EmbeddingError, ImageLoadError
from concept.embedding.base import l2_normalize
from concept.images import ImageInput
from concept.matching import model_probability

__all__ = ["best", "query_is_text", "query_vector", "rank", "similarities"]


def query_is_text(query: str | ImageInput, kind: str) -> bool:
    """Whether to embed `query` as a text: `kind` "text" or "image" says so; "auto" reads a
    string as an image path only when it names a file (a string that cannot be a file
    name, e.g. too long, is a text)."""
    if kind not in ("auto", "text", "image"):
        raise ConceptError(f"kind must be 'auto', 'text' or 'image', not {kind!r}.")
    if kind == "text" and not isinstance(query, str):
        raise ConceptError(f"kind='text' needs a string query, not {type(query).__name__}.")
    if kind != "auto" or not isinstance(query, str):
        return kind == "text"
    try:
        return not Path(query).is_file()
    except (OSError, ValueError):  # e.g. "File name too long", an embedded NUL
        return True


def query_vector(embedder: Any, query: str | ImageInput, kind: str, dim: int) -> tuple[np.ndarray, bool]:
    """The query's unit vector (embedded by `embedder`, None: an error saying one is needed),
    and whether it is a text."""
    from concept.embedding.inputs import require_embedder

    is_text = query_is_text(query, kind)
    embedder = require_embedder(embedder, "Searching")
    if is_text:
        vec = embedder.embed_texts([query])
    else:
        vec = embedder.embed_images([query], 1)
        if len(vec) == 0:
            raise ImageLoadError(f"Could not load the query image {query!r}")
    vec = l2_normalize(vec)[0]
    if vec.shape[0] != dim:
        raise EmbeddingError(f"The query was embedded in {vec.shape[0]} dimensions but the concepts "
                             f"live in {dim}: use the model's own embedding_model.")
    return vec, is_text


def similarities(vec: np.ndarray, is_text: bool, rows: np.ndarray, image_center: np.ndarray,
                 word_center: np.ndarray | None) -> np.ndarray:
    """Similarity of a query vector to `rows` (concept or image embeddings). A text is
    compared the way words are (each modality centred on its mean), an image directly."""
    if is_text and word_center is not None:
        return l2_normalize(rows - image_center) @ l2_normalize(vec - word_center)
    return rows @ vec


def best(sims: np.ndarray, n: int, score: Any = None) -> list[tuple[int, float]]:
    """The `n` highest (row, similarity) pairs, best first (ties in row order); with `score`
    (a function of similarities) that instead of each similarity."""
    order = np.argsort(-sims, kind="stable")[: max(0, int(n))]
    if score is not None:
        return [(int(i), float(p)) for i, p in zip(order, np.asarray(score(sims[order])).reshape(-1))]
    return [(int(i), float(sims[i])) for i in order]


def rank(vec: np.ndarray, is_text: bool, top_n: int, n_images: int, concepts: np.ndarray, images: np.ndarray,
         image_center: np.ndarray, word_center: np.ndarray | None,
         aligned: tuple[np.ndarray, np.ndarray] | None = None, embedder: Any = None
         ) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
    """The `top_n` concepts and `n_images` images most similar to a query vector, best first.
    A text on a sigmoid-trained `embedder` (SigLIP: `matching.model_probability`) is ranked by
    its raw cosine to the concept (its unit mean direction) or image, nothing centred and no
    learned map, and its score is the model's probability that the text matches; otherwise a
    text is compared in the learned text space when `aligned` (concept and image vectors there)
    is given, else the way words are; an image always directly, by cosine."""
    probability = model_probability(embedder) if is_text else None
    if probability is not None:
        return (best(concepts @ vec, top_n, probability),
                best(images @ vec, n_images, probability) if n_images > 0 else [])
    if is_text and aligned is not None:
        query = l2_normalize(vec - word_center) if word_center is not None else vec
        return best(aligned[0] @ query, top_n), best(aligned[1] @ query, n_images) if n_images > 0 else []
    return (best(similarities(vec, is_text, concepts, image_center, word_center), top_n),
            best(similarities(vec, is_text, images, image_center, word_center), n_images) if n_images > 0 else [])
