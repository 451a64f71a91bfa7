"""The describing stage of a fit: each layer's concepts -> concept embeddings, exemplars, words.

Plain data in (the images' vectors, each layer's labels, the candidate words), small
dataclasses out. Words are compared after centring each modality on its mean; with captions
they come from the members' captions too (c-TF-IDF), and with enough captions a learned map
from images to the text space (`concept.alignment`) stands in for the plain shared space.
The model calls `describe_fit` after clustering and `describe_again` after an edit.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from concept._cache import cached_array, vocabulary_embeddings
from concept._errors import EmbeddingError
from concept.clustering import mean_directions
from concept.embedding.base import l2_normalize
from concept.representation import describe_concepts, words_by_ctfidf
from concept.seeding import favour_seed_words, seeded_concepts
from concept.vocabulary import load_vocabulary
from concept.words import (
    COMPARED_WORDS,
    MAX_SHARED_WORDS,
    caption_analyzer,
    distinctive_words,
    predicted_terms,
    tell_apart,
    words_by_captions,
)

__all__ = ["Described", "Settings", "Vocabulary", "candidate_words", "describe_again", "describe_fit", "edit_words",
           "describe_layer", "layer_words"]

logger = logging.getLogger("concept.model")

#: Fewer candidate words than this are compared uncentred (their mean is not a stable offset).
MIN_WORDS_TO_CENTER = 10
#: How much a word's mean similarity to all concepts is subtracted from its similarity to one
#: (`concept.words.distinctive_words`; measured in benchmarks/words.py).
DISTINCTIVENESS = 0.5
#: Caption terms added to the candidate words at most (the most frequent; each is embedded).
MAX_CAPTION_TERMS = 5_000
#: Candidate words standing in for the caption of an uncaptioned image in the learned space,
#: and how much such a predicted caption counts against a real one in the c-TF-IDF.
WORDS_PER_IMAGE = 1
PREDICTED_WEIGHT = 1.0
#: Caption terms are scored x (share of the term's count in the concept) ** this.
CAPTION_CONCENTRATION = 0.5
#: ... and x (share of the concept's documented members that have the term) ** this.
CAPTION_SHARING = 0.5
#: Concepts that read the same are told apart (`concept.words.tell_apart`) only with at least
#: this many candidate words: a user's short list (ten colours) is ranked as it is, since every
#: concept lists most of it and sharing says nothing there.
MIN_WORDS_TO_TELL_APART = 100
#: With a backend that knows its image classes' WordNet synsets (the offline model's `class_mass`),
#: each concept's best HYPERNYM_WORDS hypernyms (`concept.hypernyms`) named by a given word (`docs`,
#: else the bundled nouns) lead the concept's words when HYPERNYMS_LEAD. Hypernyms outside the given
#: words are not added: on Fashion-MNIST "garment" and "consumer goods" then outranked the ten class
#: names (top word 0.33 -> 0.21, benchmarks/words.py).
HYPERNYM_WORDS = 1
HYPERNYMS_LEAD = True


@dataclass(frozen=True)
class Settings:
    """The model's hyper-parameters that the describing stage reads."""

    n_words: int
    n_exemplars: int
    diversity: float
    ctfidf: bool
    vocabulary_size: int
    vectorizer: Any = None
    random_state: int | None = None
    seeds: list[list[str]] | None = None
    verbose: bool = True
    #: Each fitted row's duplicate group (-1: none) when the duplicates are known: exemplars show one of each.
    groups: np.ndarray | None = None

    @classmethod
    def of(cls, params: dict[str, Any]) -> Settings:
        """From a ConceptModel's `get_params()`."""
        from concept.seeding import check_seed_concepts

        return cls(int(params["n_words"]), int(params["n_exemplars"]), float(params["diversity"]),
                   bool(params["ctfidf"]), int(params["vocabulary_size"]), params["vectorizer_model"],
                   params["random_state"], check_seed_concepts(params["seed_concepts"]), bool(params["verbose"]))


@dataclass
class Vocabulary:
    """The candidate words, their embeddings centred on their mean and normalised, and that mean."""

    words: list[str]
    vectors: np.ndarray
    center: np.ndarray


