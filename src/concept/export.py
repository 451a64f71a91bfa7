"""`export_concepts`: a fitted model's images sorted into one folder per concept.

`OUT/007_dog_puppy_terrier/` holds concept 7's images (symbolic links to the files the model was
fitted on, or full-resolution copies), `OUT/outliers/` the images in no concept, and
`OUT/concepts.csv` one row per image: path, concept, label, confidence and where it was put. With
`dedupe=True` only the kept image of each duplicate group (`ConceptModel.duplicates_`) is written; its
copies are listed with status `duplicate` and the file they duplicate (`duplicate_of`).

The folder is built beside OUT under a temporary name and renamed into place at the end, so OUT
is either absent or complete; an OUT that exists and is not empty is never written into.
"""

from __future__ import annotations

import csv
import logging
import os
import re
import shutil
import unicodedata
from pathlib import Path
from typing import Any

import numpy as np

from concept._atomic import atomic_folder
from concept._errors import ConceptError

__all__ = ["CSV_NAME", "export_concepts", "safe_name"]

logger = logging.getLogger(__name__)

CSV_NAME = "concepts.csv"
OUTLIER_FOLDER = "outliers"
MAX_NAME = 80  # characters of a folder or file name we make
_UNSAFE = re.compile(r"[^\w.\- ]+")
_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}


def safe_name(text: str, fallback: str = "unnamed", limit: int = MAX_NAME) -> str:
    """`text` as one portable file name: letters, digits, `_ - .` and spaces only (others become
    `_`), no leading dots or spaces (no hidden files, no `..`), no Windows device names, at most
    `limit` characters; `fallback` when nothing is left."""
    text = unicodedata.normalize("NFKC", str(text))
    text = _UNSAFE.sub("_", text).strip(" ._")
    text = re.sub(r"_{2,}", "_", text)[:limit].rstrip(" .")
    if not text or text.split(".")[0].lower() in _RESERVED:
        text = f"{fallback}_{text}" if text else fallback
    return text


def _label(model: Any, layer: int, concept: int, words: dict[int, list[str]]) -> str:
    if concept < 0:
        return "outliers"
    custom = getattr(model, "custom_labels_", None) if layer == getattr(model, "layer_", 0) else None
    if isinstance(custom, dict) and isinstance(custom.get(concept), str) and custom[concept].strip():
        return custom[concept].strip()
    if isinstance(custom, (list, tuple)) and concept < len(custom) and isinstance(custom[concept], str) and custom[concept].strip():
        return custom[concept].strip()
    return ", ".join(words.get(concept, [])[:3])


def _unique(name: str, taken: set[str]) -> str:
    """`name`, or `name` with `_2`, `_3`... before its suffix, whichever is not yet in `taken`."""
    stem, suffix = os.path.splitext(name)
    candidate, n = name, 1
    while candidate.lower() in taken:
        n += 1
        candidate = f"{stem}_{n}{suffix}"
    taken.add(candidate.lower())
    return candidate


def export_concepts(model: Any, out: str | os.PathLike, *, copy: bool = False, layer: int | None = None,
                    include_outliers: bool = True, dedupe: bool = False) -> dict[str, int]:
    """Write one folder per concept of `layer` (default: the model's) into the new folder `out`.

    Each image is linked (`copy=False`, symbolic links to the fitted files) or copied at full
    resolution; images whose file is gone are listed in the CSV with status `missing`. `dedupe`:
    write one file per duplicate group, its kept image (the model's `duplicates_`, found first if
    not known); the others are listed with status `duplicate`. Returns counts: {"concepts",
    "images", "linked"/"copied", "missing"} and, with `dedupe`, "duplicates" (copies left out).
    Raises ConceptError when the model holds no image paths or `out` exists and is not empty.
    """
    if not hasattr(model, "labels_"):
        raise ConceptError("This ConceptModel is not fitted yet: fit or load it before exporting.")
    sources = getattr(model, "image_sources_", None)
    if not sources:
        raise ConceptError("The model holds no image file paths (it was fitted on arrays, PIL images or "
                           "embeddings), so there are no files to export.")
    layers = getattr(model, "layers_", None) or [model.labels_]
    default = int(getattr(model, "layer_", 0) or 0)
    layer = default if layer is None else layer
    if not isinstance(layer, (int, np.integer)) or not 0 <= int(layer) < len(layers):
        raise ConceptError(f"layer must be an integer in 0..{len(layers) - 1} (finest first), got {layer!r}")
    layer = int(layer)
    labels = np.asarray(model.labels_ if layer == default else layers[layer], dtype=np.int64)
    if layer == default:
        words = model.topics
    else:
        words = {int(c): [w for w, _ in ws] for c, ws in model.layer_topics_[layer].items()}
    probs = np.asarray(getattr(model, "probabilities_", np.ones(len(labels))), dtype=np.float64)
    kept_of = None
    if dedupe:  # each droppable row -> its group's kept row
        found = model.duplicates_
        kept_of = {r: g[0] for g in [*found.exact, *found.near] for r in g[1:]}
        kept_of = {r: kept_of.get(k, k) for r, k in kept_of.items()}  # an exact copy of a near group's member

    out = Path(out)
    if out.is_symlink() or (out.exists() and (not out.is_dir() or any(out.iterdir()))):
        raise ConceptError(f"{out} already exists and is not an empty folder: choose a new folder "
                           "(export never writes into or over existing files).")
    with atomic_folder(out, replace=_empty_folder) as tmp:
        counts = _write(model, tmp, sources, labels, probs, words, layer, copy, include_outliers, kept_of)
    # Links point at absolute paths, so they stay right wherever OUT is moved.
    logger.info("%s %d images into %d concept folders in %s.", "Copied" if copy else "Linked",
                counts["images"], counts["concepts"], out)
    if counts["missing"]:
        logger.warning("%d images are no longer on disk (moved or deleted since fitting?); they are "
                       "listed in %s with status 'missing'.", counts["missing"], out / CSV_NAME)
    return counts


