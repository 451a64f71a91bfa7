"""Maximal Marginal Relevance: pick items that are relevant to a query and unlike each other."""

from __future__ import annotations

import numpy as np


def mmr(query: np.ndarray, candidates: np.ndarray, top_n: int, diversity: float = 0.3,
        groups: np.ndarray | None = None) -> list[int]:
    """Indices of up to `top_n` rows of `candidates`, chosen greedily by MMR.

    Each step takes the candidate maximising
    ``(1 - diversity) * sim(candidate, query) - diversity * max sim(candidate, chosen)``,
    so `diversity=0` ranks by relevance alone and `diversity=1` by novelty alone.
    Rows are assumed unit norm (cosine similarity is a dot product).
    `groups`: one group id per candidate (-1: in none), e.g. duplicate groups: once one candidate of a
    group is chosen the others are skipped, so fewer than `top_n` may come back.
    """
    if not 0.0 <= diversity <= 1.0:
        raise ValueError(f"diversity must be between 0 and 1, got {diversity}")
    n = len(candidates)
    top_n = min(int(top_n), n)
    if top_n <= 0:
        return []
    relevance = candidates @ query
    chosen = [int(np.argmax(relevance))]
    # Highest similarity of each candidate to anything chosen so far, updated incrementally.
    redundancy = candidates @ candidates[chosen[0]]
    available = np.ones(n, dtype=bool)
    available[chosen[0]] = False
    groups = None if groups is None else np.asarray(groups)
    if groups is not None and groups[chosen[0]] >= 0:
        available[groups == groups[chosen[0]]] = False
    while len(chosen) < top_n and available.any():
        score = (1.0 - diversity) * relevance - diversity * redundancy
        score[~available] = -np.inf
        best = int(np.argmax(score))
        chosen.append(best)
        available[best] = False
        if groups is not None and groups[best] >= 0:
            available[groups == groups[best]] = False
        redundancy = np.maximum(redundancy, candidates @ candidates[best])
    return chosen
