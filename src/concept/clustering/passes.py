"""Passes over every row, wherever the rows are: the refinement's unit of distribution.

The refinement (`hierarchy.refine_centres`) needs only two passes over the images: assign
each row to its nearest centre and reduce to per-concept counts and sums, and finally each
row's nearest centre and similarity. `InMemory` makes them over one array, as `refine` always
did; `concept.distributed` makes the same passes as Ray tasks over Parquet shards, so the
loop that decides when to dissolve a concept or stop is one piece of code for both.

A pass may be restricted (`within`: coarse centres and each centre's coarse concept): a row
then joins the nearest of the centres whose coarse concept is the row's nearest coarse centre,
the k-means inside each default concept of `clustering/stable.py` (`Within`). Or it may give
each row a few candidate centres (`Near`: the refinement's Lloyd's steps at scale).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from concept.clustering.kernels import best_of_candidates, label_sums, mean_directions, top_matches
from concept.clustering.separation import side_moments


class Step(Protocol):
    """One assignment pass: images per concept, the share of rows whose concept changed since
    the previous step (None without one), and the concepts' new unit mean directions."""

    counts: np.ndarray
    changed: float | None

    def means(self) -> np.ndarray: ...


@dataclass
class Near:
    """A pass in which each row searches only its group's candidate centres: `group` (n,),
    each row's group in row order; `lists` (g, c), each group's candidate centre ids (-1: none).
    One array's passes only: the Ray core has no per-row units and keeps full passes."""

    group: np.ndarray
    lists: np.ndarray


#: A restriction of a pass: (coarse centres (m, d), each centre's coarse concept (k,)), or Near.
Within = tuple[np.ndarray, np.ndarray] | Near


class Rows(Protocol):
    """The rows of a collection, for the refinement's passes. `nearest` also leaves the
    concepts' sums (k, d) over its answer in `final_sums`."""

    final_sums: np.ndarray | None

    def __len__(self) -> int: ...

    def assign(self, centres: np.ndarray, previous: Step | None, within: Within | None = None) -> Step:
        """Every row's nearest centre (fast scores, as k-means' inner loop)."""

    def nearest(self, centres: np.ndarray, within: Within | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Every row's nearest centre (exact) and its similarity, in row order."""

    def nearest_at(self, positions: np.ndarray, centres: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The rows at `positions` (sorted) against `centres` (exact): their nearest, its
        similarity and the concepts' sums over those rows (k, d), for dissolving a few
        concepts after `nearest` without another pass over every row."""

    def side_moments(self, leaf: np.ndarray, pair: np.ndarray, side: np.ndarray, ends: np.ndarray,
                     counts: np.ndarray) -> np.ndarray:
        """`separation.side_moments` over every row (`leaf`: each row's concept, row order)."""


def matches(x: np.ndarray, centres: np.ndarray, within: Within | None = None, *, exact: bool = True,
            rows: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Each row's nearest centre and similarity (`top_matches`; `rows` as there), or with
    `within` the nearest among the centres of the row's nearest coarse centre (-1 and -inf
    where that coarse concept has no centre), always by the fast scores: restricted passes
    only shape the finest concepts, whose labels come from an unrestricted, exact pass (exact
    scores were 70% of their time)."""
    if within is None:
        idx, sims = top_matches(x, centres, exact=exact, rows=rows)
        return idx[:, 0], sims[:, 0]
    if isinstance(within, Near):
        return best_of_candidates(x, centres, within.group, within.lists)
    coarse_centres, home = within
    m = len(coarse_centres)
    coarse = top_matches(x, coarse_centres, exact=False, rows=rows)[0][:, 0]
    labels = np.full(len(x), -1, np.int64)
    sims = np.full(len(x), -np.inf, np.float32)
    order, bounds = _groups(coarse, m)
    owners, owner_bounds = _groups(np.asarray(home, np.int64), m)
    for c in range(m):
        part, own = order[bounds[c]:bounds[c + 1]], owners[owner_bounds[c]:owner_bounds[c + 1]]
        if len(part) == 0 or len(own) == 0:
            continue
        idx, s = top_matches(x[part], centres[own], exact=False, rows=rows)
        labels[part], sims[part] = own[idx[:, 0]], s[:, 0]
    return labels, sims


def _groups(labels: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions sorted by label (stable) and where each label 0..m-1 starts among them."""
    order = np.argsort(labels, kind="stable")
    return order, np.searchsorted(labels[order], np.arange(m + 1))


class Restricted:
    """`rows` whose every pass is restricted to `within` (see `matches`)."""

    def __init__(self, rows: Rows, within: Within) -> None:
        self.rows, self.within = rows, within

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def final_sums(self) -> np.ndarray | None:
        return self.rows.final_sums

    def assign(self, centres: np.ndarray, previous: Step | None, within: Within | None = None) -> Step:
        return self.rows.assign(centres, previous, self.within)

    def nearest(self, centres: np.ndarray, within: Within | None = None) -> tuple[np.ndarray, np.ndarray]:
        return self.rows.nearest(centres, self.within)

    def nearest_at(self, positions: np.ndarray, centres: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.rows.nearest_at(positions, centres)

    def side_moments(self, *args) -> np.ndarray:
        return self.rows.side_moments(*args)


@dataclass
class InMemoryStep:
    x: np.ndarray
    labels: np.ndarray
    counts: np.ndarray
    changed: float | None

    def means(self) -> np.ndarray:
        return mean_directions(self.x, self.labels, len(self.counts))[0]


class InMemory:
    """The passes over one array of rows."""

    def __init__(self, x: np.ndarray) -> None:
        self.x = x
        self._labels: np.ndarray | None = None  # the last `nearest` answer and its concepts
        self._k = 0
        self._sums: np.ndarray | None = None

    @property
    def final_sums(self) -> np.ndarray | None:
        """The concepts' sums over the last `nearest` answer, computed when first asked for
        (most refinements never ask)."""
        if self._sums is None and self._labels is not None:
            self._sums = label_sums(self.x, self._labels, self._k)[0]
        return self._sums

    def __len__(self) -> int:
        return len(self.x)

    def assign(self, centres: np.ndarray, previous: InMemoryStep | None,
               within: Within | None = None) -> InMemoryStep:
        labels = matches(self.x, centres, within, exact=False)[0]
        changed = None if previous is None else float(np.mean(labels != previous.labels))
        counts = np.bincount(labels[labels >= 0], minlength=len(centres))
        return InMemoryStep(self.x, labels, counts, changed)

    def nearest(self, centres: np.ndarray, within: Within | None = None) -> tuple[np.ndarray, np.ndarray]:
        labels, sims = matches(self.x, centres, within)
        self._labels, self._k, self._sums = labels, len(centres), None
        return labels, sims

    def nearest_at(self, positions: np.ndarray, centres: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x = self.x[positions]
        labels, sims = matches(x, centres, rows=len(self.x))
        return labels, sims, label_sums(x, labels, len(centres))[0]

    def side_moments(self, leaf: np.ndarray, pair: np.ndarray, side: np.ndarray, ends: np.ndarray,
                     counts: np.ndarray) -> np.ndarray:
        return side_moments(self.x, leaf, pair, side, ends, counts)
