"""What the explorer page shows, taken from a fitted model as plain JSON-ready data.

The page gets every point (2-D position, concept, probability, file name), every concept (size,
words, colour, collage) and where to find thumbnails; the browser does the rest.
"""

from __future__ import annotations

import colorsys
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["OUTLIER_COLOR", "concept_colors", "ensure_saved_map", "page_data"]

logger = logging.getLogger(__name__)

# Tableau's 20 categorical colours, strong ones first; beyond 20 concepts, hues step by the
# golden angle so that neighbouring ids never look alike.
_PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
            "#17becf", "#bcbd22", "#393b79", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896",
            "#c5b0d5", "#c49c94", "#f7b6d2", "#9edae5", "#dbdb8d", "#637939"]
OUTLIER_COLOR = "#c8c8c8"


def concept_colors(n: int) -> list[str]:
    """`n` distinct colours as #rrggbb."""
    colors = _PALETTE[:n]
    for i in range(len(colors), n):
        hue = (i * 0.618033988749895) % 1.0
        r, g, b = colorsys.hls_to_rgb(hue, 0.45 + 0.15 * (i % 3) / 2, 0.65)
        colors.append(f"#{round(r * 255):02x}{round(g * 255):02x}{round(b * 255):02x}")
    return colors


def ensure_saved_map(model: Any, model_dir: str | os.PathLike) -> None:
    """Compute the model's 2-D map if its folder holds none, and save it into that folder.

    The folder is rewritten atomically by `save_model_state` with its own settings, texts and
    images plus the map (not by `model.save()`, which would load the embedding backend and record
    an `embedding_model=` given only for this run). It is left alone when it no longer holds this
    model; a folder that cannot be written is reported, and the map is then recomputed next time.
    """
    if getattr(model, "map_2d_", None) is not None or not hasattr(model, "map_2d"):
        return
    from concept._errors import ConceptError
    from concept.persistence import load_model_state, save_model_state

    logger.info("The model folder holds no 2-D map; computing it once and saving it to %s.", model_dir)
    xy = model.map_2d()
    try:
        state = load_model_state(model_dir)
        if "map_2d" in state.arrays:
            return  # another run saved one meanwhile
        if not np.array_equal(state.arrays.get("labels"), model.labels_):
            logger.warning("%s no longer holds this model; the 2-D map was not saved there.", model_dir)
            return
        state.arrays["map_2d"] = np.asarray(xy)
        save_model_state(state, Path(model_dir))
    except (OSError, ConceptError) as exc:
        logger.warning("Could not save the 2-D map to %s (%s); it will be computed again next time.",
                       model_dir, exc)


def _unit_square(xy: np.ndarray) -> np.ndarray:
    """Positions scaled into [-0.95, 0.95] keeping the aspect ratio (the map library wants [-1, 1])."""
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    if not len(xy) or not np.isfinite(xy).all():
        return np.zeros_like(xy)
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    half = float((hi - lo).max()) / 2
    return (xy - (lo + hi) / 2) / half * 0.95 if half > 0 else np.zeros_like(xy)


def page_data(model: Any, *, title: str, mode: str, sheets: list[str] | None = None,
              tile: int = 0, per_row: int = 0, collages: dict[int, str] | None = None,
              max_upload_bytes: int | None = None, model_files: str | None = None) -> dict[str, Any]:
    """Everything the page needs, as JSON-ready data.

    Parameters: `model` a fitted ConceptModel; `mode` "report" (static file) or "served" (the
    page can call the search API); `sheets` URLs of the thumbnail sprite sheets (None: no
    thumbnails), with their `tile` size and tiles `per_row`; `collages` {concept: URL};
    `max_upload_bytes` the server's upload limit; `model_files` URL prefix of the model's own
    files (served mode).
    """
    labels = np.asarray(model.labels_, dtype=np.int64)
    n_concepts = int(model.n_concepts_)
    xy = _unit_square(model.map_2d())
    probs = np.asarray(getattr(model, "probabilities_", np.ones(len(labels))), dtype=np.float64)
    sizes = np.bincount(labels[labels >= 0], minlength=n_concepts)
    topics = model.topics
    colors = concept_colors(n_concepts)
    collages = collages or {}
    sources = getattr(model, "image_sources_", None)
    return {
        "title": title,
        "mode": mode,
        "n_images": len(labels),
        "points": {
            "x": np.round(xy[:, 0], 4).tolist(),
            "y": np.round(xy[:, 1], 4).tolist(),
            "concept": labels.tolist(),
            "probability": np.round(np.nan_to_num(probs, nan=0.0), 3).tolist(),
        },
        "names": [os.path.basename(os.fspath(s)) for s in sources] if sources else None,
        "concepts": [{"id": c, "size": int(sizes[c]), "words": list(topics.get(c, [])),
                      "color": colors[c], "collage": collages.get(c)} for c in range(n_concepts)],
        "outliers": {"size": int((labels < 0).sum()), "color": OUTLIER_COLOR},
        "thumbs": {"sheets": sheets, "tile": tile, "per_row": per_row} if sheets else None,
        "max_upload_bytes": max_upload_bytes,
        "model_files": model_files,
    }
