"""Concepts over time (BERTopic's `topics_over_time` for images): when each fitted image was
taken, read from its EXIF header or given by the caller, and how many images of each concept
fall in each time bin.

Dates are never guessed. An image whose file has no date, or a date that is not one (EXIF's
"2020:13:45 99:99:99", blanks, zeros), is *undated*: it is counted apart (status "missing" or
"unreadable") and kept in the table under `Timestamp` NaT, so the frequencies always add up to
the fitted images. A file's modification time is used only when the caller asks (`mtime=True`):
copying a folder resets it, so it says when the file was written, not when the picture was taken.
"""

from __future__ import annotations

import logging
import os
import stat
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from PIL import ExifTags, Image

from concept._errors import ConceptError
from concept._validation import check_integer, check_layer, check_per_image
from concept.tables import concept_names, concept_order

__all__ = ["ImageDates", "concepts_over_time", "exif_date", "exif_dates", "given_dates", "image_dates",
           "over_time_table", "parse_exif_datetime"]

logger = logging.getLogger(__name__)

#: EXIF tags read, best first: DateTimeOriginal (in the Exif IFD: when the picture was taken), then
#: DateTime (in IFD0: when the file was last changed by the camera or an editor).
DATE_TIME_ORIGINAL = 0x9003
DATE_TIME = 0x0132
_EXIF_FORMATS = ("%Y:%m:%d %H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y:%m:%d %H:%M", "%Y:%m:%d", "%Y-%m-%d")

#: What a date's status says: read from the file's EXIF, given by the caller, the file's
#: modification time (asked for), none at all, or a text that is not a date.
STATUSES = ("exif", "given", "mtime", "missing", "unreadable")
UNDATED = ("missing", "unreadable")


@dataclass
class ImageDates:
    """One date per fitted image and where it came from.

    `values`: datetime64[ns] (NaT where undated), or float64 (NaN where undated) when the caller gave
    plain numbers (e.g. years). `status`: one of STATUSES per image.
    """

    values: np.ndarray
    status: np.ndarray

    @property
    def dated(self) -> np.ndarray:
        return ~np.isin(self.status, UNDATED)

    @property
    def numeric(self) -> bool:
        return self.values.dtype.kind == "f"

    def counts(self) -> dict[str, int]:
        """How many images have each status (only the statuses that occur, plus both undated ones)."""
        found = dict(zip(*np.unique(self.status, return_counts=True)))
        return {s: int(found.get(s, 0)) for s in STATUSES if s in found or s in UNDATED}


def parse_exif_datetime(value: Any) -> tuple[pd.Timestamp | None, str]:
    """An EXIF date-time ("2021:07:14 16:05:09") as a Timestamp and "exif"; (None, "missing") for no
    value, blanks or zeros ("0000:00:00 00:00:00"); (None, "unreadable") for a text that is no date."""
    if value is None:
        return None, "missing"
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    text = str(value).replace("\x00", "").strip()
    if not text.strip(" :-0"):  # empty, blanks, or zeros: no date was recorded
        return None, "missing"
    for fmt in _EXIF_FORMATS:
        try:
            return pd.Timestamp(datetime.strptime(text, fmt)).as_unit("ns"), "exif"
        except ValueError:  # not this format, or out of datetime64[ns]'s years 1678-2261
            continue
    return None, "unreadable"


def _is_regular_file(path: str | os.PathLike) -> bool:
    try:  # opening a FIFO would block, a device might never end
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def exif_date(path: str | os.PathLike, *, mtime: bool = False) -> tuple[pd.Timestamp | None, str]:
    """When the picture in `path` was taken: EXIF DateTimeOriginal, else DateTime (a valid one wins over a
    garbled one), as (Timestamp, "exif"). Without a date: (None, "missing"), or (None, "unreadable") when
    the file holds a date that is no date; with `mtime=True` the file's modification time instead, as
    (Timestamp, "mtime"). Only the header is read."""
    found: list[tuple[pd.Timestamp | None, str]] = []
    if _is_regular_file(path):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # PIL's "Corrupt EXIF data" and the like
                with Image.open(path) as im:
                    exif = im.getexif()
                    found.append(parse_exif_datetime(exif.get_ifd(ExifTags.IFD.Exif).get(DATE_TIME_ORIGINAL)))
                    found.append(parse_exif_datetime(exif.get(DATE_TIME)))
        except Exception as exc:  # noqa: BLE001 -- not an image, or a damaged header: no date
            logger.debug("No EXIF read from %s: %s", path, exc)
    for when, status in found:
        if when is not None:
            return when, status
    if mtime and _is_regular_file(path):
        return pd.Timestamp(datetime.fromtimestamp(os.stat(path).st_mtime)), "mtime"
    return None, "unreadable" if any(s == "unreadable" for _, s in found) else "missing"


