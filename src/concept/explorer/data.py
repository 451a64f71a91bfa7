"""What the explorer page shows, taken from a fitted model as plain JSON-ready data.

The page gets every point (2-D position, concept, probability, file name and path), every
concept of every layer (size, label, words, colour, collage, exemplars, the image its name sits
on, its parent in the next coarser layer), where to find thumbnails and, when the model's duplicates
are already known, each image's duplicate group and uniqueness; the browser does the rest.
A concept's `label` is the one text the page names it by: its custom label, else its top words.
"""

from __future__ import annotations

import colorsys
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from concept.tables import LABEL_WORDS, concept_label

__all__ = ["LABEL_WORDS", "OUTLIER_COLOR", "concept_colors", "concept_label", "ensure_saved_map", "page_data",
           "page_dates"]

logger = logging.getLogger(__name__)

# Tableau's 20 categorical colours, strong ones first; beyond 20 concepts, hues step by the
# golden angle so that neighbouring ids never look alike.
_PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
            "#17becf", "#bcbd22", "#393b79", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896",
            "#c5b0d5", "#c49c94", "#f7b6d2", "#9edae5", "#dbdb8d", "#637939"]
OUTLIER_COLOR = "#c8c8c8"
MAX_EXEMPLARS = 9  # exemplars per concept sent to the page (image mode shows them first)


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
    from concept.model_folder.schema import MAP_2D
    from concept.persistence import load_model_state, save_model_state

    logger.info("The model folder holds no 2-D map; computing it once and saving it to %s.", model_dir)
    xy = model.map_2d()
    try:
        state = load_model_state(model_dir)
        if MAP_2D in state.arrays:
            return  # another run saved one meanwhile
        if not np.array_equal(state.arrays.get("labels"), model.labels_):
            logger.warning("%s no longer holds this model; the 2-D map was not saved there.", model_dir)
            return
        state.arrays[MAP_2D] = np.asarray(xy)
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


def _custom_labels(model: Any) -> dict[int, str]:
    """The model's custom labels of its default layer as {concept: text}, whatever container
    holds them (a dict or a list, as `set_concept_labels` may store), or {} when there are none."""
    custom = getattr(model, "custom_labels_", None)
    if not custom:
        return {}
    items = custom.items() if isinstance(custom, dict) else enumerate(custom)
    out = {}
    for c, text in items:
        try:
            c = int(c)
        except (TypeError, ValueError):
            continue
        if isinstance(text, str) and text.strip():
            out[c] = " ".join(text.split())
    return out


def _layers(model: Any, labels: np.ndarray) -> tuple[list[np.ndarray], int]:
    """Every layer's labels (finest first) and the default layer's index; the default layer is
    always `labels_` (what the cards show), even when an edit changed it after fitting."""
    layers = getattr(model, "layers_", None)
    default = int(getattr(model, "layer_", 0) or 0)
    if not layers or not 0 <= default < len(layers):
        return [labels], 0
    layers = [np.asarray(layer, dtype=np.int64) for layer in layers]
    if any(len(layer) != len(labels) for layer in layers):
        return [labels], 0
    layers[default] = labels
    return layers, default


def _parents(fine: np.ndarray, coarse: np.ndarray, k_fine: int) -> list[int]:
    """For each concept of `fine`, the concept of `coarse` most of its images belong to (-1: none)."""
    both = (fine >= 0) & (coarse >= 0)
    if not both.any():
        return [-1] * k_fine
    k_coarse = int(coarse.max()) + 1
    counts = np.zeros((k_fine, k_coarse), np.int64)
    np.add.at(counts, (fine[both], coarse[both]), 1)
    return [int(np.argmax(row)) if row.any() else -1 for row in counts]


def _anchors(xy: np.ndarray, labels: np.ndarray, k: int) -> list[int]:
    """Which image each concept's label sits on: the member nearest the median of its members,
    so that a label is on its points even when the concept is not convex (-1: no members)."""
    out = [-1] * k
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(k + 1))
    for c in range(k):
        rows = order[bounds[c]:bounds[c + 1]]
        if len(rows):
            pts = xy[rows]
            out[c] = int(rows[np.argmin(((pts - np.median(pts, axis=0)) ** 2).sum(axis=1))])
    return out


