"""Embedding backends: one protocol (`EmbeddingModel`), several implementations.

`load_embedding_model("auto")` picks CLIP when its weights are on this machine and the
bundled offline model otherwise, and says which one it used.
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from concept._errors import EmbeddingError
from concept.embedding.base import BaseEmbedder, EmbeddingModel, l2_normalize

if TYPE_CHECKING:
    from concept.embedding.clip import CLIPEmbedder
    from concept.embedding.offline import OfflineEmbedder

__all__ = [
    "BaseEmbedder",
    "CLIPEmbedder",
    "EmbeddingModel",
    "OfflineEmbedder",
    "l2_normalize",
    "load_embedding_model",
]

logger = logging.getLogger(__name__)

#: The backends' modules import torch (2 s on a small machine), so they load on first use:
#: `concept info` and `concept --help` never need them.
_LAZY = {"CLIPEmbedder": "concept.embedding.clip", "OfflineEmbedder": "concept.embedding.offline"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

#: The CLIP model "auto" looks for: the reference Concept's default.
DEFAULT_CLIP = "sentence-transformers/clip-ViT-B-32"


def _clip_in_local_cache(repo_id: str = DEFAULT_CLIP) -> bool:
    """True when the Hugging Face cache holds the model (a file lookup, no network)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - installed with sentence-transformers
        return False
    found = try_to_load_from_cache(repo_id, "modules.json")
    return isinstance(found, str) and Path(found).exists()


def _hub_reachable(timeout: float = 2.0) -> bool:
    """A TCP connect to the hub endpoint, bounded by `timeout` seconds; never hangs."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        with socket.create_connection((endpoint.hostname, endpoint.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def load_embedding_model(
    spec: str | EmbeddingModel | None = "auto",
    *,
    device: str | None = None,
    allow_download: bool = False,
    verbose: bool = True,
) -> EmbeddingModel:
    """Resolve what the user passed as `embedding_model` into a backend.

    - an object with `embed_images` and `embed_texts`: used as it is;
    - ``"offline"`` (or ``"offline-lite1"``, ``"offline-lite2"``, and ``-bf16`` for bfloat16
      arithmetic, e.g. ``"offline-bf16"``): the bundled model;
    - ``"auto"`` / ``None``: CLIP ViT-B/32 if it is in the local cache (or, with
      `allow_download=True`, if the hub answers within 2 s), else the offline model, with a
      warning naming the backend used;
    - any other string: a CLIP model name or a local folder (`CLIPEmbedder`).
    """
    if spec is not None and not isinstance(spec, str):
        if isinstance(spec, EmbeddingModel):
            return spec
        raise EmbeddingError(
            f"embedding_model must be 'auto', 'offline', a model name or folder, or an object "
            f"with embed_images() and embed_texts(); got {type(spec).__name__}"
        )
    from concept.embedding.clip import CLIPEmbedder
    from concept.embedding.offline import OfflineEmbedder

    spec = spec or "auto"
    if spec == "offline" or spec.startswith("offline-"):
        options = spec.split("-")[1:]
        precision = "bf16" if "bf16" in options else "f32"
        variants = [o for o in options if o != "bf16"] or ["lite0"]
        if len(variants) > 1:
            raise EmbeddingError(f"Unknown offline model {spec!r}; e.g. 'offline', 'offline-lite1', 'offline-bf16'")
        return OfflineEmbedder(variants[0], precision=precision, device=device, verbose=verbose)
    if spec == "auto":
        if _clip_in_local_cache() or (allow_download and _hub_reachable()):
            try:
                model = CLIPEmbedder(DEFAULT_CLIP, device=device, allow_download=allow_download,
                                     verbose=verbose)
                logger.info("Embedding with CLIP (%s)", DEFAULT_CLIP)
                return model
            except EmbeddingError as exc:
                logger.warning("CLIP could not be loaded (%s); falling back to the offline model", exc)
        logger.warning(
            "Embedding with the bundled offline model (EfficientNet-Lite0 + MiniLM, joined by "
            "ConSE) because no CLIP weights were found on this machine. It is much weaker than "
            "CLIP; pass embedding_model='clip-ViT-B-32' or a local CLIP folder to use CLIP."
        )
        return OfflineEmbedder(device=device, verbose=verbose)
    return CLIPEmbedder(spec, device=device, allow_download=allow_download, verbose=verbose)