@dataclass
class Images:
    """The fitted images as the words see them: shared-space rows, their mean (the modality
    offset), and their vectors in the learned text space (None without a learned map)."""

    embeddings: np.ndarray
    center: np.ndarray
    aligned: np.ndarray | None = None


@dataclass
class Described:
    """Every layer's concept embeddings (k x d), exemplars ({concept: rows}) and words
    ({concept: [(word, score)]}), finest first; the caption terms the words were read from
    (one list per image or None) and which images had a caption of their own."""

    layer_embeddings: list[np.ndarray]
    layer_exemplars: list[dict[int, list[int]]]
    layer_topics: list[dict[int, list[tuple[str, float]]]]
    word_center: np.ndarray | None = None
    image_center: np.ndarray | None = None
    alignment: Any = None
    caption_docs: list[list[str] | None] | None = None
    captioned: np.ndarray | None = None


def _embed_words(embedder: Any, words: list[str], verbose: bool) -> tuple[np.ndarray, np.ndarray]:
    """Word embeddings centred on their mean and normalised, and that mean (zeros for fewer
    than MIN_WORDS_TO_CENTER words); both cached on disk per embedding model and word list."""
    name = getattr(embedder, "name", None)
    cacheable = bool(name) and name != "base"
    vectors = vocabulary_embeddings(embedder, words, verbose=verbose)
    center = (np.asarray(vectors.mean(axis=0), np.float32) if len(words) >= MIN_WORDS_TO_CENTER
              else np.zeros(vectors.shape[1], np.float32))
    if not cacheable:
        return l2_normalize(vectors - center), center
    return cached_array("centred-texts", name, words, lambda: l2_normalize(vectors - center)), center


def _given_words(docs: Sequence[str] | None, settings: Settings) -> list[str]:
    """The user's candidate words (`docs`), else the bundled vocabulary."""
    return load_vocabulary(int(settings.vocabulary_size)) if docs is None else list(
        dict.fromkeys(s.strip() for s in map(str, docs) if s and s.strip()))


def candidate_words(embedder: Any, docs: Sequence[str] | None, settings: Settings, dim: int,
                    caption_terms: list[list[str] | None] | None = None,
                    hypernyms: Sequence[str] = ()) -> Vocabulary | None:
    """The candidate words and their centred embeddings, or None when there are none (no
    embedding model, or empty docs). The most frequent caption terms (at most
    MAX_CAPTION_TERMS), the seed words and the concepts' `hypernyms` are candidates too."""
    if embedder is None:
        logger.warning("embedding_model is None: concepts get no words.")
        return None
    words = _given_words(docs, settings)
    extra: list[str] = []
    if caption_terms:
        frequent = pd.Series([t for ts in caption_terms if ts for t in dict.fromkeys(ts)],
                             dtype=object).value_counts(sort=True)
        known = set(words)
        extra = [t for t in frequent.index[:MAX_CAPTION_TERMS] if t not in known]
    seed_words = [w for ws in settings.seeds or [] for w in ws] + list(hypernyms)
    if seed_words:  # always candidates (the hypernyms too)
        taken = set(words).union(extra)
        extra += [w for w in dict.fromkeys(seed_words) if w not in taken]
    if not words:
        logger.warning("docs holds no words: concepts get no words.")
        return None
    verbose = bool(settings.verbose)
    if extra:  # embedded (and cached) apart, so the vocabulary's cache entry is reused
        vectors = np.concatenate([vocabulary_embeddings(embedder, w, verbose=verbose) for w in (words, extra)])
        words = words + extra
        word_center = np.asarray(vectors.mean(axis=0), np.float32)
        words_c = l2_normalize(vectors - word_center)
    else:
        words_c, word_center = _embed_words(embedder, words, verbose)
    if words_c.shape[1] != dim:
        raise EmbeddingError(
            f"The words were embedded in {words_c.shape[1]} dimensions by "
            f"{getattr(embedder, 'name', type(embedder).__name__)}, but the images have "
            f"{dim}: they are not in the same space. Pass the embedding_model "
            "that produced image_embeddings."
        )
    return Vocabulary(words, words_c, word_center)


