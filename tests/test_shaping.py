"""Edits of a fitted hierarchy (`concept.shaping`): reduce, merge, delete, give outliers a
concept, add images, and custom labels carried over an edit."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from conftest import nested_blobs

from concept._errors import ConceptError
from concept.clustering import Hierarchy, assign, find_hierarchy, layer_labels
from concept.embedding.base import l2_normalize
from concept.shaping import (
    Edit,
    add_images,
    carry_names,
    delete,
    give_outliers,
    merge,
    outlier_candidates,
    reduce,
)

#: Five groups of four sub-clusters: a finest layer of 20 concepts under a default of 5.
X, GROUPS, SUBS = nested_blobs(groups=5, subs=4, per=40, dim=32)
H = find_hierarchy(X, 15, random_state=0)
LAYERS = H.layers
SIZES = [int(labels.max()) + 1 for labels in LAYERS]
DEFAULT = H.default
LABELS = LAYERS[DEFAULT]


def test_the_fixture_has_layers_and_outliers():
    assert SIZES == [20, 5] and DEFAULT == 1
    assert (LABELS < 0).sum() >= 3  # outliers for the outlier edits


def k_of(h: Hierarchy, layer: int | None = None) -> int:
    labels = h.layers[h.default if layer is None else layer]
    return int(labels.max(initial=-1)) + 1


# -- reduce ----------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_reduce_makes_exactly_n_concepts_by_merging(n):
    edit = reduce(H, X, LAYERS, SIZES, DEFAULT, n)
    assert isinstance(edit, Edit)
    new = edit.hierarchy.layers[edit.hierarchy.default]
    assert k_of(edit.hierarchy) == n
    assert edit.first_changed == DEFAULT
    # concepts were merged, never split: the map says where each old concept went
    assert edit.mapping.shape == (5,) and set(edit.mapping.tolist()) == set(range(n))
    np.testing.assert_array_equal(new, np.where(LABELS >= 0, edit.mapping[np.maximum(LABELS, 0)], -1))
    # the layers below are kept
    np.testing.assert_array_equal(edit.hierarchy.layers[0], LAYERS[0])


def test_reduce_to_more_concepts_re_cuts_a_finer_layer():
    edit = reduce(H, X, LAYERS, SIZES, DEFAULT, 8)
    assert edit.mapping is None  # new concepts, not a merge of the old ones
    assert edit.first_changed == 1
    assert k_of(edit.hierarchy) == 8
    new = edit.hierarchy.layers[edit.hierarchy.default]
    # each new concept is a union of finest concepts
    fine = LAYERS[0]
    for c in range(20):
        assert len(np.unique(new[fine == c])) == 1


def test_reduce_cannot_make_more_concepts_than_the_finest_layer_has():
    with pytest.raises(ConceptError, match="Cannot make 21 concepts: the finest layer has 20"):
        reduce(H, X, LAYERS, SIZES, DEFAULT, 21)


# -- merge -----------------------------------------------------------------------------------
def test_merge_joins_each_group_into_its_smallest_id():
    edit = merge(H, X, 5, [[1, 3]])
    np.testing.assert_array_equal(edit.mapping, [0, 1, 2, 1, 3])
    new = edit.hierarchy.layers[edit.hierarchy.default]
    assert k_of(edit.hierarchy) == 4
    np.testing.assert_array_equal(new == 1, np.isin(LABELS, [1, 3]))
    np.testing.assert_array_equal(new == 3, LABELS == 4)
    assert edit.first_changed == DEFAULT


def test_merge_of_several_groups():
    edit = merge(H, X, 5, [[0, 4], [1, 2, 3]])
    new = edit.hierarchy.layers[edit.hierarchy.default]
    np.testing.assert_array_equal(new, np.where(LABELS >= 0, np.array([0, 1, 1, 1, 0])[np.maximum(LABELS, 0)], -1))


# -- delete ----------------------------------------------------------------------------------
def test_delete_to_outliers_makes_their_images_outliers():
    edit = delete(H, X, LAYERS, SIZES, DEFAULT, [2], "outliers")
    new = edit.hierarchy.layers[edit.hierarchy.default]
    np.testing.assert_array_equal(edit.mapping, [0, 1, -1, 2, 3])
    assert (new[LABELS == 2] == -1).all()
    kept = (LABELS >= 0) & (LABELS != 2)
    np.testing.assert_array_equal(new[kept], edit.mapping[LABELS[kept]])
    assert (new[LABELS < 0] == -1).all()


def test_delete_to_nearest_gives_their_images_to_the_remaining_concepts():
    edit = delete(H, X, LAYERS, SIZES, DEFAULT, [0, 3], "nearest")
    new = edit.hierarchy.layers[edit.hierarchy.default]
    assert k_of(edit.hierarchy) == 3
    moved = np.isin(LABELS, [0, 3])
    assert (new[moved] >= 0).all()
    np.testing.assert_array_equal(new < 0, LABELS < 0)  # no new outliers


@pytest.mark.parametrize("to", ["outliers", "nearest"])
def test_deleting_every_concept_is_an_error(to):
    with pytest.raises(ConceptError, match="Every concept would be deleted"):
        delete(H, X, LAYERS, SIZES, DEFAULT, [0, 1, 2, 3, 4], to)


# -- outlier_candidates / give_outliers ------------------------------------------------------
NEAREST = layer_labels(H.nearest, H.parents[:DEFAULT])[DEFAULT]
#: The default concept id of each true group (its members' majority).
GROUP_LABEL = np.array([np.bincount(LABELS[(GROUPS == g) & (LABELS >= 0)]).argmax() for g in range(5)])


def test_outlier_candidates_give_only_outliers_their_nearest_concept():
    out = outlier_candidates(H, X, LABELS, NEAREST, "embeddings", -1.0, 10)
    inliers = LABELS >= 0
    np.testing.assert_array_equal(out[inliers], LABELS[inliers])
    np.testing.assert_array_equal(out[~inliers], NEAREST[~inliers])
    # a threshold no similarity reaches changes nothing
    np.testing.assert_array_equal(outlier_candidates(H, X, LABELS, NEAREST, "embeddings", 1.0, 10), LABELS)


def test_outlier_candidates_by_neighbours_vote():
    out = outlier_candidates(H, X, LABELS, NEAREST, "neighbours", 0.0, 5)
    assert (out >= 0).all()
    inliers = LABELS >= 0
    np.testing.assert_array_equal(out[inliers], LABELS[inliers])
    assert (out[~inliers] == GROUP_LABEL[GROUPS[~inliers]]).mean() >= 0.5


@pytest.mark.parametrize(("threshold", "n_neighbors"), [(1.5, 10), (-2.0, 10), (0.0, 0)])
def test_outlier_candidates_check_their_parameters(threshold, n_neighbors):
    with pytest.raises(ConceptError):
        outlier_candidates(H, X, LABELS, NEAREST, "embeddings", threshold, n_neighbors)


def test_give_outliers_places_them_and_only_them():
    given = outlier_candidates(H, X, LABELS, NEAREST, "embeddings", -1.0, 10)
    edit, joined = give_outliers(H, X, LABELS, DEFAULT, given)
    new = edit.hierarchy.layers[DEFAULT]
    np.testing.assert_array_equal(new, given)
    assert joined == int((LABELS < 0).sum())
    np.testing.assert_array_equal(edit.mapping, np.arange(5))
    assert edit.first_changed == 0
    # the widened fences take the images in: `transform` gives them their new concept
    assert (edit.hierarchy.probabilities[LABELS < 0] > 0).all()
    np.testing.assert_array_equal(layer_labels(assign(X, edit.hierarchy)[0], H.parents)[DEFAULT], new)


def test_give_outliers_with_nothing_changed_returns_none():
    assert give_outliers(H, X, LABELS, DEFAULT, LABELS.copy()) == (None, 0)


def test_give_outliers_refuses_to_change_a_concepts_images():
    given = LABELS.copy()
    row = int(np.flatnonzero(LABELS == 0)[0])
    given[row] = 1
    with pytest.raises(ConceptError, match="only gives outliers a concept"):
        give_outliers(H, X, LABELS, DEFAULT, given)


@pytest.mark.parametrize("given", [
    LABELS[:-1],                       # one too few
    LABELS.astype(np.float64),         # not integers
    np.where(LABELS < 0, 5, LABELS),   # no concept 5
    np.where(LABELS < 0, -2, LABELS),  # below -1
], ids=["short", "float", "too-high", "too-low"])
def test_give_outliers_checks_the_labels(given):
    with pytest.raises(ConceptError, match="labels must be"):
        give_outliers(H, X, LABELS, DEFAULT, given)


def test_images_deleted_to_outliers_cannot_be_given_back_one_by_one():
    edit = delete(H, X, LAYERS, SIZES, DEFAULT, [2], "outliers")
    h = edit.hierarchy
    labels = h.layers[h.default]
    given = labels.copy()
    given[np.flatnonzero(LABELS == 2)[0]] = 0
    with pytest.raises(ConceptError, match="delete it with to='nearest'"):
        give_outliers(h, X, labels, h.default, given)


# -- add_images ------------------------------------------------------------------------------
def new_rows(seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """30 images of a new group far from the fitted ones, and 10 near fitted ones."""
    rng = np.random.default_rng(seed)
    centre = l2_normalize(rng.normal(size=(1, 32)).astype(np.float32))[0]
    group = l2_normalize(centre + 0.25 * rng.normal(size=(30, 32)).astype(np.float32) / np.sqrt(32))
    known = X[np.flatnonzero(LABELS >= 0)[::50][:10]]
    return np.vstack([group, known]), np.flatnonzero(LABELS >= 0)[::50][:10]


def clusterer(vectors, size):
    return find_hierarchy(vectors, size, random_state=0)


def test_a_new_cluster_among_unplaced_rows_gets_ids_after_the_existing_ones():
    rows, known = new_rows()
    edit = add_images(H, X, rows, 15, 5, clusterer)
    h = edit.hierarchy
    assert edit.first_changed == 0
    np.testing.assert_array_equal(edit.mapping, np.arange(5))
    assert len(h.fine) == len(X) + len(rows)
    labels = h.layers[h.default]
    # none of the fitted images changed concept
    np.testing.assert_array_equal(labels[: len(X)], LABELS)
    new = labels[len(X):]
    assert (new[:30] >= 5).all() and len(np.unique(new[:30])) == 1
    np.testing.assert_array_equal(new[30:], LABELS[known])
    assert k_of(h) == 6 and len(h.centres) == 21


def test_too_few_unplaced_rows_stay_outliers():
    rows, known = new_rows()
    rows = np.vstack([rows[:4], rows[30:]])
    edit = add_images(H, X, rows, 15, 5, clusterer)
    labels = edit.hierarchy.layers[edit.hierarchy.default][len(X):]
    assert (labels[:4] == -1).all()
    np.testing.assert_array_equal(labels[4:], LABELS[known])
    assert len(edit.hierarchy.centres) == 20


# -- carry_names -----------------------------------------------------------------------------
def test_a_merged_concept_keeps_the_name_of_its_smallest_old_id():
    names = {0: "cats", 1: "dogs", 2: "cups", 3: "boats"}
    assert carry_names(names, np.array([0, 1, 1, -1])) == {0: "cats", 1: "dogs"}
    assert carry_names(names, np.array([1, 0, 0, 2])) == {1: "cats", 0: "dogs", 2: "boats"}


def test_names_do_not_survive_a_re_cut(caplog):
    with caplog.at_level(logging.WARNING, logger="concept.model"):
        assert carry_names({0: "cats"}, None) == {}
    assert "custom labels are dropped" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="concept.model"):
        assert carry_names({}, None) == {}
    assert caplog.text == ""
