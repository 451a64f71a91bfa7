"""Passes over every row, wherever the rows are: the refinement's unit of distribution.

The refinement (`hierarchy.refine_centres`) needs only two passes over the images: assign
each row to its nearest centre and reduce to per-concept counts and sums, and finally each
row's nearest centre and similarity. `InMemory` makes them over one array, as `refine` always
did; `concept.distributed` makes the same passes as Ray tasks over Parquet shards, so the
loop that decides when to dissolve a concept or stop is one piece of code for both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from concept.clustering.kernels import mean_directions, top_matches


class Step(Protocol):
    """One assignment pass: images per concept, the share of rows whose concept changed since
    the previous step (None without one), and the concepts' new unit mean directions."""

    counts: np.ndarray
    changed: float | None

    def means(self) -> np.ndarray: ...


class Rows(Protocol):
    """The rows of a collection, for the refinement's passes."""

    def __len__(self) -> int: ...

    def assign(self, centres: np.ndarray, previous: Step | None) -> Step:
        """Every row's nearest centre (fast scores, as k-means' inner loop)."""

    def nearest(self, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every row's nearest centre (exact) and its similarity, in row order."""


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

    def __len__(self) -> int:
        return len(self.x)

    def assign(self, centres: np.ndarray, previous: InMemoryStep | None) -> InMemoryStep:
        labels = top_matches(self.x, centres, exact=False)[0][:, 0]
        changed = None if previous is None else float(np.mean(labels != previous.labels))
        return InMemoryStep(self.x, labels, np.bincount(labels, minlength=len(centres)), changed)

    def nearest(self, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        idx, sims = top_matches(self.x, centres)
        return idx[:, 0], sims[:, 0]