def describe_layer(embeddings: np.ndarray, labels: np.ndarray, k: int,
                   settings: Settings) -> tuple[np.ndarray, dict[int, list[int]]]:
    """One layer's concept embeddings (k, d; zero rows for empty ids) and exemplars."""
    described = describe_concepts(embeddings, labels, n_exemplars=int(settings.n_exemplars),
                                  diversity=float(settings.diversity), groups=settings.groups)
    out = np.zeros((k, embeddings.shape[1]), np.float32)
    out[described.ids] = described.embeddings
    return out, {int(c): [int(i) for i in ex] for c, ex in zip(described.ids, described.exemplars)}


def layer_hypernyms(embedder: Any, layer_embeddings: Sequence[np.ndarray],
                    words: Sequence[str]) -> list[list[list[str]]] | None:
    """Each layer's concepts' hypernym words (`concept.hypernyms`), those of the given `words`
    (a hypernym that none of them names is left out: a user's ten class names stay the
    candidates), or None for a backend without class masses (only the offline model has them)
    or embeddings not of its space."""
    class_mass = getattr(embedder, "class_mass", None)
    if not callable(class_mass) or not layer_embeddings or layer_embeddings[0].shape[1] != getattr(embedder, "dim", None):
        return None
    from concept.hypernyms import hypernym_words

    given = set(words)
    # a concept kept from one layer to the next has the same embedding: its mass is found once
    stacked = np.concatenate(layer_embeddings)
    unique, inverse = np.unique(stacked, axis=0, return_inverse=True)
    named = hypernym_words(class_mass(unique), HYPERNYM_WORDS, preferred=given)
    flat = [[w for w in named[i] if w in given] for i in np.ravel(inverse)]
    bounds = np.cumsum([0] + [len(e) for e in layer_embeddings])
    return [flat[a:b] for a, b in itertools.pairwise(bounds)]


def _centred_concepts(images: Images, labels: np.ndarray, concept_embeddings: np.ndarray) -> np.ndarray:
    if images.aligned is not None:  # the normalised mean of the members in the learned text space
        return mean_directions(images.aligned, labels, len(concept_embeddings))[0]
    return l2_normalize(concept_embeddings - images.center)


def layer_words(vocabulary: Vocabulary | None, labels: np.ndarray, concept_embeddings: np.ndarray,
                images: Images, settings: Settings, terms: list[list[str] | None] | None = None,
                weights: np.ndarray | None = None, seed_matches: np.ndarray | None = None,
                hypernyms: list[list[str]] | None = None) -> dict[int, list[tuple[str, float]]]:
    """Words per concept of one layer, compared after centring each modality on its mean.

    Images and texts sit in different regions of a joint space (the "modality gap"), so raw
    cosine favours words close to every image ("object", "item"); subtracting the image mean
    from concepts and the vocabulary mean from words removes that shared offset. A word
    near every concept is down-weighted (`distinctive_words`). With caption `terms` (one
    list per image or None), the words are the c-TF-IDF terms of the members' captions,
    followed by these vocabulary words when there are fewer than `n_words`. A concept's
    `hypernyms` (its class-hierarchy words, `layer_hypernyms`) lead its words (HYPERNYMS_LEAD).
    """
    ids = np.arange(len(concept_embeddings))
    if vocabulary is None:
        return {int(c): [] for c in ids}
    words, words_c = vocabulary.words, vocabulary.vectors
    n_words = int(settings.n_words)
    concepts_c = _centred_concepts(images, labels, concept_embeddings)  # words, telling apart and seeds read it
    if settings.ctfidf:
        vectors = (images.aligned if images.aligned is not None
                   else l2_normalize(images.embeddings - images.center))
        described = words_by_ctfidf(vectors, labels, ids, words_c, words, n_words,
                                    vectorizer=settings.vectorizer, random_state=settings.random_state)
    else:
        described = distinctive_words(concepts_c, words_c, words, n_words, DISTINCTIVENESS)
    if terms is not None:
        from_captions = words_by_captions(labels, ids, terms, n_words, weights, CAPTION_CONCENTRATION,
                                          CAPTION_SHARING)
        described = [(c + [(w, s) for w, s in v if w not in {x for x, _ in c}])[:n_words]
                     for c, v in zip(from_captions, described)]
    if hypernyms is not None and HYPERNYMS_LEAD:
        row = {w: i for i, w in enumerate(words)}
        leads = [[w for w in hs if w in row] for hs in hypernyms]
        described = [([(w, float(words_c[row[w]] @ concepts_c[c])) for w in ls]
                      + [(w, s) for w, s in d if w not in ls])[:n_words]
                     for c, (d, ls) in enumerate(zip(described, leads))]
    if len(ids) > 1 and len(words) >= MIN_WORDS_TO_TELL_APART:  # concepts that read the same: told apart
        offset = DISTINCTIVENESS * concepts_c.mean(axis=0)  # as in distinctive_words, for the group only
        scores = None if settings.ctfidf else lambda members: (concepts_c[members] - offset) @ words_c.T
        described = tell_apart(described, scores, words, n_words, MAX_SHARED_WORDS, COMPARED_WORDS)
    seeded = seeded_concepts(labels, seed_matches, len(ids))
    if seeded:  # the seed words first, scored by their similarity to the concept
        row = {w: i for i, w in enumerate(words)}
        described = favour_seed_words(described, seeded, settings.seeds,
                                      lambda c, ws: (words_c[[row[w] for w in ws]] @ concepts_c[c]).tolist(),
                                      n_words)
    return {int(c): d for c, d in zip(ids, described)}