def exif_dates(sources: Sequence[str | os.PathLike | None], *, mtime: bool = False,
               verbose: bool = False) -> ImageDates:
    """`exif_date` of each file (None, e.g. an image given as an array: "missing")."""
    from tqdm.auto import tqdm

    values = np.full(len(sources), np.datetime64("NaT"), "datetime64[ns]")
    status = np.full(len(sources), "missing", dtype=object)
    for i, source in enumerate(tqdm(sources, desc="Reading dates", unit="image", disable=not verbose)):
        if source is None:
            continue
        when, status[i] = exif_date(source, mtime=mtime)
        if when is not None:
            values[i] = np.datetime64(when.as_unit("ns").to_datetime64(), "ns")
    return ImageDates(values, status.astype(str))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _is_missing(value: Any) -> bool:
    if isinstance(value, str):
        return not value.strip()
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # an array or other container: not a missing scalar
        return False


def given_dates(values: Sequence[Any]) -> ImageDates:
    """Dates given by the caller, one per image: datetimes, pandas Timestamps, numpy datetime64 or date
    strings pandas reads ("2021-07-14", "14 July 2021 16:05"); or plain numbers throughout (years, epoch
    seconds), kept as numbers. None, NaN, NaT and "" are "missing", anything else that is no date
    "unreadable". Dates with time zones are converted to UTC and the zone dropped."""
    items = list(values)
    missing = np.array([_is_missing(v) for v in items], bool)
    present = [v for v, m in zip(items, missing) if not m]
    status = np.where(missing, "missing", "given").astype(object)
    if present and all(_is_number(v) for v in present):
        out = np.full(len(items), np.nan)
        out[~missing] = [float(v) for v in present]
        bad = ~missing & ~np.isfinite(out)
        status[bad], out[bad] = "unreadable", np.nan
        return ImageDates(out, status.astype(str))
    out = np.full(len(items), np.datetime64("NaT"), "datetime64[ns]")
    if present:
        # a number among dates is no date (pandas would read 7 as 7 ns after 1970)
        texts = pd.Series([None if _is_number(v) else v for v in present], dtype=object)
        try:
            parsed = pd.to_datetime(texts, errors="coerce", format="mixed")
        except (ValueError, TypeError):  # time zones mixed with naive or other zones
            parsed = pd.to_datetime(texts, errors="coerce", format="mixed", utc=True)
        if getattr(parsed.dt, "tz", None) is not None:
            parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
        outside = parsed.notna() & ((parsed < pd.Timestamp.min) | (parsed > pd.Timestamp.max))
        parsed = parsed.mask(outside).astype("datetime64[ns]").to_numpy()  # years beyond 1678-2261: no date
        out[~missing] = parsed
        status[~missing & np.isnat(out)] = "unreadable"
    return ImageDates(out, status.astype(str))


def image_dates(model, timestamps: Any = None, *, mtime: bool = False) -> ImageDates:
    """The dates of a fitted model's images (one per row of `labels_`): from `timestamps`, a sequence with
    one per fitted image or one per input image (see `_validation.check_per_image`), or "exif" (the files'
    EXIF headers; None means "exif" and needs a model fitted on file paths)."""
    sources = model.image_sources_
    if timestamps is None or (isinstance(timestamps, str) and timestamps == "exif"):
        if sources is None:
            raise ConceptError("This model was not fitted on image files, so it cannot read their dates: pass "
                               "timestamps=[...] with one date per image.")
        return exif_dates(sources, mtime=mtime, verbose=bool(getattr(model, "verbose", False)))
    if isinstance(timestamps, str):
        raise ConceptError(f"timestamps must be 'exif', None (the same) or a sequence of dates, got {timestamps!r}.")
    if mtime:
        raise ConceptError("mtime=True applies to dates read from the files (timestamps='exif'), not to given ones.")
    rows = check_per_image("timestamps", timestamps, model.image_indices_, len(model.labels_) + len(model.failures_))
    return given_dates(rows)


