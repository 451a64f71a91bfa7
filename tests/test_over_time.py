"""Concepts over time (`concept.over_time`, `ConceptModel.concepts_over_time`): dates read from
real JPEGs' EXIF headers written with Pillow, counted exactly per month and concept."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import ColorEmbedder
from matplotlib.figure import Figure
from conftest import write_dated_jpeg
from PIL import Image

from concept import ConceptModel
from concept._errors import ConceptError
from concept.over_time import (
    exif_date,
    exif_dates,
    given_dates,
    over_time_table,
    parse_exif_datetime,
)

COLORS = {"red": (220, 20, 20), "green": (20, 200, 40), "blue": (30, 40, 230)}
GARBLED = "2020:13:45 99:99:99"
BLANK = "    :  :     :  :  "

# Per colour, 10 JPEGs: (DateTimeOriginal, DateTime) of each; None = tag not written.
PLAN = {
    "red": [("2020:01:10 10:00:00", None)] * 4 + [("2020:02:15 08:30:00", None)] * 3
    + [("2020:03:20 18:00:00", "2021:01:01 00:00:00")] * 3,  # DateTimeOriginal wins over DateTime
    "green": [("2020:02:01 00:00:00", None)] * 5 + [(None, "2020:03:05 12:00:00")] * 3  # only DateTime
    + [(GARBLED, None)] * 2,  # garbled and nothing else: unreadable
    "blue": [(None, None)] * 4  # no EXIF at all
    + [("2020:01:31 23:59:59", None)] * 3 + [(GARBLED, "2020:03:01 09:00:00")]  # garbled original, good DateTime
    + [(BLANK, None), ("0000:00:00 00:00:00", None)],  # no date recorded: missing
}
# What the plan gives per calendar month ("MS") and colour; None: no date.
EXPECTED = {
    "red": {"2020-01-01": 4, "2020-02-01": 3, "2020-03-01": 3},
    "green": {"2020-02-01": 5, "2020-03-01": 3, None: 2},
    "blue": {"2020-01-01": 3, "2020-03-01": 1, None: 6},
}


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("dated")
    paths = []
    for color, plan in PLAN.items():
        (root / color).mkdir()
        for i, (original, changed) in enumerate(plan):
            path = root / color / f"{color}_{i:02d}.jpg"
            write_dated_jpeg(path, original, changed, COLORS[color], (24 + i, 24))
            paths.append(path)
    return paths


@pytest.fixture(scope="module")
def model(photos) -> ConceptModel:
    m = ConceptModel(min_concept_size=5, embedding_model=ColorEmbedder(), random_state=0, verbose=False)
    return m.fit([str(p) for p in photos], docs=list(COLORS))


def color_concepts(model: ConceptModel, photos: list[Path]) -> dict[str, int]:
    """Each colour's concept; the fit must put each colour in a concept of its own."""
    out = {}
    for color in COLORS:
        rows = [i for i, p in enumerate(photos) if p.parent.name == color]
        assert len(set(model.labels_[rows].tolist())) == 1, model.labels_
        out[color] = int(model.labels_[rows[0]])
    assert len(set(out.values())) == 3 and min(out.values()) >= 0
    return out


@pytest.mark.parametrize(("value", "expected"), [
    ("2021:07:14 16:05:09", ("2021-07-14 16:05:09", "exif")),
    (b"2021:07:14 16:05:09\x00", ("2021-07-14 16:05:09", "exif")),
    ("2021-07-14 16:05:09", ("2021-07-14 16:05:09", "exif")),
    ("2021:07:14", ("2021-07-14", "exif")),
    (GARBLED, (None, "unreadable")),
    ("yesterday", (None, "unreadable")),
    ("0100:01:01 00:00:00", (None, "unreadable")),  # before datetime64[ns]'s first year, 1678
    (BLANK, (None, "missing")),
    ("0000:00:00 00:00:00", (None, "missing")),
    ("", (None, "missing")),
    (None, (None, "missing")),
])
def test_an_exif_date_time_is_read_or_said_to_be_missing_or_unreadable(value, expected):
    when, status = parse_exif_datetime(value)
    assert (None if when is None else when, status) == (None if expected[0] is None else pd.Timestamp(expected[0]),
                                                        expected[1])


def test_exif_dates_of_the_files_are_read_and_counted_by_status(photos):
    dates = exif_dates([str(p) for p in photos])
    assert dates.counts() == {"exif": 22, "missing": 6, "unreadable": 2}
    by_name = {p.name: (status, value) for p, status, value in zip(photos, dates.status, dates.values)}
    assert by_name["red_07.jpg"] == ("exif", np.datetime64("2020-03-20T18:00:00"))  # the original, not DateTime
    assert by_name["green_05.jpg"] == ("exif", np.datetime64("2020-03-05T12:00:00"))  # DateTime alone
    assert by_name["green_08.jpg"][0] == "unreadable" and np.isnat(by_name["green_08.jpg"][1])
    assert by_name["blue_07.jpg"] == ("exif", np.datetime64("2020-03-01T09:00:00"))  # garbled original, good DateTime
    assert by_name["blue_08.jpg"][0] == by_name["blue_00.jpg"][0] == "missing"
    assert dates.values.dtype == np.dtype("datetime64[ns]")


