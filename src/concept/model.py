"""`ConceptModel`: embed images, cluster them into concepts, describe each in images and words.

The model orchestrates the stages (embedding/, clustering.py, representation.py, collage.py,
visualize.py, persistence.py) and holds the fitted state; the stages never import it.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from concept import __version__
from concept._cache import cached_array, vocabulary_embeddings
from concept._errors import ConceptError, EmbeddingError, ImageLoadError, NotFittedError
from concept._shaping import ShapingMixin
from concept._validation import (
    check_docs,
    check_inputs,
    check_integer,
    check_number,
    check_random_state,
)
from concept.clustering import (
    Hierarchy,
    assign,
    cluster,
    default_clusterer,
    default_reducer,
    find_hierarchy,
    from_labels,
    layer_labels,
    layout_2d,
    mean_directions,
    one_blas_thread,
    sampled_min_size,
)
from concept.clustering.hierarchy import OUTLIER_THRESHOLD, spread
from concept.clustering.legacy import MIN_DISTINCT, distinct_rows
from concept.collage import exemplar_collage
from concept.embedding import load_embedding_model, stored_embedding_model
from concept.embedding.base import l2_normalize
from concept.images import ImageInput, LoadFailure, LoadReport
from concept.representation import (
    describe_concepts,
    words_by_ctfidf,
)
from concept.seeding import check_seed_concepts, favour_seed_words, seeded_concepts
from concept.vocabulary import load_vocabulary
from concept.words import (
    caption_analyzer,
    distinctive_words,
    pack_documents,
    predicted_terms,
    unpack_documents,
    words_by_captions,
)

logger = logging.getLogger(__name__)

#: Nouns taken from the bundled vocabulary when the user gives no `docs` (most common first).
DEFAULT_VOCABULARY_SIZE = 20_000
#: Fewer candidate words than this are compared uncentred (their mean is not a stable offset).
MIN_WORDS_TO_CENTER = 10
#: Units (images or micro-clusters of images) the non-linear clustering stages see at most.
DEFAULT_SAMPLE_SIZE = 20_000
#: Images drawn for the 2-D map's UMAP; the others are placed by their nearest drawn images.
MAP_SAMPLE = 5_000
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


#: Hyper-parameters saved with a model and restored by `load`.
_SETTINGS = ("min_concept_size", "diversity", "ctfidf", "cluster_space", "sample_size", "outlier_threshold",
             "n_exemplars", "n_words", "vocabulary_size", "batch_size", "random_state", "verbose",
             "n_concepts", "zeroshot_concepts", "zeroshot_threshold", "seed_concepts")


def _pack(exemplars: dict[int, list[int]], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exemplar rows of concepts 0..k-1 as one flat array and the count per concept."""
    rows = [exemplars.get(c, []) for c in range(k)]
    return (np.asarray([i for r in rows for i in r], dtype=np.int64),
            np.asarray([len(r) for r in rows], dtype=np.int64))


def _unpack(flat: np.ndarray, counts: np.ndarray) -> dict[int, list[int]]:
    ends = np.cumsum(counts)
    return {c: flat[e - n:e].tolist() for c, (n, e) in enumerate(zip(counts, ends)) if n}


def _frequency_table(labels: np.ndarray) -> pd.DataFrame:
    """Concept sizes, largest first; the outliers (-1), if any, in the last row."""
    ids, counts = np.unique(labels, return_counts=True)
    df = pd.DataFrame({"Concept": ids, "Frequency": counts})
    inliers = df[df.Concept >= 0].sort_values(["Frequency", "Concept"], ascending=[False, True])
    return pd.concat([inliers, df[df.Concept < 0]], ignore_index=True)


def _zeroshot_ids(h: Hierarchy, labels: np.ndarray) -> list[int]:
    """The finest concept id that each label 0..m-1 became (from_labels numbers by size)."""
    return [int(np.bincount(h.fine[labels == j][h.fine[labels == j] >= 0]).argmax()) for j in
            range(int(labels.max()) + 1)]


def _topics_json(topics: dict[int, list[tuple[str, float]]]) -> dict[str, list]:
    return {str(c): [[w, s] for w, s in ws] for c, ws in topics.items()}


def _topics_from_json(topics: dict[str, list]) -> dict[int, list[tuple[str, float]]]:
    return {int(c): [(w, float(sc)) for w, sc in ws] for c, ws in topics.items()}


