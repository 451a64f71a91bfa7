"""Captions per image from sources that need no typing: file names and embedded metadata.

A caption is one text per image (or None when an image has none). `ConceptModel.fit(images,
captions=...)` takes a list of them, or one of the names here: ``"filenames"`` (the file's stem
split into words; camera names such as IMG_1234 give None) or ``"metadata"`` (XMP / IPTC
titles, descriptions and keywords, EXIF ImageDescription, PNG text chunks).
"""

from __future__ import annotations

import logging
import math
import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from concept._errors import ConceptError

__all__ = ["CAPTION_SOURCES", "captions_from_filenames", "captions_from_metadata", "check_captions",
           "filename_caption", "metadata_caption"]

logger = logging.getLogger(__name__)

#: The caption sources `fit(captions=...)` accepts by name.
CAPTION_SOURCES = ("filenames", "metadata")

#: Longest caption kept (characters): a text model reads a few hundred tokens at most.
MAX_CAPTION_CHARS = 1000

# Names cameras, phones and tools give files: IMG_1234, DSC01234, DSCN0001, P1010001,
# PXL_20230101_123456789, 20230101_123456, Screenshot 2023-01-01 at ..., WhatsApp Image ...,
# scan0001, image (3), untitled-2, hex or uuid-like names.
_CAMERA = re.compile(
    r"^(img|image|dsc|dscn|dscf|sam|pxl|mvimg|photo|pict|pic|scan|screenshot|screen shot|"
    r"whatsapp image|signal|untitled|file|gopr|dji|vid|mov|wp|pano|burst|p\d)"
    r"([\W_]*\d[\d\W_]*([a-z]{0,2}[\d\W_]*)?)?$"
    r"|^[\d\W_]+$"                      # only digits and separators: 20230101_123456
    r"|^[0-9a-f]{8,}([\W_][0-9a-f]{4,})*$",  # hashes and uuids
    re.IGNORECASE,
)
_CAMERA_PREFIX = re.compile(r"^(img|dsc|dscn|dscf|pxl|mvimg|vid|gopr|dji)[\W_]*\d+[\W_]*", re.IGNORECASE)
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])")
_SEPARATORS = re.compile(r"[\W_]+")
_DIGITS = re.compile(r"^\d+$")

# PNG text chunk keys that describe the picture (PNG spec's predefined keywords).
_PNG_KEYS = ("Title", "Description", "Comment", "Keywords", "Subject")
_IPTC_OBJECT_NAME, _IPTC_KEYWORDS, _IPTC_CAPTION = (2, 5), (2, 25), (2, 120)
_EXIF_IMAGE_DESCRIPTION = 0x010E


def filename_caption(path: str | os.PathLike) -> str | None:
    """The words of a file's stem ("red_Playing-card02.png" -> "red playing card"), or None
    for names a camera or tool made up (IMG_1234, DSC01234, 20230101_123456, hashes)."""
    stem = Path(path).stem.strip()
    if not stem or _CAMERA.match(stem):
        return None
    stem = _CAMERA_PREFIX.sub("", stem)  # IMG_1234_beach -> beach
    words = [w for w in _SEPARATORS.split(_CAMEL.sub(" ", stem)) if w]
    words = [re.sub(r"\d+$", "", w).lower() for w in words if not _DIGITS.match(w)]
    words = [w for w in words if len(w) > 1]
    return " ".join(words) or None


def captions_from_filenames(images: Sequence[Any]) -> list[str | None]:
    """`filename_caption` of each image given as a path (None for PIL images and arrays)."""
    return [filename_caption(i) if isinstance(i, (str, os.PathLike)) else None for i in images]


def _texts(value: Any) -> list[str]:
    """The strings in an XMP/IPTC value: a string, bytes, a list, or a dict of them
    ({"Alt": {"li": ...}}, {"Bag": {"li": [...]}}, {"lang": "x-default", "text": ...})."""
    if value is None:
        return []
    if isinstance(value, bytes):
        return [value.decode("utf-8", errors="replace")]
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        if "text" in value:
            return _texts(value["text"])
        return [t for v in value.values() for t in _texts(v)]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _texts(v)]
    return []