def _layer_concepts(model: Any, layers: list[np.ndarray], default: int, xy: np.ndarray,
                    topics: dict[int, list[str]], custom: dict[int, str]) -> list[dict[str, Any]]:
    """Per layer (finest first): each concept's size, label, words, the image its label sits on, parent
    concept in the next coarser layer and a few exemplar images."""
    layer_topics = getattr(model, "layer_topics_", None) or []
    layer_exemplars = getattr(model, "layer_exemplars_", None) or []
    out = []
    for li, labels in enumerate(layers):
        k = int(model.n_concepts_) if li == default else int(labels.max(initial=-1)) + 1
        sizes = np.bincount(labels[labels >= 0], minlength=k)
        if li == default:
            words = {c: list(topics.get(c, [])) for c in range(k)}
            exemplars = getattr(model, "exemplars_", None) or {}
        else:
            words = {c: [w for w, _ in (layer_topics[li].get(c, []) if li < len(layer_topics) else [])]
                     for c in range(k)}
            exemplars = layer_exemplars[li] if li < len(layer_exemplars) else {}
        parents = _parents(labels, layers[li + 1], k) if li + 1 < len(layers) else [-1] * k
        anchors = _anchors(xy, labels, k)
        concepts = []
        for c in range(k):
            ex = [int(i) for i in list(exemplars.get(c, []))[:MAX_EXEMPLARS] if 0 <= int(i) < len(labels)]
            concepts.append({
                "id": c, "size": int(sizes[c]), "words": words[c][:10],
                "label": concept_label(words[c], custom.get(c) if li == default else None),
                "anchor": anchors[c],
                "parent": parents[c], "exemplars": ex})
        out.append({"concepts": concepts, "labels": None if li == default else labels.tolist()})
    return out


def _sources(model: Any) -> dict[str, Any] | None:
    """The fitted images' paths as a shared folder and the rest (70,000 absolute paths would
    repeat one long prefix), with the folder's file:// URL for the static report's links."""
    sources = getattr(model, "image_sources_", None)
    if not sources:
        return None
    paths = [os.path.abspath(os.fspath(s)) for s in sources]
    try:
        prefix = os.path.commonpath([os.path.dirname(p) for p in paths])
    except ValueError:  # different drives
        prefix = ""
    cut = len(prefix.rstrip(os.sep)) + 1 if prefix else 0
    return {"prefix": prefix, "url": Path(prefix).as_uri() + "/" if prefix else "",
            "rel": [p[cut:].replace(os.sep, "/") for p in paths]}


def _names(model: Any, sources: list[str] | None) -> list[str] | None:
    """What the page calls each image: the fit's `image_names`, else its file's name (None: "image i")."""
    names = getattr(model, "image_names_", None)
    if names is not None:
        return [str(name) for name in names]
    return [os.path.basename(os.fspath(s)) for s in sources] if sources else None


def page_dates(model: Any, dates: Any = None, *, mtime: bool = False) -> dict[str, Any] | None:
    """Each fitted image's date for the page's time histogram, or None (no histogram).

    `dates`: None (no dates: no file is opened), "exif" (each file's EXIF DateTimeOriginal, else
    DateTime; with `mtime=True` an image without one takes its file's modification time), or a
    sequence of dates or plain numbers (years), one per fitted image or one per input image, as
    `concepts_over_time` takes them (`concept.over_time`). Returns {"kind": "date" (values in days
    since 1970-01-01) or "number", "values": one per image (None: no date), "dated", "undated",
    "status": images per date status}; None as well when no image has a date.
    """
    from concept._errors import ConceptError

    if dates is None:
        if mtime:
            raise ConceptError("mtime=True applies to dates read from the files (dates='exif').")
        return None
    from concept._validation import check_per_image
    from concept.over_time import exif_dates, given_dates

    n = len(model.labels_)
    if isinstance(dates, str):
        if dates != "exif":
            raise ConceptError(f"dates must be None, 'exif' or a sequence with one date per image, got {dates!r}.")
        sources = getattr(model, "image_sources_", None)
        if not sources:
            raise ConceptError("This model was not fitted on image files, so it cannot read their dates: pass "
                               "dates=[...] with one date per image.")
        found = exif_dates(sources, mtime=mtime, verbose=bool(getattr(model, "verbose", False)))
    else:
        if mtime:
            raise ConceptError("mtime=True applies to dates read from the files (dates='exif'), not to given ones.")
        indices = getattr(model, "image_indices_", None)
        indices = np.arange(n) if indices is None else np.asarray(indices, np.int64)
        n_inputs = len(indices) + len(getattr(model, "failures_", None) or [])
        found = given_dates(check_per_image("dates", dates, indices, n_inputs))
    dated = found.dated
    counts = found.counts()
    if not dated.any():
        logger.warning("None of the %d images has a date; the explorer shows no time histogram.", n)
        return None
    if found.numeric:
        kind, values = "number", np.asarray(found.values, np.float64)
    else:  # days since the epoch, to the second
        kind = "date"
        values = found.values.astype("datetime64[s]").astype(np.float64) / 86400.0
    values = np.round(values, 5)
    return {"kind": kind, "values": [float(v) if ok else None for v, ok in zip(values.tolist(), dated.tolist())],
            "dated": int(dated.sum()), "undated": int((~dated).sum()), "status": counts}