def _bins(values: np.ndarray, bins: int | str | None) -> tuple[np.ndarray, list]:
    """Each dated value's bin and the bins' labels (their starts, in time order).

    int: that many equal-width bins from the first value to the last (BERTopic's nr_bins), each labelled by
    its start; a pandas frequency ("MS", "W", "YS", "D"): calendar bins as `Series.resample` makes them
    (labelled as it labels them), empty ones included; None: each distinct value a bin of its own.
    """
    if len(values) == 0:
        return np.zeros(0, np.int64), []
    if bins is None:
        labels, which = np.unique(values, return_inverse=True)
        return which.astype(np.int64), list(pd.Series(labels))
    if isinstance(bins, str):
        if values.dtype.kind == "f":
            raise ConceptError(f"bins={bins!r} is a calendar frequency, but the timestamps are plain numbers: pass "
                               "a number of bins or dates.")
        series = pd.Series(np.arange(len(values)), index=pd.DatetimeIndex(values))
        try:
            groups = list(series.resample(bins))
        except (ValueError, TypeError) as exc:
            raise ConceptError(f"bins={bins!r} is not a pandas frequency such as 'D', 'W', 'MS', 'QS' or 'YS' "
                               f"({exc}).") from None
        which = np.empty(len(values), np.int64)
        for i, (_, rows) in enumerate(groups):
            which[rows.to_numpy()] = i
        return which, [label for label, _ in groups]
    n = check_integer("bins", bins, minimum=1)
    if values.dtype.kind == "M":  # exact integer edges in nanoseconds (floats would be off by up to 128 ns)
        x = values.astype("datetime64[ns]").astype(np.int64)
        low, high = int(x.min()), int(x.max())
        edges = np.array([low + (high - low) * i // n for i in range(n + 1)], np.int64)
    else:
        x = values
        edges = np.linspace(float(x.min()), float(x.max()), n + 1)
    if edges[0] == edges[-1]:  # one date (or number) only: one bin
        edges, n = edges[[0, -1]], 1
    which = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, n - 1)
    if values.dtype.kind == "M":
        return which, list(pd.to_datetime(edges[:-1], unit="ns"))
    return which, [float(s) for s in edges[:-1]]


def over_time_table(labels: np.ndarray, dates: ImageDates, bins: int | str | None,
                    topics: dict[int, list[tuple[str, float]]], names: dict[int, str] | None = None) -> pd.DataFrame:
    """One row per (time bin, concept), zeros included, in time order: Timestamp (the bin's start), Concept,
    Frequency (its images in the bin), Name, Words (the concept's, as in `get_concept_info`; not described
    again per bin). Undated images get a row per concept with Timestamp NaT after the bins (none when every
    image is dated), so Frequency adds up to all images. `attrs["dates"]`: the images per date status."""
    labels = np.asarray(labels)
    dated = dates.dated
    which, starts = _bins(dates.values[dated], bins)
    concepts = concept_order(labels)
    index = {c: j for j, c in enumerate(concepts)}
    col = np.array([index[c] for c in labels.tolist()], np.int64)
    counts = np.zeros((len(starts), len(concepts)), np.int64)
    np.add.at(counts, (which, col[dated]), 1)
    stamps = list(starts)
    if (~dated).any():
        counts = np.vstack([counts, np.bincount(col[~dated], minlength=len(concepts))])
        stamps.append(np.nan if dates.numeric else pd.NaT)
    named = concept_names(topics, names)
    words = {c: ", ".join(w for w, _ in ws) for c, ws in topics.items()}
    df = pd.DataFrame({
        "Timestamp": np.repeat(np.asarray(stamps, np.float64) if dates.numeric
                               else pd.DatetimeIndex(stamps, dtype="datetime64[ns]").to_numpy(), len(concepts)),
        "Concept": np.tile(np.asarray(concepts, np.int64), len(stamps)),
        "Frequency": counts.reshape(-1),
    })
    df["Name"] = [named.get(c, "") if c >= 0 else "(outliers)" for c in df.Concept.tolist()]
    df["Words"] = [words.get(c, "") if c >= 0 else "(outliers)" for c in df.Concept.tolist()]
    df.attrs["dates"] = dates.counts()
    return df


def concepts_over_time(model, timestamps: Any = None, bins: int | str | None = 10, layer: int | None = None,
                       mtime: bool = False) -> pd.DataFrame:
    """Each concept's images per time bin (`ConceptModel.concepts_over_time`; see `over_time_table` for the
    columns and `image_dates` for `timestamps`). Logs how many images have no date."""
    layer = check_layer(layer, len(model.layers_), model.layer_)
    dates = image_dates(model, timestamps, mtime=mtime)
    df = over_time_table(model.layers_[layer], dates, bins, model.layer_topics_[layer],
                         model.custom_labels_ if layer == model.layer_ else None)
    counts = df.attrs["dates"]
    undated = counts["missing"] + counts["unreadable"]
    if undated:
        logger.warning("%d of %d images have no date (%d none, %d unreadable); they are counted under Timestamp "
                       "NaT.", undated, len(dates.status), counts["missing"], counts["unreadable"])
    return df

