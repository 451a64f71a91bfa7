"""concept.distributed.pieces: the clustering core's passes as Ray tasks over Parquet shards,
on a local Ray cluster (2 CPUs), against `find_hierarchy` on one array.

Synthetic vectors (a mixture large enough for the summary to run) keep this fast; the real
OpenClipart images go through the same code in test_distributed.py.
"""

from __future__ import annotations

import numpy as np
import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")

from concept.clustering import find_hierarchy, one_blas_thread  # noqa: E402

pytestmark = pytest.mark.slow
SHARD = 1000


def _mixture(n: int, d: int, k: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d))
    x = centres[rng.integers(0, k, n)] / np.sqrt(d) + rng.normal(size=(n, d)) / d
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    """7,000 rows in 7 shards, one of them a failed image (ok=False): 6,999 loaded rows, more
    than the 3,000 units the core sees, so the summary runs. 400 copies of one row make
    summary cells whose k-means restarts empty micro-clusters (ties between equal rows)."""
    x = _mixture(7_000, 48, 10, 0)
    x[1000:1400] = x[999]
    ok = np.ones(len(x), bool)
    ok[2500] = False
    return _write_shards(x, ok, tmp_path_factory.mktemp("vectors")), x[ok]


def _write_shards(x: np.ndarray, ok: np.ndarray, folder) -> list[str]:
    """Shards of SHARD rows of `x` (rows not `ok` written as failed images)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from concept.distributed.embed import _vectors_column

    files = []
    for i, start in enumerate(range(0, len(x), SHARD)):
        part = slice(start, start + SHARD)
        n = len(x[part])
        table = pa.table({"path": pa.array([f"img-{j}" for j in range(start, start + n)]),
                          "ok": pa.array(ok[part]), "error": pa.array([None] * n, pa.string()),
                          "embedding": _vectors_column(np.where(ok[part, None], x[part], 0))})
        files.append(str(folder / f"shard-{i:06d}.parquet"))
        pq.write_table(table, files[-1])
    return files


def test_restarts_happen_in_the_collection(collection):
    """The duplicate rows really make one machine's summary restart a micro-cluster, so the
    next test covers the re-run of the cells after it."""
    from concept.clustering import summary

    restarts = []
    original = summary.spherical_kmeans

    def counting(x, k, rng, iters=5):
        class Spy:
            first = True

            def choice(self, *args, **kwargs):
                restarts.append(not Spy.first)
                Spy.first = False
                return rng.choice(*args, **kwargs)

        return original(x, k, Spy(), iters)

    summary.spherical_kmeans = counting
    try:
        summary.summarise(collection[1], 3_000, np.random.default_rng(5))
    finally:
        summary.spherical_kmeans = original
    assert any(restarts)


def test_hierarchy_on_shards_equals_find_hierarchy(cluster, collection, monkeypatch):
    from concept.distributed import pieces

    files, x = collection
    reads = []
    real_read = pieces._read
    monkeypatch.setattr(pieces, "_read", lambda *a: reads.append(a) or real_read(*a))  # the driver's reads
    rows = pieces.ShardRows(files, "embedding")
    # Equal unless, in some Lloyd's step, a row lies within float32 rounding of two centres
    # (the shards' sums are added in another order): at random_state=5 one row did (1.2e-7
    # apart) and 10 of the 6,999 ended in other concepts; seeds 0 and 1 have no such row.
    got = pieces.find_hierarchy_on_shards(rows, 30, random_state=0)
    with one_blas_thread():  # as the shards' core runs (see find_hierarchy_on_shards)
        want = find_hierarchy(x, 30, random_state=0)
    assert len(rows) == len(x) and got.n_units == want.n_units < len(x)
    np.testing.assert_array_equal(got.fine, want.fine)
    np.testing.assert_array_equal(got.nearest, want.nearest)
    # The refinement's sums are added shard by shard, not in one machine's order: the concept
    # centres, and through them the confidences, agree to float32 rounding, not to the bit.
    np.testing.assert_allclose(got.centres, want.centres, atol=1e-6)
    np.testing.assert_allclose(got.medians, want.medians, atol=1e-6)
    np.testing.assert_allclose(got.probabilities, want.probabilities, atol=1e-3)
    assert got.default == want.default and len(got.parents) == len(want.parents) >= 1
    for a, b in zip(got.parents, want.parents):
        np.testing.assert_array_equal(a, b)
    # Every pass over the images was tasks over all the shards; the driver read none.
    assert reads == []
    kinds = [kind for kind, _ in rows.log]
    assert {"count", "take", "cells", "units", "sums", "assign", "nearest"} <= set(kinds)
    assert kinds.count("cells") >= 3  # the cell counts, then cells re-run after a restart
    assert all(sorted(read) == sorted(files) for _, read in rows.log)


def test_refine_over_shards_equals_refine(cluster, collection):
    """The refinement alone (no summary): `refine_centres` over ShardRows and `refine` on the
    array make the same steps from the same start."""
    from concept.clustering.hierarchy import MAX_ITER, refine, refine_centres
    from concept.clustering.kernels import mean_directions
    from concept.distributed.pieces import ShardRows

    files, x = collection
    start = np.random.default_rng(1).integers(0, 12, len(x))
    want = refine(x, start, 30)
    rows = ShardRows(files, "embedding", files_per_task=3)
    got = refine_centres(rows, mean_directions(x, start, 12)[0], 30, MAX_ITER)
    np.testing.assert_array_equal(got[0], want[0])  # every row's concept; sums differ in rounding
    np.testing.assert_allclose(got[1], want[1], atol=1e-6)
    np.testing.assert_allclose(got[2], want[2], atol=1e-6)
    assert len(rows._groups()) == 3  # 7 shards, 3 a task


def test_pieces_choice_is_checked(cluster, collection, tmp_path):
    from concept import ConceptError, ConceptModel
    from concept.distributed import fit
    from concept.distributed.embed import EmbeddedShards

    with pytest.raises(ConceptError, match="pieces must be"):
        fit(ConceptModel(embedding_model=None, verbose=False), EmbeddedShards(tmp_path, "x", [], 0, 0, 0.0),
            tmp_path / "l", pieces="tasks")


def test_pieces_refuse_what_the_default_core_does_not_do():
    """pieces="ray" is the default core: a user's own UMAP/HDBSCAN, zero-shot names or seed
    concepts (which the tasks do not know) are refused in one line; "auto" then stays on the
    driver."""
    from concept import ConceptError, ConceptModel
    from concept.distributed.fit import _use_pieces

    for own in (ConceptModel(zeroshot_concepts=["cat"], verbose=False),
                ConceptModel(seed_concepts=[["cat", "kitten"]], verbose=False)):
        with pytest.raises(ConceptError, match='pieces="driver"'):
            _use_pieces("ray", own, 10_000, 1_000)
        assert not _use_pieces("auto", own, 10_000, 1_000)
    plain = ConceptModel(verbose=False)
    assert _use_pieces("auto", plain, 10_000, 1_000) and not _use_pieces("auto", plain, 1_000, 1_000)
    assert not _use_pieces("auto", plain, 10_000, None) and not _use_pieces("driver", plain, 10_000, 1_000)


def test_cli_refuses_a_uri_without_ray(capsys):
    from concept.cli import main

    assert main(["embed", "s3://KEY:SECRET@bucket/photos", "--store", "x"]) == 2
    err = capsys.readouterr().err
    assert "add --ray" in err and "SECRET" not in err


def test_the_steady_default_layer_runs_as_passes_over_shards(cluster, tmp_path):
    """Broad, overlapping groups: no gap in the tree, so the default layer is stable.py's
    k-means and redrawn finest concepts; over shards its passes are tasks too, with the same
    concepts as on one array."""
    from conftest import blobs

    from concept.distributed import pieces

    x, _ = blobs(n_per=300, centers=10, dim=16, spread=0.35, seed=1)
    rows = pieces.ShardRows(_write_shards(x, np.ones(len(x), bool), tmp_path), "embedding")
    got = pieces.find_hierarchy_on_shards(rows, 10, random_state=0)
    want = find_hierarchy(x, 10, random_state=0)
    assert 0 < want.default < len(want.parents)  # the steady path: layers on both sides
    np.testing.assert_array_equal(got.fine, want.fine)
    assert got.default == want.default and len(got.parents) == len(want.parents)
    for a, b in zip(got.parents, want.parents, strict=True):
        np.testing.assert_array_equal(a, b)
    assert sum(kind == "assign" for kind, _ in rows.log) > 10  # the k-means steps were tasks


def test_dissolving_after_the_exact_pass_moves_only_their_rows_on_shards_as_in_memory(cluster, collection):
    """`hierarchy.exact_nearest` with concepts under the minimum: over shards (`nearest_at`
    fetches the dissolved concepts' rows) as on one array, and as a second full pass would give."""
    from concept.clustering.hierarchy import exact_nearest
    from concept.clustering.kernels import label_sums, mean_directions
    from concept.clustering.passes import InMemory, matches
    from concept.distributed.pieces import ShardRows

    files, x = collection
    centres = mean_directions(x, np.random.default_rng(2).integers(0, 40, len(x)), 40)[0]
    first = matches(x, centres)[0]
    min_size = int(np.sort(np.bincount(first, minlength=40))[5]) + 1  # the 6 smallest dissolve
    nearest, kept, sims, sums = exact_nearest(InMemory(x), centres, min_size)
    assert len(kept) < 40 and np.bincount(nearest).min() >= min_size
    again, again_sims = matches(x, kept)  # a full pass over the kept centres
    np.testing.assert_array_equal(nearest, again)
    np.testing.assert_allclose(sims, again_sims, atol=1e-6)
    np.testing.assert_allclose(sums, label_sums(x, nearest, len(kept))[0], rtol=1e-5, atol=1e-3)  # float32 sums
    got = exact_nearest(ShardRows(files, "embedding", files_per_task=3), centres, min_size)
    np.testing.assert_array_equal(got[0], nearest)
    np.testing.assert_allclose(got[3], sums, rtol=1e-5, atol=1e-3)