def _caption_documents(terms: list[list[str] | None], vocabulary: Vocabulary, analyzer: Any,
                       aligned: np.ndarray | None) -> list[list[str] | None]:
    """Each fitted image's terms for the caption c-TF-IDF: its caption's, or with a learned
    map, for an image without one, the terms of its nearest candidate words there."""
    if aligned is None:
        return terms
    missing = np.asarray([i for i, t in enumerate(terms) if not t], dtype=np.int64)
    if len(missing):
        word_terms = [analyzer(w) or [w] for w in vocabulary.words]
        for i, predicted in zip(missing, predicted_terms(aligned[missing], vocabulary.vectors,
                                                         word_terms, WORDS_PER_IMAGE)):
            terms[i] = predicted
    return terms


def _fit_alignment(embedder: Any, captions: list[str | None], space: np.ndarray, images: Images,
                   settings: Settings) -> Any:
    """The learned map from the captioned images (`concept.alignment`), or None (logged why)."""
    from concept.alignment import fit_alignment

    rows = np.asarray([i for i, c in enumerate(captions) if c], dtype=np.int64)
    if len(rows) == 0:
        return None
    texts = [captions[i] for i in rows]
    unique = list(dict.fromkeys(texts))
    position = {t: i for i, t in enumerate(unique)}
    groups = np.asarray([position[t] for t in texts], dtype=np.int64)
    vectors = vocabulary_embeddings(embedder, unique, verbose=bool(settings.verbose))
    vectors = l2_normalize(vectors - vectors.mean(axis=0))[groups]
    plain = l2_normalize(images.embeddings[rows] - images.center)
    alignment, report = fit_alignment(space[rows], vectors, plain, groups, settings.random_state)
    if alignment is None:
        logger.info("No learned image-text map: %s; words and search use the plain shared space.",
                    report.get("reason"))
    else:
        v = alignment.validation
        logger.info("Learned an image-text map from %d captioned images: held-out captions rank %.0f "
                    "(median) through it, %.0f in the plain space.", len(rows),
                    v["aligned_median_rank"], v["plain_median_rank"])
    return alignment


