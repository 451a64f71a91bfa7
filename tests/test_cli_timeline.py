"""`concept info --images` and `concept timeline`, run through `main(argv)` on a model saved
from real JPEGs with dates in their EXIF headers (written with Pillow)."""

from __future__ import annotations

import csv
import os
from datetime import datetime

import pandas as pd
import pytest
from conftest import ColorEmbedder
from PIL import ExifTags, Image
from test_cli import assert_one_line_error, run

from concept import ConceptModel
from concept.over_time import DATE_TIME, DATE_TIME_ORIGINAL

# colour -> the EXIF DateTimeOriginal of its 6 photos (None: no EXIF)
PLAN = {(220, 20, 20): ["2021:05:02 10:00:00"] * 6,
        (20, 200, 40): ["2021:07:20 10:00:00"] * 4 + ["2021:13:40 99:99:99", None],
        (30, 40, 230): [None] * 6}


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("timeline")
    paths = []
    for k, (rgb, dates) in enumerate(PLAN.items()):
        for i, date in enumerate(dates):
            path = root / f"c{k}_{i}.jpg"
            image = Image.new("RGB", (24 + i, 20), rgb)
            if date is None:
                image.save(path)
            else:
                exif = Image.Exif()
                exif.get_ifd(ExifTags.IFD.Exif)[DATE_TIME_ORIGINAL] = date
                if ":13:" not in date:  # a garbled original stays alone (with a DateTime, that would date it)
                    exif[DATE_TIME] = "2000:01:01 00:00:00"  # older and other: DateTimeOriginal must win
                image.save(path, exif=exif)
            paths.append(str(path))
    model = ConceptModel(min_concept_size=5, embedding_model=ColorEmbedder(), random_state=0, verbose=False)
    model.fit(paths, docs=["red", "green", "blue"])
    model.embedding_model = None  # these commands need no embedding model (and the test one has no name to load by)
    model.save(root / "model")
    return {"root": root, "model": root / "model", "paths": paths, "labels": model.labels_.tolist()}


def test_info_images_prints_one_tab_separated_row_per_image(saved, capsys):
    code, out, err = run(capsys, "info", saved["model"], "--images", "--quiet")
    assert code == 0, err
    lines = out.strip().splitlines()
    header = lines[0].split("\t")
    assert header[:3] == ["Image", "Input", "Concept"]
    rows = [line.split("\t") for line in lines[1:]]
    assert [r[0] for r in rows] == saved["paths"]
    assert [int(r[2]) for r in rows] == saved["labels"]


@pytest.mark.parametrize("suffix", [".csv", ".tsv"])
def test_info_images_writes_the_table_with_exif_dates(saved, tmp_path, capsys, suffix):
    out_file = tmp_path / f"images{suffix}"
    code, out, err = run(capsys, "info", saved["model"], "--images", "--exif", "--out", out_file, "--quiet")
    assert code == 0, err
    assert f"Table of 18 images written to {out_file}" in out
    with open(out_file, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="," if suffix == ".csv" else "\t"))
    assert len(rows) == 18 and rows[0]["Image"] == saved["paths"][0]
    assert [r["Date status"] for r in rows] == ["exif"] * 10 + ["unreadable", "missing"] + ["missing"] * 6
    assert pd.Timestamp(rows[0]["Date"]) == pd.Timestamp("2021-05-02 10:00:00")
    assert rows[10]["Date"] == ""
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left behind


def test_info_images_options_are_checked(saved, tmp_path, capsys):
    assert_one_line_error(*run(capsys, "info", saved["model"], "--images", "--out", tmp_path / "t.xlsx",
                               "--quiet")[::2], ".csv or .tsv")
    assert not (tmp_path / "t.xlsx").exists()
    assert_one_line_error(*run(capsys, "info", saved["model"], "--out", tmp_path / "t.csv", "--quiet")[::2],
                          "add --images")
    assert_one_line_error(*run(capsys, "info", saved["model"], "--images", "--layer", "0", "--quiet")[::2],
                          "--layer")


