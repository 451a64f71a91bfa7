"""A small on-disk cache of word embeddings, so a vocabulary is embedded once per model."""

from __future__ import annotations

import hashlib
import logging
import os
import time
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from concept._atomic import atomic_file

logger = logging.getLogger(__name__)

#: Words per call to the backend while embedding a vocabulary (one progress-bar step).
WORDS_PER_STEP = 1024
#: The last vocabulary embedded by each backend that has no `name` to key the disk cache by.
_REMEMBERED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def cache_dir() -> Path:
    """`$CONCEPT_CACHE`, else `$XDG_CACHE_HOME/concept`, else `~/.cache/concept`."""
    if os.environ.get("CONCEPT_CACHE"):
        return Path(os.environ["CONCEPT_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "concept"


def cached_text_embeddings(model_name: str, texts: Sequence[str],
                           embed: Callable[[list[str]], np.ndarray]) -> np.ndarray:
    """`embed(texts)`, read from / written to the cache under the model name and the texts' hash.

    Writes are atomic (temporary file + rename); an unreadable cache entry is recomputed.
    The result is memory-mapped read-only from the cache file when it could be written.
    """
    return cached_array("texts", model_name, texts, lambda: embed(list(texts)))


def cached_array(kind: str, model_name: str, texts: Sequence[str],
                 compute: Callable[[], np.ndarray]) -> np.ndarray:
    """`compute()`, an array with one row per text, cached on disk under `kind`, the model name
    and the texts' hash, and memory-mapped read-only when read back.

    Mapping the file instead of reading it into fresh memory makes a 50,000-word vocabulary
    cost milliseconds per fit instead of a few hundred (on virtual machines, first touches of
    new memory are slow).
    """
    path = cache_dir() / f"{kind}-{_digest(model_name, texts)}.npy"
    if path.exists():
        try:
            cached = np.load(path, mmap_mode="r", allow_pickle=False)
            if cached.shape[0] == len(texts):
                return cached
        except (OSError, ValueError) as exc:
            logger.warning("Ignoring a damaged cache file %s (%s)", path, exc)
    vectors = np.asarray(compute())
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(path) as f:
            np.save(f, vectors, allow_pickle=False)
    except OSError as exc:  # a read-only home must not break fitting
        logger.info("Could not write the embedding cache %s (%s)", path, exc)
    return vectors


def _digest(model_name: str, texts: Sequence[str]) -> str:
    return hashlib.sha256("\n".join([model_name, *texts]).encode("utf-8")).hexdigest()[:24]


def embed_words(embedder: Any, words: list[str], verbose: bool = True) -> np.ndarray:
    """`embedder.embed_texts(words)` in steps of WORDS_PER_STEP with a progress bar, and a log
    line of what it cost (a 50,000-word vocabulary takes minutes on a small CPU)."""
    start = time.perf_counter()
    chunks = []
    with tqdm(total=len(words), disable=not verbose, unit="word", desc="Embedding words") as bar:
        for i in range(0, len(words), WORDS_PER_STEP):
            chunks.append(np.asarray(embedder.embed_texts(words[i:i + WORDS_PER_STEP]), np.float32))
            bar.update(len(chunks[-1]))
    seconds = time.perf_counter() - start
    logger.info("Embedded %d words in %.1f s (%.0f words/s); they are not embedded again for this "
                "backend and word list.", len(words), seconds, len(words) / max(seconds, 1e-9))
    return np.concatenate(chunks) if chunks else np.zeros((0, 0), np.float32)


def vocabulary_embeddings(embedder: Any, words: list[str], verbose: bool = True) -> np.ndarray:
    """The backend's embeddings of `words`, computed once per backend and word list.

    A backend with a `name` (every bundled one) is cached on disk under it, across processes;
    an object without one (a user's own backend) is remembered in memory for as long as it
    lives, since a name is what keeps two different models' vectors apart on disk. The latter
    are scaled to unit norm (user objects may not do it themselves).
    """
    name = getattr(embedder, "name", None)
    if isinstance(name, str) and name and name != "base":
        return cached_text_embeddings(name, words, lambda w: embed_words(embedder, w, verbose))
    key = _digest(type(embedder).__qualname__, words)
    try:
        remembered = _REMEMBERED.get(embedder)
    except TypeError:  # neither hashable nor weakly referable: nothing to remember it by
        remembered = None
    if remembered is not None and remembered[0] == key:
        return remembered[1]
    vectors = embed_words(embedder, words, verbose)
    norms = np.sqrt(np.einsum("ij,ij->i", vectors, vectors))[:, None]
    vectors = vectors / np.maximum(norms, np.float32(1e-12))
    try:
        _REMEMBERED[embedder] = (key, vectors)
    except TypeError:
        pass
    return vectors
