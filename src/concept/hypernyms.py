"""Words from the offline model's class hierarchy: a concept's ImageNet class mass lifted to a hypernym.

The offline model's 1,000 classes are WordNet synsets. A concept's members spread their
probability over many of them ("beagle", "basset", "bloodhound", ...), so none of the class names
says what the concept is; a common hypernym does ("dog", "hound"). `imagenet_hypernyms.tsv`
(``scripts/build_hypernyms.py``, from WordNet 3.0) holds every class and every synset above one.

The rule (`lift`): a synset's mass is the concept's class mass under it, its information
content ``log(1000 / classes under it)`` (a leaf: log 1000 = 6.9, "dog": 2.1, entity: 0). The
concept's hypernym is the most informative (deepest) synset holding at least `MIN_MASS` of its
mass, if that synset is informative enough (`MIN_INFORMATION`): 30 dog breeds spread over the dog
groups give "dog" (their largest group, "hunting dog", holds about half); cars and buses give
"conveyance" (WordNet files a bus under "public transport", a car under "motor vehicle"); one
class alone names itself, never "entity". Ties (a synset and its only child hold the same classes)
go to the general one. Scoring mass x information instead named the larger half of a two-kind
concept ("car" for 4 cars and 3 buses), not what the kinds share.

On drawings and 28 x 28 clothes the classifier reads a concept as a spread of unrelated classes
("hook", "envelope", "can opener"): the synsets holding most of it are "artifact" (522 classes)
or "instrumentality" (358), under `MIN_INFORMATION`, so such a concept gets no hypernym
(benchmarks/words.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from importlib.resources import files

import numpy as np

from concept.vocabulary import imagenet_classes

__all__ = ["MIN_INFORMATION", "MIN_MASS", "Hierarchy", "hierarchy", "hypernym_words", "lift"]

#: A synset is named only when at least this share of a concept's class mass lies under it,
MIN_MASS = 0.75
#: and its information content is at least this: at most 1000 / e^1.5 = 223 classes under it
#: ("dog": 118, "vehicle": 67; not "instrumentality": 358 or "artifact": 522).
MIN_INFORMATION = 1.5


@dataclass(frozen=True)
class Hierarchy:
    """The synsets above the ImageNet classes: ids, lemmas, hypernyms (indices), and per class
    (in model output order) which synsets lie on a path from it up to entity (a 0/1 matrix)."""

    wnids: tuple[str, ...]
    lemmas: tuple[tuple[str, ...], ...]
    parents: tuple[tuple[int, ...], ...]
    under: np.ndarray  # (1000, n_synsets) float32: class i lies under synset j (or is j)
    depth: np.ndarray  # (n_synsets,) synsets on the paths up to entity, itself included (a tie-breaker)

    @property
    def information(self) -> np.ndarray:
        """Each synset's information content, log(1000 / classes under it)."""
        return np.log(len(self.under) / self.under.sum(axis=0)).astype(np.float32)

    def chain(self, wnid: str) -> list[str]:
        """The wnids on every path from `wnid` up to entity, `wnid` first, nearest first."""
        index = {w: i for i, w in enumerate(self.wnids)}
        out, frontier = [], [index[wnid]]
        while frontier:
            out += [self.wnids[i] for i in frontier if self.wnids[i] not in out]
            frontier = [p for i in frontier for p in self.parents[i]]
        return out


@cache
def hierarchy() -> Hierarchy:
    """The bundled hierarchy (read once)."""
    text = files("concept.data").joinpath("imagenet_hypernyms.tsv").read_text(encoding="utf-8")
    rows = [line.split("\t") for line in text.splitlines()[1:] if line]
    wnids = tuple(r[0] for r in rows)
    index = {w: i for i, w in enumerate(wnids)}
    parents = tuple(tuple(index[p] for p in r[1].split()) for r in rows)
    lemmas = tuple(tuple(r[2].split(", ")) for r in rows)
    classes = imagenet_classes()
    under = np.zeros((len(classes), len(wnids)), np.float32)
    for c in classes:
        stack = [index[c.wnid]]
        while stack:
            j = stack.pop()
            if not under[c.index, j]:
                under[c.index, j] = 1.0
                stack.extend(parents[j])
    depth = np.zeros(len(wnids), np.int64)
    for j in range(len(wnids)):
        seen, stack = set(), [j]
        while stack:
            i = stack.pop()
            if i not in seen:
                seen.add(i)
                stack.extend(parents[i])
        depth[j] = len(seen)
    return Hierarchy(wnids, lemmas, parents, under, depth)


def lift(class_mass: np.ndarray, top_n: int = 1, min_mass: float | None = None,
         allowed: np.ndarray | None = None) -> list[list[tuple[int, float]]]:
    """Each concept's `top_n` most informative synsets holding most of its mass, best first.

    `class_mass` is (k, 1000), each row a concept's non-negative mass over the classes (it is
    normalised here). Returns per concept [(synset index into `hierarchy()`, its information
    content)], only synsets holding at least `min_mass` (default MIN_MASS) of the concept's mass
    with at least MIN_INFORMATION (none for a row without mass), and only those `allowed` (a
    boolean mask over the synsets) when given.
    """
    h = hierarchy()
    mass = np.asarray(class_mass, np.float32)
    total = mass.sum(axis=1, keepdims=True)
    mass = np.divide(mass, total, out=np.zeros_like(mass), where=total > 0)
    under = mass @ h.under  # (k, n_synsets): the mass under each synset
    keep = under >= (MIN_MASS if min_mass is None else min_mass)
    if allowed is not None:
        keep &= allowed
    keep &= h.information >= MIN_INFORMATION
    scores = np.where(keep, h.information, 0.0)
    out = []
    for row in scores:  # ties (a synset and its only child hold the same classes): the general one
        order = np.lexsort((h.depth, -np.round(row, 6)))[:top_n]
        out.append([(int(j), float(row[j])) for j in order if row[j] > 0])
    return out


def _name(lemmas: Sequence[str], preferred: set[str]) -> str | None:
    """A synset's word among the `preferred` words (exactly or lower-cased), else None."""
    for lemma in lemmas:
        if lemma in preferred:
            return lemma
        if lemma.lower() in preferred:
            return lemma.lower()
    return None


def hypernym_words(class_mass: np.ndarray, top_n: int = 1, min_mass: float | None = None,
                   preferred: Iterable[str] = ()) -> list[list[str]]:
    """Each concept's hypernym words, best first: its `top_n` synsets (`lift`), each named by a
    lemma among the `preferred` words when it has one (the user's candidate words), else by its
    first lower-case lemma ("dog", not "Canis familiaris"); then, with `preferred` words, the
    best synset that one of them names, when it is not among those."""
    h = hierarchy()
    preferred = set(preferred)
    named = [_name(lemmas, preferred) for lemmas in h.lemmas]
    allowed = np.asarray([n is not None for n in named])
    best = lift(class_mass, top_n, min_mass)
    in_words = lift(class_mass, 1, min_mass, allowed) if preferred and allowed.any() else [[] for _ in best]
    out = []
    for synsets, extra in zip(best, in_words):
        words = [named[j] or next((lemma for lemma in h.lemmas[j] if not lemma[:1].isupper()), h.lemmas[j][0])
                 for j, _ in synsets + extra]
        out.append(list(dict.fromkeys(words)))
    return out