def describe_fit(embedder: Any, embeddings: np.ndarray, space: np.ndarray, layers: list[np.ndarray],
                 sizes: list[int], default: int, docs: Sequence[str] | None, settings: Settings,
                 captions: list[str | None] | None = None,
                 seed_matches: np.ndarray | None = None) -> Described:
    """Concept embeddings, exemplars and words of every layer of a new fit. With `captions`
    (one per fitted image or None) also the learned map and the caption words."""
    analyzer = caption_analyzer(settings.vectorizer) if captions is not None else None
    terms = [analyzer(c) if c else None for c in captions] if captions is not None else None
    pairs = [describe_layer(embeddings, labels, k, settings) for labels, k in zip(layers, sizes)]
    hypernyms = layer_hypernyms(embedder, [e for e, _ in pairs], _given_words(docs, settings)) if embedder is not None else None
    vocabulary = candidate_words(embedder, docs, settings, embeddings.shape[1], terms,
                                 [w for layer in hypernyms or [] for ws in layer for w in ws])
    # With one concept the image mean is the concept itself: no centring.
    center = embeddings.mean(axis=0) if sizes[default] >= 2 else np.zeros(embeddings.shape[1], np.float32)
    images = Images(embeddings, center)
    alignment = None
    if captions is not None and vocabulary is not None:
        alignment = _fit_alignment(embedder, captions, space, images, settings)
        if alignment is not None:
            images.aligned = alignment.transform(space)
    weights, caption_docs, captioned = None, None, None
    if terms is not None and vocabulary is not None:
        captioned = np.asarray([bool(t) for t in terms])
        weights = np.where(captioned, 1.0, PREDICTED_WEIGHT)
        terms = _caption_documents(terms, vocabulary, analyzer, images.aligned)
        # kept (and saved) so that edits describe concepts with the same caption terms
        caption_docs = [list(dict.fromkeys(t)) if t else None for t in terms]
    topics = [layer_words(vocabulary, labels, emb, images, settings, terms, weights, seed_matches,
                          None if hypernyms is None else hypernyms[i])
              for i, (labels, (emb, _)) in enumerate(zip(layers, pairs))]
    return Described([e for e, _ in pairs], [x for _, x in pairs], topics,
                     None if vocabulary is None else vocabulary.center, center, alignment, caption_docs, captioned)


def edit_words(docs: list[str] | None | str, layer_topics: list[dict[int, list[tuple[str, float]]]]
               ) -> list[str] | None:
    """The candidate words for describing edited concepts: the fit's `docs` (None: the bundled
    vocabulary); for a folder saved before they were kept ("unknown"), the words its concepts have."""
    if docs != "unknown":
        return docs
    return sorted({w for topics in layer_topics for ws in topics.values() for w, _ in ws}) or None


def describe_again(embedder: Any, previous: Described, layers: list[np.ndarray], sizes: list[int], first: int,
                   words: list[str] | None, images: Images, settings: Settings,
                   seed_matches: np.ndarray | None = None) -> Described:
    """After an edit: layers `first`.. described again (the lower layers are kept), with the
    fit's candidate `words` (None: the bundled vocabulary) and caption terms; rows added since
    the fit (partial_fit) have no caption of their own."""
    terms, weights = None, None
    caption_docs, captioned = previous.caption_docs, previous.captioned
    pairs = [describe_layer(images.embeddings, labels, k, settings) for labels, k in list(zip(layers, sizes))[first:]]
    hypernyms = layer_hypernyms(embedder, [e for e, _ in pairs], _given_words(words, settings)) if embedder is not None else None
    extra = [w for layer in hypernyms or [] for ws in layer for w in ws]
    if caption_docs is not None:
        n = len(layers[0])
        captioned = np.zeros(n, bool)
        captioned[:len(previous.captioned)] = previous.captioned
        own = [t if c else None for t, c in zip(caption_docs, captioned)]
        vocabulary = candidate_words(embedder, words, settings, images.embeddings.shape[1], own, extra)
        terms = caption_docs + [None] * (n - len(caption_docs))
        if vocabulary is not None and len(terms) > len(caption_docs):  # predicted terms for new rows
            terms = _caption_documents(terms, vocabulary, caption_analyzer(settings.vectorizer), images.aligned)
            terms = [list(dict.fromkeys(t)) if t else None for t in terms]
        caption_docs = terms
        weights = np.where(captioned, 1.0, PREDICTED_WEIGHT)
    else:
        vocabulary = candidate_words(embedder, words, settings, images.embeddings.shape[1], hypernyms=extra)
    out = Described(previous.layer_embeddings[:first], previous.layer_exemplars[:first],
                    previous.layer_topics[:first], None if vocabulary is None else vocabulary.center,
                    previous.image_center, previous.alignment, caption_docs, captioned)
    for i, (labels, (embeddings, exemplars)) in enumerate(zip(layers[first:], pairs)):
        out.layer_embeddings.append(embeddings)
        out.layer_exemplars.append(exemplars)
        out.layer_topics.append(layer_words(vocabulary, labels, embeddings, images, settings, terms, weights,
                                            seed_matches, None if hypernyms is None else hypernyms[i]))
    return out
