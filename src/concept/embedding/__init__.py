"""Embedding backends: one protocol (`EmbeddingModel`), several implementations.

`load_embedding_model("auto")` picks CLIP when its weights are on this machine and the
bundled offline model otherwise, and says which one it used. `stored_embedding_model` decides
what a saved model's own choice may load: a bundled name, never a path it names.
"""

from __future__ import annotations

import logging
import os
import re
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from concept._errors import EmbeddingError
from concept.embedding.base import BaseEmbedder, EmbeddingModel, l2_normalize

if TYPE_CHECKING:
    from concept.embedding.clip import CLIPEmbedder
    from concept.embedding.hf import HFEmbedder
    from concept.embedding.offline import OfflineEmbedder
    from concept.embedding.openclip import OpenCLIPEmbedder

__all__ = [
    "BaseEmbedder",
    "CLIPEmbedder",
    "EmbeddingModel",
    "HFEmbedder",
    "OfflineEmbedder",
    "OpenCLIPEmbedder",
    "l2_normalize",
    "load_embedding_model",
    "stored_embedding_model",
]

logger = logging.getLogger(__name__)

#: The backends' modules import torch (2 s on a small machine), so they load on first use:
#: `concept info` and `concept --help` never need them.
_LAZY = {"CLIPEmbedder": "concept.embedding.clip", "OfflineEmbedder": "concept.embedding.offline",
         "OpenCLIPEmbedder": "concept.embedding.openclip", "HFEmbedder": "concept.embedding.hf"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

#: The CLIP model "auto" looks for: the reference Concept's default.
DEFAULT_CLIP = "sentence-transformers/clip-ViT-B-32"
#: Names a saved model may load by itself: the bundled models and the CLIP models of
#: sentence-transformers (read from the user's own Hugging Face cache, never from a path).
_OFFLINE_NAME = re.compile(r"offline(-lite[012])?(-bf16|-int8)?")
_KNOWN_CLIP = frozenset(f"{org}clip-ViT-{arch}" for org in ("", "sentence-transformers/")
                        for arch in ("B-32", "B-16", "L-14", "B-32-multilingual-v1"))


class UnconfirmedEmbeddingModel:
    """Stands in for the embedding model a loaded model folder names by path: that path is
    loaded only when the user passes it (the folder, not the user, chose it: a downloaded
    model could name its own files, or any file, to be loaded as weights). Searching or
    embedding raises an EmbeddingError saying how; saving keeps the path."""

    def __init__(self, spec: str, model_folder: str | os.PathLike, name: str | None = None) -> None:
        self.spec = spec
        self.model_folder = os.fspath(model_folder)
        self.name = name  # the stored backend name, kept when the model is saved again

    def _refuse(self, *args: Any, **kwargs: Any):
        raise EmbeddingError(
            f"The model in {self.model_folder} names the embedding model {self.spec!r}, a path, which "
            "concept does not load on a model folder's say-so (it would run those files as model "
            f"weights). If you trust it, pass it yourself: ConceptModel.load({self.model_folder!r}, "
            f"embedding_model={self.spec!r}) (on the command line: --embedding-model {self.spec}).")

    embed_images = embed_texts = embed_images_and_features = _refuse

    def __repr__(self) -> str:
        return f"UnconfirmedEmbeddingModel({self.spec!r})"


def stored_embedding_model(spec: Any, model_folder: str | os.PathLike, name: str | None = None) -> Any:
    """What a saved model's `settings.embedding_model` may load without the user passing it:
    a bundled name ("offline", "offline-lite1", "auto"), a known CLIP name, or an open_clip or
    transformers hub name ("open_clip:ViT-B-32/laion2b_s34b_b79k", "hf:ORG/NAME": read from the
    user's own cache, never downloaded) as it is; any other string (a path) an
    `UnconfirmedEmbeddingModel` that refuses with what to do."""
    if spec is None or not isinstance(spec, str):
        return None
    if spec == "auto" or _OFFLINE_NAME.fullmatch(spec):
        return spec
    if spec in _KNOWN_CLIP and not Path(spec).expanduser().exists():  # never a same-named folder
        return spec
    if _hub_name(spec):  # read from the user's own cache, never downloaded on load
        return spec
    return UnconfirmedEmbeddingModel(spec, model_folder, name)


#: open_clip's ARCH/TAG (no tag has a dot: a file name does) or hf-hub:ORG/NAME; hf:ORG/NAME.
_OPEN_CLIP_NAME = re.compile(r"open_clip:(?:[\w-]+/[\w-]+|hf-hub:[\w.-]+/[\w.-]+)")
_HF_NAME = re.compile(r"hf:[\w.-]+/[\w.-]+")


def _hub_name(spec: str) -> bool:
    """True for an open_clip or transformers spec that names a hub model, not a path (a saved
    model may reload it from the user's own cache; a path it names is refused)."""
    if not (_OPEN_CLIP_NAME.fullmatch(spec) or _HF_NAME.fullmatch(spec)):
        return False
    rest = spec.split(":", 1)[1].removeprefix("hf-hub:")
    return not rest.startswith(".") and ".." not in rest and not Path(rest).expanduser().exists()


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
      arithmetic or ``-int8`` for int8, e.g. ``"offline-int8"``): the bundled model;
    - ``"auto"`` / ``None``: CLIP ViT-B/32 if it is in the local cache (or, with
      `allow_download=True`, if the hub answers within 2 s), else the offline model, with a
      warning naming the backend used;
    - ``"open_clip:ARCH/TAG"`` (e.g. ``"open_clip:ViT-B-32/laion2b_s34b_b79k"``,
      ``"open_clip:ViT-B-16-SigLIP2/webli"``), ``"open_clip:ARCH/CHECKPOINT"``,
      ``"open_clip:FOLDER"`` or ``"open_clip:hf-hub:ORG/NAME"``: open_clip (`OpenCLIPEmbedder`);
    - ``"hf:ORG/NAME"`` or ``"hf:FOLDER"``: a transformers CLIP or SigLIP (`HFEmbedder`);
    - any other string: a CLIP model name or a local folder (`CLIPEmbedder`).

    The hub backends read the local cache (or the folder) only, unless `allow_download=True`.
    """
    if spec is not None and not isinstance(spec, str):
        if isinstance(spec, EmbeddingModel):
            return spec
        raise EmbeddingError(
            f"embedding_model must be 'auto', 'offline', a model name or folder, or an object "
            f"with embed_images() and embed_texts(); got {type(spec).__name__}"
        )
    spec = spec or "auto"
    if spec.startswith("open_clip:"):
        from concept.embedding.openclip import OpenCLIPEmbedder

        return OpenCLIPEmbedder(spec.removeprefix("open_clip:"), device=device, allow_download=allow_download,
                                verbose=verbose)
    if spec.startswith("hf:"):
        from concept.embedding.hf import HFEmbedder

        return HFEmbedder(spec.removeprefix("hf:"), device=device, allow_download=allow_download, verbose=verbose)
    from concept.embedding.clip import CLIPEmbedder
    from concept.embedding.offline import OfflineEmbedder

    if spec == "offline" or spec.startswith("offline-"):
        options = spec.split("-")[1:]
        precisions = [o for o in options if o in ("bf16", "int8")]
        variants = [o for o in options if o not in precisions] or ["lite0"]
        if len(variants) > 1 or len(precisions) > 1:
            raise EmbeddingError(f"Unknown offline model {spec!r}; e.g. 'offline', 'offline-lite1', "
                                 "'offline-bf16', 'offline-int8'")
        precision = precisions[0] if precisions else "f32"
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
