"""`concept fit --n-concepts`, `concept edit`, `concept evaluate` and `concept update` on a tiny
folder of solid-colour images with a tiny random CLIP (see test_cli.py)."""

from __future__ import annotations

import shutil

from test_cli import assert_one_line_error, docs_file, image_dir, run  # noqa: F401 (fixtures)

from concept.model import ConceptModel


def fit(capsys, image_dir, docs_file, tiny_clip, out, *extra):  # noqa: F811 (fixtures)
    code, stdout, err = run(capsys, "fit", image_dir, "--docs", docs_file, "--out", out, "--embedding-model",
                            tiny_clip, "--min-concept-size", "5", "--quiet", *extra)
    assert code == 0, err
    return stdout


def test_fit_n_concepts_then_edit_and_evaluate(image_dir, docs_file, tiny_clip, tmp_path, capsys):  # noqa: F811 (fixtures)
    out = tmp_path / "m"
    fit(capsys, image_dir, docs_file, tiny_clip, out, "--n-concepts", "2")
    model = ConceptModel.load(out, embedding_model=str(tiny_clip))
    assert model.n_concepts_ == 2

    code, stdout, err = run(capsys, "evaluate", out, "--truth", "folder", "--embedding-model", tiny_clip)
    assert code == 0, err
    scores = dict(line.split("\t") for line in stdout.strip().splitlines())
    assert {"nmi", "ari", "nmi_clustered", "fraction_clustered", "silhouette"} <= set(scores)
    assert 0 <= float(scores["nmi"]) <= 1

    code, stdout, err = run(capsys, "edit", out, "--merge", "0,1", "--label", "0=everything",
                            "--embedding-model", tiny_clip)
    assert code == 0, err
    assert "merge: 1->0" in stdout and "everything" in stdout
    edited = ConceptModel.load(out, embedding_model=str(tiny_clip))
    assert edited.n_concepts_ == 1 and edited.custom_labels_ == {0: "everything"}

    code, _, err = run(capsys, "edit", out, "--merge", "0,7", "--embedding-model", tiny_clip)
    assert_one_line_error(code, err, "not a concept id")
    code, _, err = run(capsys, "edit", out, "--embedding-model", tiny_clip)
    assert_one_line_error(code, err, "nothing to do")
    code, _, err = run(capsys, "evaluate", out, "--truth", tmp_path / "missing.tsv", "--embedding-model", tiny_clip)
    assert code == 2 and "missing.tsv" in err


def test_update_adds_only_the_new_images_and_keeps_ids(image_dir, docs_file, tiny_clip, tmp_path, capsys):  # noqa: F811 (fixtures)
    start = tmp_path / "images"
    shutil.copytree(image_dir, start, ignore=shutil.ignore_patterns("blue", "bad.png"))
    out = tmp_path / "m"
    fit(capsys, start, docs_file, tiny_clip, out)
    before = ConceptModel.load(out, embedding_model=str(tiny_clip))
    shutil.copytree(image_dir / "blue", start / "blue")
    code, stdout, err = run(capsys, "update", out, start, "--embedding-model", tiny_clip, "--quiet")
    assert code == 0, err
    assert stdout.startswith("15 new images")
    after = ConceptModel.load(out, embedding_model=str(tiny_clip))
    assert len(after.labels_) == len(before.labels_) + 15
    assert (after.labels_[:len(before.labels_)] == before.labels_).all()
    code, stdout, err = run(capsys, "update", out, start, "--embedding-model", tiny_clip, "--quiet")
    assert code == 0 and "0 new images" in stdout
