"""`ConceptModel`: embed images, cluster them into concepts, describe each in images and words.

The model orchestrates the stages (embedding/, clustering.py, representation.py, collage.py,
visualize.py, persistence.py) and holds the fitted state; the stages never import it.
"""

from __future__ import annotations

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
from concept._validation import (
    check_docs,
    check_inputs,
    check_integer,
    check_number,
    check_random_state,
)
from concept.clustering import (
    assign,
    cluster,
    default_clusterer,
    default_reducer,
    layout_2d,
    one_blas_thread,
    project,
    sampled_min_size,
)
from concept.collage import make_collage
from concept.embedding import load_embedding_model
from concept.embedding.base import l2_normalize
from concept.images import ImageInput, LoadFailure, LoadReport, load_image
from concept.representation import (
    describe_concepts,
    words_by_ctfidf,
    words_by_similarity,
)
from concept.vocabulary import load_vocabulary

logger = logging.getLogger(__name__)

#: Nouns taken from the bundled vocabulary when the user gives no `docs` (most common first).
DEFAULT_VOCABULARY_SIZE = 20_000
#: Fewer candidate words than this are compared uncentred (their mean is not a stable offset).
MIN_WORDS_TO_CENTER = 10
#: Images reduced and clustered at most; the others are assigned by nearest neighbours.
DEFAULT_SAMPLE_SIZE = 5_000


