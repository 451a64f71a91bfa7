"""The methods that shape a fitted `ConceptModel` (issue 13): reduce, merge, delete, name,
outliers, partial_fit and the hierarchy's table and figure.

They are thin: the work is in `concept.editing` (pure functions over labels, layers and the
clustering hierarchy); these methods apply its result to the model's state and describe the
changed layers again. Kept apart from model.py so that the model file holds the fit, its
results and persistence, and this one what a user does after the fit.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from concept._errors import ConceptError, EmbeddingError
from concept._validation import check_inputs, check_integer, check_number
from concept.clustering import (
    Hierarchy,
    assign,
    layer_labels,
    mean_directions,
    one_blas_thread,
)
from concept.collage import exemplar_collage
from concept.images import ImageInput

if TYPE_CHECKING:
    from concept.model import ConceptModel

logger = logging.getLogger("concept.model")


class ShapingMixin:
    """ConceptModel's editing methods (see the module docstring)."""

    def _apply_hierarchy(self, h: Hierarchy, first_changed: int, operation: str,
                         mapping: np.ndarray | None) -> dict[int, int]:
        """Make `h` the model's hierarchy, describe its layers from `first_changed` up again,
        carry the custom labels over by `mapping` (old id of `labels_` -> new id, -1: gone;
        None: the concepts are new) and record the edit. Returns the mapping as a dict."""
        old_collages, old_labels = self.collages_, self.labels_
        self.hierarchy_, self._shared_hierarchy = h, None
        self._set_layers()
        self._describe_from(first_changed)
        as_dict = {} if mapping is None else {int(o): int(n) for o, n in enumerate(mapping)}
        names: dict[int, str] = {}
        for old, name in sorted(getattr(self, "custom_labels_", {}).items()):
            new = as_dict.get(old, -1)
            if new >= 0 and new not in names:
                names[new] = name
        if mapping is None and getattr(self, "custom_labels_", {}):
            logger.warning("The concepts were re-cut from a finer layer: their custom labels are dropped.")
        self.custom_labels_ = names
        self._remake_collages(old_collages, old_labels)
        self.concept_mapping_ = [*getattr(self, "concept_mapping_", []),
                                 {"operation": operation, "mapping": {str(o): n for o, n in as_dict.items()}}]
        logger.info("%s: %d concepts in labels_ (layer %d of %d).", operation, self.n_concepts_,
                    self.layer_, len(self.layers_))
        return as_dict

    def _describe_from(self, first: int) -> None:
        """Concept embeddings, exemplars and words of layers `first`.. again (the lower layers
        are unchanged); the default layer's are pointed at as after a fit."""
        terms, weights = None, None
        if getattr(self, "_caption_docs", None) is not None:  # the fit's caption terms (kept and saved)
            from concept.model import PREDICTED_WEIGHT

            captioned = np.zeros(len(self.labels_), bool)  # rows added by partial_fit have no caption
            captioned[:len(self._captioned)] = self._captioned
            own = [t if c else None for t, c in zip(self._caption_docs, captioned)]
            words = self._candidate_words(self._edit_words(), own)
            terms = self._caption_docs + [None] * (len(self.labels_) - len(self._caption_docs))
            if words is not None and len(terms) > len(self._caption_docs):  # predicted terms for new rows
                from concept.words import caption_analyzer

                terms = self._caption_documents(terms, words, caption_analyzer(self.vectorizer_model))
                terms = [list(dict.fromkeys(t)) if t else None for t in terms]
            self._caption_docs, self._captioned = terms, captioned
            weights = np.where(captioned, 1.0, PREDICTED_WEIGHT)
        else:
            words = self._candidate_words(self._edit_words())
        del self.layer_embeddings_[first:], self.layer_exemplars_[first:], self.layer_topics_[first:]
        for labels, k in list(zip(self.layers_, self.layer_sizes_))[first:]:
            embeddings, exemplars = self._describe_layer(labels, k)
            self.layer_embeddings_.append(embeddings)
            self.layer_exemplars_.append(exemplars)
            self.layer_topics_.append(self._describe_in_words(words, labels, embeddings, terms, weights))
        self._point_at_default_layer()

    def _edit_words(self) -> list[str] | None:
        """The candidate words of the fit (None: the bundled vocabulary); for a folder saved
        before they were kept, the words its concepts already have."""
        if getattr(self, "_docs", "unknown") != "unknown":
            return self._docs
        return sorted({w for topics in self.layer_topics_ for ws in topics.values() for w, _ in ws}) or None

    def _remake_collages(self, old: dict, old_labels: np.ndarray) -> None:
        """Collages of `labels_`'s concepts, made again from the images of their exemplars:
        the images of the running call (`_images_for_collages`, {row: image}) or the fitted
        files (`image_sources_`). A concept none of whose exemplars can be loaded keeps its
        collage if it has the same members (or, after partial_fit, the same id) as before."""
        given = getattr(self, "_images_for_collages", None) or {}
        sources = self.image_sources_
        collages, missing = {}, 0
        for concept, rows in self.exemplars_.items():
            images = [given.get(row, sources[row] if sources is not None else None) for row in rows]
            collage = exemplar_collage([image for image in images if image is not None])
            if collage is not None:
                collages[concept] = collage
                continue
            members = self.labels_[:len(old_labels)] == concept
            before = np.unique(old_labels[members])
            if len(before) == 1 and int(before[0]) in old and np.array_equal(old_labels == before[0], members):
                collages[concept] = old[int(before[0])]  # the same members
            elif len(old_labels) < len(self.labels_) and int(concept) in old:
                collages[concept] = old[int(concept)]  # partial_fit: the same concept, grown
            elif old:
                missing += 1
        if missing:
            logger.warning("%d changed concepts have no collage: their images were not files, so they "
                           "cannot be loaded again.", missing)
        self.collages_ = collages

    def reduce_concepts(self, n_concepts: int) -> dict[int, int]:
        """Merge the concepts of `labels_` into exactly `n_concepts`, along the hierarchy
        (size-weighted Ward, as the fit's coarser layers), and describe them again.

        The new concepts are numbered by size (0 the largest): this is the one edit that
        renumbers. Returns {old id: new id} (also recorded in `concept_mapping_`); custom labels
        follow their concepts (a merged concept keeps the label of its smallest old id).
        Asking for more concepts than `labels_` has re-cuts a finer layer (the earlier edits of
        `labels_` are then undone and the mapping is empty).
        """
        from concept.editing import edit_base, reduce_mapping, relayer

        self._check_fitted()
        check_integer("n_concepts", n_concepts, minimum=1)
        n, h, space = int(n_concepts), self.hierarchy_, self._space()
        sizes = self.layer_sizes_
        if n <= sizes[self.layer_]:
            base, to_layer = edit_base(h)
            red = reduce_mapping(space, self.labels_, sizes[self.layer_], n)
            new_h = relayer(h, base, np.where(to_layer >= 0, red[np.maximum(to_layer, 0)], -1), space)
            return self._apply_hierarchy(new_h, base + 1, f"reduce_concepts({n})", red)
        finer = [i for i in range(self.layer_) if sizes[i] >= n]
        if not finer:
            raise ConceptError(f"Cannot make {n} concepts: the finest layer has {sizes[0]}. Concepts are only "
                               "merged, never split; refit with a lower min_concept_size for more.")
        base = max(finer)
        red = reduce_mapping(space, self.layers_[base], sizes[base], n)
        self._apply_hierarchy(relayer(h, base, red, space), base + 1, f"reduce_concepts({n})", None)
        return {}

    def merge_concepts(self, groups: Sequence[Sequence[int]]) -> dict[int, int]:
        """Merge each group of concept ids of `labels_` into one concept, e.g.
        `merge_concepts([[1, 4], [2, 3, 7]])`.

        A group takes its smallest id; the ids left free are closed up, the order of the
        concepts kept (here 5 -> 4, 6 -> 5, 8 -> 6). Returns {old id: new id}, also recorded in
        `concept_mapping_`. Words, exemplars, collages, `transform` and the coarser layers follow.
        """
        from concept.editing import edit_base, merge_mapping, relayer

        self._check_fitted()
        mapping = merge_mapping(self.n_concepts_, groups)
        base, to_layer = edit_base(self.hierarchy_)
        new_h = relayer(self.hierarchy_, base, np.where(to_layer >= 0, mapping[np.maximum(to_layer, 0)], -1),
                        self._space())
        return self._apply_hierarchy(new_h, base + 1, f"merge_concepts({groups})", mapping)

    def delete_concepts(self, concepts: Sequence[int], to: str = "outliers") -> dict[int, int]:
        """Remove concepts of `labels_`. `to="outliers"`: their images become outliers (-1),
        also in `transform`. `to="nearest"`: their images join the next-nearest remaining
        concept (each of their finer concepts the one whose centre is nearest to its own).

        The remaining ids are closed up in order, as in `merge_concepts`. Returns {old id: new
        id} (-1 for a deleted one), also recorded in `concept_mapping_`.
        """
        from concept.editing import delete_mapping, edit_base, relayer

        self._check_fitted()
        if isinstance(concepts, (int, np.integer)):
            concepts = [concepts]
        h, space, k = self.hierarchy_, self._space(), self.n_concepts_
        base, to_layer = edit_base(h)
        means, _ = mean_directions(space, self.labels_, k)
        base_means, _ = mean_directions(space, self.layers_[base], self.layer_sizes_[base])
        layer_map, base_map = delete_mapping(k, list(concepts), means, to, to_layer, base_means)
        if (base_map < 0).all():
            raise ConceptError("Every concept would be deleted; keep at least one.")
        return self._apply_hierarchy(relayer(h, base, base_map, space), base + 1,
                                     f"delete_concepts({list(concepts)}, to={to!r})", layer_map)

    def set_concept_labels(self, labels: dict[int, str] | Sequence[str]) -> None:
        """Name concepts of `labels_`: {id: "name"} (or a list, one name per concept). Names are
        shown in `get_concept_info` (the Name column), `visualize_concepts`, the explorer and
        the CLI, and saved with the model; an empty name removes one."""
        self._check_fitted()
        k = self.n_concepts_
        if isinstance(labels, dict):
            items = list(labels.items())
        elif isinstance(labels, Sequence) and not isinstance(labels, (str, bytes)):
            if len(labels) != k:
                raise ConceptError(f"A list of names needs one per concept ({k}), got {len(labels)}; "
                                   "or pass {id: name}.")
            items = list(enumerate(labels))
        else:
            raise ConceptError("set_concept_labels takes {concept id: name} or a list of names.")
        names = dict(getattr(self, "custom_labels_", {}))
        for c, name in items:
            if not isinstance(c, (int, np.integer)) or isinstance(c, bool) or not 0 <= int(c) < k:
                raise ConceptError(f"{c!r} is not a concept id; labels_ has concepts 0..{k - 1}.")
            if not isinstance(name, str):
                raise ConceptError(f"The name of concept {c} must be a string, not {type(name).__name__}.")
            if name.strip():
                names[int(c)] = name.strip()
            else:
                names.pop(int(c), None)
        self.custom_labels_ = names

    def reduce_outliers(self, strategy: str = "embeddings", threshold: float = 0.0,
                        n_neighbors: int = 10) -> np.ndarray:
        """New labels for the fitted images where outliers get a concept (the others keep
        theirs); `update_concepts(labels)` applies them.

        strategy "embeddings": the concept holding the image's nearest finest centre (the one
        `transform` would give without the outlier fence), if the cosine to that centre in the
        clustering space is at least `threshold`. "neighbours": the most common concept of its
        `n_neighbors` nearest clustered images, if at least `threshold` (a share 0..1) of them
        have it. Images of a concept deleted to outliers stay outliers (delete with
        `to="nearest"` to give them a concept).
        """
        from concept.editing import outlier_labels

        self._check_fitted()
        check_number("threshold", threshold, -1.0, 1.0)
        check_integer("n_neighbors", n_neighbors, minimum=1)
        h, space = self.hierarchy_, self._space()
        own = np.einsum("nd,nd->n", space, h.centres[h.nearest])
        return outlier_labels(space, self.labels_, strategy, float(threshold), candidates=h.fine < 0,
                              nearest_concept=self.nearest_labels_, nearest_similarity=own,
                              n_neighbors=int(n_neighbors))

    def update_concepts(self, labels: Any) -> int:
        """Give outliers the concepts in `labels` (one per fitted image, e.g. from
        `reduce_outliers`); returns how many images joined a concept.

        Only outliers may change. Each joins the finest concept of its new concept nearest to
        it, whose outlier fence is widened to take it in, so `transform` keeps assigning by the
        nearest centre and its fence: an image given a concept other than the one its nearest
        centre lies in (possible with the neighbour vote) is assigned by `transform` to that
        centre's concept or left an outlier. With strategy "embeddings" every image's concept
        holds its nearest centre, and outliers that a widened fence now takes in join too
        (logged), so `labels_` stays what `transform` gives the fitted images.
        """
        from concept.clustering.hierarchy import confidence

        self._check_fitted()
        new = np.asarray(labels)
        if new.shape != self.labels_.shape or new.dtype.kind not in "iu":
            raise ConceptError(f"labels must be {len(self.labels_)} integer concept ids, one per fitted image "
                               "(as returned by reduce_outliers).")
        new = new.astype(np.int64)
        k = self.n_concepts_
        if new.min(initial=0) < -1 or new.max(initial=-1) >= k:
            raise ConceptError(f"labels must be concept ids of labels_ (0..{k - 1}) or -1.")
        changed = np.flatnonzero(new != self.labels_)
        if (self.labels_[changed] >= 0).any():
            raise ConceptError("update_concepts only gives outliers a concept; to change concepts use "
                               "merge_concepts, delete_concepts or reduce_concepts.")
        if (self.hierarchy_.fine[changed] >= 0).any():
            raise ConceptError("Images of a concept deleted to outliers cannot be given a concept one by one: "
                               "delete it with to='nearest' instead.")
        if len(changed) == 0:
            return 0
        h, space = self.hierarchy_, self._space()
        to_layer = layer_labels(np.arange(len(h.centres)), h.parents[:self.layer_])[self.layer_]
        fine, sds, probs = h.fine.copy(), h.sds.copy(), h.probabilities.copy()
        sims = space[changed] @ h.centres.T
        sims[to_layer[None, :] != new[changed][:, None]] = -np.inf
        chosen = np.argmax(sims, axis=1)
        best = sims[np.arange(len(changed)), chosen]
        need = (h.medians[chosen] - best) / h.threshold * 1.001 + 1e-6
        np.maximum.at(sds, chosen, need.astype(np.float32))
        fine[changed] = chosen
        widened = np.unique(chosen)
        own = np.einsum("nd,nd->n", space, h.centres[h.nearest])
        conf = confidence(own, h.medians[h.nearest], sds[h.nearest], h.threshold)
        extra = np.flatnonzero((fine < 0) & np.isin(h.nearest, widened) & (conf > 0))
        fine[extra] = h.nearest[extra]
        redo = np.isin(fine, widened)
        rows = np.flatnonzero(redo)
        mine = np.einsum("nd,nd->n", space[rows], h.centres[fine[rows]])
        probs[rows] = confidence(mine, h.medians[fine[rows]], sds[fine[rows]], h.threshold)
        probs[changed] = np.maximum(probs[changed], 1e-6)
        if len(extra):
            logger.info("%d more outliers joined a concept whose fence was widened.", len(extra))
        new_h = dataclasses.replace(h, fine=fine, sds=sds, probabilities=probs)
        self._apply_hierarchy(new_h, 0, "update_concepts", np.arange(k))
        return int(len(changed) + len(extra))

    def partial_fit(self, images: Sequence[ImageInput] | None = None, image_embeddings: Any = None,
                    image_features: Any = None) -> ConceptModel:
        """Add images to the fitted model without refitting; returns self.

        Each new image joins the concept `transform` gives it. When at least `min_concept_size`
        new images fit no concept, they are clustered, and the concepts found among them are
        added with ids after the existing ones (in every layer); no existing id changes. Paths
        already fitted are skipped, and with a `store` only new files are embedded, so calling
        this on a growing folder embeds each image once. The new rows are appended to
        `labels_`, `embeddings_` and the rest (`image_indices_` continue after the earlier
        inputs); words and exemplars are described again, the 2-D map recomputed on next use.
        """
        from concept.editing import add_concepts

        self._check_fitted()
        images, image_embeddings, image_features = check_inputs(images, image_embeddings, image_features)
        if image_embeddings is None and images is not None and not isinstance(images, (str, os.PathLike)) \
                and self.image_sources_ is not None:
            known = set(self.image_sources_)
            fresh = [p for p in images if not (isinstance(p, (str, os.PathLike)) and os.fspath(p) in known)]
            if len(fresh) < len(images):
                logger.info("%d of the %d images are already in the model; skipped.", len(images) - len(fresh),
                            len(images))
            if not fresh:
                return self
            images = fresh
        use_features = self.features_ is not None
        if use_features and image_embeddings is not None and image_features is None:
            raise ConceptError("This model clusters on image features: pass image_features with image_embeddings "
                               "(e.g. from embed_images_and_features).")
        x, feats, kept, failures = self._embed(images, image_embeddings, dim=self.embeddings_.shape[1],
                                               features=use_features)
        if image_features is not None and use_features:
            feats = self._as_embeddings(image_features, self.features_.shape[1])
        if use_features and feats is None:
            raise EmbeddingError("This model clusters on image features, but the embedding model gave none.")
        new_space = feats if use_features else x
        h = self.hierarchy_
        with one_blas_thread():
            fine, _ = assign(new_space, h, 0)
            unplaced = np.flatnonzero(fine < 0)
            new_labels = np.full(len(x), -1, np.int64)
            min_size = int(self.min_concept_size)
            if len(unplaced) >= max(min_size, 3):
                sub = self._cluster(new_space[unplaced], min_size)
                new_labels[unplaced] = sub.layers[sub.default]
            old_ids = self.layer_sizes_
            new_h = add_concepts(h, self._space(), new_space, new_labels)
        n_inputs = len(image_embeddings) if image_embeddings is not None else len(images)
        offset = max([int(self.image_indices_.max(initial=-1)) + 1, *(f.index + 1 for f in self.failures_)])
        sources = self._sources(images, kept)
        self.image_sources_ = (self.image_sources_ + sources
                               if self.image_sources_ is not None and sources is not None else None)
        self.embeddings_ = np.vstack([self.embeddings_, x])
        if use_features:
            self.features_ = np.vstack([self.features_, feats])
        self.image_indices_ = np.concatenate([self.image_indices_, offset + kept])
        self.failures_ = [*self.failures_, *(dataclasses.replace(f, index=offset + f.index) for f in failures)]
        self.map_2d_ = None
        self._aligned, self._aligned_default = None, None  # the learned-space vectors of the new rows too
        if getattr(self, "seed_matches_", None) is not None:  # seeds steered the fit only: new rows match none
            self.seed_matches_ = np.concatenate([self.seed_matches_, np.full(len(x), -1, np.int64)])
        self._images_for_collages = (None if images is None else
                                     {len(self.labels_) + i: images[kept[i]] for i in range(len(kept))})
        try:
            mapping = np.arange(old_ids[self.layer_])
            self._apply_hierarchy(new_h, 0, f"partial_fit({n_inputs} images)", mapping)
        finally:
            self._images_for_collages = None
        added = self.layer_sizes_[self.layer_] - old_ids[self.layer_]
        logger.info("Added %d images: %d joined existing concepts, %d new concepts, %d outliers.", len(x),
                    int((self.labels_[-len(x):] >= 0).sum() - (self.labels_[-len(x):] >= old_ids[self.layer_]).sum()),
                    added, int((self.labels_[-len(x):] < 0).sum()))
        return self

    def visualize_hierarchy(self, first_layer: int | None = None, max_leaves: int = 40):
        """A matplotlib Figure of the concept tree: a row per layer from `first_layer` (default:
        the layer of `labels_`, or a coarser one with at most `max_leaves` concepts) to the
        coarsest, each concept with a small collage of its exemplars (when the images are files,
        or for `labels_`'s concepts) and its words (custom labels first)."""
        from concept.collage import make_collage
        from concept.visualize import hierarchy_figure

        self._check_fitted()
        sizes_per_layer = self.layer_sizes_
        if first_layer is None:
            first_layer = next((i for i in range(self.layer_, len(self.layers_))
                                if sizes_per_layer[i] <= max_leaves), len(self.layers_) - 1)
        first_layer = self._check_layer(first_layer)
        if sizes_per_layer[first_layer] > max_leaves:
            raise ConceptError(f"Layer {first_layer} has {sizes_per_layer[first_layer]} concepts, more than "
                               f"max_leaves={max_leaves}: start at a coarser layer or raise max_leaves.")
        names = getattr(self, "custom_labels_", {})
        sizes, words, collages = [], [], []
        for i, labels in enumerate(self.layers_):
            sizes.append(np.bincount(labels[labels >= 0], minlength=sizes_per_layer[i]).tolist())
            words.append({c: ((names[c] + ": ") if i == self.layer_ and c in names else "")
                          + ", ".join(w for w, _ in ws[:4]) for c, ws in self.layer_topics_[i].items()})
            if i < first_layer:
                collages.append({})
            elif i == self.layer_ and self.collages_:
                collages.append(self.collages_)
            elif self.image_sources_ is not None:
                collages.append({c: make_collage([self.image_sources_[r] for r in rows[:4]], tile=64)
                                 for c, rows in self.layer_exemplars_[i].items() if rows})
            else:
                collages.append({})
        return hierarchy_figure(self.hierarchy_.parents, sizes, words, collages, first=first_layer)

    def get_hierarchy(self) -> pd.DataFrame:
        """The concept tree as a table: one row per concept of each layer but the coarsest,
        with its parent in the layer above (Layer, Concept, Parent layer, Parent, Size, Words)."""
        self._check_fitted()
        rows = []
        parents = self.hierarchy_.parents
        for i, parent in enumerate(parents):
            sizes = np.bincount(self.layers_[i][self.layers_[i] >= 0], minlength=len(parent))
            topics = self.layer_topics_[i]
            for c, p in enumerate(parent):
                rows.append({"Layer": i, "Concept": c, "Parent layer": i + 1, "Parent": int(p),
                             "Size": int(sizes[c]), "Words": ", ".join(w for w, _ in topics.get(c, [])[:5])})
        return pd.DataFrame(rows, columns=["Layer", "Concept", "Parent layer", "Parent", "Size", "Words"])

