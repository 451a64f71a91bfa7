"""`ConceptModel`: embed images, cluster them into concepts, describe each in images and words.

The model holds the hyper-parameters and the fitted state and calls the stages in one straight
sequence: embed (`embedding.inputs`) -> cluster (`finding`) -> describe (`describing`) ->
collages (`collage`). Edits are functions over the hierarchy (`shaping`), the folder's schema
is `model_folder`'s. Stages take plain data and return small dataclasses; none imports the model.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from concept._errors import NotFittedError
from concept._validation import (as_image_list, check_docs, check_image_names, check_inputs, check_integer, check_layer,
                                 check_model_params)
from concept._version import __version__
from concept.clustering import Hierarchy, assign, layout_2d, mean_directions, one_blas_thread, reference_rows
from concept.clustering.hierarchy import OUTLIER_THRESHOLD
from concept.collage import concept_collages, remade_collages
from concept.deduplicated import (describing_settings, duplicates_at_fit, image_info_duplicates, model_duplicates,
                                  model_typicality, model_uniqueness, set_model_duplicates)
from concept.describing import Described, Images, describe_again, edit_words
from concept.embedding import load_embedding_model
from concept.embedding.inputs import (Rows, append_names, append_rows, as_embeddings, embed_inputs, embed_more,
                                      image_sources, unseen_images)
from concept.finding import (ClusterSettings, cluster_hierarchy, effective_min_size, find_hierarchy_for_fit,
                             layer_attributes, shared_space_hierarchy)
from concept.images import ImageInput
from concept.searching import query_is_text, query_vector, rank
from concept.seeding import check_seed_concepts
from concept.shaping import Edit, add_images, carry_names, delete, give_outliers, merge, outlier_candidates, reduce
from concept.tables import concept_info, frequency_table, hierarchy_table, image_table
from concept.words import candidate_terms

logger = logging.getLogger(__name__)

#: Nouns taken from the bundled vocabulary when the user gives no `docs` (most common first).
DEFAULT_VOCABULARY_SIZE = 20_000
#: Units (images or micro-clusters of images) the non-linear clustering stages see at most.
DEFAULT_SAMPLE_SIZE = 20_000
#: Images drawn for the 2-D map's UMAP; the others are placed by their nearest drawn images.
MAP_SAMPLE = 5_000


def _per_input(inputs: Sequence, kept: np.ndarray, values: np.ndarray, shape: tuple = (), fill: float = -1):
    """One row per input: `values` at the positions `kept`, `fill` at the inputs that failed."""
    out = np.full((len(inputs), *shape), fill, dtype=np.int64 if fill == -1 else np.float64)
    out[kept] = values
    return out


class ConceptModel(BaseEstimator):
    """Concept modeling: topic modeling for images, described by exemplar images and words.

    Parameters
    ----------
    min_concept_size: smallest number of images a concept may have (HDBSCAN's min_cluster_size).
    diversity: 0..1, how different a concept's exemplar images must be from each other (MMR).
    embedding_model: "auto" (CLIP if on this machine, else the bundled offline model), "offline", a CLIP name
        or local folder, any object with `embed_images` and `embed_texts`, or None when only precomputed
        embeddings are used (then no words).
    vectorizer_model: a scikit-learn vectorizer tokenising the c-TF-IDF pseudo-documents.
    umap_model / hdbscan_model: the reducer (anything with `fit_transform`) / clusterer (anything with `fit`
        and `labels_`) instead of the default clustering core.
    ctfidf: describe concepts by c-TF-IDF over each image's nearest words, not the words nearest the concept.
    cluster_space: "auto" clusters on the backend's image features when it has them (the offline model's CNN
        features separate categories far better than its shared image-text vectors), "embeddings" always
        on the shared space.
    sample_size: the clustering's non-linear stages see at most this many units: every image up to 3,000
        images, beyond that micro-clusters of about 40 similar images, so every image shapes the concepts
        and a concept of `min_concept_size` images is found at any size (None: every image is a unit, slow
        for large collections). With a user's `umap_model` or `hdbscan_model`: the sample they are fitted on.
    outlier_threshold: an image is an outlier when its similarity to its concept's centre is more than this
        many robust SDs (1.4826 x MAD) below the concept's median member; `probabilities_` runs from 0 at
        that fence to 1 at the median (a large value, e.g. 1000, keeps every image in a concept).
    n_exemplars / n_words: exemplar images (shown in its collage) / words kept per concept.
    vocabulary_size: nouns taken from the bundled vocabulary when `docs` is None.
    batch_size: images embedded at once. random_state: seed for reproducible concepts.
    verbose: progress bars and info logging.
    store: a folder of stored embeddings (`concept.store.EmbeddingStore`): of file paths, only those not
        embedded before by this backend are embedded, saved as they are computed (a killed run resumes).
    n_concepts: after the fit, merge the concepts of `labels_` down to this many (`reduce_concepts`).
    zeroshot_concepts: names of concepts you expect ("cat", "car"): images that match one form a concept
        named by it, the others are clustered as usual. Matching is calibrated on the collection
        (`concept.editing.calibrated_matches`): image-text similarities differ from model to model; a sigmoid-
        trained model (SigLIP) uses its own probability instead, a match at 0.5 (`concept.matching`).
    zeroshot_threshold: how far above the images that prefer other names an image's similarity to a name
        must be to match it, in robust SDs (higher: fewer, surer matches); not used with SigLIP.
    seed_concepts: lists of words of concepts you expect ([["beach", "sea"], ["cat", "kitten"]]): images
        that match a list are pulled together before the clustering, and a concept holding most of a seed's
        matched images lists its words first. Nothing is assigned directly (see `concept.seeding`).
    find_duplicates: find the fitted images' exact and near duplicates during `fit` (`duplicates_`), so that from
        the start no exemplar or collage shows two images of one group (else found on first use of `duplicates_`).
    caption_model: names and caption words from every layer's exemplars' captions by it (`concept.captioning`).

    Attributes (after `fit` or `load`)
    ----------
    labels_: each fitted image's concept in the default layer (-1: outlier); `layers_` holds every layer's
        (finest first) and `layer_` the default's index.
    probabilities_: how surely each image belongs to its concept, 0 (at the outlier fence) to 1.
    embeddings_ / features_: the fitted images' shared-space vectors / clustering features (or None).
    image_indices_ / failures_ / image_sources_: the input positions of the fitted rows / the inputs that
        could not be loaded / the rows' file paths (None unless given as paths). image_names_: the rows' names
        given to `fit` (None without).
    concept_embeddings_, exemplars_, topics_: the default layer's concept vectors, exemplar rows and
        (word, score) lists; `layer_embeddings_`, `layer_exemplars_`, `layer_topics_`: every layer's.
    collages_: {concept: PIL image}. hierarchy_: the clustering hierarchy `transform` assigns by.
    nearest_labels_: each image's nearest concept, outliers too. custom_labels_: names given by the user or
        zero-shot. concept_mapping_: the edits made. alignment_: the learned image-text map (None without
        captions). map_2d_: the 2-D map once computed. seed_matches_: each image's seed (seeded fits).
        embedder_: the embedding backend. duplicates_ / uniqueness_ / typicality_: the fitted images' duplicate
        groups / how unlike each is to its nearest others / how central each is to its concept (see each).
    """

    def __init__(self, min_concept_size: int = 30, diversity: float = 0.3, embedding_model: Any = "auto",
                 vectorizer_model: Any = None, umap_model: Any = None, hdbscan_model: Any = None, ctfidf: bool = False,
                 cluster_space: str = "auto", sample_size: int | None = DEFAULT_SAMPLE_SIZE,
                 outlier_threshold: float = OUTLIER_THRESHOLD, n_exemplars: int = 9, n_words: int = 10,
                 vocabulary_size: int = DEFAULT_VOCABULARY_SIZE, batch_size: int = 32, random_state: int | None = None,
                 verbose: bool = True, store: str | os.PathLike | None = None, n_concepts: int | None = None,
                 zeroshot_concepts: Sequence[str] | None = None, zeroshot_threshold: float = 3.0,
                 seed_concepts: Sequence[Sequence[str]] | None = None, find_duplicates: bool = False,
                 caption_model: Any = None) -> None:
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
        self.find_duplicates = find_duplicates
        self.caption_model = caption_model

    # ------------------------------------------------------------------ the stages' inputs
    def _check_fitted(self) -> None:
        if "labels_" not in self.__dict__:
            raise NotFittedError("This ConceptModel is not fitted yet: call fit() or load() first.")

    def _backend(self) -> Any:
        """The embedding backend, loaded on first use (None when embedding_model is None)."""
        spec, backend = self.__dict__.get("_embedder", (None, None))
        if (backend is None or spec is not self.embedding_model) and self.embedding_model is not None:
            backend = load_embedding_model(self.embedding_model, verbose=self.verbose)
            self._embedder = (self.embedding_model, backend)  # loaded again after set_params
        return backend if self.embedding_model is not None else None

    @property
    def embedder_(self) -> Any:
        """The embedding backend of a fitted model (None when embedding_model is None)."""
        self._check_fitted()
        return self._backend()

    def _space(self) -> np.ndarray:
        """The vectors the model clustered in (features, else the shared-space embeddings)."""
        return self.features_ if self.features_ is not None else self.embeddings_

    # ------------------------------------------------------------------ fitting
    def fit(self, images: Sequence[ImageInput] | None = None, image_names: Sequence[str] | None = None,
            image_embeddings: Any = None, *, docs: Sequence[str] | None = None, image_features: Any = None,
            captions: Any = None, hierarchy: Hierarchy | None = None) -> ConceptModel:
        """Find concepts in `images` (or in precomputed `image_embeddings`) and describe them; returns self.

        The first three parameters are the reference's, in its order. `image_names`: one name per image, shown for
        it in `get_image_info`, `get_concept_info`'s exemplars and the explorer (`image_names_`).
        `docs`: the candidate words (default: the bundled English nouns), or documents to take them from
        (`concept.words.candidate_terms`). Images that cannot be read are left out
        and listed in `failures_`; the fitted arrays cover the images that loaded, at the input positions
        `image_indices_`. `image_features` (with `image_embeddings`): vectors to cluster on instead, e.g. the
        offline model's CNN features from `embed_images_and_features`.
        `captions`: one text per image (None where it has none), or "filenames" / "metadata" to read them from the
        files (`concept.captions`): words then come from the members' captions (c-TF-IDF) too, and with enough
        captions a map from the images to the text space is learned (`alignment_`) for words and text search.
        `hierarchy`: concepts found elsewhere for these images (e.g. by `concept.distributed` over every image of
        a cluster), described here instead of clustering.
        """
        from concept.captioning import describe_captioned
        from concept.captions import check_captions

        check_model_params(self.get_params())
        images, image_embeddings, image_features = check_inputs(images, image_embeddings, image_features)
        docs = candidate_terms(check_docs(docs), self.vectorizer_model)
        n_inputs = len(image_embeddings) if image_embeddings is not None else len(images) if images is not None else 0
        captions = check_captions(captions, images, n_inputs)
        image_names = check_image_names(image_names, n_inputs)
        embedder = self._backend()
        embedded = embed_inputs(embedder, images, image_embeddings, features=self.cluster_space == "auto",
                                store=self.store, batch_size=self.batch_size, verbose=self.verbose)
        x, feats, kept = embedded.x, embedded.features, embedded.kept
        if image_features is not None:  # check_inputs matched it to image_embeddings
            feats = as_embeddings(image_features) if self.cluster_space == "auto" else None
        n, space = len(x), x if feats is None else feats
        min_size = effective_min_size(n, self.min_concept_size)
        with one_blas_thread():
            found = find_hierarchy_for_fit(x, space, min_size, ClusterSettings.of(self.get_params()), embedder=embedder,
                                           zeroshot_names=self.zeroshot_concepts, given=hierarchy,
                                           zeroshot_threshold=self.zeroshot_threshold,
                                           seeds=check_seed_concepts(self.seed_concepts))
        self.hierarchy_, self.seed_matches_ = found.hierarchy, found.seed_matches
        self.embeddings_, self.features_, self.image_indices_ = x, feats, kept
        self.failures_ = list(embedded.failures)
        self._set_layers()
        self.reference_rows_ = reference_rows(n, MAP_SAMPLE, self.random_state)
        self._duplicates = duplicates_at_fit(self, images, kept, space)  # before the exemplars are picked
        described, names = describe_captioned(self, embedder, x, space, docs, captions, images, kept)
        self._take(described)
        self.image_sources_ = image_sources(images, kept)
        self.image_names_ = None if image_names is None else [image_names[i] for i in kept]
        self.collages_ = (concept_collages(self.exemplars_, lambda row: images[kept[row]])
                          if images is not None else {})
        self.map_2d_ = None
        self._docs = None if docs is None else list(docs)
        self.concept_mapping_ = []
        self.custom_labels_ = {**names, **found.names_at(self.layer_)}  # caption_model's names, zero-shot's
        if self.n_concepts is not None and self.n_concepts_ > 0 and self.n_concepts != self.n_concepts_:
            self._reduce(int(self.n_concepts), None if images is None else lambda row: images[kept[row]])
        if self.n_concepts_ == 0:
            logger.warning("No concept found: every image is an outlier. Lower min_concept_size "
                           "(now %d) or add images.", min_size)
        logger.info("Found %d concepts in %d images (%d outliers), in %d layers (%s concepts); "
                    "labels_ is layer %d.", self.n_concepts_, n, int((self.labels_ < 0).sum()),
                    len(self.layers_), ", ".join(str(k) for k in self.layer_sizes_), self.layer_)
        return self

    def fit_transform(self, images: Sequence[ImageInput] | None = None, docs: Sequence[str] | None = None,
                      image_names: Sequence[str] | None = None, image_embeddings: Any = None, *,
                      image_features: Any = None, captions: Any = None) -> np.ndarray:
        """Fit, then return one concept id per input image (-1: outlier or unreadable image). The first four
        parameters are the reference's, in its order."""
        self.fit(images, image_names, image_embeddings, docs=docs, image_features=image_features, captions=captions)
        return _per_input(image_embeddings if image_embeddings is not None else images, self.image_indices_,
                          self.labels_)

    def cluster_images(self, image_embeddings: Any) -> np.ndarray:
        """Run only the clustering stage on embeddings: the default layer's labels, 0 = largest, -1 = outlier."""
        check_model_params(self.get_params())
        x = as_embeddings(check_inputs(None, image_embeddings, None)[1])
        with one_blas_thread():
            h = cluster_hierarchy(x, effective_min_size(len(x), self.min_concept_size),
                                  ClusterSettings.of(self.get_params()))
        return h.layers[h.default]

    def _set_layers(self) -> None:  # layers_, layer_, labels_, probabilities_, nearest_labels_
        self.__dict__.update(layer_attributes(self.hierarchy_))

    def _take(self, d: Described) -> None:
        """The describing stage's result as the fitted attributes; the default layer's descriptions are also
        `concept_embeddings_`, `exemplars_` and `topics_`."""
        self.layer_embeddings_, self.layer_exemplars_, self.layer_topics_ = (
            d.layer_embeddings, d.layer_exemplars, d.layer_topics)
        self.word_center_, self.image_center_ = d.word_center, d.image_center
        if d.alignment is not self.__dict__.get("alignment_"):
            self._aligned = None  # a new map: the images' vectors through it are computed again
        self.alignment_, self._aligned_default = d.alignment, None
        self._caption_docs, self._captioned = d.caption_docs, d.captioned
        self.concept_embeddings_ = self.layer_embeddings_[self.layer_]
        self.exemplars_ = self.layer_exemplars_[self.layer_]
        self.topics_ = self.layer_topics_[self.layer_]

    # ------------------------------------------------------------------ results
    @property
    def n_concepts_(self) -> int:
        self._check_fitted()
        return len(self.concept_embeddings_)

    @property
    def layer_sizes_(self) -> list[int]:
        """Number of concepts in each layer, finest first."""
        self._check_fitted()
        return [int(layer.max(initial=-1)) + 1 if (layer >= 0).any() else 0 for layer in self.layers_]

    @property
    def aligned_embeddings_(self) -> np.ndarray | None:
        """The fitted images in the text space through `alignment_` (None without a map)."""
        if self.__dict__.get("alignment_") is None:
            self._check_fitted()
            return None
        if self.__dict__.get("_aligned") is None:
            self._aligned = self.alignment_.transform(self._space())
        return self._aligned

    @property
    def frequency(self) -> pd.DataFrame:
        """Concept sizes, largest first; the outliers (-1), if any, in the last row."""
        self._check_fitted()
        return frequency_table(self.labels_)

    def get_frequency(self, count_duplicates: bool = True) -> pd.DataFrame:
        """`frequency`, or with `count_duplicates=False` each duplicate group counted once, at its kept image (the
        concept sizes with `duplicates_.droppable()` left out, as `export_concepts(dedupe=True)` writes them)."""
        self._check_fitted()
        return frequency_table(self.labels_, None if count_duplicates else self.duplicates_.droppable())

    duplicates_ = property(model_duplicates, set_model_duplicates, doc=model_duplicates.__doc__)
    uniqueness_ = property(model_uniqueness, doc=model_uniqueness.__doc__)
    typicality_ = property(model_typicality, doc=model_typicality.__doc__)

    @property
    def topics(self) -> dict[int, list[str]]:
        """{concept: [words, best first]} (the reference's name)."""
        self._check_fitted()
        return {c: [w for w, _ in ws] for c, ws in self.topics_.items()}

    def map_2d(self) -> np.ndarray:
        """(n_images, 2) coordinates of every fitted image for plotting, computed on first use (UMAP in 2-D on the
        clustered images) and saved with the model."""
        self._check_fitted()
        if self.map_2d_ is None:
            self.map_2d_ = layout_2d(self._space(), self.reference_rows_, self.random_state)
        return self.map_2d_

    def get_concept_info(self, layer: int | None = None) -> pd.DataFrame:
        """The frequency table with each concept's words, of `layer` (default: `labels_`'s)."""
        self._check_fitted()
        layer = check_layer(layer, len(self.layers_), self.layer_)
        return concept_info(self.layers_[layer], self.layer_topics_[layer],  # names: of labels_'s layer
                            self.custom_labels_ if layer == self.layer_ else None, self.layer_exemplars_[layer],
                            self.image_names_)

    def get_hierarchy(self) -> pd.DataFrame:
        """The concept tree as a table: one row per concept of each layer but the coarsest, with its parent in the
        layer above (Layer, Concept, Parent layer, Parent, Size, Words)."""
        self._check_fitted()
        return hierarchy_table(self.hierarchy_.parents, self.layers_, self.layer_topics_)

    def get_image_info(self, timestamps: Any = None) -> pd.DataFrame:
        """One row per fitted image: file, concept, name, words, probability, exemplar? (`tables.image_table`); with
        `timestamps` ("exif", or dates as `concepts_over_time` takes them) also Date and Date status. When the
        duplicates are known also Duplicate group, Kept, Uniqueness, Typicality (`image_info_duplicates`)."""
        self._check_fitted()
        df = image_table(self.image_sources_, self.image_indices_, self.layers_, self.layer_, self.probabilities_,
                         self.exemplars_, self.topics_, self.custom_labels_, self._caption_docs, self._captioned,
                         self.image_names_)
        df = image_info_duplicates(self, df)  # with the duplicates' columns when they are known
        if timestamps is not None:
            from concept.over_time import image_dates

            dates = image_dates(self, timestamps)
            df["Date"], df["Date status"] = dates.values, dates.status
        return df

    # ------------------------------------------------------------------ using a fitted model
    def search(self, query: str | ImageInput, top_n: int = 5, n_images: int = 0,
               kind: str = "auto") -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
        """The `top_n` concepts and the `n_images` fitted images most similar to a text (or an image: path, PIL
        image or array), best first, embedding the query once.

        `kind`: "text" searches a string as text whatever it spells, "image" reads it as an image path, "auto" (the
        default) takes a string for a path only if that file exists; pass "text" for text from anyone else (e.g. a
        web request). Images are given as rows of the fitted arrays (`labels_`, `image_sources_`). Scores are cosines,
        but a text's on a sigmoid-trained model (SigLIP) is the model's own probability that it matches (`rank`).
        """
        self._check_fitted()
        embedder = self._backend()
        vec, is_text = query_vector(embedder, query, kind, self.concept_embeddings_.shape[1])
        aligned = None
        if is_text and self.alignment_ is not None:  # texts are compared in the learned space
            if self._aligned_default is None:
                self._aligned_default = mean_directions(self.aligned_embeddings_, self.labels_, self.n_concepts_)[0]
            aligned = self._aligned_default, self.aligned_embeddings_
        return rank(vec, is_text, top_n, n_images, self.concept_embeddings_, self.embeddings_, self.image_center_,
                    self.word_center_, aligned, embedder)

    def find_concepts(self, search_term: str | ImageInput, top_n: int = 5,
                      kind: str = "auto") -> list[tuple[int, float]]:
        """Concepts most similar to a text (or an image: path, PIL image or array), best first; `kind` ("auto",
        "text", "image") as in `search`."""
        self._check_fitted()
        if self.n_concepts_ == 0:
            query_is_text(search_term, kind)  # a bad kind is an error even with no concepts
            return []
        return self.search(search_term, top_n, kind=kind)[0]

    def transform(self, images: Sequence[ImageInput] | None = None, image_embeddings: Any = None,
                  return_probabilities: bool = False, image_features: Any = None, layer: int | None = None):
        """Assign new images to the fitted concepts of `layer` (default: the layer of `labels_`); -1: outlier or
        unreadable.

        Each image goes to the finest concept whose centre is nearest in the space the model clustered in, and from
        there to that concept's ancestor in `layer`; it is an outlier when it is further from that centre than the
        concept's outlier fence (see `outlier_threshold`). With `return_probabilities=True` also returns an (n,
        n_concepts) array of each concept's membership in [0, 1] (a coarse concept's is its best fine concept's),
        the same measure as `probabilities_`.
        """
        self._check_fitted()
        layer = check_layer(layer, len(self.layers_), self.layer_)
        images, image_embeddings, image_features = check_inputs(as_image_list(images), image_embeddings, image_features)
        use_features = self.features_ is not None and (image_embeddings is None or image_features is not None)
        e = self._embed_more(images, image_embeddings, image_features, use_features)
        use_features = use_features and e.features is not None
        with one_blas_thread():
            labels, member = assign(e.features if use_features else e.x, self._assigner(use_features), layer,
                                    memberships=return_probabilities)
        inputs = image_embeddings if image_embeddings is not None else images
        out = _per_input(inputs, e.kept, labels)
        return (out, _per_input(inputs, e.kept, member, (self.layer_sizes_[layer],), 0.0)) if return_probabilities \
            else out

    def _embed_more(self, images, image_embeddings, image_features, use_features: bool, required: bool = False):
        return embed_more(self._backend(), images, image_embeddings, image_features, dim=self.embeddings_.shape[1],
                          feature_dim=None if self.features_ is None else self.features_.shape[1],
                          use_features=use_features, required=required, store=self.store,
                          batch_size=self.batch_size, verbose=self.verbose)

    def _assigner(self, use_features: bool) -> Hierarchy:
        """The fitted hierarchy in the space new images come in: the clustering space, or, for a model that
        clustered on features but is given shared-space embeddings only, the same finest concepts with their centres
        and spreads measured in the shared space."""
        if use_features or self.features_ is None:
            return self.hierarchy_
        if self.__dict__.get("_shared_hierarchy") is None:
            self._shared_hierarchy = shared_space_hierarchy(self.hierarchy_, self.embeddings_, self.layers_[0],
                                                            self.layer_embeddings_[0])
        return self._shared_hierarchy

    def visualize_concepts(self, top_n: int = 9, concepts: Sequence[int] | None = None,
                           figsize: tuple[float, float] | None = None, columns: int = 3):
        """A matplotlib Figure: each concept's collage titled with its size and words.

        Shows the `top_n` largest concepts, or the given `concepts`, in a figure of `figsize` inches (None: sized
        by the `columns` of panels; the reference's default was (20, 15)).
        """
        from concept.visualize import model_concepts_figure

        self._check_fitted()
        return model_concepts_figure(self, top_n, concepts, columns, figsize)

    def visualize_barchart(self, top_n: int = 8, n_words: int = 5, concepts: Sequence[int] | None = None,
                           columns: int = 4):
        """A matplotlib Figure: the first `n_words` words and their scores of the `top_n` largest concepts."""
        from concept.visualize import model_barchart_figure

        self._check_fitted()
        return model_barchart_figure(self, top_n, n_words, concepts, columns)

    def visualize_heatmap(self, layer: int | None = None):
        """A matplotlib Figure: cosine similarity of the concepts of `layer`, siblings side by side."""
        from concept.visualize import model_heatmap_figure

        self._check_fitted()
        return model_heatmap_figure(self, layer)

    def visualize_hierarchy(self, first_layer: int | None = None, max_leaves: int = 40):
        """A matplotlib Figure of the concept tree from `first_layer` (default: the layer of `labels_`, or a coarser
        one with at most `max_leaves` concepts) to the coarsest (`concept.visualize.model_hierarchy_figure`)."""
        from concept.visualize import model_hierarchy_figure

        self._check_fitted()
        return model_hierarchy_figure(self, first_layer, max_leaves)

    def concepts_over_time(self, timestamps: Any = None, bins: int | str | None = 10, layer: int | None = None,
                           mtime: bool = False) -> pd.DataFrame:
        """Images per (time bin, concept) as BERTopic's topics_over_time; `timestamps`: one date per image, or "exif"
        (None: the same). Undated images: Timestamp NaT, counted in attrs["dates"] (`concept.over_time`)."""
        from concept.over_time import concepts_over_time

        self._check_fitted()
        return concepts_over_time(self, timestamps, bins, layer, mtime)

    def visualize_concepts_over_time(self, over_time: pd.DataFrame | None = None, top_n: int = 8,
                                     concepts: Sequence[int] | None = None, normalize: bool = False,
                                     stacked: bool = False):
        """A matplotlib Figure of `over_time` (default: `concepts_over_time()`), a line per concept (`visualize`)."""
        from concept.visualize import over_time_figure

        self._check_fitted()
        return over_time_figure(self.concepts_over_time() if over_time is None else over_time, top_n, concepts,
                                normalize=normalize, stacked=stacked)

    def concepts_per_group(self, groups: Any, layer: int | None = None, prior: float = 10.0) -> pd.DataFrame:
        """Images per (group, concept) as BERTopic's topics_per_class; `groups`: one label per image, or "folder". Its
        Score (to sort by) is a smoothed log2 lift (`concept.per_group`)."""
        from concept.per_group import concepts_per_group

        self._check_fitted()
        return concepts_per_group(self, groups, layer, prior)

    def visualize_concepts_per_group(self, per_group: Any, top_n: int = 12, concepts: Sequence[int] | None = None,
                                     max_groups: int = 25):
        """A heatmap (matplotlib Figure) of the Score of `per_group`, a `concepts_per_group` table or its `groups`."""
        from concept.visualize import per_group_figure

        self._check_fitted()
        table = per_group if isinstance(per_group, pd.DataFrame) else self.concepts_per_group(per_group)
        return per_group_figure(table, top_n, concepts, max_groups=max_groups)

    # ------------------------------------------------------------------ shaping
    def _apply(self, edit: Edit, operation: str, image_of=None) -> dict[int, int]:
        """Make the edit's hierarchy the model's, describe its layers from the first changed one up again, carry the
        custom labels over, remake the collages (from `image_of(row)` or the fitted files) and record the edit.
        Returns the mapping as a dict."""
        old_collages, old_labels = self.collages_, self.labels_
        self.hierarchy_, self._shared_hierarchy = edit.hierarchy, None
        self._set_layers()
        with one_blas_thread():
            previous = Described(self.layer_embeddings_, self.layer_exemplars_, self.layer_topics_, self.word_center_,
                                 self.image_center_, self.alignment_, self._caption_docs, self._captioned)
            images = Images(self.embeddings_, self.image_center_, self.aligned_embeddings_)
            self._take(describe_again(self._backend(), previous, self.layers_, self.layer_sizes_, edit.first_changed,
                                      edit_words(self._docs, self.layer_topics_), images,
                                      describing_settings(self), self.seed_matches_))
        self.custom_labels_ = carry_names(self.custom_labels_, edit.mapping)
        self.collages_ = remade_collages(self.exemplars_, self.labels_, old_collages, old_labels, image_of,
                                         self.image_sources_)
        as_dict = {} if edit.mapping is None else {int(o): int(n) for o, n in enumerate(edit.mapping)}
        self.concept_mapping_ = [*self.concept_mapping_,
                                 {"operation": operation, "mapping": {str(o): n for o, n in as_dict.items()}}]
        logger.info("%s: %d concepts in labels_ (layer %d of %d).", operation, self.n_concepts_,
                    self.layer_, len(self.layers_))
        return as_dict

    def _reduce(self, n: int, image_of=None) -> dict[int, int]:
        edit = reduce(self.hierarchy_, self._space(), self.layers_, self.layer_sizes_, self.layer_, n)
        return self._apply(edit, f"reduce_concepts({n})", image_of)  # {} for a re-cut (no mapping)

    def reduce_concepts(self, n_concepts: int) -> dict[int, int]:
        """Merge the concepts of `labels_` into exactly `n_concepts` along the hierarchy (size-weighted Ward, as
        the fit's coarser layers), numbered by size (the one edit that renumbers). Returns {old id: new id} (also in
        `concept_mapping_`); custom labels follow (a merged concept keeps its smallest old id's). More concepts
        than `labels_` has re-cuts a finer layer: earlier edits are undone and the mapping is empty."""
        self._check_fitted()
        check_integer("n_concepts", n_concepts, minimum=1)
        return self._reduce(int(n_concepts))

    def merge_concepts(self, groups: Sequence[Sequence[int]]) -> dict[int, int]:
        """Merge each group of concept ids of `labels_` into one, e.g. `merge_concepts([[1, 4], [2, 3, 7]])`: a
        group takes its smallest id, the ids left free are closed up in order (here 5 -> 4, 6 -> 5, 8 -> 6). Returns
        {old id: new id} (also in `concept_mapping_`); words, exemplars, collages, `transform` and the coarser
        layers follow."""
        self._check_fitted()
        edit = merge(self.hierarchy_, self._space(), self.n_concepts_, groups)
        return self._apply(edit, f"merge_concepts({groups})")

    def delete_concepts(self, concepts: Sequence[int], to: str = "outliers") -> dict[int, int]:
        """Remove concepts of `labels_`: their images become outliers (-1, also in `transform`), or with
        `to="nearest"` join the nearest remaining concept (`concept.shaping.delete`). The remaining ids are closed
        up in order, as in `merge_concepts`. Returns {old id: new id} (-1: deleted), also in `concept_mapping_`."""
        self._check_fitted()
        if isinstance(concepts, (int, np.integer)):
            concepts = [concepts]
        edit = delete(self.hierarchy_, self._space(), self.layers_, self.layer_sizes_, self.layer_,
                      list(concepts), to)
        return self._apply(edit, f"delete_concepts({list(concepts)}, to={to!r})")

    def set_concept_labels(self, labels: dict[int, str] | Sequence[str]) -> None:
        """Name concepts of `labels_`: {id: "name"} (or a list, one name per concept). Names are shown in
        `get_concept_info` (the Name column), `visualize_concepts`, the explorer and the CLI, and saved with the
        model; an empty name removes one."""
        from concept.editing import named_concepts

        self._check_fitted()
        self.custom_labels_ = named_concepts(self.custom_labels_, labels, self.n_concepts_)

    def reduce_outliers(self, strategy: str = "embeddings", threshold: float = 0.0,
                        n_neighbors: int = 10) -> np.ndarray:
        """New labels where outliers get a concept (`update_concepts(labels)` applies them). strategy
        "embeddings": that of the image's nearest finest centre if their cosine is at least `threshold`;
        "neighbours": the most common of its `n_neighbors` nearest clustered images' if at least `threshold` (a
        share) of them have it. Images of a concept deleted to outliers stay outliers."""
        self._check_fitted()
        return outlier_candidates(self.hierarchy_, self._space(), self.labels_, self.nearest_labels_, strategy,
                                  threshold, n_neighbors)

    def update_concepts(self, labels: Any) -> int:
        """Give outliers the concepts in `labels` (one per fitted image, e.g. from `reduce_outliers`); returns how
        many images joined one. Only outliers may change; each joins the nearest finest concept of its new concept,
        whose fence is widened to take it in, so `transform` still assigns by nearest centre and fence (see
        `concept.shaping.give_outliers`, also for outliers that a widened fence takes in too)."""
        self._check_fitted()
        edit, joined = give_outliers(self.hierarchy_, self._space(), self.labels_, self.layer_, labels)
        if edit is not None:
            self._apply(edit, "update_concepts")
        return joined

    def partial_fit(self, images: Sequence[ImageInput] | None = None, image_embeddings: Any = None,
                    image_features: Any = None) -> ConceptModel:
        """Add images to the fitted model without refitting; returns self. Each joins the concept `transform`
        gives it; when at least `min_concept_size` fit none, they are clustered and their concepts added after the
        existing ids (no id changes). Paths already fitted are skipped (with a `store`, a growing folder embeds
        each image once). The rows are appended to `labels_`, `embeddings_`, ... (`image_indices_` continuing the
        earlier inputs); words and exemplars are described again."""
        self._check_fitted()
        images, image_embeddings, image_features = check_inputs(as_image_list(images), image_embeddings, image_features)
        if image_embeddings is None:
            images = unseen_images(images, self.image_sources_)
            if images is not None and len(images) == 0:
                return self
        use_features = self.features_ is not None
        e = self._embed_more(images, image_embeddings, image_features, use_features, required=use_features)
        old_k, n_old = self.n_concepts_, len(self.labels_)
        with one_blas_thread():
            edit = add_images(self.hierarchy_, self._space(), e.features if use_features else e.x,
                              int(self.min_concept_size), old_k,
                              lambda v, size: cluster_hierarchy(v, size, ClusterSettings.of(self.get_params())))
        n_inputs = len(image_embeddings) if image_embeddings is not None else len(images)
        rows = append_rows(Rows(self.embeddings_, self.features_, self.image_indices_, self.failures_,
                                self.image_sources_), e, image_sources(images, e.kept))
        self.embeddings_, self.features_, self.image_indices_, self.failures_, self.image_sources_ = (
            rows.embeddings, rows.features, rows.image_indices, rows.failures, rows.sources)
        self.image_names_ = append_names(self.__dict__.get("image_names_"), image_sources(images, e.kept),
                                         self.image_indices_[n_old:])
        self.map_2d_, self._aligned, self._aligned_default = None, None, None  # the new rows change these
        if self.seed_matches_ is not None:  # seeds steered the fit only: new rows match none
            self.seed_matches_ = np.concatenate([self.seed_matches_, np.full(len(e.x), -1, np.int64)])
        image_of = None if images is None else (lambda row: images[e.kept[row - n_old]] if row >= n_old else None)
        self._apply(edit, f"partial_fit({n_inputs} images)", image_of)
        new = self.labels_[-len(e.x):]
        logger.info("Added %d images: %d joined existing concepts, %d new concepts, %d outliers.", len(e.x),
                    int(((new >= 0) & (new < old_k)).sum()), self.n_concepts_ - old_k, int((new < 0).sum()))
        return self

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike) -> Path:
        """Save to a folder (JSON + safetensors + PNG collages, no pickle), atomically.

        Every layer is saved (labels through the parent maps, concept embeddings, exemplars, words) with the centres
        and spreads `transform` assigns by, so a loaded model assigns exactly as before saving.
        """
        from concept.model_folder import to_state
        from concept.persistence import save_model_state

        self._check_fitted()
        return save_model_state(to_state(self), path)

    @classmethod
    def load(cls, path: str | os.PathLike, embedding_model: Any = None) -> ConceptModel:
        """Load a model saved by `save`. Pass `embedding_model` when it was a custom object."""
        from concept.model_folder import check_fitted_state, from_state
        from concept.persistence import load_model_state

        state = load_model_state(path)
        check_fitted_state(state, path)  # one clear ModelFileError, not a KeyError or IndexError later
        params, attrs = from_state(state, path, embedding_model)
        model = cls(**params)
        model.__dict__.update(attrs, _aligned=None, _aligned_default=None)
        model._set_layers()
        return model

    def __repr__(self, N_CHAR_MAX: int = 700) -> str:
        fitted = "labels_" in self.__dict__
        return f"ConceptModel({f'{self.n_concepts_} concepts, {len(self.labels_)} images' if fitted else 'not fitted'})"

    def _repr_mimebundle_(self, **kwargs) -> dict[str, str]:  # our gallery, not scikit-learn's diagram
        return {"text/plain": repr(self), "text/html": self._repr_html_()}

    def _repr_html_(self) -> str:
        """A compact gallery of the largest concepts, shown by notebooks."""
        from concept.explorer.notebook import repr_html

        return repr_html(self)


__all__ = ["ConceptModel", "__version__"]
