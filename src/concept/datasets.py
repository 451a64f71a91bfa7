"""Real, labeled image collections that install from Debian's registry, for demos and benchmarks.

- OpenClipart (`openclipart-png` + `openclipart-svg`): public-domain clip art in category
  folders; each PNG's SVG twin carries a title and keywords, which make good `docs`.
- Fashion-MNIST (`dataset-fashion-mnist`): 70,000 28x28 grey images of 10 clothing classes.
"""

from __future__ import annotations

import gzip
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from concept._errors import ConceptError

OPENCLIPART_ROOT = Path("/usr/share/openclipart")
FASHION_MNIST_ROOT = Path("/usr/share/datasets/fashion-mnist")

#: The 17 top-level OpenClipart folders that hold subjects (not UI icons, shapes, signs,
#: patterns or unsorted files): 2,263 images once symlinked duplicates are left out.
OPENCLIPART_SUBJECTS = (
    "animals", "buildings", "buttons", "containers", "decorations", "education", "electronics",
    "food", "geography", "logos", "office", "people", "plants", "recreation", "science",
    "tools", "transportation",
)

FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)

_TITLE = re.compile(r"<dc:title>\s*([^<]+?)\s*</dc:title>")
_KEYWORDS = re.compile(r"<dc:subject>(.*?)</dc:subject>", re.DOTALL)
_ITEM = re.compile(r"<rdf:li>\s*([^<]+?)\s*</rdf:li>")


@dataclass
class LabeledImages:
    """Image paths (or arrays) with integer labels, label names and optional texts."""

    images: list = field(repr=False)
    labels: np.ndarray = field(repr=False)
    label_names: list[str]
    docs: list[str] = field(default_factory=list, repr=False)
    #: One text per image or None (OpenClipart: the SVG twin's title), for `fit(captions=...)`.
    captions: list[str | None] = field(default_factory=list, repr=False)
    #: One date text per image or None (OpenClipart: the SVG twin's `<dc:date>`), for `timestamps=`.
    dates: list[str | None] = field(default_factory=list, repr=False)

    def __len__(self) -> int:
        return len(self.images)


def _svg_words(svg: Path) -> list[str]:
    """The title and keywords of an OpenClipart SVG (empty when unreadable)."""
    try:
        text = svg.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    words = _TITLE.findall(text)[:1]
    subject = _KEYWORDS.search(text)
    if subject:
        words += _ITEM.findall(subject.group(1))
    return [w for w in words if w and w.lower() != "open clip art library"]


_DC = "{http://purl.org/dc/elements/1.1/}"
_CC = "{http://web.resource.org/cc/}"


def _svg_work_texts(svg: Path, fields: tuple[str, ...]) -> dict[str, str | None]:
    """The texts of the work's `<dc:FIELD>`s in an OpenClipart SVG (None when missing, empty or
    unreadable; a title "Open Clip Art Library" is the publisher's, so None too).

    Parsed once with defusedxml (no entity expansion, no external resources) and only up to the
    end of `<metadata>`, which comes before the drawing.
    """
    from defusedxml.ElementTree import iterparse

    found: dict[str, str | None] = dict.fromkeys(fields)
    try:
        for _, element in iterparse(svg, events=("end",)):
            if element.tag.endswith("}metadata"):
                # The work's own fields, not its publisher's or creator's (also <dc:title>s).
                for work in element.iter(f"{_CC}Work"):
                    for field in fields:
                        text = (work.findtext(f"{_DC}{field}") or "").strip()
                        if found[field] is None and text and not (field == "title"
                                                                  and text.lower() == "open clip art library"):
                            found[field] = text
                return found
    except Exception:  # unreadable or malformed XML (defusedxml's refusals included)
        return dict.fromkeys(fields)
    return found


def svg_title(svg: Path) -> str | None:
    """The work's `<dc:title>` of an OpenClipart SVG (None when missing or unreadable)."""
    return _svg_work_texts(svg, ("title",))["title"]


def svg_date(svg: Path) -> str | None:
    """The work's `<dc:date>` of an OpenClipart SVG as written (None when missing or unreadable): most
    are "2005/05/30" or "2005-04-22", some "September 2005", "20 09 2005" or no date at all, and
    about four in five are empty. `concept.over_time.given_dates` reads them (pass them as
    `timestamps=`) and counts the empty and unreadable ones apart."""
    return _svg_work_texts(svg, ("date",))["date"]


def openclipart(categories: tuple[str, ...] = OPENCLIPART_SUBJECTS,
                root: Path = OPENCLIPART_ROOT) -> LabeledImages:
    """OpenClipart PNGs of the given top-level folders, labeled by folder.

    Symlinks are skipped (they duplicate another file). `docs` are the distinct titles and
    keywords of the matching SVG files, for use as `fit(..., docs=...)`; `captions` each
    PNG's own SVG title (None when it has none), for `fit(..., captions=...)`; `dates` its SVG's
    `<dc:date>` as written (see `svg_date`), for `concepts_over_time(timestamps=...)`.
    """
    png_root = root / "png"
    if not png_root.is_dir():
        raise ConceptError(
            f"OpenClipart not found under {root}: apt-get install openclipart-png openclipart-svg"
        )
    images, labels, docs, captions, dates = [], [], {}, [], []
    for label, category in enumerate(categories):
        for path in sorted((png_root / category).rglob("*.png")):
            if path.is_symlink() or not path.is_file():
                continue
            images.append(path)
            labels.append(label)
            svg = root / "svg" / path.relative_to(png_root).with_suffix(".svg")
            texts = _svg_work_texts(svg, ("title", "date"))
            captions.append(texts["title"])
            dates.append(texts["date"])
            for word in _svg_words(svg):
                docs.setdefault(word.strip().lower(), None)
    return LabeledImages(images, np.asarray(labels), list(categories), list(docs), captions, dates)


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def fashion_mnist(split: str = "all", root: Path = FASHION_MNIST_ROOT) -> LabeledImages:
    """Fashion-MNIST as uint8 28x28 arrays: ``"train"`` (60,000), ``"test"`` (10,000) or ``"all"``."""
    if not root.is_dir():
        raise ConceptError(f"Fashion-MNIST not found under {root}: apt-get install dataset-fashion-mnist")
    parts = {"train": ["train"], "test": ["t10k"], "all": ["train", "t10k"]}
    if split not in parts:
        raise ConceptError(f"split must be 'train', 'test' or 'all', got {split!r}")
    xs = [_read_idx(root / f"{p}-images-idx3-ubyte.gz") for p in parts[split]]
    ys = [_read_idx(root / f"{p}-labels-idx1-ubyte.gz") for p in parts[split]]
    images = np.concatenate(xs)
    return LabeledImages(list(images), np.concatenate(ys).astype(int), list(FASHION_MNIST_CLASSES),
                         [c.lower() for c in FASHION_MNIST_CLASSES])
