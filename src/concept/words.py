"""Concept words from captions: c-TF-IDF over the members' captions, and distinctive words.

`representation.py` ranks candidate words by their similarity to a concept. With captions, a
concept's words are better read off what its members are called: each member's caption (or,
for a member with none, the words nearest to it in the learned space, `alignment.py`) is one
document, the documents are grouped per concept, and c-TF-IDF scores the terms (the
topic-modelling way). Words similar to every concept ("envelope" for 4 of 11) are down-weighted
in the similarity ranking by `distinctive_words`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy import sparse

from concept.ctfidf import ctfidf, top_terms
from concept.representation import nearest_words

__all__ = ["alike_groups", "candidate_terms", "caption_analyzer", "distinctive_words", "pack_documents", "shared_words", "tell_apart",
           "unpack_documents", "words_by_captions"]

#: Two concepts of a layer whose first COMPARED_WORDS words share more than MAX_SHARED_WORDS are
#: told apart (`tell_apart`): they keep at most MAX_SHARED_WORDS common words, then the words that
#: fit each best against the others (issue 25: four "card" concepts with the same five words).
MAX_SHARED_WORDS = 2
COMPARED_WORDS = 5
#: Letters-only tokens of at least 3 characters: no numbers, no "s" of "king's".
TOKEN_PATTERN = r"(?u)\b[^\W\d_]{3,}\b"
#: `docs` whose median has more words than this are documents, not candidate terms (`candidate_terms`).
MAX_TERM_WORDS = 5


def caption_analyzer(vectorizer=None) -> Callable[[str], list[str]]:
    """A function from a text to its terms: the user's scikit-learn vectorizer's analyzer, or
    lower-cased words of 3+ letters without English stop words (scikit-learn's list)."""
    if vectorizer is not None and hasattr(vectorizer, "build_analyzer"):
        return vectorizer.build_analyzer()
    from sklearn.feature_extraction.text import CountVectorizer

    return CountVectorizer(stop_words="english", token_pattern=TOKEN_PATTERN).build_analyzer()


def candidate_terms(docs: list[str] | None, vectorizer=None) -> list[str] | None:
    """`fit`'s `docs` as candidate words. A list of words or short phrases (the median of at most MAX_TERM_WORDS
    words) is taken as it is. Documents (the reference's notebook passed newsgroup posts) are read as the
    reference read them: the candidates are the terms a vectorizer finds in them, a copy of the user's
    `vectorizer` (the reference fitted its `vectorizer_model` on `docs`), else lower-cased words of 3+ letters
    without English stop words."""
    if not docs or float(np.median([len(d.split()) for d in docs])) <= MAX_TERM_WORDS:
        return docs
    from sklearn.base import clone
    from sklearn.feature_extraction.text import CountVectorizer

    v = (clone(vectorizer, safe=False) if hasattr(vectorizer, "get_feature_names_out")
         else CountVectorizer(stop_words="english", token_pattern=TOKEN_PATTERN))
    try:
        v.fit(docs)
    except ValueError:  # scikit-learn's "empty vocabulary": no terms in the documents
        return []
    return [str(t) for t in v.get_feature_names_out()]


def words_by_captions(labels: np.ndarray, ids: np.ndarray, documents: Sequence[Sequence[str] | None],
                      top_n: int, weights: np.ndarray | None = None,
                      concentration: float = 1.0, sharing: float = 0.0) -> list[list[tuple[str, float]]]:
    """Each concept's `top_n` terms by c-TF-IDF over its members' documents, best first.

    `documents[i]` holds the terms of image i (its caption's, or its predicted words), or None;
    a term counts once per image (times `weights[i]`, default 1), so one long caption cannot
    outweigh many short ones. A concept with no documents gets no words.

    Scores are multiplied by ``share ** concentration``, the share of the term's count that
    falls in the concept: a term spread over many concepts (a photographer's name in every
    title) says little about any one, which c-TF-IDF's idf alone barely sees. With `sharing`
    they are also multiplied by ``(share of the concept's documented members that have the term)
    ** sharing``: the kind its members share, not one member's name. A member without a caption
    counts through its predicted terms (the learned map's nearest words), as in the counts.
    """
    vocabulary: dict[str, int] = {}
    rows, cols, values = [], [], []
    documented = np.zeros(len(ids))
    concept_row = {int(c): r for r, c in enumerate(ids)}
    for image, terms in enumerate(documents):
        row = concept_row.get(int(labels[image]))
        if row is None or not terms:
            continue
        weight = 1.0 if weights is None else float(weights[image])
        documented[row] += weight
        for term in dict.fromkeys(terms):
            rows.append(row)
            cols.append(vocabulary.setdefault(term, len(vocabulary)))
            values.append(weight)
    if not vocabulary:
        return [[] for _ in ids]
    counts = sparse.csr_matrix((values, (rows, cols)), shape=(len(ids), len(vocabulary)))
    scores = ctfidf(counts)
    if concentration:
        dense = counts.toarray()
        scores *= (dense / np.maximum(dense.sum(axis=0, keepdims=True), 1e-12)) ** concentration
    if sharing:
        scores = sparse.csr_matrix(scores).multiply(
            sparse.csr_matrix(counts.multiply(1.0 / np.maximum(documented, 1e-12)[:, None])).power(sharing)).toarray()
    return top_terms(scores, list(vocabulary), top_n)


def predicted_terms(vectors: np.ndarray, word_vectors: np.ndarray, word_terms: Sequence[Sequence[str]],
                    words_per_image: int = 5) -> list[list[str]]:
    """The terms of the `words_per_image` candidate words nearest to each row of `vectors`."""
    nearest = nearest_words(vectors, word_vectors, words_per_image)
    return [[t for j in row for t in word_terms[j]] for row in nearest]


def distinctive_words(concept_vectors: np.ndarray, word_vectors: np.ndarray, words: Sequence[str],
                      top_n: int, weight: float = 1.0) -> list[list[tuple[str, float]]]:
    """Each concept's `top_n` words by ``sim(concept, word) - weight x mean over concepts of
    sim(concept', word)``: a word close to every concept says little about any one of them.

    With one concept there is nothing to tell apart, so it is plain similarity.
    """
    if len(words) == 0:
        return [[] for _ in concept_vectors]
    sims = concept_vectors @ word_vectors.T
    if len(concept_vectors) > 1 and weight:
        sims = sims - weight * sims.mean(axis=0, keepdims=True)
    top_n = min(top_n, len(words))
    return [[(words[j], float(sims[i, j])) for j in row] for i, row in enumerate(_top_columns(sims, top_n))]


def shared_words(tops: Sequence[Sequence[str]]) -> dict[tuple[int, int], int]:
    """{(a, b): how many words concepts a < b share} for the pairs that share any, counted
    through each word's holders rather than over all k^2 pairs."""
    holders: dict[str, list[int]] = {}
    for c, words in enumerate(tops):
        for w in dict.fromkeys(words):
            holders.setdefault(w, []).append(c)
    shared: dict[tuple[int, int], int] = {}
    for concepts in holders.values():
        for i, a in enumerate(concepts):
            for b in concepts[i + 1:]:
                shared[a, b] = shared.get((a, b), 0) + 1
    return shared


def alike_groups(tops: Sequence[Sequence[str]], max_shared: int) -> list[list[int]]:
    """Groups of concepts (indices into `tops`, each concept's top words) linked by pairs that
    share more than `max_shared` words; only groups of two or more, each sorted."""
    parent = list(range(len(tops)))

    def root(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for (a, b), n in shared_words(tops).items():
        if n > max_shared:
            parent[root(a)] = root(b)
    groups: dict[int, list[int]] = {}
    for c in range(len(tops)):
        groups.setdefault(root(c), []).append(c)
    return [sorted(g) for g in groups.values() if len(g) > 1]


def tell_apart(described: list[list[tuple[str, float]]], scores: Callable[[list[int]], np.ndarray] | None,
               words: Sequence[str], top_n: int, max_shared: int = 2, compared: int = 5,
               pool_size: int = 20) -> list[list[tuple[str, float]]]:
    """Concepts that read the same told apart by their words.

    Concepts whose first `compared` words share more than `max_shared` with another's form a
    group (linked by such pairs). In its first `compared` words each member keeps, in its own
    order, the words no other member of the group shows and at most `max_shared` words that all
    of them show (their common kind: "card"); the places left are filled, member by member in
    turn, with the words that fit it best *against the others* (among its `pool_size`
    best-fitting candidates, its score minus the best score of another member: "queen" for the
    queens, "joker" for the jokers), each word to one member only and none that a concept outside
    the group already shows, so no new pair reads alike (then the other candidates by fit; only
    when every candidate is taken do shared words fill in). Its other words follow, to `top_n`.
    `scores(members)` gives the members' scores of every candidate word (rows in the order of
    `members`, columns `words`); None fills from each member's own words only (e.g. c-TF-IDF
    terms, which are not candidate words). Concepts in no group keep their words.
    """
    tops = [[w for w, _ in d[:compared]] for d in described]
    out = list(described)
    groups = alike_groups(tops, max_shared)
    row = {w: j for j, w in enumerate(words)} if groups and scores is not None else {}
    for members in groups:
        blocked = {w for c in set(range(len(tops))) - set(members) for w in tops[c]}
        common = [w for w in tops[members[0]] if all(w in tops[m] for m in members)][:max_shared]
        shown: dict[str, int] = {}
        for m in members:
            for w in tops[m]:
                shown[w] = shown.get(w, 0) + 1
        kept = [[w for w in tops[m] if w in common or shown[w] == 1] for m in members]
        used = {w for k in kept for w in k} | blocked
        candidates = [[w for w, _ in described[m][compared:]] for m in members]  # own words further down
        s = None
        if scores is not None:
            s = scores(members)
            best_other = np.stack([np.delete(s, i, axis=0).max(axis=0) for i in range(len(members))])
            for i in range(len(members)):
                by_fit = np.argsort(-s[i], kind="stable")
                fitting = by_fit[:pool_size]
                telling = fitting[np.argsort(-(s[i] - best_other[i])[fitting], kind="stable")]
                candidates[i] = [words[j] for j in telling] + [words[j] for j in by_fit[pool_size:]]
        cursor = [0] * len(members)
        while True:  # in turn, so that no member takes every telling word
            moved = False
            for i in range(len(members)):
                while len(kept[i]) < min(compared, top_n) and cursor[i] < len(candidates[i]):
                    w = candidates[i][cursor[i]]
                    cursor[i] += 1
                    if w not in used:
                        used.add(w)
                        kept[i].append(w)
                        moved = True
                        break
            if not moved:
                break
        for i, m in enumerate(members):
            own = dict(described[m])
            rest = [w for w, _ in described[m] if w not in kept[i]]
            chosen = (kept[i] + rest)[:max(top_n, len(kept[i]))]
            out[m] = [(w, own[w] if w in own else float(s[i, row[w]])) for w in chosen]
            tops[m] = chosen[:compared]
    return out


def _top_columns(scores: np.ndarray, top_n: int) -> list[np.ndarray]:
    """Each row's `top_n` columns by score, best first, ties by column (what a stable argsort
    of the whole row gives), from a partition instead: a full sort of 167 concepts x 50,000
    words was a third of a 25,000-image fit."""
    neg = -scores
    kth = np.partition(neg, top_n - 1, axis=1)[:, top_n - 1:top_n]
    out = []
    for row, bound in zip(neg, kth):
        cand = np.flatnonzero(row <= bound[0])  # every tie at the boundary too
        out.append(cand[np.argsort(row[cand], kind="stable")][:top_n])
    return out


def pack_documents(documents: Sequence[Sequence[str] | None]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Per-image term lists as a sparse row form for saving: the terms (in order of first use),
    row pointers (n + 1) and term indices, each row's terms in their order (None: empty row)."""
    vocabulary: dict[str, int] = {}
    indptr, indices = [0], []
    for terms in documents:
        indices.extend(vocabulary.setdefault(t, len(vocabulary)) for t in (terms or ()))
        indptr.append(len(indices))
    return list(vocabulary), np.asarray(indptr, np.int64), np.asarray(indices, np.int64)


def unpack_documents(terms: Sequence[str], indptr: np.ndarray, indices: np.ndarray) -> list[list[str] | None]:
    """The inverse of `pack_documents` (an empty row is None)."""
    return [[terms[j] for j in indices[a:b]] or None for a, b in zip(indptr[:-1].tolist(), indptr[1:].tolist())]
