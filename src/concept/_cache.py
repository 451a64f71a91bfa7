"""A small on-disk cache of word embeddings, so a vocabulary is embedded once per model."""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)


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
    digest = hashlib.sha256("\n".join([model_name, *texts]).encode("utf-8")).hexdigest()[:24]
    path = cache_dir() / f"{kind}-{digest}.npy"
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
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as f:
            np.save(f, vectors, allow_pickle=False)
        os.replace(f.name, path)
    except OSError as exc:  # a read-only home must not break fitting
        logger.info("Could not write the embedding cache %s (%s)", path, exc)
    return vectors
