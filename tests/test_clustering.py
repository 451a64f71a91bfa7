"""clustering/: the core (summary, dense groups, refined layers, assignment) and the legacy
single-layer path (sample-then-assign, the kNN vote, degenerate inputs)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from conftest import blobs, nested_blobs
from sklearn.metrics import normalized_mutual_info_score

from concept.clustering import kernels
from concept.clustering import (
    assign,
    cluster,
    default_clusterer,
    default_reducer,
    find_hierarchy,
    fit_projection,
    from_labels,
    layer_labels,
    nearest,
    project,
    sort_by_size,
    top_matches,
    vote,
)
from concept.embedding import l2_normalize


def test_sort_by_size_numbers_the_largest_zero_and_keeps_outliers():
    labels = np.array([5, 5, 2, 2, 2, -1, 7])
    np.testing.assert_array_equal(sort_by_size(labels), [1, 1, 0, 0, 0, -1, 2])


def test_assign_votes_for_the_nearest_reference_rows_and_can_skip_copies():
    ref, y = blobs(n_per=30)
    new, y_new = blobs(n_per=10, seed=0)
    labels, shares = vote(new, ref, y, 3)
    np.testing.assert_array_equal(labels, y_new)
    assert shares.shape == (30, 3) and np.allclose(shares.sum(axis=1), 1)
    rows = np.array([29, 0, 15])
    sub, _ = vote(new, ref, y, 3, rows=rows, chunk=2)
    np.testing.assert_array_equal(sub, labels[rows])


def test_outliers_win_the_vote_when_they_are_the_neighbours():
    ref, y = blobs(n_per=20)
    y = np.where(y == 2, -1, y)
    labels, shares = vote(ref[y == -1], ref, y, 2)
    assert (labels == -1).all() and (shares.sum(axis=1) < 0.5).all()


def test_sample_then_assign_matches_the_full_clustering():
    x, y = blobs(n_per=300)
    result = cluster(x, default_reducer(200, 0), default_clusterer(10, 200), sample_size=200, random_state=0)
    assert len(result.fitted_rows) == 200 and len(result.labels) == 900
    assert normalized_mutual_info_score(y, result.labels) > 0.95
    assert result.probabilities.min() >= 0 and result.probabilities.max() <= 1


def test_identical_images_are_grouped_without_umap():
    x = np.repeat(np.eye(4, 8, dtype=np.float32)[:3], [30, 20, 2], axis=0)
    result = cluster(x, default_reducer(52), default_clusterer(5, 52))
    assert result.reduced is None
    assert sorted(np.unique(result.labels).tolist()) == [-1, 0, 1]  # the pair is too small
    assert (result.labels[:30] == 0).all() and (result.labels[30:50] == 1).all()


def test_default_clusterer_caps_a_concept_at_half_the_points():
    assert default_clusterer(30, 10_000).get_params()["max_cluster_size"] == 5_000


def test_nearest_is_the_exact_top_k_by_dot_product():
    rng = np.random.default_rng(0)
    base, queries = rng.standard_normal((300, 16)), rng.standard_normal((50, 16))
    indices, sims = nearest(queries, base, 7, chunk=8)
    expected = np.argsort(-(queries @ base.T), axis=1)[:, :7]
    np.testing.assert_array_equal(indices, expected)
    np.testing.assert_allclose(sims, np.take_along_axis(queries @ base.T, expected, axis=1), rtol=1e-5)
    assert nearest(queries, base[:3], 10)[0].shape == (50, 3)  # k larger than the base


def test_projection_keeps_neighbours_of_low_rank_data_and_skips_small_spaces():
    rng = np.random.default_rng(0)
    x = l2_normalize(rng.standard_normal((500, 20)) @ rng.standard_normal((20, 300)))  # rank 20 in 300-d
    basis = fit_projection(x, dim=32, random_state=0)
    assert basis.shape == (300, 32)
    np.testing.assert_allclose(basis.T @ basis, np.eye(32), atol=1e-5)
    p = project(x, basis)
    np.testing.assert_allclose(np.linalg.norm(p, axis=1), 1, rtol=1e-5)
    np.testing.assert_array_equal(nearest(p, p, 5)[0], nearest(x, x, 5)[0])  # the span holds all of x
    rows = np.array([4, 2])
    np.testing.assert_allclose(project(x, basis, rows=rows, chunk=1), p[rows], atol=1e-5)
    assert fit_projection(x[:, :32], dim=32) is None and project(x, None) is x


def test_default_reduction_runs_on_the_projection_with_an_exact_graph():
    x, y = blobs(n_per=100, dim=200)
    reducer = default_reducer(300, 0)
    result = cluster(x, reducer, default_clusterer(10, 300), random_state=0)
    assert result.projection is not None and result.projection.shape == (200, 64)
    knn_indices, _ = reducer.get_params()["precomputed_knn"]
    assert knn_indices.shape == (300, reducer.get_params()["n_neighbors"])
    assert normalized_mutual_info_score(y, result.labels) > 0.95


def test_sampled_min_size_counts_concepts_in_collection_images():
    from concept.clustering import sampled_min_size

    assert sampled_min_size(30, 5_000, 5_000) == 30  # no sample: as given
    assert sampled_min_size(30, 5_000, 6_000) == 25  # 30 images of 6,000 are 25 of the 5,000
    assert sampled_min_size(30, 5_000, 1_000_000) == 15  # floor
    assert sampled_min_size(10, 5_000, 1_000_000) == 10  # never above what was asked


# ---------------------------------------------------------------------------- the core
@pytest.mark.parametrize("native", [True, False])
def test_top_matches_is_the_float32_answer_whatever_the_chunking_and_the_cpu(monkeypatch, native):
    # Scores in bfloat16 where the CPU has it natively, else float32: the same answer either way.
    monkeypatch.setattr(kernels, "native_bfloat16", lambda: native)
    rng = np.random.default_rng(0)
    x = l2_normalize(rng.normal(size=(500, 32)).astype(np.float32))
    c = l2_normalize(rng.normal(size=(40, 32)).astype(np.float32))
    exact = np.argsort(-(x @ c.T), axis=1, kind="stable")[:, :3]
    for chunk, rows in itertools.product((7, 500), (None, 2**30)):  # rows: the torch path
        idx, sims = top_matches(x, c, 3, chunk=chunk, rows=rows)
        np.testing.assert_array_equal(idx, exact)
        np.testing.assert_allclose(sims, np.take_along_axis(x @ c.T, exact, axis=1), rtol=1e-5)


def test_native_bfloat16_is_read_from_the_cpu_flags():
    kernels.native_bfloat16.cache_clear()
    try:
        flags = open("/proc/cpuinfo").read().split()
    except OSError:
        flags = []
    assert kernels.native_bfloat16() == bool({"amx_bf16", "avx512_bf16", "bf16"} & set(flags))


def test_summary_keeps_every_image_and_small_clusters_apart():
    from concept.clustering.summary import summarise

    x, y = blobs(n_per=400, centers=6, dim=32, spread=0.2)
    s = summarise(x, 60, np.random.default_rng(0))
    assert 30 <= len(s.centres) <= 90 and s.weights.sum() == len(x) and len(s.labels) == len(x)
    # micro-clusters do not mix the blobs (as pure as the nearest true centre: 99.9%)
    majority = sum(np.bincount(y[s.labels == unit]).max() for unit in range(len(s.centres)))
    assert majority / len(y) >= 0.995


def test_layers_are_nested_and_recover_both_levels():
    x, groups, subs = nested_blobs(groups=6, subs=5, per=40)
    h = find_hierarchy(x, 20, random_state=0)
    layers = h.layers
    assert len(layers) >= 2 and len(h.parents) == len(layers) - 1
    for fine, coarse in itertools.pairwise(layers):  # every fine concept lies in one coarse concept
        for c in np.unique(fine[fine >= 0]):
            assert len(np.unique(coarse[fine == c])) == 1
    best_sub = max(normalized_mutual_info_score(subs, layer) for layer in layers)
    best_group = max(normalized_mutual_info_score(groups, layer) for layer in layers)
    assert best_sub > 0.9 and best_group > 0.9
    for layer in layers:  # ids by size, 0 the largest
        sizes = np.bincount(layer[layer >= 0])
        assert (np.diff(sizes) <= 0).all()


def test_assign_at_any_layer_reproduces_the_fitted_layers():
    x, _, _ = nested_blobs(groups=4, subs=3, per=50)
    h = find_hierarchy(x, 20, random_state=0)
    for k, layer in enumerate(h.layers):
        labels, conf = assign(x, h, k)
        np.testing.assert_array_equal(labels, layer)
        assert ((conf > 0) == (labels >= 0)).all()
        labels, member = assign(x, h, k, memberships=True)
        assert member.shape == (len(x), int(layer.max()) + 1)
        inl = labels >= 0
        np.testing.assert_array_equal(member[inl].argmax(axis=1), labels[inl])


def test_far_images_are_outliers_and_few_typical_ones_are():
    x, _ = blobs(n_per=300, centers=4, dim=16, spread=0.15)
    h = find_hierarchy(x, 20, random_state=0)
    labels = h.layers[h.default]
    assert (labels >= 0).mean() > 0.95
    far = l2_normalize(np.random.default_rng(1).normal(size=(20, 16)).astype(np.float32))
    out, conf = assign(far, h, h.default)
    assert (out == -1).mean() > 0.8 and (conf[out == -1] == 0).all()


def test_one_layer_from_a_clusterers_own_labels_keeps_its_outliers():
    x, y = blobs(n_per=50)
    labels = np.where(np.arange(len(y)) % 10 == 0, -1, y)
    h = from_labels(x, labels)
    assert h.parents == [] and (h.fine[labels < 0] == -1).all()
    np.testing.assert_array_equal(layer_labels(h.nearest, [])[0][labels >= 0], h.fine[labels >= 0])


def test_dense_groups_are_the_same_every_run_on_tied_coordinates():
    # fast_hdbscan's parallel kernels broke ties by thread timing: on coordinates with many equal
    # distances, ten runs gave two different partitions (and so one seed two sets of concepts).
    from concept.clustering.density import dense_groups

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(12, 5)) * 3
    coords = np.round(centres[rng.integers(0, 12, 2000)] + rng.normal(size=(2000, 5)), 1).astype(np.float32)
    for method in ("eom", "leaf"):
        runs = {dense_groups(coords, np.ones(2000), 15, method).tobytes() for _ in range(10)}
        assert len(runs) == 1, method


def test_forest_cuts_give_each_count_and_never_merge_across_groups():
    from concept.clustering.stable import forest_cuts

    rng = np.random.default_rng(0)
    means = rng.normal(size=(40, 8))
    sizes = rng.integers(5, 50, size=40)
    group = rng.integers(0, 6, size=40)
    counts = [30, 20, 12, 6]
    cuts = forest_cuts(means, sizes, group, counts)
    for cut, count in zip(cuts, counts, strict=True):
        assert int(cut.max()) + 1 == count
        for c in np.unique(cut):  # a concept of the cut lies in one group
            assert len(np.unique(group[cut == c])) == 1
    for fine, coarse in itertools.pairwise(cuts):  # and each cut nests in the next
        for c in np.unique(fine):
            assert len(np.unique(coarse[fine == c])) == 1


def test_default_count_keeps_the_costly_merges_undone():
    from concept.clustering.hierarchy import default_count, weighted_ward

    # Three far groups of four near concepts each: the two merges of the groups are costly.
    rng = np.random.default_rng(0)
    groups = rng.normal(size=(3, 16)) * 10
    means = np.repeat(groups, 4, axis=0) + rng.normal(size=(12, 16))
    assert default_count(weighted_ward(means, np.full(12, 100))) == 3


def test_without_a_gap_the_default_layer_is_nested_exact_and_steadier_than_the_finest():
    # Ten broad, overlapping groups: the tree of the finest concepts has no clear gap, so the
    # default layer is the k-means partition of stable.py, with the finest redrawn inside it.
    from sklearn.metrics import adjusted_rand_score

    from concept.clustering.hierarchy import default_count, weighted_ward
    from concept.clustering.kernels import label_sums

    x, y = blobs(n_per=300, centers=10, dim=16, spread=0.35, seed=1)
    hs = [find_hierarchy(x, 10, random_state=seed) for seed in range(3)]
    for h in hs:
        layers = h.layers
        assert 0 < h.default < len(layers) - 1  # finer and coarser layers around the default
        assert int(layers[h.default].max()) + 1 < int(layers[0].max()) + 1
        for fine, coarse in itertools.pairwise(layers):
            for c in np.unique(fine[fine >= 0]):
                assert len(np.unique(coarse[fine == c])) == 1
        for k, layer in enumerate(layers):
            np.testing.assert_array_equal(assign(x, h, k)[0], layer)
        assert normalized_mutual_info_score(y, layers[h.default]) > 0.65
        # The count agrees with the tree of the finest concepts it ended with (stable.py's
        # second round: the count read again off the redrawn concepts).
        sums, sizes = label_sums(x, h.nearest, len(h.centres))
        tree = weighted_ward(sums / np.maximum(sizes, 1)[:, None], sizes)
        assert default_count(tree) == int(layers[h.default].max()) + 1
    # 3,000 images are clustered image by image: no seed enters (exact.py), every layer agrees.
    for h in hs[1:]:
        assert adjusted_rand_score(h.layers[h.default], hs[0].layers[hs[0].default]) == 1.0


def test_excess_of_mass_picks_the_lasting_groups_and_leaves_out_what_falls_off_early():
    from sklearn.metrics import adjusted_rand_score

    from concept.clustering.exact import excess_of_mass, image_tree

    x, y = blobs(n_per=40, centers=3, dim=8, spread=0.05, seed=2)
    far = l2_normalize(np.random.default_rng(3).normal(size=(3, 8))).astype(np.float32)
    tree = image_tree(np.concatenate([x, far]))
    labels = excess_of_mass(tree, 10)
    # The three tight blobs, each whole: far rows are never a concept of their own.
    assert adjusted_rand_score(y, labels[:120]) == 1.0 and set(labels[:120]) == {0, 1, 2}
    assert set(labels[120:]) <= {-1, 0, 1, 2}
    # No split leaves two sides of 60 rows: one concept of every row (HDBSCAN would call it noise).
    assert set(excess_of_mass(tree, 60)) == {0}
    # Two groups of blobs: the excess of mass keeps a group whole when it outlasts its blobs.
    rng = np.random.default_rng(5)
    centres = l2_normalize(rng.normal(size=(2, 16)))
    sub = l2_normalize(np.repeat(centres, 3, axis=0) + 0.15 * rng.normal(size=(6, 16)))
    pts = l2_normalize(np.repeat(sub, 30, axis=0) + 0.02 * rng.normal(size=(180, 16))).astype(np.float32)
    sub_labels, group = np.repeat(np.arange(6), 30), np.repeat(np.arange(2), 90)
    fine = excess_of_mass(image_tree(pts), 10)
    assert adjusted_rand_score(sub_labels, fine) == 1.0  # sub-blobs last longer than their groups
    assert adjusted_rand_score(group, excess_of_mass(image_tree(pts), 40)) == 1.0  # 30 < 40: the groups
    assert excess_of_mass(np.zeros((0, 4)), 5).tolist() == [0]


def test_small_collections_get_the_same_concepts_whatever_the_seed():
    # The stability rule: a collection clustered image by image takes its concepts from the
    # exact Ward tree by HDBSCAN's excess of mass, with no layout and no seed, so every
    # random_state gives the same hierarchy (HDBSCAN's groups on a UMAP layout: ARI 0.70-0.78;
    # the tree cut at a count read off the layout: 0.79-0.92 over 6 seeds on real collections).
    x, y = blobs(n_per=100, centers=12, dim=16, spread=0.45, seed=1)
    hs = [find_hierarchy(x, 10, random_state=seed) for seed in (0, 1, 7)]
    for h in hs:
        np.testing.assert_array_equal(assign(x, h, 0)[0], h.layers[0])
        assert normalized_mutual_info_score(y, h.layers[h.default]) > 0.35
    for h in hs[1:]:
        assert h.default == hs[0].default and len(h.layers) == len(hs[0].layers)
        for a, b in zip(h.layers, hs[0].layers, strict=True):
            np.testing.assert_array_equal(a, b)


def test_narrowed_steps_search_only_each_units_candidates_and_need_pure_units():
    # The candidate kernel is the best of each row's candidates; narrowing is refused when the
    # units do not hold the rows' best centres (here: random units).
    from concept.clustering.hierarchy import CANDIDATES, candidates, narrowing
    from concept.clustering.kernels import best_of_candidates, mean_directions

    rng = np.random.default_rng(0)
    x = l2_normalize(rng.normal(size=(3000, 16)).astype(np.float32))
    c = l2_normalize(rng.normal(size=(600, 16)).astype(np.float32))
    group = rng.integers(0, 50, len(x))
    lists = np.full((50, 4), -1)
    lists[:, :3] = rng.integers(0, 600, (50, 3))
    labels, sims = best_of_candidates(x, c, group, lists)
    scores = x @ c.T
    for i in range(0, 3000, 97):
        own = lists[group[i]][lists[group[i]] >= 0]
        assert labels[i] == own[np.argmax(scores[i, own])]
        assert abs(sims[i] - scores[i, own].max()) < 1e-5
    units = (l2_normalize(rng.normal(size=(50, 16)).astype(np.float32)), group)
    assert candidates(units, c).lists.shape == (50, CANDIDATES)
    big = np.repeat(x, 200, axis=0)  # enough rows x centres x dims to be worth narrowing
    start = mean_directions(big, np.arange(len(big)) % 600, 600)[0]
    assert narrowing(big, start, (units[0], np.repeat(group, 200))) is None
    lab = np.arange(30_000) % 600  # pure units: each row near its unit's own centre
    pure = l2_normalize((c[lab] + 0.01 * rng.normal(size=(len(lab), 16))).astype(np.float32))
    assert narrowing(pure, mean_directions(pure, lab, 600)[0], (c, lab)) is not None


_COUNT_COMPILES = """
import numpy as np
from numba.core import event
from concept import ConceptModel

