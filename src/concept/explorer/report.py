"""`write_report`: the explorer as a static HTML file that works offline, from file://.

`report.html` holds the page, its scripts and the data of every point; `report_files/` beside it
holds the thumbnail sprite sheets and the concepts' collages as JPEG.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote

from concept._atomic import atomic_write_text
from concept._errors import ConceptError
from concept.explorer.data import page_data, page_dates
from concept.explorer.page import render_page
from concept.explorer.thumbs import ThumbnailSheets, collage_jpeg
from concept.images import ImageInput

__all__ = ["write_report"]

logger = logging.getLogger(__name__)


def _clear_generated(folder: Path) -> None:
    """Remove the files an earlier report wrote (only ours: sheet_*.jpg, concept_*.jpg)."""
    for pattern in ("thumbs/sheet_*.jpg", "collages/concept_*.jpg"):
        for old in folder.glob(pattern):
            old.unlink()


def write_report(model: Any, path: str | os.PathLike, *, images: Sequence[ImageInput] | None = None,
                 title: str | None = None, verbose: bool | None = None, dates: Any = None,
                 mtime: bool = False) -> Path:
    """Write the explorer for a fitted `model` to the HTML file `path`, and its thumbnails and
    collages to the folder `<name>_files` beside it. Returns the HTML file's path.

    Thumbnails come from `images` (one per fitted image, in the order of `model.labels_`) or,
    by default, from the files the model was fitted on (`model.image_sources_`); without
    either the map shows coloured points only.

    `dates` adds a histogram of the images over time that filters the map: "exif" (read from
    each file's EXIF header; `mtime=True`: the file's modification time where there is none)
    or one date (or number, e.g. a year) per image; None (the default) reads no file for dates.
    """
    if not hasattr(model, "labels_"):
        raise ConceptError("This ConceptModel is not fitted yet: fit or load it before writing a report.")
    path = Path(path)
    if path.suffix.lower() not in (".html", ".htm"):
        raise ConceptError(f"The report must be an .html file, got {path}")
    verbose = getattr(model, "verbose", True) if verbose is None else verbose
    n = len(model.labels_)
    sources = images if images is not None else getattr(model, "image_sources_", None)
    if sources is not None and len(sources) != n:
        raise ConceptError(f"Got {len(sources)} images for thumbnails but the model has {n} fitted images; "
                           "pass them in the order of model.labels_.")
    when = page_dates(model, dates, mtime=mtime)  # before any file is written: bad dates fail first
    files = path.parent / f"{path.stem}_files"
    url = quote(files.name)
    (files / "collages").mkdir(parents=True, exist_ok=True)
    _clear_generated(files)

    collages = {}
    for c, image in sorted(getattr(model, "collages_", {}).items()):
        (files / "collages" / f"concept_{c}.jpg").write_bytes(collage_jpeg(image))
        collages[int(c)] = f"{url}/collages/concept_{c}.jpg"

    sheets_urls = None
    sheets = ThumbnailSheets(sources) if sources else None
    if sheets is not None:
        (files / "thumbs").mkdir(exist_ok=True)
        _write_sheets(sheets, files / "thumbs", verbose)
        sheets_urls = [f"{url}/thumbs/sheet_{k:03d}.jpg" for k in range(sheets.n_sheets)]
        if sheets.failed:
            logger.warning("%d of %d images could not be read for thumbnails (moved or deleted since "
                           "fitting?); they show as grey tiles.", sheets.failed, n)

    data = page_data(model, title=title or f"concept explorer: {path.stem}", mode="report",
                     sheets=sheets_urls, tile=sheets.tile if sheets else 0,
                     per_row=sheets.per_row if sheets else 0, collages=collages, dates=when)
    atomic_write_text(path, render_page(data))  # an open report is replaced only when complete
    return path


def _write_sheets(sheets: ThumbnailSheets, folder: Path, verbose: bool) -> None:
    from tqdm.auto import tqdm

    def write(k: int) -> None:
        (folder / f"sheet_{k:03d}.jpg").write_bytes(sheets.sheet(k))

    # Decoding releases the GIL, so threads use every core without pickling the sources.
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        done = pool.map(write, range(sheets.n_sheets))
        for _ in tqdm(done, total=sheets.n_sheets, desc="Thumbnails", unit="sheet", disable=not verbose):
            pass
