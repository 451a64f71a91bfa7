"""merge_models (issue 26): real small fits merged; matching concepts joined, the others added, every image kept,
`transform` and save/load consistent with the merged labels."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import ColorEmbedder, blobs

from concept import ConceptError, ConceptModel, NotFittedError, merge_models
from concept.merging import MIN_SIMILARITY, match_concepts


def _model(**kwargs) -> ConceptModel:
    return ConceptModel(embedding_model=None, min_concept_size=10, random_state=0, verbose=False, **kwargs)


def _majority(labels: np.ndarray) -> int:
    return int(np.bincount(labels[labels >= 0]).argmax())


@pytest.fixture(scope="module")
def halves():
    """One collection of 5 groups split in two disjoint halves: both hold half of groups 0-2, only A group 3,
    only B group 4. Returns the vectors, true groups, the rows of A and B, and a model fitted on each half."""
    x, y = blobs(n_per=80, centers=5, dim=32, spread=0.15, seed=3)
    a = np.concatenate([np.flatnonzero(y == g)[::2] for g in (0, 1, 2)] + [np.flatnonzero(y == 3)])
    b = np.concatenate([np.flatnonzero(y == g)[1::2] for g in (0, 1, 2)] + [np.flatnonzero(y == 4)])
    ma, mb = _model().fit(image_embeddings=x[a]), _model().fit(image_embeddings=x[b])
    assert ma.n_concepts_ == mb.n_concepts_ == 4  # each half's groups found
    return x, y, a, b, ma, mb


def test_matching_concepts_are_merged_and_distinct_ones_added(halves):
    x, y, a, b, ma, mb = halves
    merged = merge_models([ma, mb])
    assert merged.n_concepts_ == 5
    np.testing.assert_array_equal(merged.labels_[:len(a)], ma.labels_)  # the first model's ids are kept
    mine = merged.labels_[len(a):]
    for g in (0, 1, 2):  # B's share of a shared group joins A's concept of it
        assert _majority(mine[y[b] == g]) == _majority(ma.labels_[y[a] == g])
    assert _majority(mine[y[b] == 4]) == ma.n_concepts_  # B's own group: a new id after the existing ones
    mapping = merged.concept_mapping_[-1]["mapping"]
    assert sorted(mapping.values()) == sorted({*(_majority(ma.labels_[y[a] == g]) for g in (0, 1, 2)), 4})
    # every image of both models, in model order, numbered on after the first model's inputs
    np.testing.assert_array_equal(merged.embeddings_, np.vstack([x[a], x[b]]))
    np.testing.assert_array_equal(merged.image_indices_, np.arange(len(a) + len(b)))
    assert len(merged.labels_) == len(merged.probabilities_) == len(a) + len(b)
    assert set(merged.exemplars_) == set(range(5)) and merged.concept_embeddings_.shape == (5, 32)
    assert merged.layer_sizes_[0] == len(merged.hierarchy_.centres) == len(ma.hierarchy_.centres) + len(
        mb.hierarchy_.centres)  # the finest layer: both models' finest concepts


def test_transform_gives_the_merged_labels(halves):
    x, _, a, b, ma, mb = halves
    merged = merge_models([ma, mb])
    np.testing.assert_array_equal(merged.transform(image_embeddings=x[a]), merged.labels_[:len(a)])
    np.testing.assert_array_equal(merged.transform(image_embeddings=x[b]), merged.labels_[len(a):])
    for layer in range(len(merged.layers_)):  # every layer, through its parent maps
        np.testing.assert_array_equal(merged.transform(image_embeddings=x[b], layer=layer),
                                      merged.layers_[layer][len(a):])


def test_a_model_merged_with_itself_keeps_its_concepts(halves):
    *_, ma, _ = halves
    merged = merge_models([ma, ma])
    assert merged.n_concepts_ == ma.n_concepts_
    np.testing.assert_array_equal(merged.labels_, np.concatenate([ma.labels_, ma.labels_]))
    assert len(merged.hierarchy_.centres) == len(ma.hierarchy_.centres)  # the twins, left with no image, dropped
    assert merged.layer_sizes_ == ma.layer_sizes_ if ma.layer_ == 0 else merged.layer_sizes_[:2] == ma.layer_sizes_[:2]


def test_min_similarity_decides_what_is_merged(halves):
    *_, ma, mb = halves
    assert merge_models([ma, mb], min_similarity=-1.0).n_concepts_ == ma.n_concepts_  # every concept joins one
    assert merge_models([ma, mb], min_similarity=1.0).n_concepts_ > 5  # none joins: the shared groups twice
    with pytest.raises(ConceptError, match="min_similarity"):
        merge_models([ma, mb], min_similarity=2)


def test_match_concepts_numbers_new_concepts_after_the_existing_ones():
    e = np.eye(4, dtype=np.float32)
    center = np.zeros(4, np.float32)
    first, second, third = match_concepts([e[:2], e[[1, 2]], e[[2, 3]]], center, MIN_SIMILARITY)
    np.testing.assert_array_equal(first, [0, 1])
    np.testing.assert_array_equal(second, [1, 2])  # e1 matches the first model's 1, e2 is new
    np.testing.assert_array_equal(third, [2, 3])  # e2 matches the concept the second model added


def test_each_models_outlier_fences_are_kept(halves):
    x, y, a, b, ma, _ = halves
    strict = _model().fit(image_embeddings=x[b])
    wide = _model(outlier_threshold=1000.0).fit(image_embeddings=x[b])
    own = y[b] == 4  # B's own group, far from every concept of A
    assert (strict.labels_[own] < 0).any() and (wide.labels_ >= 0).all()
    merged = merge_models([ma, wide])  # A's threshold (3) is the merged model's: B's fences are rescaled to it
    assert (merged.labels_[len(a):][own] >= 0).all()


def test_save_and_load_round_trip_exactly(halves, tmp_path):
    x, *_, ma, mb = halves
    merged = merge_models([ma, mb])
    before = merged.transform(image_embeddings=x, return_probabilities=True)
    merged.save(tmp_path / "merged")
    loaded = ConceptModel.load(tmp_path / "merged")
    after = loaded.transform(image_embeddings=x, return_probabilities=True)
    np.testing.assert_array_equal(before[0], after[0])
    np.testing.assert_array_equal(before[1], after[1])
    np.testing.assert_array_equal(loaded.labels_, merged.labels_)
    assert loaded.layer_sizes_ == merged.layer_sizes_ and loaded.concept_mapping_ == merged.concept_mapping_


def test_offline_models_on_clipart_merge_with_features_words_and_collages(clipart_paths, offline_embedder, tmp_path):
    paths = [str(p) for p in clipart_paths]
    first, second = paths[0::2], paths[1::2]

    def fit(images, captions=None):
        return ConceptModel(min_concept_size=3, embedding_model=offline_embedder, random_state=0, verbose=False,
                            vocabulary_size=2000).fit(images, captions=captions)

    ma, mb = fit(first, [p.rsplit("/", 1)[-1][:-4].replace("_", " ") for p in first]), fit(second)
    assert ma.features_ is not None  # the offline model clusters on its CNN features
    ma.set_concept_labels({0: "first"})
    mb.set_concept_labels({mb.n_concepts_ - 1: "second"})
    merged = merge_models([ma, mb])
    assert merged.custom_labels_[0] == "first"  # names follow their concepts
    assert merged.custom_labels_.get(merged.concept_mapping_[-1]["mapping"][str(mb.n_concepts_ - 1)]) in (
        "first", "second")
    assert merged.features_.shape == (len(paths), ma.features_.shape[1])
    assert merged.image_sources_ == first + second
    assert ma.n_concepts_ <= merged.n_concepts_ <= ma.n_concepts_ + mb.n_concepts_
    assert set(merged.collages_) == set(range(merged.n_concepts_))
    assert all(len(merged.topics[c]) == ma.n_words for c in range(merged.n_concepts_))
    labels = merged.transform(first + second)  # re-embedded, assigned on the features
    np.testing.assert_array_equal(labels, merged.labels_)
    shared = merged.transform(image_embeddings=merged.embeddings_)  # shared-space vectors only
    merged.save(tmp_path / "merged")
    loaded = ConceptModel.load(tmp_path / "merged", embedding_model=offline_embedder)
    np.testing.assert_array_equal(loaded.transform(first + second), labels)
    np.testing.assert_array_equal(loaded.transform(image_embeddings=merged.embeddings_), shared)
    assert loaded.topics == merged.topics and loaded.custom_labels_ == merged.custom_labels_


def test_models_of_different_spaces_are_refused(halves):
    x, *_, ma, _ = halves
    other, _ = blobs(n_per=40, centers=3, dim=16, seed=1)
    with pytest.raises(ConceptError, match="16-d embeddings"):
        merge_models([ma, _model().fit(image_embeddings=other)])
    small, _ = blobs(n_per=40, centers=3, dim=8, seed=1)
    plain = _model().fit(image_embeddings=small)
    colors = ConceptModel(embedding_model=ColorEmbedder(), min_concept_size=10, random_state=0,
                          verbose=False).fit(image_embeddings=small, docs=list(ColorEmbedder.COLORS))
    with pytest.raises(ConceptError, match="same embedding model"):
        merge_models([plain, colors])
    features = _model().fit(image_embeddings=x[:200], image_features=x[:200])
    with pytest.raises(ConceptError, match="image features"):
        merge_models([ma, features])


def test_unfitted_and_too_few_models_are_refused(halves):
    *_, ma, _ = halves
    with pytest.raises(NotFittedError, match="not fitted"):
        merge_models([ma, _model()])
    with pytest.raises(ConceptError, match="at least two"):
        merge_models([ma])
    with pytest.raises(ConceptError, match="list"):
        merge_models(ma)


def test_duplicates_are_found_again_over_the_merged_rows_when_every_model_knows_them(tmp_path):
    from concept.deduplicated import model_typicality
    from concept.duplicates import (
        duplicate_groups,
        find_duplicates,
        typicality,
        uniqueness,
    )

    x, _ = blobs(n_per=40, centers=4, dim=64, spread=0.3)
    first, second = x[0::2], x[1::2]
    # A copies its own rows 0 and 1; B copies A's rows 2 and 3 (copies across the models).
    ea, eb = np.vstack([first, first[:2]]), np.vstack([second, first[2:4]])
    na, nb = len(ea), len(eb)
    ma, mb = _model(find_duplicates=True).fit(image_embeddings=ea), _model(find_duplicates=True).fit(
        image_embeddings=eb)
    assert ma.duplicates_.near == [[0, na - 2], [1, na - 1]] and mb.duplicates_.near == []
    merged = merge_models([ma, mb])
    found = merged.__dict__["_duplicates"]
    assert found is not None and found.n_images == na + nb  # found at the merge, not on first use
    assert sorted(found.near) == [[0, na - 2], [1, na - 1], [2, na + nb - 2], [3, na + nb - 1]]
    again = find_duplicates(model=merged)
    assert (again.exact, again.near, again.near_threshold) == (found.exact, found.near, found.near_threshold)
    groups = duplicate_groups(found)
    for exemplars in merged.layer_exemplars_:  # the exemplars were picked with the groups: one image of each
        for rows in exemplars.values():
            shown = groups[rows][groups[rows] >= 0]
            assert len(shown) == len(set(shown.tolist()))
    space = np.vstack([ea, eb])
    np.testing.assert_allclose(merged.uniqueness_, uniqueness(space))
    np.testing.assert_allclose(merged.uniqueness_, found.uniqueness)
    np.testing.assert_array_equal(merged.typicality_, model_typicality(merged))
    np.testing.assert_array_equal(merged.typicality_, typicality(space, merged.labels_, merged.n_concepts_))
    assert merged.get_image_info()["Duplicate group"].tolist() == groups.tolist()
    merged.save(tmp_path / "merged")
    loaded = ConceptModel.load(tmp_path / "merged")
    assert loaded.__dict__["_duplicates"].near == found.near and loaded.layer_exemplars_ == merged.layer_exemplars_

    # One model that never looked for its duplicates: the merged model knows none (found on first use only).
    plain = _model().fit(image_embeddings=eb)
    assert plain.__dict__["_duplicates"] is None
    for models in ([ma, plain], [plain, ma]):
        unknown = merge_models(models)
        assert unknown.__dict__["_duplicates"] is None and "Duplicate group" not in unknown.get_image_info()
        moved = (lambda r: r) if models[0] is ma else (lambda r: r + nb if r < na else r - na)  # rows as merged
        assert {frozenset(g) for g in unknown.duplicates_.near} == {frozenset(map(moved, g)) for g in found.near}