class ConceptModel(ShapingMixin):
    """Concept modeling: topic modeling for images, described by exemplar images and words.

    Parameters
    ----------
    min_concept_size: smallest number of images a concept may have (HDBSCAN's min_cluster_size).
    diversity: 0..1, how different a concept's exemplar images must be from each other (MMR).
    embedding_model: "auto" (CLIP if on this machine, else the bundled offline model),
        "offline", a CLIP name or local folder, any object with `embed_images` and
        `embed_texts`, or None when only precomputed embeddings are used (then no words).
    vectorizer_model: a scikit-learn vectorizer tokenising the c-TF-IDF pseudo-documents.
    umap_model: the reducer (anything with `fit_transform`); default UMAP to 5-D, cosine.
    hdbscan_model: the clusterer (anything with `fit` and `labels_`); default HDBSCAN.
    ctfidf: describe concepts by c-TF-IDF over each image's nearest words instead of by the
        words nearest to the concept.
    cluster_space: "auto" clusters on the backend's image features when it has them (the
        offline model's CNN features separate categories far better than its shared
        image-text vectors), "embeddings" always on the shared space.
    sample_size: the clustering's non-linear stages (neighbour graph, UMAP, HDBSCAN) see at
        most this many units: every image up to 3,000 images, beyond that micro-clusters of
        about 40 similar images (spherical k-means), so every image shapes the concepts and a
        concept of `min_concept_size` images is found at any collection size (None: every
        image is a unit, slow for large collections). With a user's `umap_model` or
        `hdbscan_model` it is the size of the random sample they are fitted on, as before.
    outlier_threshold: an image is an outlier when its similarity to its concept's centre is
        more than this many robust standard deviations (1.4826 x MAD) below the concept's
        median member; `probabilities_` runs from 0 at that fence to 1 at the median (a large
        value, e.g. 1000, keeps every image in a concept).
    n_exemplars: exemplar images per concept (shown in its collage).
    n_words: words kept per concept.
    vocabulary_size: nouns taken from the bundled vocabulary when `docs` is None.
    batch_size: images embedded at once.
    random_state: seed for reproducible concepts.
    verbose: progress bars and info logging.
    store: a folder of stored embeddings (`concept.store.EmbeddingStore`): when the images
        are file paths, only the files not embedded before by this backend are embedded, and
        they are saved there as they are computed (a killed run resumes). None: no store.
    n_concepts: after the fit, merge the concepts of `labels_` down to exactly this many
        (`reduce_concepts`); None keeps the concepts found.
    zeroshot_concepts: names of concepts you expect ("cat", "car"): images that match one
        (text embedded by the embedding model) form a concept named by it, the others are
        clustered as usual. Matching is calibrated on the collection (see
        `concept.editing.calibrated_matches`), because image-text similarities are far below
        image-image ones and differ from model to model.
    zeroshot_threshold: how far above the images that prefer other names an image's
        similarity to a name must be to match it, in robust SDs (higher: fewer, surer matches).
    seed_concepts: lists of words of concepts you expect ([["beach", "sea"], ["cat", "kitten"]]):
        images that match a list (calibrated as for zero-shot) are pulled together before the
        ordinary clustering, and a concept holding most of a seed's matched images lists its
        words first. Nothing is assigned directly (see `concept.seeding`).
    """

    def __init__(
        self,
        min_concept_size: int = 30,
        diversity: float = 0.3,
        embedding_model: Any = "auto",
        vectorizer_model: Any = None,
        umap_model: Any = None,
        hdbscan_model: Any = None,
        ctfidf: bool = False,
        cluster_space: str = "auto",
        sample_size: int | None = DEFAULT_SAMPLE_SIZE,
        outlier_threshold: float = OUTLIER_THRESHOLD,
        n_exemplars: int = 9,
        n_words: int = 10,
        vocabulary_size: int = DEFAULT_VOCABULARY_SIZE,
        batch_size: int = 32,
        random_state: int | None = None,
        verbose: bool = True,
        store: str | os.PathLike | None = None,
        n_concepts: int | None = None,
        zeroshot_concepts: Sequence[str] | None = None,
        zeroshot_threshold: float = 3.0,
        seed_concepts: Sequence[Sequence[str]] | None = None,
    ) -> None:
        self.min_concept_size = min_concept_size
        self.diversity = diversity
        self.embedding_model = embedding_model
        self.vectorizer_model = vectorizer_model
        self.umap_model = umap_model
        self.hdbscan_model = hdbscan_model
        self.ctfidf = ctfidf
        self.cluster_space = cluster_space
        self.sample_size = sample_size
        self.outlier_threshold = outlier_threshold
        self.n_exemplars = n_exemplars
        self.n_words = n_words
        self.vocabulary_size = vocabulary_size
        self.batch_size = batch_size
        self.random_state = random_state
        self.verbose = verbose
        self.store = store
        self.n_concepts = n_concepts
        self.zeroshot_concepts = zeroshot_concepts
        self.zeroshot_threshold = zeroshot_threshold
        self.seed_concepts = seed_concepts

    # ------------------------------------------------------------------ validation
    def _validate_params(self) -> None:
        def need(ok: bool, message: str) -> None:
            if not ok:
                raise ConceptError(message)

        check_integer("min_concept_size", self.min_concept_size, minimum=2)
        check_number("diversity", self.diversity, 0.0, 1.0)
        need(self.cluster_space in ("auto", "embeddings"),
             f"cluster_space must be 'auto' or 'embeddings', got {self.cluster_space!r}")
        check_integer("sample_size (at least 2 * min_concept_size)", self.sample_size,
                      minimum=2 * self.min_concept_size, allow_none=True)
        check_number("outlier_threshold", self.outlier_threshold, 0.0, 1000.0)
        need(float(self.outlier_threshold) > 0, f"outlier_threshold must be > 0, got {self.outlier_threshold!r}")
        for name in ("n_exemplars", "n_words", "vocabulary_size", "batch_size"):
            check_integer(name, getattr(self, name), minimum=1)
        check_random_state(self.random_state)
        check_integer("n_concepts", self.n_concepts, minimum=1, allow_none=True)
        if self.zeroshot_concepts is not None:
            names = self.zeroshot_concepts
            need(not isinstance(names, (str, bytes)) and isinstance(names, Sequence)
                 and all(isinstance(t, str) and t.strip() for t in names) and len(set(names)) == len(names),
                 "zeroshot_concepts must be a list of distinct, non-empty names, e.g. ['cat', 'car']")
        check_number("zeroshot_threshold", self.zeroshot_threshold, 0.0, 100.0)
        need(check_seed_concepts(self.seed_concepts) is None or not self.zeroshot_concepts,
             "zeroshot_concepts and seed_concepts cannot be combined yet: pass one of them")
        need(self.umap_model is None or hasattr(self.umap_model, "fit_transform"),
             "umap_model must have a fit_transform method (e.g. umap.UMAP or sklearn PCA)")
        need(self.hdbscan_model is None or hasattr(self.hdbscan_model, "fit"),
             "hdbscan_model must have a fit method and a labels_ attribute (e.g. hdbscan.HDBSCAN)")

    def _check_fitted(self) -> None:
        if not hasattr(self, "labels_"):
            raise NotFittedError("This ConceptModel is not fitted yet: call fit() or load() first.")

    @property
    def embedder_(self):
        """The embedding backend, loaded on first use (None when embedding_model is None)."""
        if getattr(self, "_embedder", None) is None and self.embedding_model is not None:
            self._embedder = load_embedding_model(self.embedding_model, verbose=self.verbose)
        return getattr(self, "_embedder", None)

    def _require_embedder(self, what: str):
        if self.embedder_ is None:
            raise EmbeddingError(
                f"{what} needs an embedding model, but embedding_model is None: create the model "
                "with the embedding_model that made your embeddings (or load(path, embedding_model=...))."
            )
        return self.embedder_

    @staticmethod
    def _as_embeddings(x: Any, dim: int | None = None) -> np.ndarray:
        """Checked float32 rows at unit norm; float32 rows already at unit norm are not copied
        (a million 1280-d features are 5 GB)."""
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2 or len(x) == 0:
            raise ConceptError(f"image_embeddings must be a non-empty 2-D array (n_images, dim), got shape {x.shape}")
        # A NaN or infinity anywhere in a row makes its squared norm non-finite; no n x d mask.
        squared = np.einsum("ij,ij->i", x, x, dtype=np.float64)
        if not np.isfinite(squared).all():
            bad = np.flatnonzero(~np.isfinite(squared))
            raise ConceptError(f"image_embeddings has NaN or infinite values in rows {bad[:10].tolist()}")
        if dim is not None and x.shape[1] != dim:
            raise ConceptError(f"These embeddings have {x.shape[1]} dimensions but the model was fitted on {dim}.")
        if np.abs(squared - 1.0).max() < 1e-4:
            return x
        return l2_normalize(x)

    def _embed(self, images: Sequence[ImageInput] | None, image_embeddings: Any, dim: int | None = None,
               features: bool = False) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, list[LoadFailure]]:
        """Shared-space embeddings, clustering features (or None), the input positions they
        came from, and the inputs that failed to load."""
        if image_embeddings is not None:
            x = self._as_embeddings(image_embeddings, dim)
            if images is not None and len(images) != len(x):
                raise ConceptError(f"Got {len(images)} images but {len(x)} image_embeddings; they must match one to one.")
            return x, None, np.arange(len(x)), []
        if images is None:
            raise ConceptError("Pass images (paths, PIL images or arrays) or image_embeddings.")
        if isinstance(images, (str, os.PathLike, Image.Image)):
            raise ConceptError("images must be a list; to use every image in a folder, pass "
                               "concept.images.list_image_files(folder).")
        report = LoadReport()
        embedder = self._require_embedder("Embedding images")
        feats = None
        name = getattr(embedder, "name", None)
        use_store = self.store is not None and all(isinstance(i, (str, os.PathLike)) for i in images)
        if use_store and (not isinstance(name, str) or name == "base"):
            logger.warning("Not using the embedding store: %s has no `name` to key its embeddings by.",
                           type(embedder).__name__)
            use_store = False
        if use_store:
            from concept.store import EmbeddingStore

            x, feats = EmbeddingStore(self.store, name).embed(embedder, images, self.batch_size, report=report,
                                                              verbose=self.verbose)
            feats = feats if features else None
        elif features and hasattr(embedder, "embed_images_and_features"):
            x, feats = embedder.embed_images_and_features(images, self.batch_size, report=report)
        else:
            x = embedder.embed_images(images, self.batch_size, report=report)
        if len(x) == 0:
            raise ImageLoadError(f"None of the {len(images)} images could be loaded: {report.summary()}")
        x = self._as_embeddings(x, dim)
        return x, feats, np.asarray(report.loaded, dtype=np.int64), report.failures

    def _embed_words(self, words: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Word embeddings centred on their mean and normalised, and that mean (zeros for fewer
        than MIN_WORDS_TO_CENTER words); both cached on disk per embedding model and word list."""
        embedder = self.embedder_
        name = getattr(embedder, "name", None)
        cacheable = bool(name) and name != "base"

        vectors = vocabulary_embeddings(embedder, words, verbose=bool(self.verbose))
        center = (np.asarray(vectors.mean(axis=0), np.float32) if len(words) >= MIN_WORDS_TO_CENTER
                  else np.zeros(vectors.shape[1], np.float32))
        if not cacheable:
            return l2_normalize(vectors - center), center
        return cached_array("centred-texts", name, words, lambda: l2_normalize(vectors - center)), center

    # ------------------------------------------------------------------ fitting
    def fit(self, images: Sequence[ImageInput] | None = None, docs: Sequence[str] | None = None,
            image_embeddings: Any = None, image_features: Any = None, captions: Any = None) -> ConceptModel:
        """Find concepts in `images` (or in precomputed `image_embeddings`) and describe them.

        `image_features` (optional, with `image_embeddings`): vectors to cluster on instead,
        e.g. the offline model's CNN features from `embed_images_and_features`.

        `docs` are the candidate words (default: the bundled English nouns). Images that cannot
        be read are left out and listed in `failures_`; the fitted arrays (`labels_`,
        `probabilities_`, `embeddings_`) cover the images that loaded, at the input positions
        `image_indices_`. Returns self.

        `captions`: one text per image (None where an image has none), or "filenames" /
        "metadata" to read them from the image files (`concept.captions`). Concept words then
        come from the members' captions (c-TF-IDF) as well as from `docs`, and with enough
        captions a map from the images to the text space is learned (`alignment_`), which
        gives uncaptioned images words too and is used by `find_concepts` and text search.
        """
        from concept.captions import check_captions

        self._validate_params()
        images, image_embeddings, image_features = check_inputs(images, image_embeddings, image_features)
        docs = check_docs(docs)
        n_inputs = len(image_embeddings) if image_embeddings is not None else len(images) if images is not None else 0
        captions = check_captions(captions, images, n_inputs)
        x, feats, kept, failures = self._embed(images, image_embeddings,
                                               features=self.cluster_space == "auto")
        if image_features is not None:  # check_inputs matched it to image_embeddings
            feats = self._as_embeddings(image_features) if self.cluster_space == "auto" else None
        n = len(x)
        min_size = self._effective_min_size(n)
        space = x if feats is None else feats
        with one_blas_thread():
            self.seed_matches_ = None
            if self.zeroshot_concepts:
                self.hierarchy_, zeroshot_names = self._zeroshot_cluster(x, space, min_size)
            elif self.seed_concepts is not None:
                (self.hierarchy_, self.seed_matches_), zeroshot_names = self._seeded_cluster(x, space, min_size), {}
            else:
                self.hierarchy_, zeroshot_names = self._cluster(space, min_size), {}
        self.embeddings_ = x
        self.features_ = feats
        self.image_indices_ = kept
        self.failures_ = list(failures)
        self._set_layers()
        rng = np.random.default_rng(self.random_state)
        self.reference_rows_ = (np.arange(n) if n <= MAP_SAMPLE
                                else np.sort(rng.choice(n, MAP_SAMPLE, replace=False)))
        with one_blas_thread():
            self._describe_layers(docs, None if captions is None else [captions[i] for i in kept])
        self.image_sources_ = self._sources(images, kept)
        self.collages_ = self._make_collages(images, kept) if images is not None else {}
        self.map_2d_ = None
        self._docs = None if docs is None else list(docs)
        self.concept_mapping_ = []
        to_layer = layer_labels(np.arange(len(self.hierarchy_.centres)), self.hierarchy_.parents[:self.layer_])
        self.custom_labels_ = {int(to_layer[self.layer_][f]): name for f, name in zeroshot_names.items()}
        if self.n_concepts is not None and self.n_concepts_ > 0 and self.n_concepts != self.n_concepts_:
            self._images_for_collages = ({i: images[kept[i]] for i in range(len(kept))}
                                         if images is not None else None)
            try:
                self.reduce_concepts(int(self.n_concepts))
            finally:
                self._images_for_collages = None
        if self.n_concepts_ == 0:
            logger.warning("No concept found: every image is an outlier. Lower min_concept_size "
                           "(now %d) or add images.", min_size)
        logger.info("Found %d concepts in %d images (%d outliers), in %d layers (%s concepts); "
                    "labels_ is layer %d.", self.n_concepts_, n, int((self.labels_ < 0).sum()),
                    len(self.layers_), ", ".join(str(k) for k in self.layer_sizes_), self.layer_)
        return self

    def _zeroshot_cluster(self, x: np.ndarray, space: np.ndarray, min_size: int
                          ) -> tuple[Hierarchy, dict[int, str]]:
        """Zero-shot concepts: images matching a name (`calibrated_matches` in the shared space)
        form its concept, the others are clustered; the hierarchy and {finest id: name}. Names
        that fewer than 3 images match are left out (logged)."""
        from concept.editing import add_concepts, calibrated_matches

        names = [t.strip() for t in self.zeroshot_concepts]
        texts = l2_normalize(np.asarray(self._require_embedder("Zero-shot concepts").embed_texts(names), np.float32))
        if texts.shape[1] != x.shape[1]:
            raise EmbeddingError(f"The zero-shot names were embedded in {texts.shape[1]} dimensions, the images in "
                                 f"{x.shape[1]}: pass the embedding_model that made the image embeddings.")
        match, _ = calibrated_matches(x, texts, float(self.zeroshot_threshold))
        counts = np.bincount(match[match >= 0], minlength=len(names))
        kept = np.flatnonzero(counts >= 3)
        dropped = [names[j] for j in np.flatnonzero(counts < 3)]
        if dropped:
            logger.info("Zero-shot names matched by fewer than 3 images, left out: %s", ", ".join(dropped))
        remap = np.full(len(names), -1, np.int64)
        remap[kept] = np.arange(len(kept))
        labels = np.where(match >= 0, remap[np.maximum(match, 0)], -1)
        rest = np.flatnonzero(labels < 0)
        matched = np.flatnonzero(labels >= 0)
        logger.info("Zero-shot: %d of %d images match %d names.", len(matched), len(x), len(kept))
        if len(matched) == 0:
            return self._cluster(space, min_size), {}
        if len(rest) < max(MIN_DISTINCT, min_size):  # too few left to cluster: they are outliers
            h = from_labels(space, labels, None, float(self.outlier_threshold))
            return h, {int(f): names[kept[j]] for j, f in enumerate(_zeroshot_ids(h, labels))}
        h_rest = self._cluster(space[rest], self._effective_min_size(len(rest)))
        h = add_concepts(h_rest, space[rest], space[matched], labels[matched], keep=True)
        order = np.concatenate([rest, matched])
        fine, nearest, probs = (np.empty_like(a) for a in (h.fine, h.nearest, h.probabilities))
        fine[order], nearest[order], probs[order] = h.fine, h.nearest, h.probabilities
        k0 = len(h_rest.centres)
        h = dataclasses.replace(h, fine=fine, nearest=nearest, probabilities=probs)
        return h, {k0 + j: names[t] for j, t in enumerate(kept)}

    def _seeded_cluster(self, x: np.ndarray, space: np.ndarray, min_size: int) -> tuple[Hierarchy, np.ndarray]:
        """Seeded concepts (`concept.seeding`): match the images to the seed lists in the shared
        space, pull the matched ones together in the clustering space, cluster, and measure the
        concepts again on the unpulled vectors; the hierarchy and each image's seed (-1: none)."""
        from concept.seeding import (
            pull_towards_seeds,
            reanchor,
            seed_matches,
            seed_vectors,
        )

        seeds = check_seed_concepts(self.seed_concepts)
        texts = seed_vectors(self._require_embedder("Seeded concepts").embed_texts, seeds)
        if texts.shape[1] != x.shape[1]:
            raise EmbeddingError(f"The seed words were embedded in {texts.shape[1]} dimensions, the images in "
                                 f"{x.shape[1]}: pass the embedding_model that made the image embeddings.")
        match = seed_matches(x, texts)
        counts = np.bincount(match[match >= 0], minlength=len(seeds))
        logger.info("Seeded concepts: %d of %d images match %d of %d seeds (%s).", int((match >= 0).sum()), len(x),
                    int((counts > 0).sum()), len(seeds),
                    ", ".join(f"{ws[0]}: {int(c)}" for ws, c in zip(seeds, counts)))
        if not (match >= 0).any():
            return self._cluster(space, min_size), match
        return reanchor(self._cluster(pull_towards_seeds(space, match), min_size), space), match

    def _effective_min_size(self, n: int) -> int:
        """`min_concept_size`, lowered for small collections (to half the square root of the
        number of images, at least 3) so that they still get concepts; says so in the log.

        Half the square root lowers the default 30 below 3,600 images: OpenClipart's 2,262 then
        get 24 (about 20 concepts for its 17 folders, NMI 0.242 against 0.227 with 30;
        benchmarks/RESULTS.md), 73 images get 4."""
        size = int(self.min_concept_size)
        small = max(3, int(np.sqrt(n) / 2 + 0.5))
        if n < 3:
            raise ConceptError(f"Only {n} images: concepts need at least 3.")
        if small < size:
            logger.info("min_concept_size %d lowered to %d for a collection of %d images.", size, small, n)
            return small
        return size

    def _cluster(self, space: np.ndarray, min_size: int) -> Hierarchy:
        """The concept hierarchy of the clustering vectors: the default core, or one layer
        from the user's reducer/clusterer (fitted on a sample of `sample_size`, as before)."""
        if getattr(self, "_given_hierarchy", None) is not None:  # found by concept.distributed's passes
            return self._given_hierarchy
        threshold = float(self.outlier_threshold)
        own = self.umap_model is None and self.hdbscan_model is None
        if own and len(space) >= MIN_DISTINCT and distinct_rows(space) >= MIN_DISTINCT:
            return find_hierarchy(space, min_size, max_units=self.sample_size, threshold=threshold,
                                      random_state=self.random_state)
        reducer, clusterer = self._stages(len(space), min_size)
        result = cluster(space, reducer, clusterer, sample_size=self.sample_size, random_state=self.random_state)
        return from_labels(space, result.labels, result.probabilities, threshold)

    def _set_layers(self) -> None:
        """The public layer attributes from the fitted hierarchy."""
        h = self.hierarchy_
        self.layers_ = h.layers
        self.layer_ = int(h.default)
        self.labels_ = self.layers_[self.layer_]
        # 0 where a concept was deleted to outliers (editing.py); otherwise h.probabilities.
        self.probabilities_ = np.where(self.labels_ >= 0, h.probabilities, 0.0)
        self.nearest_labels_ = layer_labels(h.nearest, h.parents[:self.layer_])[self.layer_]

    @property
    def layer_sizes_(self) -> list[int]:
        """Number of concepts in each layer, finest first."""
        self._check_fitted()
        return [int(layer.max(initial=-1)) + 1 if (layer >= 0).any() else 0 for layer in self.layers_]

    def _space(self) -> np.ndarray:
        """The vectors the model clustered in (features, else the shared-space embeddings)."""
        return self.features_ if self.features_ is not None else self.embeddings_

    def _describe_layer(self, labels: np.ndarray, k: int) -> tuple[np.ndarray, dict[int, list[int]]]:
        """One layer's concept embeddings (k, d; zero rows for empty ids) and exemplars."""
        described = describe_concepts(self.embeddings_, labels, n_exemplars=int(self.n_exemplars),
                                      diversity=float(self.diversity))
        embeddings = np.zeros((k, self.embeddings_.shape[1]), np.float32)
        embeddings[described.ids] = described.embeddings
        return embeddings, {int(c): [int(i) for i in ex] for c, ex in zip(described.ids, described.exemplars)}

    def _describe_layers(self, docs: Sequence[str] | None, captions: list[str | None] | None = None) -> None:
        """Concept embeddings, exemplars and words of every layer; the default layer's are also
        `concept_embeddings_`, `exemplars_` and `topics_`. With `captions` (one per fitted
        image or None) also the learned map `alignment_` and the caption words."""
        self.layer_embeddings_, self.layer_exemplars_ = [], []
        analyzer = caption_analyzer(self.vectorizer_model) if captions is not None else None
        terms = [analyzer(c) if c else None for c in captions] if captions is not None else None
        words = self._candidate_words(docs, terms)
        for labels, k in zip(self.layers_, self.layer_sizes_):
            embeddings, exemplars = self._describe_layer(labels, k)
            self.layer_embeddings_.append(embeddings)
            self.layer_exemplars_.append(exemplars)
        # With one concept the image mean is the concept itself: no centring (see _describe_in_words).
        self.image_center_ = (self.embeddings_.mean(axis=0) if self.layer_sizes_[self.layer_] >= 2
                              else np.zeros(self.embeddings_.shape[1], np.float32))
        self.alignment_, self._aligned, self._aligned_default = None, None, None
        if captions is not None and words is not None:
            self._fit_alignment(captions)
        weights, self._caption_docs, self._captioned = None, None, None
        if terms is not None and words is not None:
            self._captioned = np.asarray([bool(t) for t in terms])
            weights = np.where(self._captioned, 1.0, PREDICTED_WEIGHT)
            terms = self._caption_documents(terms, words, analyzer)
            # kept (and saved) so that edits describe concepts with the same caption terms
            self._caption_docs = [list(dict.fromkeys(t)) if t else None for t in terms]
        self.layer_topics_ = [self._describe_in_words(words, labels, emb, terms, weights)
                              for labels, emb in zip(self.layers_, self.layer_embeddings_)]
        self._point_at_default_layer()

    def _fit_alignment(self, captions: list[str | None]) -> None:
        """Learn `alignment_` from the captioned images (`concept.alignment`), or log why not."""
        from concept.alignment import fit_alignment

        rows = np.asarray([i for i, c in enumerate(captions) if c], dtype=np.int64)
        if len(rows) == 0:
            return
        texts = [captions[i] for i in rows]
        unique = list(dict.fromkeys(texts))
        position = {t: i for i, t in enumerate(unique)}
        groups = np.asarray([position[t] for t in texts], dtype=np.int64)
        vectors = vocabulary_embeddings(self.embedder_, unique, verbose=bool(self.verbose))
        vectors = l2_normalize(vectors - vectors.mean(axis=0))[groups]
        space = self._space()
        plain = l2_normalize(self.embeddings_[rows] - self.image_center_)
        self.alignment_, report = fit_alignment(space[rows], vectors, plain, groups, self.random_state)
        if self.alignment_ is None:
            logger.info("No learned image-text map: %s; words and search use the plain shared space.",
                        report.get("reason"))
        else:
            v = self.alignment_.validation
            logger.info("Learned an image-text map from %d captioned images: held-out captions rank %.0f "
                        "(median) through it, %.0f in the plain space.", len(rows),
                        v["aligned_median_rank"], v["plain_median_rank"])

    @property
    def aligned_embeddings_(self) -> np.ndarray | None:
        """The fitted images in the text space through `alignment_` (None without a map)."""
        if getattr(self, "alignment_", None) is None:
            return None
        if getattr(self, "_aligned", None) is None:
            space = self._space()
            self._aligned = self.alignment_.transform(space)
        return self._aligned

    def _aligned_concepts(self, labels: np.ndarray, k: int) -> np.ndarray:
        """Concept vectors in the learned text space: the normalised mean of their members'."""
        return mean_directions(self.aligned_embeddings_, labels, k)[0]

    def _caption_documents(self, terms: list[list[str] | None], candidates, analyzer) -> list[list[str] | None]:
        """Each fitted image's terms for the caption c-TF-IDF: its caption's, or with a learned
        map, for an image without one, the terms of its nearest candidate words there."""
        if self.aligned_embeddings_ is None:
            return terms
        words, words_c = candidates
        missing = np.asarray([i for i, t in enumerate(terms) if not t], dtype=np.int64)
        if len(missing):
            word_terms = [analyzer(w) or [w] for w in words]
            for i, predicted in zip(missing, predicted_terms(self.aligned_embeddings_[missing], words_c,
                                                             word_terms, WORDS_PER_IMAGE)):
                terms[i] = predicted
        return terms

    def _point_at_default_layer(self) -> None:
        """`concept_embeddings_`, `exemplars_` and `topics_`: the default layer's descriptions."""
        self.concept_embeddings_ = self.layer_embeddings_[self.layer_]
        self.exemplars_ = self.layer_exemplars_[self.layer_]
        self.topics_ = self.layer_topics_[self.layer_]

    def fit_transform(self, images: Sequence[ImageInput] | None = None, docs: Sequence[str] | None = None,
                      image_embeddings: Any = None, image_features: Any = None, captions: Any = None) -> np.ndarray:
        """Fit, then return one concept id per input image (-1: outlier or unreadable image)."""
        self.fit(images, docs=docs, image_embeddings=image_embeddings, image_features=image_features,
                 captions=captions)
        n_inputs = len(image_embeddings) if image_embeddings is not None else len(images)
        out = np.full(n_inputs, -1, dtype=np.int64)
        out[self.image_indices_] = self.labels_
        return out

    def _stages(self, n: int, min_size: int | None = None):
        """The reducer and clusterer for `n` images: the user's, or defaults sized for the sample."""
        min_size = int(self.min_concept_size) if min_size is None else min_size
        fitted = n if self.sample_size is None else min(n, int(self.sample_size))
        reducer = self.umap_model if self.umap_model is not None else default_reducer(fitted, self.random_state)
        clusterer = (self.hdbscan_model if self.hdbscan_model is not None
                     else default_clusterer(sampled_min_size(min_size, fitted, n), fitted))
        return reducer, clusterer

    def cluster_images(self, image_embeddings: Any) -> np.ndarray:
        """Run only the clustering stage on embeddings: the default layer's labels, 0 = largest,
        -1 = outlier."""
        self._validate_params()
        x = self._as_embeddings(check_inputs(None, image_embeddings, None)[1])
        with one_blas_thread():
            h = self._cluster(x, self._effective_min_size(len(x)))
        return h.layers[h.default]

    def _candidate_words(self, docs: Sequence[str] | None, caption_terms: list[list[str] | None] | None = None):
        """The candidate words and their centred embeddings, or None when there are none (no
        embedding model, or empty docs); sets `word_center_`. The most frequent caption terms
        (at most MAX_CAPTION_TERMS) are candidates too."""
        self.word_center_ = None
        if self.embedder_ is None:
            logger.warning("embedding_model is None: concepts get no words.")
            return None
        words = load_vocabulary(int(self.vocabulary_size)) if docs is None else list(
            dict.fromkeys(s.strip() for s in map(str, docs) if s and s.strip()))
        extra: list[str] = []
        if caption_terms:
            frequent = pd.Series([t for ts in caption_terms if ts for t in dict.fromkeys(ts)],
                                 dtype=object).value_counts(sort=True)
            known = set(words)
            extra = [t for t in frequent.index[:MAX_CAPTION_TERMS] if t not in known]
        seed_words = [w for ws in check_seed_concepts(self.seed_concepts) or [] for w in ws]
        if seed_words:  # always candidates
            taken = set(words).union(extra)
            extra += [w for w in dict.fromkeys(seed_words) if w not in taken]
        if not words:
            logger.warning("docs holds no words: concepts get no words.")
            return None
        if extra:  # embedded (and cached) apart, so the vocabulary's cache entry is reused
            vectors = np.concatenate([vocabulary_embeddings(self.embedder_, w, verbose=bool(self.verbose))
                                      for w in (words, extra)])
            words = words + extra
            word_center = np.asarray(vectors.mean(axis=0), np.float32)
            words_c = l2_normalize(vectors - word_center)
        else:
            words_c, word_center = self._embed_words(words)
        if words_c.shape[1] != self.embeddings_.shape[1]:
            raise EmbeddingError(
                f"The words were embedded in {words_c.shape[1]} dimensions by "
                f"{getattr(self.embedder_, 'name', type(self.embedder_).__name__)}, but the images have "
                f"{self.embeddings_.shape[1]}: they are not in the same space. Pass the embedding_model "
                "that produced image_embeddings."
            )
        self.word_center_ = word_center
        return words, words_c

    def _describe_in_words(self, candidates, labels: np.ndarray, concept_embeddings: np.ndarray,
                           terms: list[list[str] | None] | None = None,
                           weights: np.ndarray | None = None) -> dict[int, list[tuple[str, float]]]:
        """Words per concept of one layer, compared after centring each modality on its mean.

        Images and texts sit in different regions of a joint space (the "modality gap"), so raw
        cosine favours words close to every image ("object", "item"); subtracting the image mean
        from concepts and the vocabulary mean from words removes that shared offset. A word
        near every concept is down-weighted (`distinctive_words`). With caption `terms` (one
        list per image or None), the words are the c-TF-IDF terms of the members' captions,
        followed by these vocabulary words when there are fewer than `n_words`.
        """
        ids = np.arange(len(concept_embeddings))
        if candidates is None:
            return {int(c): [] for c in ids}
        words, words_c = candidates
        n_words = int(self.n_words)
        if self.ctfidf:
            images = (self.aligned_embeddings_ if self.aligned_embeddings_ is not None
                      else l2_normalize(self.embeddings_ - self.image_center_))
            described = words_by_ctfidf(images, labels, ids, words_c, words, n_words,
                                        vectorizer=self.vectorizer_model, random_state=self.random_state)
        else:
            concepts_c = (self._aligned_concepts(labels, len(ids)) if self.aligned_embeddings_ is not None
                          else l2_normalize(concept_embeddings - self.image_center_))
            described = distinctive_words(concepts_c, words_c, words, n_words, DISTINCTIVENESS)
        if terms is not None:
            from_captions = words_by_captions(labels, ids, terms, n_words, weights, CAPTION_CONCENTRATION)
            described = [(c + [(w, s) for w, s in v if w not in {x for x, _ in c}])[:n_words]
                         for c, v in zip(from_captions, described)]
        seeded = seeded_concepts(labels, getattr(self, "seed_matches_", None), len(ids))
        if seeded:  # the seed words first, scored by their similarity to the concept
            concepts_c = (self._aligned_concepts(labels, len(ids)) if self.aligned_embeddings_ is not None
                          else l2_normalize(concept_embeddings - self.image_center_))
            row = {w: i for i, w in enumerate(words)}
            described = favour_seed_words(described, seeded, check_seed_concepts(self.seed_concepts),
                                          lambda c, ws: (words_c[[row[w] for w in ws]] @ concepts_c[c]).tolist(),
                                          n_words)
        return {int(c): d for c, d in zip(ids, described)}

    @staticmethod
    def _sources(images: Sequence[ImageInput] | None, kept: np.ndarray) -> list[str] | None:
        """File paths of the fitted images when they were given as paths (kept for display)."""
        if images is None or not all(isinstance(images[i], (str, os.PathLike)) for i in kept):
            return None
        return [os.fspath(images[i]) for i in kept]

    def _make_collages(self, images: Sequence[ImageInput], kept: np.ndarray) -> dict[int, Image.Image]:
        collages = {}
        for concept, rows in self.exemplars_.items():
            collage = exemplar_collage([images[kept[row]] for row in rows])
            if collage is not None:
                collages[concept] = collage
        return collages

    # ------------------------------------------------------------------ results
    @property
    def n_concepts_(self) -> int:
        self._check_fitted()
        return len(self.concept_embeddings_)

    @property
    def frequency(self) -> pd.DataFrame:
        """Concept sizes, largest first; the outliers (-1), if any, in the last row."""
        self._check_fitted()
        return _frequency_table(self.labels_)

    @property
    def topics(self) -> dict[int, list[str]]:
        """{concept: [words, best first]} (the reference's name)."""
        self._check_fitted()
        return {c: [w for w, _ in ws] for c, ws in self.topics_.items()}

    def map_2d(self) -> np.ndarray:
        """(n_images, 2) coordinates of every fitted image for plotting, computed on first use
        (UMAP in 2-D on the clustered images) and saved with the model."""
        self._check_fitted()
        if getattr(self, "map_2d_", None) is None:
            space = self._space()
            self.map_2d_ = layout_2d(space, self.reference_rows_, self.random_state)
        return self.map_2d_

    def get_concept_info(self, layer: int | None = None) -> pd.DataFrame:
        """The frequency table with each concept's words, of `layer` (default: `labels_`'s)."""
        self._check_fitted()
        layer = self._check_layer(layer)
        df = _frequency_table(self.layers_[layer])
        topics = self.layer_topics_[layer]
        df["Words"] = [", ".join(w for w, _ in topics.get(int(c), [])) if c >= 0 else "(outliers)"
                       for c in df.Concept]
        names = getattr(self, "custom_labels_", {}) if layer == self.layer_ else {}
        if names:  # custom labels (set_concept_labels), of the layer of labels_
            df.insert(2, "Name", [names.get(int(c), "") for c in df.Concept])
        return df

    # ------------------------------------------------------------------ using a fitted model
    @staticmethod
    def _query_is_text(query: str | ImageInput, kind: str) -> bool:
        """Whether to embed `query` as a text: `kind` "text" or "image" says so; "auto" reads a
        string as an image path only when it names a file (a string that cannot be a file
        name, e.g. too long, is a text)."""
        if kind not in ("auto", "text", "image"):
            raise ConceptError(f"kind must be 'auto', 'text' or 'image', not {kind!r}.")
        if kind == "text" and not isinstance(query, str):
            raise ConceptError(f"kind='text' needs a string query, not {type(query).__name__}.")
        if kind != "auto" or not isinstance(query, str):
            return kind == "text"
        try:
            return not Path(query).is_file()
        except (OSError, ValueError):  # e.g. "File name too long", an embedded NUL
            return True

    def _query_vector(self, query: str | ImageInput, kind: str = "auto") -> tuple[np.ndarray, bool]:
        """The query's unit vector, and whether it is a text."""
        is_text = self._query_is_text(query, kind)
        embedder = self._require_embedder("Searching")
        if is_text:
            vec = embedder.embed_texts([query])
        else:
            vec = embedder.embed_images([query], 1)
            if len(vec) == 0:
                raise ImageLoadError(f"Could not load the query image {query!r}")
        vec = l2_normalize(vec)[0]
        if vec.shape[0] != self.concept_embeddings_.shape[1]:
            raise EmbeddingError(f"The query was embedded in {vec.shape[0]} dimensions but the concepts "
                                 f"live in {self.concept_embeddings_.shape[1]}: use the model's own embedding_model.")
        return vec, is_text

    def _similarities(self, vec: np.ndarray, is_text: bool, rows: np.ndarray) -> np.ndarray:
        """Similarity of a query vector to `rows` (concept or image embeddings). A text is
        compared the way words are (each modality centred on its mean), an image directly."""
        if is_text and self.word_center_ is not None:
            return l2_normalize(rows - self.image_center_) @ l2_normalize(vec - self.word_center_)
        return rows @ vec

    def search(self, query: str | ImageInput, top_n: int = 5, n_images: int = 0,
               kind: str = "auto") -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
        """The `top_n` concepts and the `n_images` fitted images most similar to a text (or an
        image: path, PIL image or array), best first, embedding the query once.

        `kind`: "text" searches a string as text whatever it spells, "image" reads it as an
        image path, "auto" (the default) takes a string for a path only if that file exists;
        pass "text" for text from anyone else (e.g. a web request). Images are given as rows
        of the fitted arrays (`labels_`, `image_sources_`).
        """
        self._check_fitted()
        vec, is_text = self._query_vector(query, kind)

        def best(sims: np.ndarray, n: int) -> list[tuple[int, float]]:
            order = np.argsort(-sims, kind="stable")[: max(0, int(n))]
            return [(int(i), float(sims[i])) for i in order]

        if is_text and getattr(self, "alignment_", None) is not None:  # compared in the learned space
            query = l2_normalize(vec - self.word_center_) if self.word_center_ is not None else vec
            if getattr(self, "_aligned_default", None) is None:
                self._aligned_default = self._aligned_concepts(self.labels_, self.n_concepts_)
            concepts = best(self._aligned_default @ query, top_n)
            images = best(self.aligned_embeddings_ @ query, n_images) if n_images > 0 else []
            return concepts, images
        concepts = best(self._similarities(vec, is_text, self.concept_embeddings_), top_n)
        images = best(self._similarities(vec, is_text, self.embeddings_), n_images) if n_images > 0 else []
        return concepts, images

    def find_concepts(self, query: str | ImageInput, top_n: int = 5,
                      kind: str = "auto") -> list[tuple[int, float]]:
        """Concepts most similar to a text (or an image: path, PIL image or array), best first;
        `kind` ("auto", "text", "image") as in `search`."""
        self._check_fitted()
        if self.n_concepts_ == 0:
            self._query_is_text(query, kind)  # a bad kind is an error even with no concepts
            return []
        return self.search(query, top_n, kind=kind)[0]

    def transform(self, images: Sequence[ImageInput] | None = None, image_embeddings: Any = None,
                  return_probabilities: bool = False, image_features: Any = None, layer: int | None = None):
        """Assign new images to the fitted concepts of `layer` (default: the layer of `labels_`);
        -1: outlier or unreadable.

        Each image goes to the finest concept whose centre is nearest in the space the model
        clustered in, and from there to that concept's ancestor in `layer`; it is an outlier
        when it is further from that centre than the concept's outlier fence (see
        `outlier_threshold`). With `return_probabilities=True` also returns an (n, n_concepts)
        array of each concept's membership in [0, 1] (a coarse concept's is its best fine
        concept's), the same measure as `probabilities_`.
        """
        self._check_fitted()
        layer = self._check_layer(layer)
        images, image_embeddings, image_features = check_inputs(images, image_embeddings, image_features)
        use_features = self.features_ is not None and (image_embeddings is None or image_features is not None)
        x, feats, kept, _ = self._embed(images, image_embeddings, dim=self.embeddings_.shape[1],
                                        features=use_features)
        if image_features is not None and use_features:
            feats = self._as_embeddings(image_features, self.features_.shape[1])
        use_features = use_features and feats is not None
        with one_blas_thread():
            labels, member = assign(feats if use_features else x, self._assigner(use_features), layer,
                                    memberships=return_probabilities)
        n_inputs = len(image_embeddings) if image_embeddings is not None else len(images)
        out = np.full(n_inputs, -1, dtype=np.int64)
        out[kept] = labels
        if not return_probabilities:
            return out
        probs = np.zeros((n_inputs, self.layer_sizes_[layer]))
        probs[kept] = member
        return out, probs

    def _assigner(self, use_features: bool) -> Hierarchy:
        """The fitted hierarchy in the space new images come in: the clustering space, or, for
        a model that clustered on features but is given shared-space embeddings only, the same
        finest concepts with their centres and spreads measured in the shared space."""
        if use_features or self.features_ is None:
            return self.hierarchy_
        if getattr(self, "_shared_hierarchy", None) is None:
            fine, centres = self.layers_[0], self.layer_embeddings_[0]
            sims = np.einsum("nd,nd->n", self.embeddings_, centres[np.maximum(fine, 0)])
            medians, sds = spread(fine, sims.astype(np.float32), len(centres))
            self._shared_hierarchy = dataclasses.replace(self.hierarchy_, centres=centres,
                                                         medians=medians, sds=sds)
        return self._shared_hierarchy

    def _check_layer(self, layer: int | None) -> int:
        if layer is None:
            return self.layer_
        if not isinstance(layer, (int, np.integer)) or not 0 <= int(layer) < len(self.layers_):
            raise ConceptError(f"layer must be an integer in 0..{len(self.layers_) - 1} "
                               f"(this model has {len(self.layers_)} layers, finest first), got {layer!r}")
        return int(layer)

    def visualize_concepts(self, top_n: int = 9, concepts: Sequence[int] | None = None,
                           columns: int = 3):
        """A matplotlib Figure: each concept's collage titled with its size and words.

        Shows the `top_n` largest concepts, or the given `concepts`.
        """
        from concept.visualize import concepts_figure

        self._check_fitted()
        if not self.collages_:
            raise ConceptError("No collages: the model was fitted on embeddings without images. "
                               "Fit with images to see concepts.")
        chosen = list(concepts) if concepts is not None else list(self.frequency.Concept[lambda c: c >= 0])[:top_n]
        missing = [c for c in chosen if c not in self.collages_]
        if missing:
            raise ConceptError(f"Unknown concepts {missing}; this model has concepts 0..{self.n_concepts_ - 1}.")
        sizes = dict(zip(*np.unique(self.labels_, return_counts=True)))
        names = getattr(self, "custom_labels_", {})
        return concepts_figure({c: self.collages_[c] for c in chosen},
                               {c: (f"{names[c]}: " if c in names else "") + ", ".join(self.topics[c][:6])
                                for c in chosen},
                               sizes={c: int(sizes.get(c, 0)) for c in chosen}, columns=columns)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike) -> Path:
        """Save to a folder (JSON + safetensors + PNG collages, no pickle), atomically.

        Every layer is saved (labels through the parent maps, concept embeddings, exemplars,
        words) with the centres and spreads `transform` assigns by, so a loaded model assigns
        exactly as before saving.
        """
        from concept.persistence import ModelState, save_model_state

        self._check_fitted()
        embedder = self.embedder_
        h = self.hierarchy_
        settings = {k: getattr(self, k) for k in _SETTINGS}
        settings["embedding_model"] = getattr(embedder, "spec", None) if embedder is not None else None
        settings["embedding_name"] = getattr(embedder, "name", type(embedder).__name__) if embedder else None
        settings["umap_model"] = type(self.umap_model).__name__ if self.umap_model is not None else None
        settings["hdbscan_model"] = type(self.hdbscan_model).__name__ if self.hdbscan_model is not None else None
        settings["layer"] = self.layer_
        settings["n_layers"] = len(self.layers_)
        settings["n_units"] = int(h.n_units)
        settings["fitted_outlier_threshold"] = float(h.threshold)
        arrays = {
            "embeddings": self.embeddings_, "labels": self.labels_,
            "probabilities": self.probabilities_, "image_indices": self.image_indices_,
            "reference_rows": self.reference_rows_,
            "concept_embeddings": self.concept_embeddings_,
            "fine_labels": h.fine, "nearest": h.nearest, "centres": h.centres,
            "medians": h.medians, "sds": h.sds,
        }
        for i, parent in enumerate(h.parents):
            arrays[f"parents_{i}"] = parent
        for i, (emb, ex) in enumerate(zip(self.layer_embeddings_, self.layer_exemplars_)):
            arrays[f"layer_{i}_embeddings"] = emb
            arrays[f"layer_{i}_exemplars"], arrays[f"layer_{i}_exemplar_counts"] = _pack(ex, len(emb))
        arrays["exemplars"], arrays["exemplar_counts"] = _pack(self.exemplars_, len(self.concept_embeddings_))
        if self.features_ is not None:
            arrays["features"] = self.features_
        arrays["image_center"] = self.image_center_
        if getattr(self, "map_2d_", None) is not None:
            arrays["map_2d"] = self.map_2d_
        if self.word_center_ is not None:
            arrays["word_center"] = self.word_center_
        if getattr(self, "seed_matches_", None) is not None:
            arrays["seed_matches"] = self.seed_matches_
        if getattr(self, "_caption_docs", None) is not None:
            caption_terms, arrays["caption_term_indptr"], arrays["caption_term_indices"] = pack_documents(
                self._caption_docs)
            arrays["captioned"] = self._captioned.astype(np.uint8)
        if getattr(self, "alignment_", None) is not None:
            arrays["alignment_weights"] = self.alignment_.weights
            arrays["alignment_bias"] = self.alignment_.bias
            settings["alignment"] = {"alpha": float(self.alignment_.alpha),
                                     "validation": dict(self.alignment_.validation)}
        texts = {
            "topics": _topics_json(self.topics_),
            "layer_topics": [_topics_json(t) for t in self.layer_topics_],
            "image_sources": self.image_sources_,
            "failures": [[f.index, f.source, f.reason] for f in self.failures_],
            "custom_labels": {str(c): name for c, name in getattr(self, "custom_labels_", {}).items()},
            "concept_mapping": getattr(self, "concept_mapping_", []),
        }
        if getattr(self, "_docs", "unknown") != "unknown":
            texts["docs"] = self._docs  # the candidate words, to describe edited concepts alike
        if "captioned" in arrays:
            texts["caption_terms"] = caption_terms
        images = {f"concept_{c}": img for c, img in self.collages_.items()}
        return save_model_state(ModelState(settings, arrays, texts, images), path)

    @classmethod
    def load(cls, path: str | os.PathLike, embedding_model: Any = None) -> ConceptModel:
        """Load a model saved by `save`. Pass `embedding_model` when it was a custom object."""
        from concept._state_check import check_fitted_state
        from concept.persistence import load_model_state

        state = load_model_state(path)
        check_fitted_state(state, path)  # one clear ModelFileError, not a KeyError or IndexError later
        s = dict(state.settings)
        spec = embedding_model if embedding_model is not None else stored_embedding_model(  # a stored path: refused
            s.get("embedding_model"), path, s.get("embedding_name"))
        model = cls(**{k: s[k] for k in _SETTINGS if k in s}, embedding_model=spec)
        a = state.arrays
        model.embeddings_ = a["embeddings"]
        model.features_ = a.get("features")
        model.image_center_ = a["image_center"]
        model.map_2d_ = a.get("map_2d")
        model.word_center_ = a.get("word_center")
        model.alignment_, model._aligned, model._aligned_default = None, None, None
        if "alignment_weights" in a:
            from concept.alignment import Alignment

            saved = s.get("alignment") or {}
            model.alignment_ = Alignment(a["alignment_weights"], a["alignment_bias"], float(saved.get("alpha", 0.0)),
                                         dict(saved.get("validation", {})))
        model.reference_rows_ = a["reference_rows"]
        model.image_indices_ = a["image_indices"]
        model.seed_matches_ = a.get("seed_matches")
        model._caption_docs, model._captioned = None, None
        if "captioned" in a:
            model._caption_docs = unpack_documents(state.texts["caption_terms"], a["caption_term_indptr"],
                                                   a["caption_term_indices"])
            model._captioned = a["captioned"].astype(bool)
        space = model.features_ if model.features_ is not None else model.embeddings_
        if "centres" in a:
            n_layers = int(s.get("n_layers", 1))
            model.hierarchy_ = Hierarchy(
                a["fine_labels"], a["nearest"], a["probabilities"], a["centres"], a["medians"], a["sds"],
                [a[f"parents_{i}"] for i in range(n_layers - 1)], int(s.get("layer", 0)),
                float(s.get("fitted_outlier_threshold", OUTLIER_THRESHOLD)), int(s.get("n_units", 0)))
            model._set_layers()
            model.layer_embeddings_ = [a[f"layer_{i}_embeddings"] for i in range(n_layers)]
            model.layer_exemplars_ = [_unpack(a[f"layer_{i}_exemplars"], a[f"layer_{i}_exemplar_counts"])
                                      for i in range(n_layers)]
            model.layer_topics_ = [_topics_from_json(t) for t in state.texts["layer_topics"]]
        else:  # saved before layers: one layer, centres measured from its labels
            model.hierarchy_ = from_labels(space, a["labels"], a["probabilities"])
            model._set_layers()
            model.layer_embeddings_ = [a["concept_embeddings"]]
            model.layer_exemplars_ = [_unpack(a["exemplars"], a["exemplar_counts"])]
            model.layer_topics_ = [_topics_from_json(state.texts["topics"])]
        model._point_at_default_layer()
        model.image_sources_ = state.texts.get("image_sources")
        model.failures_ = [LoadFailure(*f) for f in state.texts.get("failures", [])]
        model.custom_labels_ = {int(c): n for c, n in state.texts.get("custom_labels", {}).items()}
        model.concept_mapping_ = list(state.texts.get("concept_mapping", []))
        if "docs" in state.texts:
            model._docs = state.texts["docs"]
        model.collages_ = {int(name.rsplit("_", 1)[1]): img for name, img in state.images.items()}
        if spec is None and s.get("embedding_name"):
            logger.warning("The model was fitted with %s, which cannot be rebuilt by name: pass "
                           "load(path, embedding_model=...) to search or transform images.",
                           s["embedding_name"])
        return model

    def __repr__(self) -> str:
        state = f"{self.n_concepts_} concepts, {len(self.labels_)} images" if hasattr(self, "labels_") else "not fitted"
        return f"ConceptModel({state})"

    def _repr_html_(self) -> str:
        """A compact gallery of the largest concepts, shown by notebooks."""
        from concept.explorer import repr_html

        return repr_html(self)


__all__ = ["ConceptModel", "__version__"]
