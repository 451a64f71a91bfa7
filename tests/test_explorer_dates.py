"""The explorer's dates (issue 26): what the page gets for its time histogram, and that no file is
opened for dates unless they are asked for. The page's own histogram and filter are tested in a
browser (test_explorer_browser.py)."""

from __future__ import annotations

import json
import logging
import os
import re
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from conftest import write_dated_jpeg

import concept.over_time
from concept._errors import ConceptError
from concept.explorer import make_server, write_report
from concept.explorer.data import page_data, page_dates
from concept.testing import LayeredMapModel

DAY = 86400.0


def days(text: str) -> float:
    """Days since 1970-01-01 of a naive date-time text, as the page gets them."""
    return round((datetime.fromisoformat(text) - datetime(1970, 1, 1)).total_seconds() / DAY, 5)


def page_json(html: str) -> dict:
    match = re.search(r'<script type="application/json" id="concept-data">(.*?)</script>', html, re.DOTALL)
    assert match, "the page holds no data block"
    return json.loads(match.group(1))


@pytest.fixture
def photos(tmp_path) -> list[Path]:
    """Four JPEGs: an EXIF original date, only a DateTime, none, a garbled one."""
    return [write_dated_jpeg(tmp_path / "a.jpg", "2021:07:14 16:05:09"),
            write_dated_jpeg(tmp_path / "b.jpg", None, "2019:01:02 03:04:05"),
            write_dated_jpeg(tmp_path / "c.jpg", None),
            write_dated_jpeg(tmp_path / "d.jpg", "2021:13:45 99:99:99")]


def small_model(n: int = 40, sources=None) -> LayeredMapModel:
    return LayeredMapModel(n=n, groups=2, per=2, seed=1, sources=sources)


def test_given_dates_become_days_since_1970_with_none_where_unknown():
    model = small_model(6)
    given = ["2021-07-14 16:05:09", None, "not a date", "", np.datetime64("1969-12-31T12:00"), "2000-02-29"]
    dates = page_dates(model, given)
    assert dates["kind"] == "date"
    assert dates["values"] == [days("2021-07-14T16:05:09"), None, None, None, -0.5, days("2000-02-29")]
    assert dates["dated"] == 3 and dates["undated"] == 3
    assert dates["status"] == {"given": 3, "missing": 2, "unreadable": 1}


def test_plain_numbers_stay_numbers():
    dates = page_dates(small_model(4), [1999, 2003, None, 2003.5])
    assert dates["kind"] == "number"
    assert dates["values"] == [1999.0, 2003.0, None, 2003.5]


def test_dates_per_input_image_are_matched_to_the_fitted_rows():
    """Like concepts_over_time: one date per input image, the unreadable ones included."""
    model = small_model(3)
    model.image_indices_ = np.array([0, 2, 3])
    model.failures_ = [object()]  # input 1 could not be read
    dates = page_dates(model, ["2020-01-01", "2020-01-02", "2020-01-03", "2020-01-04"])
    assert dates["values"] == [days("2020-01-01"), days("2020-01-03"), days("2020-01-04")]
    assert page_dates(model, ["2020-01-01"] * 3)["dated"] == 3  # or one per fitted image


def test_bad_dates_options_are_refused():
    model = small_model(5)
    with pytest.raises(ConceptError, match="one per fitted image"):
        page_dates(model, ["2020-01-01"] * 4)
    with pytest.raises(ConceptError, match="'exif'"):
        page_dates(model, "yes")
    with pytest.raises(ConceptError, match="not fitted on image files"):
        page_dates(model, "exif")  # no files to read
    with pytest.raises(ConceptError, match="mtime"):
        page_dates(model, ["2020-01-01"] * 5, mtime=True)
    with pytest.raises(ConceptError, match="mtime"):
        page_dates(model, None, mtime=True)


def test_no_dated_image_means_no_histogram(caplog):
    with caplog.at_level(logging.WARNING, logger="concept.explorer.data"):
        assert page_dates(small_model(3), [None, "", "garbage"]) is None
    assert "no time histogram" in caplog.text


def test_exif_dates_are_read_only_when_asked(photos, tmp_path, monkeypatch):
    model = small_model(4, sources=[str(p) for p in photos])
    calls = []
    real = concept.over_time.exif_date

    def counting(path, *, mtime=False):
        calls.append(Path(path).name)
        return real(path, mtime=mtime)

    def refuse(*args, **kwargs):
        raise AssertionError("a file's EXIF was read though no dates were asked for")

    monkeypatch.setattr(concept.over_time, "exif_date", refuse)
    page = write_report(model, tmp_path / "plain.html", verbose=False)
    assert page_json(page.read_text(encoding="utf-8"))["dates"] is None
    server = make_server(tmp_path, model=model, port=0, prepare_thumbnails=False)
    try:
        assert b'"dates":null' in server.app.page
    finally:
        server.server_close()

    monkeypatch.setattr(concept.over_time, "exif_date", counting)
    page = write_report(model, tmp_path / "dated.html", verbose=False, dates="exif")
    assert sorted(calls) == ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]
    dates = page_json(page.read_text(encoding="utf-8"))["dates"]
    assert dates["values"] == [days("2021-07-14T16:05:09"), days("2019-01-02T03:04:05"), None, None]
    assert dates["status"] == {"exif": 2, "missing": 1, "unreadable": 1}


def test_mtime_dates_the_files_without_exif(photos):
    model = small_model(4, sources=[str(p) for p in photos])
    stamp = datetime(2010, 5, 6, 7, 8, 9).timestamp()
    os.utime(photos[2], (stamp, stamp))
    dates = page_dates(model, "exif", mtime=True)
    assert dates["values"][2] == days("2010-05-06T07:08:09")
    assert dates["values"][:2] == [days("2021-07-14T16:05:09"), days("2019-01-02T03:04:05")]
    assert dates["status"]["mtime"] >= 1


def test_served_page_keeps_its_dates(tmp_path):
    model = small_model(5)
    given = ["2020-03-01", None, "2020-04-01", "2020-05-01", "2020-06-01"]
    server = make_server(tmp_path, model=model, port=0, prepare_thumbnails=False, dates=given)
    try:
        html = server.app.page.decode("utf-8")
        assert page_json(html)["dates"]["values"][:2] == [days("2020-03-01"), None]
        server.app._render()  # as after an edit: the dates are kept, not read again
        assert page_json(server.app.page.decode("utf-8"))["dates"]["dated"] == 4
    finally:
        server.server_close()


def test_page_data_without_dates_has_none():
    data = page_data(small_model(5), title="t", mode="report")
    assert data["dates"] is None