compiled = []
class Compiles(event.Listener):
    def on_start(self, ev):
        module = ev.data["dispatcher"].py_func.__module__
        if module.split(".")[0] in ("umap", "pynndescent"):
            compiled.append(module + "." + ev.data["dispatcher"].py_func.__qualname__)
    def on_end(self, ev):
        pass
event.register("numba:compile", Compiles())
import umap  # its eagerly typed functions (tau_rand) compile as it is imported: not counted
compiled.clear()
rng = np.random.default_rng(0)
x = (rng.standard_normal((6, 32)).repeat(100, axis=0) + 0.3 * rng.standard_normal((600, 32))).astype(np.float32)
ConceptModel(embedding_model=None, min_concept_size=20, random_state=0, verbose=False).fit(image_embeddings=x)
print(len(compiled), sorted(set(compiled)))
"""


def test_a_second_process_does_not_compile_umap_again():
    """umap-learn's numba functions have no disk cache: each new process compiled them again
    (about 8 s on 2 cores before its first fit). `clustering._jit` turns numba's cache on.
    (The few umap compiles eagerly as it is imported, 0.4 s, are not cacheable from outside.)"""
    import subprocess
    import sys

    runs = [subprocess.run([sys.executable, "-c", _COUNT_COMPILES], capture_output=True, text=True, check=True)
            for _ in range(2)]
    first, second = (r.stdout.strip().splitlines()[-1] for r in runs)
    assert second.startswith("0 "), (first, second)
