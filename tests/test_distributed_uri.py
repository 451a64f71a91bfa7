"""Images in a bucket: `concept embed|fit s3://bucket/prefix --ray` against the same files in a
local folder, on a local Ray cluster and a local S3 server (moto, no internet).

Skipped without ray or moto (both in the dev extra); the images are real OpenClipart PNGs.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")
moto_server = pytest.importorskip("moto.server")
boto3 = pytest.importorskip("boto3")

from concept.distributed import embed_to_parquet, fit, read_embeddings  # noqa: E402

OPENCLIPART = Path("/usr/share/openclipart/png")

pytestmark = pytest.mark.slow
WORDS = ["dog", "cat", "bird", "apple", "bread", "cake", "car", "train", "boat", "animal", "food", "vehicle"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """About 36 OpenClipart PNGs of three categories in subfolders, an empty .png, a hidden file."""
    if not OPENCLIPART.is_dir():
        pytest.skip("Debian package openclipart-png is not installed")
    root = tmp_path_factory.mktemp("images")
    for category in ("animals", "food", "transportation"):
        (root / category).mkdir()
        for p in sorted((OPENCLIPART / category).rglob("*.png"))[:12]:
            shutil.copy(p, root / category / p.name)
    (root / "food" / "empty.png").write_bytes(b"")
    (root / ".hidden.png").write_bytes(b"")
    return root


@pytest.fixture(scope="module")
def bucket(folder):
    """The folder uploaded to a local S3 server; yields the URI with the server's options."""
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="test", aws_secret_access_key="test",
                      region_name="us-east-1")
    s3.create_bucket(Bucket="photos")
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            s3.upload_file(str(p), "photos", f"set/{p.relative_to(folder).as_posix()}")
    yield f"s3://test:test@photos/set?scheme=http&endpoint_override={host}:{port}&region=us-east-1"
    server.stop()


def test_bucket_embeds_as_the_local_folder(cluster, folder, bucket, tmp_path):
    from concept.images import list_image_files

    local = embed_to_parquet(list_image_files(folder), tmp_path / "local", "offline", shard_size=16)
    remote = embed_to_parquet(bucket, tmp_path / "remote", "offline", shard_size=16)
    a, b = read_embeddings(local), read_embeddings(remote)
    # The same files in the same order (sorted by their path under the folder / prefix), the
    # hidden file left out, as by list_image_files.
    assert [Path(p).relative_to(folder).as_posix() for p in a.paths] == [p.split("/set/", 1)[1] for p in b.paths]
    assert b.paths[0].startswith("s3://photos/set/") and "test:test" not in "".join(b.paths)
    np.testing.assert_array_equal(a.kept, b.kept)
    np.testing.assert_array_equal(a.embeddings, b.embeddings)  # same loader, same bytes
    np.testing.assert_array_equal(a.features, b.features)
    assert [(f.index, f.reason) for f in a.failures] == [(f.index, f.reason) for f in b.failures]
    assert [f.reason for f in b.failures] == ["empty file (0 bytes)"]
    again = embed_to_parquet(bucket, tmp_path / "remote", "offline", shard_size=16)
    assert again.embedded == 0 and again.reused == len(remote.shards) == 3


def test_bucket_fit_equals_local_folder_fit_and_cli(cluster, folder, bucket, tmp_path, capsys):
    from concept import ConceptError, ConceptModel
    from concept.cli import main
    from concept.images import list_image_files

    settings = {"min_concept_size": 4, "embedding_model": "offline", "random_state": 2, "verbose": False}
    local = fit(ConceptModel(**settings), embed_to_parquet(list_image_files(folder), tmp_path / "ls", "offline"),
                tmp_path / "ll", docs=WORDS).model
    remote = fit(ConceptModel(**settings), embed_to_parquet(bucket, tmp_path / "rs", "offline"),
                 tmp_path / "rl", docs=WORDS).model
    np.testing.assert_array_equal(remote.labels_, local.labels_)
    assert remote.topics == local.topics
    assert remote.image_sources_[0].startswith("s3://photos/set/")
    assert sorted(remote.collages_) == sorted(local.collages_) and remote.collages_  # exemplars fetched
    remote.save(tmp_path / "m")
    np.testing.assert_array_equal(ConceptModel.load(tmp_path / "m").labels_, local.labels_)

    (tmp_path / "words.txt").write_text("\n".join(WORDS))
    assert main(["fit", bucket, "--out", str(tmp_path / "cli"), "--ray", "--embedding-model", "offline",
                 "--docs", str(tmp_path / "words.txt"), "--min-concept-size", "4", "--seed", "2",
                 "--quiet"]) == 0
    out = capsys.readouterr().out
    n = len(list_image_files(folder))
    assert f"{n} images from s3://photos/set in" in out and f"(fitted on {n - 1})" in out
    assert "test:test" not in out and "endpoint_override" not in out  # no credentials printed
    np.testing.assert_array_equal(ConceptModel.load(tmp_path / "cli").labels_, local.labels_)
    with pytest.raises(ConceptError, match="s3://photos/nothing-here") as missing:
        embed_to_parquet(bucket.replace("/set?", "/nothing-here?"), tmp_path / "none", "offline")
    assert "test:test" not in str(missing.value)


def test_file_uri_reads_through_pyarrow(cluster, folder, tmp_path):
    """A file:// URI takes the same route as a bucket (pyarrow's LocalFileSystem)."""
    from concept.images import list_image_files

    local = read_embeddings(embed_to_parquet(list_image_files(folder), tmp_path / "a", "offline"))
    uri = read_embeddings(embed_to_parquet(f"file://{folder}", tmp_path / "b", "offline"))
    assert uri.paths == [f"file://{p}" for p in local.paths]
    np.testing.assert_array_equal(uri.embeddings, local.embeddings)


def test_bucket_fit_takes_seed_concepts_and_n_concepts(cluster, bucket, tmp_path):
    """`concept fit s3://... --ray` gives the model --seed-concepts and --n-concepts (the URI
    path dropped both without a word)."""
    from concept import ConceptModel
    from concept.cli import main

    (tmp_path / "words.txt").write_text("\n".join(WORDS))
    assert main(["fit", bucket, "--out", str(tmp_path / "m"), "--ray", "--embedding-model", "offline",
                 "--docs", str(tmp_path / "words.txt"), "--min-concept-size", "4", "--seed", "2",
                 "--seed-concepts", "apple,fruit;car,truck", "--n-concepts", "2", "--quiet"]) == 0
    model = ConceptModel.load(tmp_path / "m")
    assert model.seed_concepts == [["apple", "fruit"], ["car", "truck"]]
    assert model.seed_matches_ is not None and len(model.seed_matches_) == len(model.labels_)
    assert model.n_concepts == 2 and model.n_concepts_ == 2
    assert model.image_sources_[0].startswith("s3://photos/set/") and model.collages_
