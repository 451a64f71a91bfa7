"""The bundled English nouns (WordNet 3.0) and the ImageNet-1k class list.

Both files live in ``concept/data/`` and are built by ``scripts/build_data.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib.resources import files

from concept._errors import ConceptError

__all__ = ["ImageNetClass", "imagenet_classes", "load_vocabulary"]

_DATA = "concept.data"


@cache
def _read_lines(name: str) -> tuple[str, ...]:
    """The non-empty lines of a bundled data file, read once."""
    text = files(_DATA).joinpath(name).read_text(encoding="utf-8")
    return tuple(line for line in text.splitlines() if line)


def load_vocabulary(
    max_words: int | None = None, *, multiword: bool = True, proper_nouns: bool = False
) -> list[str]:
    """The bundled English nouns (WordNet 3.0), most common first.

    Parameters
    ----------
    max_words:
        Keep only the first ``max_words`` nouns after filtering; ``None`` keeps all.
    multiword:
        Keep lemmas of several words (those containing a space, e.g. ``"ice cream"``).
    proper_nouns:
        Keep lemmas that start with an upper-case letter (``"Paris"``, ``"Tinca tinca"``).

    Returns
    -------
    A new list of nouns; order is by SemCor tag count, ties alphabetical.
    """
    if max_words is not None and (isinstance(max_words, bool) or max_words < 1):
        raise ConceptError(
            f"max_words must be a positive integer or None, got {max_words!r}; "
            "pass None to keep the whole vocabulary."
        )
    words = [
        w
        for w in _read_lines("wordnet_nouns.txt")
        if (multiword or " " not in w) and (proper_nouns or not w[0].isupper())
    ]
    return words if max_words is None else words[:max_words]


@dataclass(frozen=True)
class ImageNetClass:
    """One ImageNet-1k class: its output index, WordNet id, lemmas and gloss."""

    index: int
    wnid: str
    lemmas: tuple[str, ...]
    gloss: str

    @property
    def name(self) -> str:
        """The first lemma (not unique: two classes are each called "crane" and "maillot")."""
        return self.lemmas[0]


@cache
def _imagenet_classes() -> tuple[ImageNetClass, ...]:
    lines = _read_lines("imagenet_classes.tsv")
    classes = []
    for line in lines[1:]:  # header: index, wnid, lemmas, gloss
        index, wnid, lemmas, gloss = line.split("\t")
        classes.append(ImageNetClass(int(index), wnid, tuple(lemmas.split(", ")), gloss))
    return tuple(classes)


def imagenet_classes() -> list[ImageNetClass]:
    """The 1,000 ImageNet-1k classes in model output order (``result[i].index == i``)."""
    return list(_imagenet_classes())