def _empty_folder(out: Path) -> bool:
    """May the finished export replace `out`? Only an empty folder (not made meanwhile by another)."""
    if out.is_symlink() or not out.is_dir() or any(out.iterdir()):
        raise ConceptError(f"{out} was written to while exporting; the export was not put there: "
                           "choose a new folder.")
    return True


def _write(model: Any, root: Path, sources: list[str], labels: np.ndarray, probs: np.ndarray,
           words: dict[int, list[str]], layer: int, copy: bool, include_outliers: bool,
           kept_of: dict[int, int] | None = None) -> dict[str, int]:
    k = int(labels.max(initial=-1)) + 1
    width = max(3, len(str(max(k - 1, 0))))
    folders: dict[int, str] = {}
    taken_folders: set[str] = {CSV_NAME.lower(), OUTLIER_FOLDER}
    for c in range(k):
        label = _label(model, layer, c, words)
        slug = safe_name(re.sub(r"[,\s]+", "_", label), "concept", MAX_NAME - width - 1) if label else ""
        name = f"{c:0{width}d}_{slug}" if slug else f"{c:0{width}d}"
        folders[c] = _unique(name, taken_folders)
    if include_outliers and (labels < 0).any():
        folders[-1] = OUTLIER_FOLDER
    taken: dict[int, set[str]] = {c: set() for c in folders}
    done = {"concepts": sum(1 for c in folders if c >= 0), "images": 0, "missing": 0,
            "copied" if copy else "linked": 0, **({} if kept_of is None else {"duplicates": 0})}
    rows = []
    for i, (source, c) in enumerate(zip(sources, labels.tolist())):
        src = Path(os.path.abspath(os.fspath(source)))
        row = {"index": i, "path": str(src), "concept": c, "label": _label(model, layer, c, words),
               "confidence": f"{float(probs[i]):.4f}" if c >= 0 else "0.0000", "exported": "", "status": "skipped"}
        if kept_of is not None:
            row["duplicate_of"] = os.path.abspath(os.fspath(sources[kept_of[i]])) if i in kept_of else ""
        if kept_of is not None and i in kept_of:
            row["status"] = "duplicate"
            done["duplicates"] += 1
        elif c in folders:
            folder = root / folders[c]
            folder.mkdir(exist_ok=True)
            name = _unique(safe_name(src.name, f"image_{i}"), taken[c])
            dest = folder / name
            row["exported"] = f"{folders[c]}/{name}"
            if not src.is_file():
                row["status"], row["exported"] = "missing", ""
                done["missing"] += 1
            elif copy:
                shutil.copy2(src, dest)
                row["status"] = "copied"
                done["copied"] += 1
            else:
                os.symlink(src, dest)
                row["status"] = "linked"
                done["linked"] += 1
            done["images"] += row["status"] in ("copied", "linked")
        rows.append(row)
    with open(root / CSV_NAME, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["index", "path"])
        writer.writeheader()
        for row in rows:  # a spreadsheet must not run a label as a formula
            if row["label"][:1] in ("=", "+", "-", "@", "\t", "\r"):
                row["label"] = "'" + row["label"]
            writer.writerow(row)
    return done