def _xmp_texts(im: Image.Image) -> list[str]:
    """dc:title, dc:description and dc:subject of the image's XMP packet (Pillow's getxmp,
    which parses with defusedxml: a file's XML cannot expand entities or reach the network)."""
    if not hasattr(im, "getxmp"):
        return []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow warns when defusedxml is missing
            xmp = im.getxmp()
    except Exception as exc:  # a malformed packet is no caption, not a failed fit
        logger.debug("Unreadable XMP in %s: %s", getattr(im, "filename", "an image"), exc)
        return []
    out = []
    for description in _texts_of_descriptions(xmp):
        for key in ("title", "description", "subject"):
            out += _texts(description.get(key))
    return out


def _texts_of_descriptions(xmp: dict) -> list[dict]:
    """The rdf:Description dicts of a getxmp() result (one or several)."""
    rdf = xmp.get("xmpmeta", {}).get("RDF", {}) if isinstance(xmp, dict) else {}
    descriptions = rdf.get("Description", []) if isinstance(rdf, dict) else []
    if isinstance(descriptions, dict):
        descriptions = [descriptions]
    return [d for d in descriptions if isinstance(d, dict)]


def _iptc_texts(im: Image.Image) -> list[str]:
    from PIL import IptcImagePlugin

    try:
        iptc = IptcImagePlugin.getiptcinfo(im) or {}
    except Exception as exc:
        logger.debug("Unreadable IPTC in %s: %s", getattr(im, "filename", "an image"), exc)
        return []
    return [t for key in (_IPTC_OBJECT_NAME, _IPTC_CAPTION, _IPTC_KEYWORDS) for t in _texts(iptc.get(key))]


def _exif_texts(im: Image.Image) -> list[str]:
    try:
        return _texts(im.getexif().get(_EXIF_IMAGE_DESCRIPTION))
    except Exception:
        return []


def metadata_caption(path: str | os.PathLike) -> str | None:
    """The texts a file carries about its picture, joined: XMP title/description/keywords,
    IPTC object name/caption/keywords, EXIF ImageDescription, PNG Title/Description/Comment/
    Keywords/Subject chunks. Only the header is read (no pixels are decoded). None when there
    are none or the file cannot be opened."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as im:
                texts = _xmp_texts(im) + _iptc_texts(im) + _exif_texts(im)
                texts += [str(im.info[k]) for k in _PNG_KEYS if isinstance(im.info.get(k), (str, bytes))]
    except Exception as exc:  # unreadable files are reported when the images are loaded
        logger.debug("No metadata read from %s: %s", path, exc)
        return None
    seen = dict.fromkeys(t.strip().replace("\x00", "") for t in _texts(texts))
    joined = "; ".join(t for t in seen if t)
    return joined[:MAX_CAPTION_CHARS] or None


def captions_from_metadata(images: Sequence[Any]) -> list[str | None]:
    """`metadata_caption` of each image given as a path (None for PIL images and arrays)."""
    return [metadata_caption(i) if isinstance(i, (str, os.PathLike)) else None for i in images]


def check_captions(captions: Any, images: Sequence[Any] | None, n_rows: int) -> list[str | None] | None:
    """One caption (a string or None) per input, from a list or a source name; None if none given.

    `n_rows` is the number of inputs (images or embedding rows) the captions must match.
    """
    if captions is None:
        return None
    if isinstance(captions, str):
        if captions not in CAPTION_SOURCES:
            raise ConceptError(f"captions must be a list of texts (one per image, None where an image has "
                               f"none) or one of {CAPTION_SOURCES}, got {captions!r}.")
        if images is None or not all(isinstance(i, (str, os.PathLike)) for i in images):
            raise ConceptError(f"captions={captions!r} reads the image files: pass the images as file paths.")
        read = captions_from_filenames if captions == "filenames" else captions_from_metadata
        out = read(images)
        logger.info("Captions from %s: %d of %d images have one.", captions, sum(c is not None for c in out),
                    len(out))
        return out
    if not isinstance(captions, Sequence) and not hasattr(captions, "__array__"):
        raise ConceptError(f"captions must be a list of texts, got {type(captions).__name__}.")
    captions = list(captions)
    if len(captions) != n_rows:
        raise ConceptError(f"Got {len(captions)} captions for {n_rows} images; pass one per image "
                           "(None where an image has no caption).")
    out = []
    for i, c in enumerate(captions):
        if c is None or (isinstance(c, float) and math.isnan(c)):  # None or a pandas NaN: no caption
            out.append(None)
        elif isinstance(c, str):
            c = c.strip()
            out.append(c[:MAX_CAPTION_CHARS] if c else None)
        else:
            raise ConceptError(f"captions[{i}] is a {type(c).__name__}, not a string or None.")
    return out
