"""Class-based TF-IDF: which terms are frequent in one concept and rare in the others."""

from __future__ import annotations

import numpy as np
from scipy import sparse


def ctfidf(counts: np.ndarray | sparse.spmatrix) -> np.ndarray:
    """c-TF-IDF scores of a (n_concepts, n_terms) count matrix.

    ``score[c, t] = tf[c, t] * log(1 + A / f[t])`` where `tf` is the term's share of the
    concept's terms, `f[t]` the term's total count over all concepts and `A` the average
    number of terms per concept (the weighting BERTopic uses). Terms never seen score 0.
    """
    counts = sparse.csr_matrix(counts, dtype=np.float64)
    per_concept = np.asarray(counts.sum(axis=1)).ravel()
    per_term = np.asarray(counts.sum(axis=0)).ravel()
    avg = per_concept.mean() if len(per_concept) else 0.0
    idf = np.zeros_like(per_term)
    seen = per_term > 0
    idf[seen] = np.log1p(avg / per_term[seen])
    tf = sparse.diags(1.0 / np.maximum(per_concept, 1e-12)) @ counts
    return np.asarray((tf @ sparse.diags(idf)).todense())


def top_terms(scores: np.ndarray, terms: list[str], top_n: int) -> list[list[tuple[str, float]]]:
    """For each row of `scores`, the `top_n` best (term, score) pairs with a positive score, best first."""
    top_n = min(top_n, scores.shape[1])
    out = []
    for row in scores:
        order = np.argsort(-row, kind="stable")[:top_n]
        out.append([(terms[i], float(row[i])) for i in order if row[i] > 0])
    return out