def test_concepts_over_time_counts_each_month_and_the_undated_exactly(model, photos):
    concept = color_concepts(model, photos)
    df = model.concepts_over_time(bins="MS")
    assert list(df.columns) == ["Timestamp", "Concept", "Frequency", "Name", "Words"]
    assert df.attrs["dates"] == {"exif": 22, "missing": 6, "unreadable": 2}
    months = ["2020-01-01", "2020-02-01", "2020-03-01"]
    assert [str(t.date()) for t in df.Timestamp.dropna().unique()] == months  # in time order
    assert len(df) == 4 * 3  # every (month, concept), zeros included, and the undated rows
    got = {(None if pd.isna(t) else str(t.date()), int(c)): int(f)
           for t, c, f in zip(df.Timestamp, df.Concept, df.Frequency)}
    want = {(m, concept[color]): EXPECTED[color].get(m, 0) for color in COLORS for m in [*months, None]}
    assert got == want
    assert int(df.Frequency.sum()) == len(model.labels_)
    assert df.Timestamp.iloc[-3:].isna().all()  # the undated rows come last
    names, words = dict(zip(df.Concept, df.Name)), dict(zip(df.Concept, df.Words))
    assert names[concept["red"]] == ", ".join(model.topics[concept["red"]][:3])
    assert words[concept["red"]] == ", ".join(model.topics[concept["red"]])


def test_a_number_of_bins_splits_first_to_last_date_evenly(model, photos):
    concept = color_concepts(model, photos)
    df = model.concepts_over_time(bins=2)
    starts = df.Timestamp.dropna().unique()
    first, last = pd.Timestamp("2020-01-10 10:00:00"), pd.Timestamp("2020-03-20 18:00:00")
    assert list(starts) == [first, first + (last - first) / 2]
    dated = df[df.Timestamp.notna()]
    early = dated[dated.Timestamp == first].set_index("Concept").Frequency
    # before 2020-02-14 14:00: red's January 4, blue's 3, green's 5 (1 February)
    assert early.to_dict() == {concept["red"]: 4, concept["green"]: 5, concept["blue"]: 3}
    assert int(dated.Frequency.sum()) == 22
    one = model.concepts_over_time(bins=None)  # each distinct date its own bin
    assert one.Timestamp.nunique() == 7


def test_given_timestamps_are_per_fitted_or_per_input_image(photos):
    paths = [str(p) for p in photos] + ["/nowhere/gone.jpg"]  # the last input cannot be read
    m = ConceptModel(min_concept_size=5, embedding_model=ColorEmbedder(), random_state=0, verbose=False)
    m.fit(paths, docs=list(COLORS))
    assert len(m.labels_) == 30 and len(m.failures_) == 1
    per_input = ["2019-06-01"] * 10 + ["2019-07-01"] * 10 + [None] * 9 + ["not a date", "2030-01-01"]
    per_row = per_input[:30]
    a = m.concepts_over_time(per_input, bins="MS")
    b = m.concepts_over_time(per_row, bins="MS")
    pd.testing.assert_frame_equal(a, b)
    assert a.attrs["dates"] == {"given": 20, "missing": 9, "unreadable": 1}
    assert "2030" not in " ".join(map(str, a.Timestamp))  # the unreadable input's date is not used
    with pytest.raises(ConceptError, match=r"29 values.*30.*31"):
        m.concepts_over_time(per_input[:29])
    with pytest.raises(ConceptError, match="mtime"):
        m.concepts_over_time(per_row, mtime=True)


def test_dates_are_never_taken_from_the_files_time_unless_asked(photos, tmp_path):
    path = tmp_path / "plain.jpg"
    write_dated_jpeg(path, None, None, COLORS["red"], (24, 24))
    stamp = datetime(2011, 11, 11, 11, 11, 11).timestamp()
    os.utime(path, (stamp, stamp))
    assert exif_date(path) == (None, "missing")
    assert exif_date(path, mtime=True) == (pd.Timestamp("2011-11-11 11:11:11"), "mtime")
    garbled = photos[18]  # green_08: a garbled DateTimeOriginal and nothing else
    assert exif_date(garbled) == (None, "unreadable")
    assert exif_date(garbled, mtime=True)[1] == "mtime"
    assert exif_date(photos[0], mtime=True) == (pd.Timestamp("2020-01-10 10:00:00"), "exif")
    assert exif_date(tmp_path / "absent.jpg", mtime=True) == (None, "missing")
    assert exif_date(tmp_path) == (None, "missing")  # a folder is not opened


