"""export_concepts: a fitted model's images sorted into one folder per concept, complete or absent."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import ColorEmbedder
from PIL import Image

from concept import ConceptError, ConceptModel, export
from concept.export import CSV_NAME, export_concepts, safe_name

COLOURS = {"red": (230, 20, 20), "green": (20, 200, 30), "blue": (20, 30, 220)}
pytestmark = pytest.mark.skipif(os.name != "posix", reason="symbolic links")


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A model fitted on 36 PNG files of three colours (a little noise in each)."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    paths = []
    for name, colour in COLOURS.items():
        for i in range(12):
            pixels = np.clip(np.array(colour) + rng.integers(-15, 16, (8, 8, 3)), 0, 255).astype(np.uint8)
            paths.append(folder / f"{name}_{i:02d}.png")
            Image.fromarray(pixels).save(paths[-1])
    model = ConceptModel(min_concept_size=5, embedding_model=ColorEmbedder(), random_state=0, verbose=False)
    model.fit([str(p) for p in paths], docs=list(ColorEmbedder.COLORS))
    assert model.n_concepts_ == 3
    return model


def _rows(out: Path) -> list[dict[str, str]]:
    with open(out / CSV_NAME, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def test_each_concept_gets_a_named_folder_of_links_and_a_csv_row_per_image(fitted, tmp_path):
    counts = export_concepts(fitted, tmp_path / "out")
    out = tmp_path / "out"
    assert counts == {"concepts": 3, "images": 36, "linked": 36, "missing": 0}
    rows = _rows(out)
    assert [r["path"] for r in rows] == [str(Path(p).resolve()) for p in fitted.image_sources_]
    for row in rows:
        c = int(row["concept"])
        link = out / row["exported"]
        assert link.is_symlink() and link.resolve() == Path(row["path"]) and row["status"] == "linked"
        colour = Path(row["path"]).name.split("_")[0]
        assert row["exported"].startswith(f"{c:03d}_{colour}")  # the folder says what is in it
        assert row["label"].split(", ")[0] == colour and fitted.topics[c][0] == colour
    assert sorted(p.name for p in out.iterdir()) == sorted({r["exported"].split("/")[0] for r in rows} | {CSV_NAME})


def test_copies_a_missing_file_is_listed_and_outliers_can_be_left_out(fitted, tmp_path):
    model = ConceptModel.__new__(ConceptModel)
    model.__dict__.update(fitted.__dict__)
    model.image_sources_ = [*fitted.image_sources_[:-1], str(tmp_path / "gone.png")]
    model.labels_ = fitted.labels_.copy()
    model.labels_[0] = -1  # one outlier
    out = tmp_path / "copies"
    counts = export_concepts(model, out, copy=True)
    assert counts["copied"] == 35 and counts["missing"] == 1 and counts["images"] == 35
    rows = _rows(out)
    assert rows[-1]["status"] == "missing" and rows[-1]["exported"] == ""
    assert rows[0]["exported"].startswith("outliers/") and rows[0]["confidence"] == "0.0000"
    copied = out / rows[1]["exported"]
    assert not copied.is_symlink() and copied.read_bytes() == Path(rows[1]["path"]).read_bytes()
    export_concepts(model, tmp_path / "no-outliers", include_outliers=False)
    rows = _rows(tmp_path / "no-outliers")
    assert rows[0]["status"] == "skipped" and not (tmp_path / "no-outliers" / "outliers").exists()


def test_never_writes_into_or_over_an_existing_folder(fitted, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(ConceptError, match="already exists"):
        export_concepts(fitted, mine)
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ConceptError, match="already exists"):
        export_concepts(fitted, tmp_path / "link")
    (tmp_path / "empty").mkdir()  # an empty folder is taken
    assert export_concepts(fitted, tmp_path / "empty")["images"] == 36
    assert (tmp_path / "empty" / CSV_NAME).is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "link", "mine"]  # nothing else left


def test_a_folder_filled_while_exporting_is_kept_and_the_export_dropped(fitted, tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    write = export._write

    def meanwhile(model, root, *args):
        (out / "theirs.txt").write_text("another program's")
        return write(model, root, *args)

    monkeypatch.setattr(export, "_write", meanwhile)
    with pytest.raises(ConceptError, match="written to while exporting"):
        export_concepts(fitted, out)
    assert [p.name for p in out.iterdir()] == ["theirs.txt"] and [p.name for p in tmp_path.iterdir()] == ["out"]


def test_a_failed_export_leaves_nothing(fitted, tmp_path, monkeypatch):
    def full(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(export.os, "symlink", full)
    with pytest.raises(OSError, match="disk full"):
        export_concepts(fitted, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_layers_and_unusable_models_are_checked(fitted, tmp_path):
    for bad in (len(fitted.layers_), -1, "0", 1.0):
        with pytest.raises(ConceptError, match="layer must be an integer"):
            export_concepts(fitted, tmp_path / "x", layer=bad)
    assert export_concepts(fitted, tmp_path / "finest", layer=0)["concepts"] == fitted.layer_sizes_[0]
    with pytest.raises(ConceptError, match="not fitted"):
        export_concepts(ConceptModel(), tmp_path / "x")
    on_arrays = ConceptModel(min_concept_size=5, embedding_model=None, verbose=False)
    on_arrays.fit(image_embeddings=np.eye(3, 8, dtype=np.float32).repeat(10, axis=0)
                  + np.random.default_rng(0).normal(0, 0.01, (30, 8)).astype(np.float32))
    with pytest.raises(ConceptError, match="no image file paths"):
        export_concepts(on_arrays, tmp_path / "x")
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(("text", "name"), [
    ("dog, puppy", "dog_ puppy"), ("../../etc/passwd", "etc_passwd"), ("..", "unnamed"),
    ("CON", "unnamed_CON"), ("nul.txt", "unnamed_nul.txt"), ("a/b\\c:d*e?\x00f", "a_b_c_d_e_f"),
    (" .hidden ", "hidden"), ("ﬁsh", "fish"), ("", "unnamed"),
])
def test_safe_name_gives_one_portable_visible_file_name(text, name):
    assert safe_name(text) == name
    assert len(safe_name("x" * 500)) == export.MAX_NAME and len(safe_name("y" * 50, limit=10)) == 10
