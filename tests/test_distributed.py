"""concept.distributed on a local Ray cluster (2 CPUs), on real OpenClipart images.

Skipped when ray is not installed (it is the optional extra `concept[ray]`; CI installs it).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")

from concept.distributed import (  # noqa: E402
    assign_to_parquet,
    embed_dataset,
    embed_to_parquet,
    find_duplicates_on_ray,
    fit,
    read_embeddings,
)

OPENCLIPART = Path("/usr/share/openclipart/png")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def collection(tmp_path_factory) -> list[str]:
    """60 OpenClipart PNGs of three categories and two files that are not images."""
    if not OPENCLIPART.is_dir():
        pytest.skip("Debian package openclipart-png is not installed")
    paths = []
    for category in ("animals", "food", "transportation"):
        paths += [str(p) for p in sorted((OPENCLIPART / category).rglob("*.png"))[:20]]
    bad = tmp_path_factory.mktemp("bad")
    (bad / "empty.png").write_bytes(b"")
    (bad / "text.png").write_text("not an image")
    paths.insert(5, str(bad / "empty.png"))
    paths.insert(50, str(bad / "text.png"))
    return paths


#: A small candidate vocabulary: the bundled 20,000 nouns take a minute to embed on 2 cores.
WORDS = ["dog", "cat", "bird", "horse", "fish", "apple", "bread", "cake", "cheese", "pizza", "car",
         "train", "airplane", "bicycle", "boat", "truck", "bus", "fruit", "animal", "vehicle"]
SETTINGS = dict(min_concept_size=5, embedding_model="offline", random_state=3, verbose=False)


@pytest.fixture(scope="module")
def local_fit(collection):
    """The single-machine reference: ConceptModel.fit on the paths (embeds them in one process)."""
    from concept import ConceptModel

    return ConceptModel(**SETTINGS).fit(collection, docs=WORDS)


@pytest.fixture(scope="module")
def local_vectors(local_fit):
    """What the single-machine fit embedded: vectors, features, rows that loaded, failures."""
    return local_fit.embeddings_, local_fit.features_, local_fit.image_indices_, local_fit.failures_


@pytest.fixture(scope="module")
def shards(cluster, collection, tmp_path_factory):
    return embed_to_parquet(collection, tmp_path_factory.mktemp("shards"), "offline", shard_size=32)


def test_distributed_embedding_equals_embed_images(shards, collection, local_vectors):
    x, f, kept, _ = local_vectors
    assert shards.embedded == len(shards.shards) == 2 and shards.reused == 0
    data = read_embeddings(shards)
    assert data.paths == [os.path.abspath(p) for p in collection]
    np.testing.assert_array_equal(data.kept, kept)
    np.testing.assert_allclose(data.embeddings, x, atol=1e-5)
    np.testing.assert_allclose(data.features, f, atol=1e-5)


def test_bad_files_are_reported_per_item(shards, collection, local_vectors):
    data = read_embeddings(shards)
    assert [(f.index, Path(f.source).name) for f in data.failures] == [(5, "empty.png"), (50, "text.png")]
    assert [f.reason for f in data.failures] == [f.reason for f in local_vectors[3]]
    assert "empty file" in data.failures[0].reason


def test_rerun_reuses_shards_and_new_files_make_new_shards(cluster, shards, collection):
    mtimes = {p: p.stat().st_mtime_ns for p in shards.files}
    again = embed_to_parquet(collection, shards.folder, "offline", shard_size=32)
    assert again.embedded == 0 and again.reused == 2
    # The plan files (each shard's paths, read by its actor) are gone once the shards are written.
    assert not list((shards.folder / ".plan").glob("*")) and [s.n for s in again.shards] == [32, 30]
    assert {p: p.stat().st_mtime_ns for p in again.files} == mtimes


def test_sampled_read_keeps_plan_positions(shards):
    full = read_embeddings(shards)
    part = read_embeddings(shards, max_images=20, random_state=1)
    assert len(part.kept) == 20 and set(part.kept) <= set(full.kept)
    rows = np.searchsorted(full.kept, part.kept)
    np.testing.assert_array_equal(part.embeddings, full.embeddings[rows])


def test_killed_job_resumes_without_redoing_finished_shards(cluster, collection, tmp_path):
    """A driver killed (SIGKILL) mid-job leaves whole shards only; the rerun embeds the rest."""
    out = tmp_path / "shards"
    files = collection[:40]  # the empty file among them
    address = ray.get_runtime_context().gcs_address
    script = (
        "import sys, ray\n"
        "from concept.distributed import connect, embed_to_parquet\n"
        f"connect({address!r}, log_to_driver=False)\n"
        "ray.data.DataContext.get_current().enable_progress_bars = False\n"
        f"embed_to_parquet(sys.argv[1:], {str(out)!r}, 'offline', shard_size=4, concurrency=1)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script, *files], env=os.environ.copy(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and len(list(out.glob("shard-*.parquet"))) < 2:
            assert proc.poll() is None, "the job ended before it could be killed"
            time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    done = {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*.parquet")}
    assert 2 <= len(done) < 10, done
    again = embed_to_parquet(files, out, "offline", shard_size=4, concurrency=2)
    # An actor may finish the shard it was writing as the job dies: never fewer reused, some left.
    assert again.reused >= len(done) and again.embedded >= 1 and again.embedded + again.reused == 10
    after = {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*.parquet")}
    assert all(after[name] == mtime for name, mtime in done.items())
    assert len(read_embeddings(again).kept) == len(files) - 1


class _CountingModel:
    """A tiny backend that counts the images it embedded (to see what an actor redid)."""

    name = "counting"
    dim = 4

    def __init__(self) -> None:
        self.embedded = 0

    def embed_images(self, images, batch_size=32, *, report=None):
        self.embedded += len(images)
        if report is not None:
            report.loaded.extend(range(len(images)))
        return np.ones((len(images), self.dim), np.float32) / 2

    def embed_texts(self, texts, batch_size=64):
        return np.ones((len(texts), self.dim), np.float32) / 2


def test_an_actor_skips_a_shard_another_run_wrote_after_its_plan_was_made(collection, tmp_path):
    """The race a busy machine hit on resume: a killed job's actor finished a shard (and, before
    the fix, removed its plan file) after the rerun had planned it; the rerun's actor then raised
    FileNotFoundError reading the plan. Now it finds the shard written and leaves it as it is."""
    import pyarrow as pa

    from concept.distributed.embed import _ShardEmbedder, _table, _write_atomically, plan_shards

    (shard,) = plan_shards(collection[:4], "counting", 4)
    plans = tmp_path / ".plan"
    plans.mkdir()
    plan = plans / f"{shard.name}.paths"
    _write_atomically(pa.table({"path": pa.array(shard.paths, pa.string())}), plan)
    actor = _ShardEmbedder(_CountingModel(), str(tmp_path), 32, None, 0)
    # The other run's actor: writes the shard and its plan file goes away.
    other = np.zeros((4, 4), np.float32)
    _write_atomically(_table(shard.paths, other, None, [None, None, None, "unreadable"]), tmp_path / shard.name)
    mtime = (tmp_path / shard.name).stat().st_mtime_ns
    plan.unlink()
    out = actor({"name": np.asarray([shard.name]), "plan": np.asarray([str(plan)])})
    assert list(out["n"]) == [4] and list(out["failed"]) == [1] and actor.backend.embedded == 0
    assert (tmp_path / shard.name).stat().st_mtime_ns == mtime
    # A plan missing with no shard written is a clear error, not a FileNotFoundError from pyarrow.
    (tmp_path / shard.name).unlink()
    from concept._errors import ConceptError

    with pytest.raises(ConceptError, match="plan of shard .* is missing"):
        actor({"name": np.asarray([shard.name]), "plan": np.asarray([str(plan)])})
    # An actor no longer removes its plan (a concurrent run may be about to read it): the driver does.
    _write_atomically(pa.table({"path": pa.array(shard.paths, pa.string())}), plan)
    out = actor({"name": np.asarray([shard.name]), "plan": np.asarray([str(plan)])})
    assert list(out["n"]) == [4] and actor.backend.embedded == 4 and plan.is_file()


def _transform(model, local_vectors, n, layer=None):
    """What model.transform(paths) gives, from the vectors already computed (no re-embedding)."""
    x, f, kept, _ = local_vectors
    out = np.full(n, -1)
    out[kept] = model.transform(image_embeddings=x, image_features=f, layer=layer)
    return out


def test_distributed_fit_and_assign_equal_concept_model_fit(shards, collection, local_fit, local_vectors,
                                                           tmp_path):
    from concept import ConceptModel

    local = local_fit
    result = fit(ConceptModel(**SETTINGS), shards, tmp_path / "labels", docs=WORDS)
    model = result.model
    np.testing.assert_array_equal(model.labels_, local.labels_)
    np.testing.assert_array_equal(model.image_indices_, local.image_indices_)
    assert model.topics == local.topics
    assert [(f.index, f.reason) for f in model.failures_] == [(f.index, f.reason) for f in local.failures_]
    assert model.image_sources_ == [os.path.abspath(p) for p in local.image_sources_]
    # Every image labelled on the cluster, as transform labels it (-1 for unreadable files).
    labels = result.labels_dataset().to_pandas().set_index("path")  # rows in no set order
    paths = [os.path.abspath(p) for p in collection]
    assert sorted(labels.index) == sorted(paths)
    expected = _transform(local, local_vectors, len(collection))
    np.testing.assert_array_equal(labels.label[paths].to_numpy(), expected)
    assert labels.error.notna().sum() == 2 and (labels.label[labels.error.notna()] == -1).all()
    # An ordinary model: saves and loads exactly.
    model.save(tmp_path / "m")
    loaded = ConceptModel.load(tmp_path / "m")
    np.testing.assert_array_equal(loaded.labels_, model.labels_)
    assert result.n_images == len(collection) and result.n_fitted == len(collection) - 2


def test_clustering_passes_as_tasks_equal_concept_model_fit(shards, collection, local_fit, local_vectors,
                                                            tmp_path):
    """pieces="ray": the core's passes over all 58 images run as tasks over the shards while the
    driver holds a sample of 40 (for exemplars and words): the concepts are those of
    ConceptModel.fit on all 58, and every image gets the label transform gives it."""
    from concept import ConceptModel

    result = fit(ConceptModel(**SETTINGS), shards, tmp_path / "labels", docs=WORDS, max_images=40,
                 pieces="ray")
    model = result.model
    assert len(model.labels_) == result.n_fitted == 40
    at = np.searchsorted(local_fit.image_indices_, model.image_indices_)
    np.testing.assert_array_equal(model.labels_, local_fit.labels_[at])
    np.testing.assert_allclose(model.probabilities_, local_fit.probabilities_[at], atol=1e-3)
    assert model.layer_sizes_ == local_fit.layer_sizes_
    labels = result.labels_dataset().to_pandas().set_index("path")
    paths = [os.path.abspath(p) for p in collection]
    np.testing.assert_array_equal(labels.label[paths].to_numpy(), _transform(local_fit, local_vectors, len(collection)))
    assert {kind for kind, _ in result.passes} >= {"count", "take", "assign", "nearest"}
    assert all(sorted(read) == sorted(str(f.resolve()) for f in shards.files) for _, read in result.passes)
    model.save(tmp_path / "m")
    loaded = ConceptModel.load(tmp_path / "m")
    np.testing.assert_array_equal(loaded.labels_, model.labels_)
    np.testing.assert_array_equal(_transform(loaded, local_vectors, len(collection)),
                                  _transform(model, local_vectors, len(collection)))


def test_assign_at_a_layer_and_checks(shards, collection, local_vectors, tmp_path):
    from concept import ConceptError, ConceptModel

    model = fit(ConceptModel(**SETTINGS), shards, tmp_path / "l0", max_images=40, docs=WORDS).model
    assert len(model.labels_) == 40
    top = len(model.layers_) - 1
    folder = assign_to_parquet(model, shards, tmp_path / "top", layer=top)
    import pandas as pd

    got = pd.concat([pd.read_parquet(f) for f in [folder / s.name for s in shards.shards]])
    np.testing.assert_array_equal(got.label.to_numpy(), _transform(model, local_vectors, len(collection), top))
    with pytest.raises(ConceptError, match="embedding_model"):
        fit(ConceptModel(embedding_model=None, verbose=False), shards, tmp_path / "x")


def test_embed_dataset_of_bytes(cluster, collection):
    ds = ray.data.from_items([{"path": p, "bytes": Path(p).read_bytes()} for p in collection[:8]])
    rows = embed_dataset(ds, "offline", batch_size=4, concurrency=1).to_pandas().set_index("path")
    rows = rows.loc[collection[:8]]  # Ray Data keeps no row order unless asked
    assert rows.ok.tolist() == [True] * 5 + [False] + [True] * 2
    assert rows.error.iloc[5] == "empty file (0 bytes)" and rows.error.iloc[0] == ""
    assert "bytes" not in rows.columns
    vectors = np.stack(rows.embedding[rows.ok].to_numpy())
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)


def test_cli_embed_and_fit_on_ray(cluster, collection, tmp_path, capsys):
    """`concept embed DIR --store S --ray` then `concept fit DIR --store S --ray`: the second
    reuses every shard, saves an ordinary model and writes every image's label."""
    import shutil

    import pandas as pd

    from concept import ConceptModel
    from concept.cli import main

    images = tmp_path / "images"
    images.mkdir()
    for p in collection[:24]:  # includes the empty file (position 5)
        shutil.copy(p, images / f"{len(list(images.iterdir())):03d}-{Path(p).name}")
    (tmp_path / "words.txt").write_text("\n".join(WORDS))
    store = tmp_path / "shards"
    assert main(["embed", str(images), "--store", str(store), "--ray", "--embedding-model", "offline",
                 "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "24 files" in out and "1 embedded now" in out and "1 failed to load" in out
    assert main(["fit", str(images), "--out", str(tmp_path / "m"), "--store", str(store), "--ray",
                 "--embedding-model", "offline", "--docs", str(tmp_path / "words.txt"),
                 "--min-concept-size", "5", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "Model saved to" in out and "(fitted on 23)" in out
    model = ConceptModel.load(tmp_path / "m")
    labels = pd.concat([pd.read_parquet(f) for f in (tmp_path / "m.labels").glob("shard-*.parquet")])
    assert len(labels) == 24 and len(model.labels_) == 23
    assert (tmp_path / "m" / "failures.tsv").read_text().count("\n") == 2
    assert main(["fit", str(images), "--out", str(tmp_path / "m2"), "--ray", "--max-images", "0",
                 "--quiet"]) == 2
    assert "--max-images" in capsys.readouterr().err
    assert not (tmp_path / "m2.shards").exists()  # refused before any work


@pytest.fixture(scope="module")
def cli_folder(cluster, collection, tmp_path_factory) -> Path:
    """Every other image of the collection (three categories and text.png) copied to
    FOLDER/images and embedded by `concept embed --ray` into FOLDER/shards, with the words in
    FOLDER/words.txt: what the CLI's Ray fits below start from."""
    import shutil

    from concept.cli import main

    root = tmp_path_factory.mktemp("cli")
    (root / "images").mkdir()
    for i, p in enumerate(collection[::2]):
        shutil.copy(p, root / "images" / f"{i:03d}-{Path(p).name}")
    (root / "words.txt").write_text("\n".join(WORDS))
    assert main(["embed", str(root / "images"), "--store", str(root / "shards"), "--ray",
                 "--embedding-model", "offline", "--quiet"]) == 0
    return root


def _cli_fit(folder: Path, out: Path, *options: str, ray: bool = True) -> int:
    from concept.cli import main

    return main(["fit", str(folder / "images"), "--out", str(out), "--embedding-model", "offline",
                 "--docs", str(folder / "words.txt"), "--min-concept-size", "3", "--quiet", *options,
                 *(["--ray", "--store", str(folder / "shards")] if ray else [])])


def test_cli_fit_on_ray_merges_to_n_concepts(cli_folder, tmp_path):
    """`concept fit --ray --n-concepts N` (N was dropped on Ray): the saved model and every
    image's label in the labels shards have N concepts."""
    import pandas as pd

    from concept import ConceptModel

    assert _cli_fit(cli_folder, tmp_path / "m", "--n-concepts", "2") == 0
    model = ConceptModel.load(tmp_path / "m")
    assert model.n_concepts == 2 and model.n_concepts_ == 2
    labels = pd.concat([pd.read_parquet(f) for f in (tmp_path / "m.labels").glob("shard-*.parquet")])
    assert len(labels) == len(model.labels_) + 1  # text.png is in the shards, not in the model
    assert set(labels.label) <= {-1, 0, 1} and set(labels.label) >= {0, 1}


def test_cli_fit_on_ray_takes_seed_concepts(cli_folder, tmp_path):
    """`concept fit --ray --seed-concepts` (refused before): the seeds steer the fit on the
    driver, which finds the concepts the same command finds without Ray."""
    from concept import ConceptModel

    seeds = ("--seed-concepts", "apple,fruit;car,truck")
    assert _cli_fit(cli_folder, tmp_path / "ray", *seeds) == 0
    assert _cli_fit(cli_folder, tmp_path / "local", *seeds, ray=False) == 0
    model, local = ConceptModel.load(tmp_path / "ray"), ConceptModel.load(tmp_path / "local")
    assert model.seed_concepts == [["apple", "fruit"], ["car", "truck"]]
    assert model.seed_matches_ is not None and (model.seed_matches_ >= 0).any()
    np.testing.assert_array_equal(model.seed_matches_, local.seed_matches_)
    np.testing.assert_array_equal(model.labels_, local.labels_)
    assert model.topics == local.topics


def test_duplicates_of_the_stored_images_are_those_found_on_one_machine(shards, tmp_path):
    """Ray tasks read the pixels, the driver groups the shards' vectors: the same groups, representatives and
    uniqueness as find_duplicates over the same files and vectors in one process (pixels decide here)."""
    from concept.duplicates import find_duplicates

    data = read_embeddings(shards)
    on_ray = find_duplicates_on_ray(shards, batch_size=16)
    local = find_duplicates(list(data.kept_paths), embeddings=data.features)
    assert on_ray.n_images == len(data.kept_paths) == 60
    assert on_ray.exact == local.exact and on_ray.near == local.near and on_ray.near_threshold is None
    assert on_ray.paths == list(data.kept_paths)
    np.testing.assert_allclose(on_ray.uniqueness, local.uniqueness)
    assert find_duplicates_on_ray(shards, exact=False).near_threshold is not None  # no pixels: the cosine


def test_the_duplicates_command_on_a_folder_of_shards(shards, tmp_path, capsys):
    from concept.cli import main

    folder = shards.files[0].parent
    out = tmp_path / "dups.csv"
    assert main(["duplicates", str(folder), "--ray", "--out", str(out), "--quiet"]) == 0
    assert "near-duplicate groups (pixel-checked) among 60 images" in capsys.readouterr().out
    assert out.read_text().splitlines()[0].startswith("group,kind,row,path,kept")
    assert main(["duplicates", str(tmp_path), "--ray", "--quiet"]) == 2  # no shards there
    assert "holds no Parquet shards" in capsys.readouterr().err