def test_exif_needs_image_files(model):
    images = [Image.new("RGB", (20, 20), rgb) for rgb in COLORS.values() for _ in range(6)]
    m = ConceptModel(min_concept_size=5, embedding_model=ColorEmbedder(), random_state=0, verbose=False)
    m.fit(images, docs=list(COLORS))
    with pytest.raises(ConceptError, match="not fitted on image files"):
        m.concepts_over_time()
    with pytest.raises(ConceptError, match="'exif'"):
        m.concepts_over_time("camera")
    assert int(m.concepts_over_time(["2020-01-01"] * 18).Frequency.sum()) == 18


def test_given_dates_read_what_pandas_reads_and_count_the_rest():
    d = given_dates([datetime(2020, 1, 5), "2020-03-01", pd.Timestamp("2020-02-02"), np.datetime64("2020-04-04"),
                     None, float("nan"), "", "garbage", 7, "2021-01-01T10:00:00+02:00"])
    assert d.status.tolist() == ["given"] * 4 + ["missing"] * 3 + ["unreadable"] * 2 + ["given"]
    assert d.values[-1] == np.datetime64("2021-01-01T08:00:00")  # to UTC, the zone dropped
    assert given_dates(["0100-01-01", "3000-01-01"]).status.tolist() == ["unreadable"] * 2  # beyond 1678-2261
    years = given_dates([2001, 2003, None, 2002.5])
    assert years.numeric and years.status.tolist() == ["given", "given", "missing", "given"]
    df = over_time_table(np.array([0, 0, 1, 1]), years, 2, {0: [("a", 1.0)], 1: [("b", 1.0)]})
    assert df.Timestamp.tolist()[:4] == [2001.0, 2001.0, 2002.0, 2002.0]
    assert df.Frequency.tolist() == [1, 0, 1, 1, 0, 1]  # 2001 | 2002.5, 2003 | undated
    with pytest.raises(ConceptError, match="plain numbers"):
        over_time_table(np.array([0, 0, 1, 1]), years, "YS", {})


def test_a_bad_frequency_or_bin_count_is_a_clear_error(model):
    with pytest.raises(ConceptError, match="pandas frequency"):
        model.concepts_over_time(bins="fortnightly")
    with pytest.raises(ConceptError, match="bins"):
        model.concepts_over_time(bins=0)


def test_every_layer_can_be_read_over_time(model):
    for layer in range(len(model.layers_)):
        df = model.concepts_over_time(bins="MS", layer=layer)
        assert int(df.Frequency.sum()) == 30
        assert set(df.Concept) == set(np.unique(model.layers_[layer]).tolist())
    with pytest.raises(ConceptError, match="layer"):
        model.concepts_over_time(layer=len(model.layers_))


def test_the_figure_draws_a_line_per_concept_over_the_dated_months(model, photos):
    concept = color_concepts(model, photos)
    table = model.concepts_over_time(bins="MS")
    fig = model.visualize_concepts_over_time(table, top_n=2)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert [line.get_label()[:2] for line in ax.lines] == ["0:", "1:"]  # 10 images each: the smallest ids
    red = model.visualize_concepts_over_time(table, concepts=[concept["red"]]).axes[0].lines
    assert len(red) == 1 and red[0].get_ydata().tolist() == [4, 3, 3]
    assert "8 of 30 images have no date" in ax.get_title(loc="left")
    shares = model.visualize_concepts_over_time(table, concepts=[concept["blue"]], normalize=True).axes[0].lines[0]
    assert np.allclose(shares.get_ydata(), [3 / 7, 0 / 8, 1 / 7])
    stacked = model.visualize_concepts_over_time(table, stacked=True)
    assert len(stacked.axes[0].collections) == 3
    with pytest.raises(ConceptError, match="not in the table"):
        model.visualize_concepts_over_time(table, concepts=[99])
    none = model.concepts_over_time([None] * 30)
    with pytest.raises(ConceptError, match="No image has a date"):
        model.visualize_concepts_over_time(none)


def test_the_image_table_shows_each_images_date_when_asked(model, photos):
    assert "Date" not in model.get_image_info().columns  # no file is opened unless asked
    df = model.get_image_info("exif")
    by_name = {Path(f).name: (d, s) for f, d, s in zip(df.Image, df.Date, df["Date status"])}
    assert by_name["red_07.jpg"] == (pd.Timestamp("2020-03-20 18:00:00"), "exif")
    assert by_name["green_08.jpg"][1] == "unreadable" and pd.isna(by_name["green_08.jpg"][0])
    assert by_name["blue_00.jpg"][1] == "missing"
    given = model.get_image_info(["2021-06-01"] * len(model.labels_))
    assert (given.Date == pd.Timestamp("2021-06-01")).all()