def test_timeline_writes_the_figure_and_its_table_with_exact_counts(saved, tmp_path, capsys):
    figure = tmp_path / "timeline.png"
    code, out, err = run(capsys, "timeline", saved["model"], "--exif", "--bins", "MS", "--out", figure, "--quiet")
    assert code == 0, err
    with Image.open(figure) as im:
        assert im.format == "PNG" and im.width > 300
    table = pd.read_csv(tmp_path / "timeline.csv")
    assert list(table.columns) == ["Timestamp", "Concept", "Frequency", "Name", "Words"]
    red, green, blue = saved["labels"][0], saved["labels"][6], saved["labels"][12]
    counts = {(t if isinstance(t, str) else None, c): f for t, c, f in zip(table.Timestamp, table.Concept,
                                                                           table.Frequency)}
    assert counts[("2021-05-01", red)] == 6 and counts[("2021-07-01", green)] == 4
    assert counts[(None, green)] == 2 and counts[(None, blue)] == 6 and counts[(None, red)] == 0
    assert sum(counts.values()) == 18
    assert len({t for t, _ in counts if t}) == 3  # May, June (empty) and July
    assert "10 images dated (10 exif); 8 without a date (7 none, 1 unreadable)" in out
    assert str(figure) in out and str(tmp_path / "timeline.csv") in out


def test_timeline_from_a_dates_file_and_with_file_times(saved, tmp_path, capsys):
    dates = tmp_path / "dates.tsv"
    dates.write_text("".join(f"{p}\t2019-0{1 + i % 3}-15\n" for i, p in enumerate(saved["paths"][:9])), "utf-8")
    code, out, err = run(capsys, "timeline", saved["model"], "--dates", dates, "--bins", "3",
                         "--out", tmp_path / "t.svg", "--quiet")
    assert code == 0, err
    assert "9 images dated (9 given); 9 without a date (9 none, 0 unreadable)" in out
    assert (tmp_path / "t.svg").read_text(encoding="utf-8").lstrip().startswith("<?xml")
    stamp = datetime(2015, 3, 3).timestamp()
    for p in saved["paths"][12:]:
        os.utime(p, (stamp, stamp))
    code, out, err = run(capsys, "timeline", saved["model"], "--mtime", "--out", tmp_path / "m.png", "--quiet")
    assert code == 0, err
    # the garbled date is replaced by its file's time too when --mtime asks: every image is dated
    assert "18 images dated (10 exif, 8 mtime); 0 without a date" in out


def test_timeline_errors_are_one_line_and_write_nothing(saved, tmp_path, capsys):
    empty = tmp_path / "none.tsv"
    empty.write_text("\n", "utf-8")
    code, out, err = run(capsys, "timeline", saved["model"], "--dates", empty, "--out", tmp_path / "t.png", "--quiet")
    assert code == 2 and "Traceback" not in err  # the library's warning of the undated images, then the error
    assert err.strip().splitlines()[-1].startswith("concept: error: none of the 18 images has a date")
    assert not (tmp_path / "t.png").exists() and not (tmp_path / "t.csv").exists()
    assert_one_line_error(*run(capsys, "timeline", saved["model"], "--out", tmp_path / "t.csv", "--quiet")[::2],
                          "image file")
    assert_one_line_error(*run(capsys, "timeline", saved["model"], "--bins", "fortnight", "--out",
                               tmp_path / "t.png", "--quiet")[::2], "pandas frequency")
    bad = tmp_path / "bad.tsv"
    bad.write_text("no tab here\n", "utf-8")
    assert_one_line_error(*run(capsys, "timeline", saved["model"], "--dates", bad, "--out", tmp_path / "t.png",
                               "--quiet")[::2], "line 1")
    with pytest.raises(SystemExit):
        run(capsys, "timeline", saved["model"], "--exif", "--dates", bad, "--out", tmp_path / "t.png")