def _failures(model: Any) -> list[dict[str, Any]]:
    return [{"source": str(getattr(f, "source", "")), "reason": str(getattr(f, "reason", ""))}
            for f in getattr(model, "failures_", None) or []]


def _known_duplicates(model: Any, n: int) -> Any:
    """The model's Duplicates of its `n` images when they are known (found at fit, by `duplicates_`, or
    saved with it), else None: the page is never made to decode every image again to find them."""
    found = getattr(model, "__dict__", {}).get("_duplicates")
    return None if found is None or getattr(found, "n_images", -1) != n else found


def _duplicates(model: Any, n: int) -> dict[str, list[int]] | None:
    """Each image's duplicate group (-1: in none) and the copies that could be dropped, when the model's
    duplicates are known; None otherwise."""
    found = _known_duplicates(model, n)
    if found is None:
        return None
    from concept.duplicates import duplicate_groups

    return {"group": duplicate_groups(found).tolist(), "copies": [int(r) for r in found.droppable()]}


def _uniqueness(model: Any, n: int) -> list[float | None] | None:
    """Each image's uniqueness (how unlike its nearest neighbours it is, 0-1, rounded to 3 decimals; None
    where unknown) from the model's known duplicates; None when they are not known or hold none."""
    found = _known_duplicates(model, n)
    values = None if found is None else getattr(found, "uniqueness", None)
    if values is None:
        return None
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if len(values) != n:
        return None
    values = np.round(np.clip(values, 0.0, 1.0), 3)
    return [float(v) if np.isfinite(v) else None for v in values.tolist()]


def page_data(model: Any, *, title: str, mode: str, sheets: list[str] | None = None,
              tile: int = 0, per_row: int = 0, collages: dict[int, str] | None = None,
              max_upload_bytes: int | None = None, model_files: str | None = None,
              dates: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything the page needs, as JSON-ready data.

    Parameters: `model` a fitted ConceptModel; `mode` "report" (static file) or "served" (the
    page can call the search API); `sheets` URLs of the thumbnail sprite sheets (None: no
    thumbnails), with their `tile` size and tiles `per_row`; `collages` {concept: URL};
    `max_upload_bytes` the server's upload limit; `model_files` URL prefix of the model's own
    files (served mode); `dates` each image's date for the time histogram (`page_dates`; None:
    no histogram).
    """
    labels = np.asarray(model.labels_, dtype=np.int64)
    n_concepts = int(model.n_concepts_)
    xy = _unit_square(model.map_2d())
    probs = np.asarray(getattr(model, "probabilities_", np.ones(len(labels))), dtype=np.float64)
    topics = model.topics
    colors = concept_colors(n_concepts)
    collages = collages or {}
    sources = getattr(model, "image_sources_", None)
    custom = _custom_labels(model)
    layers, default = _layers(model, labels)
    layer_data = _layer_concepts(model, layers, default, xy, topics, custom)
    return {
        "title": title,
        "mode": mode,
        "n_images": len(labels),
        "custom_labels": {str(c): name for c, name in custom.items()},
        "points": {
            "x": np.round(xy[:, 0], 4).tolist(),
            "y": np.round(xy[:, 1], 4).tolist(),
            "concept": labels.tolist(),
            "probability": np.round(np.nan_to_num(probs, nan=0.0), 3).tolist(),
        },
        "names": _names(model, sources),
        "concepts": [{**layer_data[default]["concepts"][c], "words": list(topics.get(c, [])),
                      "color": colors[c], "collage": collages.get(c)} for c in range(n_concepts)],
        "layers": [{"concepts": None, "labels": None} if li == default else layer
                   for li, layer in enumerate(layer_data)],
        "default_layer": default,
        "sources": _sources(model),
        "failures": _failures(model),
        "outliers": {"size": int((labels < 0).sum()), "color": OUTLIER_COLOR},
        "thumbs": {"sheets": sheets, "tile": tile, "per_row": per_row} if sheets else None,
        "max_upload_bytes": max_upload_bytes,
        "model_files": model_files,
        "dates": dates,
        "duplicates": _duplicates(model, len(labels)),
        "uniqueness": _uniqueness(model, len(labels)),
    }
