"""Where a model of the Hugging Face hub is on this machine: file lookups in the local cache,
never the network. Shared by every backend and the captioner that loads hub models only from
the cache (`concept.embedding.clip`, `.hf`, `.openclip`, `concept.captioning`)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path


def looks_like_folder(name: str) -> bool:
    """Whether `name` is written as a path (absolute, relative, home, or more than ORG/NAME), so
    that a missing one is a missing folder, not a hub name to look up."""
    return name.startswith(("/", ".", "~")) or name.count("/") > 1 or (os.sep == "\\" and "\\" in name)


def cached_file(repo: str, filenames: Iterable[str], cache_dir: str | None = None) -> str | None:
    """The first of `filenames` of the hub repository `repo` found in the cache, or None."""
    from huggingface_hub import try_to_load_from_cache

    for name in filenames:
        found = try_to_load_from_cache(repo, name, cache_dir=cache_dir)
        if isinstance(found, str) and Path(found).exists():
            return found
    return None
