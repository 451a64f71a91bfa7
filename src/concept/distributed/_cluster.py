"""Import ray with a clear error when the extra is missing, and connect to a cluster."""

from __future__ import annotations

import logging
from typing import Any

from concept._errors import ConceptError

logger = logging.getLogger(__name__)

#: Pinned in pyproject's `ray` extra: the version the tests ran on.
RAY_HINT = 'Install the optional extra: pip install "concept[ray]" (or pip install "ray[data]").'


def require_ray() -> Any:
    """The `ray` module, or a ConceptError saying how to install it."""
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise ConceptError(f"concept.distributed needs Ray Data, which is not installed ({exc}). "
                           f"{RAY_HINT}") from exc
    return ray


def connect(address: str | None = "auto", **init_kwargs: Any) -> Any:
    """Connect to a Ray cluster unless this process already is; returns the `ray` module.

    address: "auto" (or None) lets `ray.init` choose as it documents: the cluster named by
        RAY_ADDRESS, else the last one started on this machine (`ray start`), else a new
        local cluster of this machine's cores; "local" always starts a new local cluster;
        anything else is a cluster address ("ray://head:10001" or "head:6379").
    init_kwargs: passed to `ray.init` (e.g. num_cpus=2 for a small local cluster).
    """
    ray = require_ray()
    if ray.is_initialized():
        return ray
    if address in (None, "auto"):
        ray.init(**init_kwargs)
    elif address == "local":
        ray.init(address="local", **init_kwargs)
    else:
        ray.init(address=address, **init_kwargs)
    logger.info("Connected to Ray: %s", ray.cluster_resources())
    return ray