class ConceptModel:
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
    sample_size: at most this many images are reduced and clustered; every other image joins
        the concept its nearest sampled images vote for (None: all; see benchmarks/RESULTS.md).
        The sample looks for concepts of `min_concept_size` scaled to its share of the
        collection (at least 15 sampled images), so the finest concept it can find holds about
        15 / sample_size of the collection: raise it to find smaller concepts in big collections.
    n_exemplars: exemplar images per concept (shown in its collage).
    n_words: words kept per concept.
    vocabulary_size: nouns taken from the bundled vocabulary when `docs` is None.
    batch_size: images embedded at once.
    random_state: seed for reproducible concepts.
    verbose: progress bars and info logging.
    store: a folder of stored embeddings (`concept.store.EmbeddingStore`): when the images
        are file paths, only the files not embedded before by this backend are embedded, and
        they are saved there as they are computed (a killed run resumes). None: no store.
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
        n_exemplars: int = 9,
        n_words: int = 10,
        vocabulary_size: int = DEFAULT_VOCABULARY_SIZE,
        batch_size: int = 32,
        random_state: int | None = None,
        verbose: bool = True,
        store: str | os.PathLike | None = None,
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
        self.n_exemplars = n_exemplars
        self.n_words = n_words
        self.vocabulary_size = vocabulary_size
        self.batch_size = batch_size
        self.random_state = random_state
        self.verbose = verbose
        self.store = store

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
        for name in ("n_exemplars", "n_words", "vocabulary_size", "batch_size"):
            check_integer(name, getattr(self, name), minimum=1)
        check_random_state(self.random_state)
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
            image_embeddings: Any = None, image_features: Any = None) -> ConceptModel:
        """Find concepts in `images` (or in precomputed `image_embeddings`) and describe them.

        `image_features` (optional, with `image_embeddings`): vectors to cluster on instead,
        e.g. the offline model's CNN features from `embed_images_and_features`.

        `docs` are the candidate words (default: the bundled English nouns). Images that cannot
        be read are left out and listed in `failures_`; the fitted arrays (`labels_`,
        `probabilities_`, `embeddings_`) cover the images that loaded, at the input positions
        `image_indices_`. Returns self.
        """
        self._validate_params()
        images, image_embeddings, image_features = check_inputs(images, image_embeddings, image_features)
        docs = check_docs(docs)
        x, feats, kept, failures = self._embed(images, image_embeddings,
                                               features=self.cluster_space == "auto")
        if image_features is not None:
            if image_embeddings is None:
                raise ConceptError("image_features are only used together with image_embeddings.")
            feats = self._as_embeddings(image_features)
            if len(feats) != len(x):
                raise ConceptError(f"Got {len(x)} image_embeddings but {len(feats)} image_features.")
            feats = feats if self.cluster_space == "auto" else None
        n = len(x)
        if n < self.min_concept_size:
            raise ConceptError(
                f"Only {n} images, fewer than min_concept_size={self.min_concept_size}, so no concept "
                f"can form: add images or lower min_concept_size (e.g. ConceptModel(min_concept_size={max(2, n // 3)}))."
            )
        reducer, clusterer = self._stages(n)
        with one_blas_thread():
            result = cluster(x if feats is None else feats, reducer, clusterer,
                             sample_size=self.sample_size, random_state=self.random_state)
            concepts = describe_concepts(x, result.labels, n_exemplars=int(self.n_exemplars),
                                         diversity=float(self.diversity))
        self.embeddings_ = x
        self.features_ = feats
        self.labels_ = result.labels
        self.reference_rows_ = result.fitted_rows
        self.projection_ = result.projection
        self.probabilities_ = result.probabilities
        self.image_indices_ = kept
        self.failures_ = list(failures)
        self.concept_embeddings_ = concepts.embeddings
        self.exemplars_ = {int(c): [int(i) for i in ex] for c, ex in zip(concepts.ids, concepts.exemplars)}
        with one_blas_thread():
            self.topics_ = self._describe_in_words(docs)
        self.image_sources_ = self._sources(images, kept)
        self.collages_ = self._make_collages(images, kept) if images is not None else {}
        self.map_2d_ = None
        if not len(concepts.ids):
            logger.warning("No concept found: every image is an outlier. Lower min_concept_size "
                           "(now %d) or add images.", self.min_concept_size)
        logger.info("Found %d concepts in %d images (%d outliers).", len(concepts.ids), n,
                    int((result.labels < 0).sum()))
        return self

    def fit_transform(self, images: Sequence[ImageInput] | None = None, docs: Sequence[str] | None = None,
                      image_embeddings: Any = None, image_features: Any = None) -> np.ndarray:
        """Fit, then return one concept id per input image (-1: outlier or unreadable image)."""
        self.fit(images, docs=docs, image_embeddings=image_embeddings, image_features=image_features)
        n_inputs = len(image_embeddings) if image_embeddings is not None else len(images)
        out = np.full(n_inputs, -1, dtype=np.int64)
        out[self.image_indices_] = self.labels_
        return out

    def _stages(self, n: int):
        """The reducer and clusterer for `n` images: the user's, or defaults sized for the sample."""
        fitted = n if self.sample_size is None else min(n, int(self.sample_size))
        reducer = self.umap_model if self.umap_model is not None else default_reducer(fitted, self.random_state)
        clusterer = (self.hdbscan_model if self.hdbscan_model is not None
                     else default_clusterer(sampled_min_size(self.min_concept_size, fitted, n), fitted))
        return reducer, clusterer

    def cluster_images(self, image_embeddings: Any) -> np.ndarray:
        """Run only the reduce-and-cluster stage on embeddings; labels, 0 = largest, -1 = outlier."""
        self._validate_params()
        x = self._as_embeddings(check_inputs(None, image_embeddings, None)[1])
        reducer, clusterer = self._stages(len(x))
        return cluster(x, reducer, clusterer, sample_size=self.sample_size,
                       random_state=self.random_state).labels

    def _describe_in_words(self, docs: Sequence[str] | None) -> dict[int, list[tuple[str, float]]]:
        """Words per concept, compared after centring each modality on its own mean.

        Images and texts sit in different regions of a joint space (the "modality gap"), so raw
        cosine favours words close to every image ("object", "item"); subtracting the image mean
        from concepts and the vocabulary mean from words removes that shared offset.
        """
        ids = np.arange(len(self.concept_embeddings_))
        # With one concept (or a handful of words) the mean is the concept itself: no centring.
        self.image_center_ = (self.embeddings_.mean(axis=0) if len(ids) >= 2
                              else np.zeros(self.embeddings_.shape[1], np.float32))
        self.word_center_ = None
        if self.embedder_ is None:
            logger.warning("embedding_model is None: concepts get no words.")
            return {int(c): [] for c in ids}
        if isinstance(docs, str):
            raise ConceptError("docs must be a list of strings, not a single string.")
        words = load_vocabulary(int(self.vocabulary_size)) if docs is None else list(
            dict.fromkeys(s.strip() for s in map(str, docs) if s and s.strip()))
        if not words:
            logger.warning("docs holds no words: concepts get no words.")
            return {int(c): [] for c in ids}
        words_c, word_center = self._embed_words(words)
        if words_c.shape[1] != self.embeddings_.shape[1]:
            raise EmbeddingError(
                f"The words were embedded in {words_c.shape[1]} dimensions by "
                f"{getattr(self.embedder_, 'name', type(self.embedder_).__name__)}, but the images have "
                f"{self.embeddings_.shape[1]}: they are not in the same space. Pass the embedding_model "
                "that produced image_embeddings."
            )
        self.word_center_ = word_center
        if self.ctfidf:
            described = words_by_ctfidf(l2_normalize(self.embeddings_ - self.image_center_), self.labels_, ids,
                                        words_c, words, int(self.n_words), vectorizer=self.vectorizer_model,
                                        random_state=self.random_state)
        else:
            concepts_c = l2_normalize(self.concept_embeddings_ - self.image_center_)
            described = words_by_similarity(concepts_c, words_c, words, int(self.n_words))
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
            tiles = []
            for row in rows:
                try:
                    tiles.append(load_image(images[kept[row]]))
                except ImageLoadError as exc:  # changed on disk since it was embedded
                    logger.warning("Exemplar left out of the collage: %s", exc)
            if tiles:
                collages[concept] = make_collage(tiles)
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
        ids, counts = np.unique(self.labels_, return_counts=True)
        df = pd.DataFrame({"Concept": ids, "Frequency": counts})
        inliers = df[df.Concept >= 0].sort_values(["Frequency", "Concept"], ascending=[False, True])
        return pd.concat([inliers, df[df.Concept < 0]], ignore_index=True)

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
            space = self.features_ if self.features_ is not None else self.embeddings_
            self.map_2d_ = layout_2d(space, self.reference_rows_, self.random_state)
        return self.map_2d_

    def get_concept_info(self) -> pd.DataFrame:
        """The frequency table with each concept's words."""
        df = self.frequency
        df["Words"] = [", ".join(self.topics.get(int(c), [])) if c >= 0 else "(outliers)" for c in df.Concept]
        return df

    # ------------------------------------------------------------------ using a fitted model
    def _query_vector(self, query: str | ImageInput) -> tuple[np.ndarray, bool]:
        """The query's unit vector, and whether it is a text."""
        embedder = self._require_embedder("Searching")
        is_text = isinstance(query, str) and not Path(query).is_file()
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

    def search(self, query: str | ImageInput, top_n: int = 5,
               n_images: int = 0) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
        """The `top_n` concepts and the `n_images` fitted images most similar to a text (or an
        image: path, PIL image or array), best first, embedding the query once.

        Images are given as rows of the fitted arrays (`labels_`, `image_sources_`).
        """
        self._check_fitted()
        vec, is_text = self._query_vector(query)

        def best(sims: np.ndarray, n: int) -> list[tuple[int, float]]:
            order = np.argsort(-sims, kind="stable")[: max(0, int(n))]
            return [(int(i), float(sims[i])) for i in order]

        concepts = best(self._similarities(vec, is_text, self.concept_embeddings_), top_n)
        images = best(self._similarities(vec, is_text, self.embeddings_), n_images) if n_images > 0 else []
        return concepts, images

    def find_concepts(self, query: str | ImageInput, top_n: int = 5) -> list[tuple[int, float]]:
        """Concepts most similar to a text (or an image: path, PIL image or array), best first."""
        self._check_fitted()
        if self.n_concepts_ == 0:
            return []
        return self.search(query, top_n)[0]

    def transform(self, images: Sequence[ImageInput] | None = None, image_embeddings: Any = None,
                  return_probabilities: bool = False, image_features: Any = None):
        """Assign new images to the fitted concepts (-1: outlier or unreadable).

        Each image goes to the concept that wins a similarity-weighted vote of its 15 nearest
        clustered images (the sample, for large collections), searched in the space the model
        clustered in when images are given. With `return_probabilities=True` also returns an
        (n, n_concepts) array of each concept's share of that vote.
        """
        self._check_fitted()
        images, image_embeddings, image_features = check_inputs(images, image_embeddings, image_features)
        use_features = self.features_ is not None and (image_embeddings is None or image_features is not None)
        x, feats, kept, _ = self._embed(images, image_embeddings, dim=self.embeddings_.shape[1],
                                        features=use_features)
        if image_features is not None and use_features:
            feats = self._as_embeddings(image_features, self.features_.shape[1])
        ref = self.reference_rows_
        if use_features and feats is not None:
            new, reference, basis = feats, self.features_, self.projection_
        else:  # the space the model clustered in, else the shared space in full
            new, reference = x, self.embeddings_
            basis = self.projection_ if self.features_ is None else None
        with one_blas_thread():
            labels, shares = assign(project(new, basis), project(reference, basis, rows=ref),
                                    self.labels_[ref], self.n_concepts_)
        n_inputs = len(image_embeddings) if image_embeddings is not None else len(images)
        out = np.full(n_inputs, -1, dtype=np.int64)
        out[kept] = labels
        if not return_probabilities:
            return out
        probs = np.zeros((n_inputs, self.n_concepts_))
        probs[kept] = shares
        return out, probs

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
        return concepts_figure({c: self.collages_[c] for c in chosen},
                               {c: ", ".join(self.topics[c][:6]) for c in chosen},
                               sizes={c: int(sizes.get(c, 0)) for c in chosen}, columns=columns)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike) -> Path:
        """Save to a folder (JSON + safetensors + PNG collages, no pickle), atomically."""
        from concept.persistence import ModelState, save_model_state

        self._check_fitted()
        ex_ids = sorted(self.exemplars_)
        embedder = self.embedder_
        settings = {k: getattr(self, k) for k in (
            "min_concept_size", "diversity", "ctfidf", "cluster_space", "sample_size", "n_exemplars", "n_words", "vocabulary_size",
            "batch_size", "random_state", "verbose")}
        settings["embedding_model"] = getattr(embedder, "spec", None) if embedder is not None else None
        settings["embedding_name"] = getattr(embedder, "name", type(embedder).__name__) if embedder else None
        settings["umap_model"] = type(self.umap_model).__name__ if self.umap_model is not None else None
        settings["hdbscan_model"] = type(self.hdbscan_model).__name__ if self.hdbscan_model is not None else None
        arrays = {
            "embeddings": self.embeddings_, "labels": self.labels_,
            "probabilities": self.probabilities_, "image_indices": self.image_indices_,
            "reference_rows": self.reference_rows_,
            "concept_embeddings": self.concept_embeddings_,
            "exemplars": np.asarray([i for c in ex_ids for i in self.exemplars_[c]], dtype=np.int64),
            "exemplar_counts": np.asarray([len(self.exemplars_[c]) for c in ex_ids], dtype=np.int64),
        }
        if self.features_ is not None:
            arrays["features"] = self.features_
        if getattr(self, "projection_", None) is not None:
            arrays["projection"] = self.projection_
        arrays["image_center"] = self.image_center_
        if getattr(self, "map_2d_", None) is not None:
            arrays["map_2d"] = self.map_2d_
        if self.word_center_ is not None:
            arrays["word_center"] = self.word_center_
        texts = {
            "topics": {str(c): [[w, s] for w, s in ws] for c, ws in self.topics_.items()},
            "image_sources": self.image_sources_,
            "failures": [[f.index, f.source, f.reason] for f in self.failures_],
        }
        images = {f"concept_{c}": img for c, img in self.collages_.items()}
        return save_model_state(ModelState(settings, arrays, texts, images), path)

    @classmethod
    def load(cls, path: str | os.PathLike, embedding_model: Any = None) -> ConceptModel:
        """Load a model saved by `save`. Pass `embedding_model` when it was a custom object."""
        from concept.persistence import load_model_state

        state = load_model_state(path)
        s = dict(state.settings)
        spec = embedding_model if embedding_model is not None else s.get("embedding_model")
        model = cls(**{k: s[k] for k in ("min_concept_size", "diversity", "ctfidf", "cluster_space",
                                          "sample_size", "n_exemplars", "n_words", "vocabulary_size", "batch_size", "random_state",
                                          "verbose")}, embedding_model=spec)
        a = state.arrays
        model.embeddings_ = a["embeddings"]
        model.features_ = a.get("features")
        model.projection_ = a.get("projection")
        model.image_center_ = a["image_center"]
        model.map_2d_ = a.get("map_2d")
        model.word_center_ = a.get("word_center")
        model.labels_ = a["labels"]
        model.reference_rows_ = a["reference_rows"]
        model.probabilities_ = a["probabilities"]
        model.image_indices_ = a["image_indices"]
        model.concept_embeddings_ = a["concept_embeddings"]
        ends = np.cumsum(a["exemplar_counts"])
        model.exemplars_ = {c: a["exemplars"][e - n:e].tolist()
                            for c, (n, e) in enumerate(zip(a["exemplar_counts"], ends))}
        model.topics_ = {int(c): [(w, float(sc)) for w, sc in ws] for c, ws in state.texts["topics"].items()}
        model.image_sources_ = state.texts.get("image_sources")
        model.failures_ = [LoadFailure(*f) for f in state.texts.get("failures", [])]
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
