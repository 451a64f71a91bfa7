"""The explorer in a real browser: Debian's chromium, headless, driven by Playwright's Python package.

A model fitted on 60 OpenClipart images on three backgrounds (with a tiny random CLIP, so the
concepts are arbitrary but real) is opened as a static report (file://) and through `concept
serve` (127.0.0.1 only). The tests count the concept cards, hover a point and see its thumbnail, search, click a card and
see its members, upload images, and check that the page fetched nothing from the network. A
third test opens a 70,000-point map. Screenshots go to each test's tmp_path.

Never `playwright install`: the browser is /usr/bin/chromium from apt.
"""

from __future__ import annotations

import os
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
from conftest import OPENCLIPART, serving
from PIL import Image

from concept import ConceptModel
from concept.explorer import make_server, write_report
from concept.testing import LayeredMapModel

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
WORDS = ["dog", "cat", "bird", "fish", "horse", "apple", "bread", "cake", "cheese", "wine",
         "car", "bus", "train", "plane", "ship", "bicycle"]
MEMBERS_PAGE = 120  # members listed before "Show more" (explorer.js)

try:
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover - depends on the machine
    sync_playwright = None

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sync_playwright is None,
                       reason="playwright is not installed (pip install -e '.[dev]'); browser tests skipped"),
    pytest.mark.skipif(not CHROMIUM.exists(),
                       reason="Debian's chromium is not installed (apt-get install chromium); "
                              "these tests never download a browser"),
]


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


#: Each folder's drawings on a background of its own: a random CLIP hardly tells animals from
#: food, but it does tell these backgrounds apart, so the model has several concepts every time.
BACKGROUNDS = {"animals": (255, 255, 255), "food": (230, 30, 30), "transportation": (30, 200, 60)}


@pytest.fixture(scope="module")
def clipart_model(tiny_clip, tmp_path_factory):
    """60 OpenClipart PNGs (3 folders, 3 backgrounds) fitted with a tiny random CLIP, saved
    with its map."""
    if not OPENCLIPART.is_dir():
        pytest.skip("Debian package openclipart-png is not installed")
    images = tmp_path_factory.mktemp("clipart_images")
    paths = []
    for category, background in BACKGROUNDS.items():
        (images / category).mkdir()
        for source in sorted((OPENCLIPART / category).rglob("*.png"))[:20]:
            with Image.open(source) as drawing:
                drawing = drawing.convert("RGBA")
                canvas = Image.new("RGBA", drawing.size, (*background, 255))
            canvas.alpha_composite(drawing)
            paths.append(images / category / source.name)
            canvas.convert("RGB").save(paths[-1])
    model = ConceptModel(min_concept_size=5, embedding_model=str(tiny_clip), random_state=0, verbose=False)
    model.fit([str(p) for p in paths], docs=WORDS)
    assert model.n_concepts_ >= 2, "the test model needs two concepts (to merge them, among others)"
    model.map_2d()
    folder = tmp_path_factory.mktemp("clipart") / "clipart.model"
    model.save(folder)
    return model, folder, paths


class Page:
    """A browser tab that records every request and every script error."""

    def __init__(self, browser, url: str) -> None:
        self.requests: list[str] = []
        self.errors: list[str] = []
        self.page = browser.new_page(viewport={"width": 1400, "height": 850})
        self.page.set_default_timeout(60_000)
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.goto(url)
        self.page.wait_for_function("document.body.dataset.ready === '1'")

    def close(self) -> None:
        self.page.close()


def check_cards(page, model) -> None:
    assert page.locator(".concept-card").count() == model.n_concepts_
    assert page.locator(".outlier-card").count() == (1 if (model.labels_ < 0).any() else 0)


def check_points_drawn(page, path: Path) -> None:
    """The map's canvas shows coloured points (WebGL really rendered)."""
    page.locator("#map").screenshot(path=str(path))
    with Image.open(path) as shot:
        rgb = np.asarray(shot.convert("RGB"), dtype=np.int16)
    coloured = (rgb.max(axis=2) - rgb.min(axis=2)) > 60
    assert coloured.sum() > 200, "no coloured points on the map"


def hover_a_point(page, model, index: int) -> int:
    """Move the mouse onto point `index`; return the point whose tooltip shows."""
    x, y = page.evaluate("i => window.conceptExplorer.screenPosition(i, true)", index)
    page.mouse.move(x - 6, y - 6)
    page.mouse.move(x, y, steps=3)
    page.wait_for_selector("#tooltip:not([hidden])")
    shown = int(page.get_attribute("#tooltip", "data-index"))
    label = int(model.labels_[shown])
    text = page.text_content("#tooltip")
    assert (f"Concept {label}" if label >= 0 else "Outliers") in text
    return shown


def check_thumbnail(page, model, shown: int) -> None:
    """The tooltip shows point `shown`'s thumbnail, and its sprite sheet really loaded."""
    assert page.text_content("#tooltip .name") == Path(model.image_sources_[shown]).name
    background = page.eval_on_selector("#tooltip .thumb", "e => getComputedStyle(e).backgroundImage")
    url = background.split('"')[1]
    assert url.endswith("sheet_000.jpg")
    width = page.evaluate("""url => new Promise(done => { const im = new Image();
        im.onload = () => done(im.naturalWidth); im.onerror = () => done(0); im.src = url; })""", url)
    assert width == 16 * 64


def check_card_click(page, model, concept: int) -> None:
    page.click(f".concept-card[data-concept='{concept}']")
    page.wait_for_selector(f"#members .panel[data-concept='{concept}'] .member")
    size = int((model.labels_ == concept).sum())
    indices = [int(i) for i in page.eval_on_selector_all("#members .member", "els => els.map(e => e.dataset.index)")]
    assert len(indices) == min(size, MEMBERS_PAGE)
    assert all(model.labels_[i] == concept for i in indices)
    selected = page.evaluate("window.conceptExplorer.scatterplot.get('selectedPoints')")
    assert sorted(selected) == np.flatnonzero(model.labels_ == concept).tolist()


def test_report_from_file_url(browser, clipart_model, tmp_path):
    model, _, _ = clipart_model
    report = write_report(model, tmp_path / "report.html", verbose=False)
    tab = Page(browser, report.as_uri())
    page = tab.page
    try:
        check_cards(page, model)
        check_points_drawn(page, tmp_path / "report_map.png")
        shown = hover_a_point(page, model, int(np.argmax(model.labels_ >= 0)))
        check_thumbnail(page, model, shown)
        page.screenshot(path=str(tmp_path / "report_hover.png"))

        word = model.topics[0][0]
        page.fill("#search", word)
        page.wait_for_selector("#results .result")
        found = [int(c) for c in page.eval_on_selector_all("#results .result", "els => els.map(e => e.dataset.concept)")]
        assert found[0] in range(model.n_concepts_) and all(word in model.topics[c] for c in found)
        assert page.locator("#results mark").first.text_content() == word
        page.screenshot(path=str(tmp_path / "report_search.png"))
        page.fill("#search", "")
        page.wait_for_selector("#results", state="hidden")

        check_card_click(page, model, 0)
        page.screenshot(path=str(tmp_path / "report_card.png"))

        page.select_option("#filter", "0")
        size = int((model.labels_ == 0).sum())
        assert page.evaluate("window.conceptExplorer.scatterplot.get('filteredPoints').length") == size
        assert page.locator(".concept-card:visible").count() == 1
        page.click("#reset")
        assert page.locator(".concept-card:visible").count() == model.n_concepts_
        assert not tab.errors, tab.errors
        assert all(url.startswith(("file://", "data:", "blob:")) for url in tab.requests), tab.requests
    finally:
        tab.close()


@pytest.fixture(scope="module")
def served(clipart_model, tiny_clip):
    _, folder, _ = clipart_model
    # make_server loads the folder as `concept serve --embedding-model FOLDER` does (a model
    # folder's own path to an embedding model is not loaded without the user's say-so)
    with serving(make_server(folder, port=0, prepare_thumbnails=False, embedding_model=str(tiny_clip))) as server:
        yield server


def test_served_page_searches_and_assigns_uploads_with_the_model(browser, clipart_model, served, tmp_path):
    model, _, paths = clipart_model
    assert served.server_address[0] == "127.0.0.1"
    tab = Page(browser, served.url)
    page = tab.page
    try:
        check_cards(page, model)
        check_points_drawn(page, tmp_path / "served_map.png")
        shown = hover_a_point(page, model, int(np.argmax(model.labels_ >= 0)))
        check_thumbnail(page, model, shown)

        page.fill("#search", "dog")
        page.press("#search", "Enter")
        page.wait_for_selector("#results .image-result")
        concepts = [int(c) for c in page.eval_on_selector_all(
            "#results .panel > .result", "els => els.map(e => e.dataset.concept)")]
        expected = [c for c, _ in model.find_concepts("dog", top_n=5)]
        assert concepts[:len(expected)] == expected
        assert page.locator("#results .image-result").count() == min(24, len(model.labels_))
        page.screenshot(path=str(tmp_path / "served_search.png"))

        check_card_click(page, model, 0)

        query = paths[7]
        page.set_input_files("#upload", str(query))
        page.wait_for_selector("#upload-result")
        assigned = int(page.get_attribute("#upload-result", "data-concept"))
        assert assigned == int(model.transform([str(query)])[0])
        page.screenshot(path=str(tmp_path / "served_upload.png"))

        assert not tab.errors, tab.errors
        broken = tmp_path / "broken.png"
        broken.write_bytes(b"this is not a png")
        page.set_input_files("#upload", str(broken))
        page.wait_for_selector("#upload-error")
        assert "not an image" in page.text_content("#upload-error")
        assert all("400 (Bad Request)" in e for e in tab.errors), tab.errors  # the refused upload
        local = served.url.rstrip("/")
        assert all(url.startswith((local, "data:", "blob:")) for url in tab.requests), tab.requests
    finally:
        tab.close()


class _MapOnlyModel:
    """The attributes of a fitted ConceptModel the explorer reads, for a synthetic 70,000-point map."""

    def __init__(self, n: int = 70_000, k: int = 12, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        centres = rng.uniform(-10, 10, size=(k, 2))
        labels = rng.integers(0, k, size=n)
        labels[rng.random(n) < 0.05] = -1
        self.labels_ = labels
        self._xy = (np.where(labels[:, None] >= 0, centres[labels], 0.0)
                    + rng.normal(scale=np.where(labels >= 0, 0.8, 6.0)[:, None], size=(n, 2)))
        self.probabilities_ = rng.uniform(0.3, 1.0, size=n)
        self.n_concepts_ = k
        self.topics = {c: [f"word{c}_{j}" for j in range(5)] for c in range(k)}
        self.collages_ = {}
        self.image_sources_ = None

    def map_2d(self) -> np.ndarray:
        return self._xy


def test_a_map_of_70000_points(browser, tmp_path):
    model = _MapOnlyModel()
    report = write_report(model, tmp_path / "big.html", verbose=False)
    tab = Page(browser, report.as_uri())
    page = tab.page
    try:
        assert page.evaluate("window.conceptExplorer.scatterplot.get('points').length") == 70_000
        check_cards(page, model)
        check_points_drawn(page, tmp_path / "big_map.png")
        hover_a_point(page, model, int(np.argmax(model.labels_ == 3)))
        page.wait_for_selector("#tooltip .name")
        check_card_click(page, model, 3)
        texts, _ = label_state(page)  # names on a 70,000-point map too, none overlapping
        assert texts and all(t.startswith("word") for t in texts)
        page.screenshot(path=str(tmp_path / "big.png"))
        assert not tab.errors, tab.errors
    finally:
        tab.close()


def test_results_show_over_an_open_concept_and_the_filter_frames_its_concept(browser, tmp_path):
    """Issue 11 items 10 and 20: search results are in view while a concept's members are
    listed (the side panel scrolled down to its card), and choosing a concept in the filter
    zooms the map to its images."""
    model = _MapOnlyModel(n=3000, k=12)
    report = write_report(model, tmp_path / "mid.html", verbose=False)
    tab = Page(browser, report.as_uri())
    page = tab.page
    try:
        page.eval_on_selector("#side", "e => { e.scrollTop = e.scrollHeight; }")
        page.click(".concept-card[data-concept='11']")
        page.wait_for_selector("#members .panel[data-concept='11'] .member")
        page.fill("#search", "word3_0")
        page.wait_for_selector("#results .result[data-concept='3']")
        page.wait_for_timeout(300)
        box = page.evaluate("""() => { const s = document.getElementById('side').getBoundingClientRect();
            const r = document.querySelector('#results .panel').getBoundingClientRect();
            return [r.top - s.top, r.bottom - s.top, s.height]; }""")
        page.screenshot(path=str(tmp_path / "results_over_members.png"))
        assert 0 <= box[0] + 1 and box[0] < box[2] - 60, box  # the results' head is inside the side panel
        page.fill("#search", "")

        page.select_option("#filter", "3")
        framed = """() => { const ex = window.conceptExplorer, r = document.getElementById('map-canvas').getBoundingClientRect();
            let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
            ex.data.points.concept.forEach((c, i) => { if (c !== 3) return; const [x, y] = ex.screenPosition(i, false);
              x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y); });
            return x0 >= -2 && y0 >= -2 && x1 <= r.width + 2 && y1 <= r.height + 2
              && Math.max((x1 - x0) / r.width, (y1 - y0) / r.height) > 0.6; }"""
        assert not page.evaluate(framed)  # concept 3 is a small part of the whole map
        page.wait_for_function(framed, timeout=15_000)
        page.screenshot(path=str(tmp_path / "filter_framed.png"))
        assert not tab.errors, tab.errors
    finally:
        tab.close()


def test_served_result_tiles_show_that_they_are_loading(browser, served, tmp_path):
    """Issue 11 item 22: result tiles whose sprite sheet is still loading say so."""
    held = []
    page = browser.new_page(viewport={"width": 1400, "height": 850})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.set_default_timeout(60_000)
    pattern = "**/assets/thumbs/*"
    page.route(pattern, lambda route: held.append(route))  # the sheets wait until the test lets them through
    try:
        page.goto(served.url)
        page.wait_for_function("document.body.dataset.ready === '1'")
        page.fill("#search", "dog")
        page.press("#search", "Enter")
        page.wait_for_selector("#results .image-result")
        n = page.locator("#results .image-result").count()
        assert n > 0 and page.locator("#results .image-result.loading[aria-busy='true']").count() == n
        assert page.eval_on_selector("#results .image-result",
                                     "e => getComputedStyle(e, '::after').animationName") == "thumb-loading"
        page.screenshot(path=str(tmp_path / "loading_tiles.png"))
        while held:
            held.pop().continue_()
        page.unroute(pattern)
        while held:
            held.pop().continue_()
        page.wait_for_function("document.querySelectorAll('.thumb.loading, [aria-busy]').length === 0")
        assert not errors, errors
    finally:
        page.close()


def test_a_refused_upload_shows_the_message_not_a_broken_preview(browser, served, tmp_path):
    """Issue 11 item 21."""
    tab = Page(browser, served.url)
    page = tab.page
    try:
        broken = tmp_path / "broken.png"
        broken.write_bytes(b"this is not a png")
        page.set_input_files("#upload", str(broken))
        page.wait_for_selector("#upload-error")
        assert "not an image" in page.text_content("#upload-error")
        assert page.locator("#results img:visible").count() == 0  # no broken preview
        assert "broken.png" in page.text_content("#results h3")
        page.screenshot(path=str(tmp_path / "upload_error.png"))
        assert all("400 (Bad Request)" in e for e in tab.errors), tab.errors  # the refused upload
    finally:
        tab.close()


# ---------------------------------------------------------------------------- issue 14
def label_state(page) -> tuple[list[str], list[dict]]:
    texts = page.evaluate("window.conceptExplorer.visibleLabels()")
    boxes = page.evaluate("window.conceptExplorer.visibleLabelBoxes()")
    dom = page.eval_on_selector_all(".map-label:not([hidden])", "els => els.map(e => e.textContent)")
    assert sorted(dom) == sorted(texts)  # what the API says is what is drawn
    for a in range(len(boxes)):  # no two names overlap on screen
        for b in range(a):
            p, q = boxes[a], boxes[b]
            assert abs(p["x"] - q["x"]) * 2 >= p["w"] + q["w"] or abs(p["y"] - q["y"]) * 2 >= p["h"] + q["h"], (p, q)
    return texts, boxes


def test_names_on_the_map_are_coarse_zoomed_out_finer_zoomed_in_and_never_overlap(browser, tmp_path):
    model = LayeredMapModel()
    report = write_report(model, tmp_path / "layers.html", verbose=False)
    tab = Page(browser, report.as_uri())
    page = tab.page
    try:
        far, _ = label_state(page)
        page.screenshot(path=str(tmp_path / "labels_far.png"))
        assert far and all(t.startswith("GROUP") for t in far), far  # only the coarse layer
        page.evaluate("window.conceptExplorer.zoom(5)")
        near, boxes = label_state(page)
        page.screenshot(path=str(tmp_path / "labels_near.png"))
        fine = [b for b in boxes if b["layer"] == 0]
        assert fine and fine[0]["text"].startswith("fine"), near  # finer names lead once zoomed in
        assert near != far
        page.evaluate("window.conceptExplorer.zoom(0.2)")
        assert label_state(page)[0] == far  # and zooming back out brings the coarse names back
        # A name is text from the model, drawn as text: a label that looks like HTML stays text.
        assert page.evaluate("document.querySelectorAll('.map-label b, .map-label script').length") == 0
        # A name pushed against the view's edges stays (12px text: boxes 12 * 1.15 px high, whose
        # edge lands a rounding error outside the view; such names at the top were dropped).
        kept = page.evaluate("""() => { const h = 12 * 1.15;
            return window.conceptMapLayers.placeLabels([{x: 40 / 2 + 3, y: h / 2 + 3, w: 40, h},
                {x: 500 - 40.3 / 2 - 3, y: 300 - h / 2 - 3, w: 40.3, h},
                {x: 250, y: h / 2 + 2, w: 40, h}], 500, 300, 3).length; }""")
        assert kept == 2  # the third really reaches 1px past the top
        assert not tab.errors, tab.errors
    finally:
        tab.close()


# What the page says about the view: every image's position in it and every layer's labels.
IN_VIEW = """() => {
  const ex = window.conceptExplorer, d = ex.data, r = document.getElementById('map-canvas').getBoundingClientRect();
  const inView = d.points.x.map((_, i) => { const [x, y] = ex.screenPosition(i, false);
    return x >= 0 && y >= 0 && x <= r.width && y <= r.height; });
  const labels = d.layers.map((l, li) => (li === d.default_layer ? d.points.concept : l.labels));
  const concepts = d.layers.map((l, li) => (li === d.default_layer ? d.concepts : l.concepts));
  return { inView, labels, anchors: concepts.map((cs) => cs.map((c) => c.anchor)) };
}"""


def check_names_are_of_concepts_in_view(page) -> list[dict]:
    """Names are drawn, none overlapping, each of a concept with an image in view; returns the boxes."""
    texts, boxes = label_state(page)
    view = page.evaluate(IN_VIEW)
    assert any(view["inView"]), "no image in view"
    assert texts, "images are in view but no concept is named"
    for b in boxes:
        labels = view["labels"][b["layer"]]
        assert any(v and labels[i] == b["concept"] for i, v in enumerate(view["inView"])), b
    return boxes


def test_zoomed_far_in_the_concepts_in_view_are_named(browser, clipart_model, tmp_path):
    """Zoomed in so far that no concept's anchor image (where its name sits zoomed out) is in
    view, the concepts whose images are in view are still named, finest layer first, at a
    point of theirs in view: never no names while images show."""
    model, _, _ = clipart_model
    report = write_report(model, tmp_path / "near.html", verbose=False)
    tab = Page(browser, report.as_uri())
    page = tab.page
    try:
        check_names_are_of_concepts_in_view(page)  # zoomed out: the anchors are in view
        view = page.evaluate(IN_VIEW)
        anchors = {a for layer in view["anchors"] for a in layer if a >= 0}
        xy = np.array(page.evaluate("[window.conceptExplorer.data.points.x, window.conceptExplorer.data.points.y]")).T
        # the image farthest (Chebyshev) from every anchor, and a view around it smaller than that gap
        gap = np.array([min(np.abs(xy[i] - xy[a]).max() for a in anchors) for i in range(len(xy))])
        target = int(np.argmax(np.where(np.array(view["labels"][0]) >= 0, gap, -1)))
        assert target not in anchors and gap[target] > 0
        page.evaluate("""([x, y, d]) => window.conceptExplorer.scatterplot.zoomToLocation([x, y], d)
            .then(window.conceptExplorer.redraw)""", [*xy[target].tolist(), float(gap[target]) / 3])
        view = page.evaluate(IN_VIEW)
        assert view["inView"][target] and not any(view["inView"][a] for a in anchors)  # the case of the issue
        page.click("#mode")  # images show
        page.wait_for_function("window.conceptExplorer.visibleThumbnails().length > 0")
        boxes = check_names_are_of_concepts_in_view(page)
        assert boxes[0]["layer"] == 0, boxes  # the finest layer leads zoomed in
        named = {b["concept"] for b in boxes if b["layer"] == 0}
        finest = np.array(view["labels"][0])[np.array(view["inView"])]
        counts = np.bincount(finest[finest >= 0])
        assert named & set(np.flatnonzero(counts == counts.max()).tolist())  # the one most in view is named
        page.screenshot(path=str(tmp_path / "labels_zoomed_far_in.png"))
        assert not tab.errors, tab.errors
    finally:
        tab.close()


def test_a_hierarchy_click_filters_the_map_and_shows_sub_concepts(browser, tmp_path):
    model = LayeredMapModel(failures=["/gone/broken.jpg"])
    report = write_report(model, tmp_path / "tree.html", verbose=False)
    tab = Page(browser, report.as_uri())
    page = tab.page
    try:
        assert page.locator("#tree > .node").count() == 5
        group = 2
        page.click(f"#tree .row[data-layer='1'][data-concept='{group}']")
        page.wait_for_selector("#members .panel[data-layer='1'] .sub-concept")
        size = int((model.layers_[1] == group).sum())
        page.wait_for_function(f"window.conceptExplorer.scatterplot.get('filteredPoints').length === {size}")
        kids = sorted(np.flatnonzero(model.parent == group).tolist())
        shown = sorted(int(c) for c in page.eval_on_selector_all(
            "#members .sub-concept", "els => els.map(e => e.dataset.concept)"))
        assert shown == kids
        assert page.locator(f"#tree .node[data-layer='1'][data-concept='{group}'] > .children > .node").count() == len(kids)
        page.wait_for_timeout(1500)  # the zoom to the concept's images
        texts, boxes = label_state(page)
        assert texts and all(b["layer"] == 0 and b["concept"] in kids or b["concept"] == group for b in boxes), boxes
        page.screenshot(path=str(tmp_path / "tree_group.png"))

        page.click(f"#members .sub-concept[data-concept='{kids[0]}']")  # one level down
        page.wait_for_selector(f"#members .panel[data-concept='{kids[0]}'] .crumbs a[data-concept='{group}']")
        size = int((model.labels_ == kids[0]).sum())
        page.wait_for_function(f"window.conceptExplorer.scatterplot.get('filteredPoints').length === {size}")
        assert page.locator(".concept-card:visible").count() == 1
        page.click(f"#members .crumbs a[data-concept='{group}']")  # and back up by the breadcrumb
        page.wait_for_selector(f"#members .panel[data-layer='1'][data-concept='1:{group}']")
        assert page.locator(".concept-card:visible").count() == len(kids)

        assert "1 unreadable" in page.text_content("#stats")
        page.click(".failure-card")
        assert "/gone/broken.jpg" in page.text_content("#members .failure")
        page.click("#reset")
        assert page.evaluate("window.conceptExplorer.scatterplot.get('filteredPoints').length") == len(model.labels_)
        assert not tab.errors, tab.errors
    finally:
        tab.close()


@pytest.fixture(scope="module")
def clipart_files():
    if not OPENCLIPART.is_dir():
        pytest.skip("Debian package openclipart-png is not installed")
    return [str(p) for p in sorted(OPENCLIPART.rglob("*.png"))[:400]]


def test_image_mode_draws_exemplars_first_then_every_image(browser, clipart_files, tmp_path):
    model = LayeredMapModel(n=len(clipart_files), sources=clipart_files)
    report = write_report(model, tmp_path / "images.html", verbose=False)
    tab = Page(browser, report.as_uri())
    page = tab.page
    try:
        before = tab.page.locator("#map").screenshot(path=str(tmp_path / "points_mode.png"))
        page.click("#mode")
        assert page.evaluate("window.conceptExplorer.mode()") == "images"
        page.wait_for_function("window.conceptExplorer.visibleThumbnails().length > 5")
        exemplars = set()
        for layer in model.layer_exemplars_:
            for rows in layer.values():
                exemplars.update(rows)
        far = page.evaluate("window.conceptExplorer.visibleThumbnails()")
        assert set(far) <= exemplars  # zoomed out: representatives only
        after = page.locator("#map").screenshot(path=str(tmp_path / "images_far.png"))
        assert after != before
        page.evaluate("window.conceptExplorer.zoom(6)")
        page.wait_for_function(f"window.conceptExplorer.visibleThumbnails().some(i => !new Set({sorted(exemplars)}).has(i))")
        page.locator("#map").screenshot(path=str(tmp_path / "images_near.png"))
        with Image.open(tmp_path / "images_near.png") as shot:
            rgb = np.asarray(shot.convert("RGB"))
        assert len(np.unique(rgb.reshape(-1, 3), axis=0)) > 500  # pictures, not a few flat colours
        page.click("#mode")
        page.wait_for_function("window.conceptExplorer.visibleThumbnails().length === 0")
        with pytest.raises(Exception, match="points"):
            page.evaluate("window.conceptExplorer.setMode('pictures')")
        assert not tab.errors, tab.errors
    finally:
        tab.close()


def test_a_lasso_selection_exports_a_csv_and_opens_a_full_resolution_gallery(browser, clipart_files, tmp_path):
    import csv

    model = LayeredMapModel(n=len(clipart_files), sources=clipart_files)
    report = write_report(model, tmp_path / "lasso.html", verbose=False)
    tab = Page(browser, report.as_uri())
    page = tab.page
    try:
        members = np.flatnonzero(model.labels_ == 0)
        pos = np.array(page.evaluate("ix => ix.map(i => window.conceptExplorer.screenPosition(i, true))",
                                     members.tolist()))
        (x0, y0), (x1, y1) = pos.min(axis=0) - 6, pos.max(axis=0) + 6
        page.keyboard.down("Shift")
        page.mouse.move(x0, y0)
        page.mouse.down()
        for x, y in [(x1, y0), (x1, y1), (x0, y1), (x0, y0 + 1)]:
            page.mouse.move(x, y, steps=8)
            page.wait_for_timeout(50)  # the lasso takes a point at most every 10 ms
        page.mouse.up()
        page.keyboard.up("Shift")
        page.wait_for_selector("#members .panel[data-concept='selection']")
        selection = page.evaluate("window.conceptExplorer.selection()")
        chosen = {r["index"] for r in selection}
        assert set(members.tolist()) <= chosen
        page.screenshot(path=str(tmp_path / "lasso.png"))
        with page.expect_download() as info:
            page.click("#members .export-csv")
        saved = tmp_path / "selection.csv"
        info.value.save_as(saved)
        with open(saved, encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        assert {int(r["index"]) for r in rows} == chosen
        for r in rows:
            i = int(r["index"])
            assert r["path"] == os.path.abspath(clipart_files[i]) and int(r["concept"]) == model.labels_[i]
        assert saved.read_text(encoding="utf-8") == page.evaluate("window.conceptExplorer.selectionCsv()").replace("\r\n", "\n")

        page.click("#members .gallery-open")
        page.wait_for_selector("#gallery:not([hidden]) figure")
        assert page.locator("#gallery figure").count() == min(24, len(chosen))
        page.wait_for_function("Array.from(document.querySelectorAll('#gallery img')).every(im => im.complete && im.naturalWidth > 0)")
        first = int(page.get_attribute("#gallery img >> nth=0", "data-index"))
        natural = page.eval_on_selector("#gallery img", "im => [im.naturalWidth, im.naturalHeight]")
        with Image.open(clipart_files[first]) as im:
            assert natural == list(im.size)  # the file itself, not a thumbnail
        if len(chosen) > 24:
            page.click("#gallery-next")
            assert "page 2" in page.text_content("#gallery-page")
        page.screenshot(path=str(tmp_path / "gallery.png"))
        page.click("#gallery-close")

        count = page.evaluate("window.conceptExplorer.select([1, 2])")
        picked = page.evaluate("window.conceptExplorer.selection()")
        assert count == len(picked) == int(np.isin(model.labels_, [1, 2]).sum())
        assert {r["concept"] for r in picked} == {1, 2} and all(r["label"] == f"fine{r['concept']}, leaf{r['concept']}, twig{r['concept']}" for r in picked)
        with pytest.raises(Exception, match="No concept"):
            page.evaluate("window.conceptExplorer.select([999])")
        assert not tab.errors, tab.errors
    finally:
        tab.close()


def test_served_gallery_shows_full_resolution_files_from_the_server(browser, clipart_model, served, tmp_path):
    model, _, _ = clipart_model
    tab = Page(browser, served.url)
    page = tab.page
    try:
        page.click(".concept-card[data-concept='0']")
        page.click("#members .gallery-open")
        page.wait_for_function("Array.from(document.querySelectorAll('#gallery img')).every(im => im.complete && im.naturalWidth > 0)")
        src = page.get_attribute("#gallery img >> nth=0", "src")
        assert src.startswith("/api/image/")
        i = int(src.rsplit("/", 1)[1])
        natural = page.eval_on_selector("#gallery img", "im => [im.naturalWidth, im.naturalHeight]")
        with Image.open(model.image_sources_[i]) as im:
            assert natural == list(im.size)
        assert page.evaluate("window.conceptExplorer.visibleLabels().length") >= 1
        page.screenshot(path=str(tmp_path / "served_gallery.png"))
        assert not tab.errors, tab.errors
    finally:
        tab.close()


def test_a_rename_and_a_merge_in_serve_mode_persist_after_reload(browser, clipart_model, tiny_clip, tmp_path):
    model, folder, _ = clipart_model
    assert model.n_concepts_ >= 2  # the fixture's backgrounds make sure of it
    # a folder of its own: the shared fixture's stays as it is
    copy = ConceptModel.load(folder, embedding_model=str(tiny_clip)).save(tmp_path / "edited.model")
    with serving(make_server(copy, port=0, prepare_thumbnails=False, embedding_model=str(tiny_clip))) as server:
        tab = Page(browser, server.url)
        page = tab.page
        try:
            page.evaluate("window.conceptExplorer.openConcept(0)")
            page.fill("#members .edit-name", "my first concept")
            with page.expect_navigation():
                page.click("#members .rename")
            page.wait_for_function("document.body.dataset.ready === '1'")
            assert "my first concept" in page.locator(".concept-card").first.inner_text()
            assert ConceptModel.load(copy, embedding_model=str(tiny_clip)).custom_labels_ == {0: "my first concept"}
            k = model.n_concepts_
            with page.expect_navigation():
                page.evaluate("window.conceptExplorer.merge([0, 1])")
            page.wait_for_function("document.body.dataset.ready === '1'")
            assert page.locator(".concept-card").count() == k - 1
            assert ConceptModel.load(copy, embedding_model=str(tiny_clip)).n_concepts_ == k - 1
            page.screenshot(path=str(tmp_path / "after_merge.png"))
            assert not tab.errors, tab.errors
        finally:
            tab.close()


def test_the_time_histogram_filters_the_map_and_the_lists(browser, tmp_path):
    """Issue 26: with dates, a bar per month under the map (and the undated images counted);
    dragging over bars, or clicking one, leaves only those months' images on the map and in a
    concept's members; "Clear dates" brings them back. Without dates there is no histogram."""
    model = LayeredMapModel(n=3000)
    n = len(model.labels_)
    month = np.arange(n) % 12
    undated = np.arange(n) % 10 == 7
    dates = [None if undated[i] else f"2020-{month[i] + 1:02d}-15 12:00" for i in range(n)]
    report = write_report(model, tmp_path / "dated.html", verbose=False, dates=dates)
    tab = Page(browser, report.as_uri())
    page = tab.page
    try:
        assert page.is_visible("#timeline")
        line = page.evaluate("window.conceptExplorer.timeline()")
        assert line["unit"] == "month" and line["labels"] == [f"2020-{m:02d}" for m in range(1, 13)]
        assert line["counts"] == np.bincount(month[~undated], minlength=12).tolist()
        assert f"{int(undated.sum())} without a date" in page.text_content("#timeline-undated")
        assert page.is_hidden("#timeline-clear")
        shown = hover_a_point(page, model, int(np.argmax(model.labels_ == 5)))  # its date in the tooltip
        assert page.text_content("#tooltip .date") == (
            "no date" if undated[shown] else f"2020-{month[shown] + 1:02d}-15 12:00")
        page.mouse.move(5, 5)
        page.wait_for_timeout(300)
        check_points_drawn(page, tmp_path / "all.png")
        before = coloured_pixels(tmp_path / "all.png")

        box = page.locator("#timeline-bars").bounding_box()
        x_of = lambda k: box["x"] + (k + 0.5) / 12 * box["width"]
        y = box["y"] + box["height"] * 0.5
        page.mouse.move(x_of(2), y)
        page.mouse.down()
        page.mouse.move(x_of(3), y, steps=3)
        page.mouse.move(x_of(4), y, steps=3)
        page.mouse.up()
        chosen = ~undated & (month >= 2) & (month <= 4)
        page.wait_for_function(f"window.conceptExplorer.scatterplot.get('filteredPoints').length === {int(chosen.sum())}")
        assert sorted(page.evaluate("window.conceptExplorer.scatterplot.get('filteredPoints')")) == np.flatnonzero(chosen).tolist()
        assert page.evaluate("window.conceptExplorer.timeline().range") == [2, 4]
        assert "2020-03 – 2020-05" in page.text_content("#timeline-info")
        page.wait_for_timeout(300)
        page.locator("#map").screenshot(path=str(tmp_path / "months.png"))
        assert coloured_pixels(tmp_path / "months.png") < 0.7 * before  # fewer points drawn
        page.screenshot(path=str(tmp_path / "timeline.png"))

        c = 3  # a concept's members: only those of the chosen months
        page.click(f".concept-card[data-concept='{c}']")
        page.wait_for_selector(f"#members .panel[data-concept='{c}'] .member")
        inside = int((chosen & (model.labels_ == c)).sum())
        assert f"{inside} of {int((model.labels_ == c).sum())} images in 2020-03 – 2020-05" in page.text_content("#members h3")
        assert page.locator("#members .member").count() == min(inside, MEMBERS_PAGE)
        page.select_option("#filter", str(c))  # the concept filter and the months together
        page.wait_for_function(f"window.conceptExplorer.scatterplot.get('filteredPoints').length === {inside}")

        page.mouse.click(x_of(0), y)  # one bar: January
        january = ~undated & (month == 0) & (model.labels_ == c)
        page.wait_for_function(f"window.conceptExplorer.scatterplot.get('filteredPoints').length === {int(january.sum())}")
        page.click("#timeline-clear")
        page.wait_for_function(f"window.conceptExplorer.scatterplot.get('filteredPoints').length === {int((model.labels_ == c).sum())}")
        assert page.is_hidden("#timeline-clear")
        page.click("#reset")
        assert page.evaluate("window.conceptExplorer.scatterplot.get('filteredPoints').length") == n
        assert not tab.errors, tab.errors
    finally:
        tab.close()

    plain = Page(browser, write_report(model, tmp_path / "plain.html", verbose=False).as_uri())
    try:
        assert plain.page.is_hidden("#timeline")
        assert plain.page.evaluate("window.conceptExplorer.timeline()") is None
        assert not plain.errors, plain.errors
    finally:
        plain.close()


def coloured_pixels(path: Path) -> int:
    with Image.open(path) as shot:
        rgb = np.asarray(shot.convert("RGB"), dtype=np.int16)
    return int(((rgb.max(axis=2) - rgb.min(axis=2)) > 60).sum())


def test_duplicates_have_a_badge_and_a_filter(browser, tmp_path):
    """Issue 27: with the model's duplicates known, their thumbnails carry a badge ("dup" on the kept image,
    "copy" on the others) and the filter's "Duplicates" shows only the images in groups on the map."""
    from concept.duplicates import Duplicates

    model = _MapOnlyModel(n=3000, k=12)
    members = sorted(np.flatnonzero(model.labels_ == 3).tolist(), key=lambda i: (-model.probabilities_[i], i))[:6]
    model._duplicates = Duplicates([members[:2]], [members[2:5]], 0.95, None, None, 3000)
    report = write_report(model, tmp_path / "dup.html", verbose=False)
    tab = Page(browser, report.as_uri())
    page = tab.page
    try:
        assert page.locator("#filter option[value='duplicates']").inner_text() == "Duplicates (5 images)"
        page.click(".concept-card[data-concept='3']")
        page.wait_for_selector("#members .panel[data-concept='3'] .member")
        badges = page.evaluate("""() => [...document.querySelectorAll('#members .member')].filter((m) =>
            m.querySelector('.badge.dup')).map((m) => [Number(m.dataset.index), m.querySelector('.badge.dup').textContent])""")
        assert sorted(badges) == sorted([[members[0], "dup"], [members[1], "copy"], [members[2], "dup"],
                                         [members[3], "copy"], [members[4], "copy"]])
        page.select_option("#filter", "duplicates")
        page.wait_for_function("window.conceptExplorer.scatterplot.get('filteredPoints').length === 5")
        assert sorted(page.evaluate("window.conceptExplorer.scatterplot.get('filteredPoints')")) == sorted(members[:5])
        page.select_option("#filter", "all")
        page.wait_for_function("window.conceptExplorer.scatterplot.get('filteredPoints').length === 3000")
        assert page.locator("#members .member-sort").count() == 0  # no uniqueness known: no choice of order
        assert not tab.errors, tab.errors
    finally:
        tab.close()


def test_a_duplicate_group_side_by_side_and_members_by_uniqueness(browser, tmp_path):
    """Issue 27: a click on a thumbnail's duplicate badge shows its whole group side by side (kept image first, each
    marked kept or copy, with its file name, names being untrusted text); a concept's members can be listed by
    uniqueness, most unusual first, instead of most typical first."""
    from concept.duplicates import Duplicates

    model = _MapOnlyModel(n=3000, k=12)
    members = sorted(np.flatnonzero(model.labels_ == 3).tolist(), key=lambda i: (-model.probabilities_[i], i))
    assert len(members) > MEMBERS_PAGE
    model.image_names_ = [f"photo_{i:04d}.jpg" for i in range(3000)]
    model.image_names_[members[4]] = '<img src=x onerror="window.pwned=1">.jpg'
    unique = np.random.default_rng(1).uniform(0, 1, 3000)
    model._duplicates = Duplicates([members[:2]], [members[2:5]], 0.95, unique, None, 3000)
    report = write_report(model, tmp_path / "groups.html", verbose=False)
    tab = Page(browser, report.as_uri())
    page = tab.page
    try:
        data = page.evaluate("window.conceptExplorer.data")  # the page's values (3 decimals)
        u, p = data["uniqueness"], data["points"]["probability"]
        assert u[members[0]] == pytest.approx(float(unique[members[0]]), abs=0.0005)
        page.click(".concept-card[data-concept='3']")
        page.wait_for_selector("#members .panel[data-concept='3'] .member")

        def listed() -> list[int]:  # the members listed, in their order
            return page.evaluate("[...document.querySelectorAll('#members .grid .member')].map((m) => Number(m.dataset.index))")

        typical = listed()
        assert typical == sorted(members, key=lambda i: (-p[i], i))[:MEMBERS_PAGE]  # the default order is unchanged
        assert page.eval_on_selector("#members .member-sort", "s => s.value") == "typical"

        # a copy's badge: its near group, the kept image first, side by side
        page.click(f"#members .member[data-index='{members[3]}'] .badge.dup")
        page.wait_for_selector("#results .dup-group .dup-member")
        shown = page.evaluate("""() => [...document.querySelectorAll('#results .dup-group .dup-member')].map((f) => {
            const r = f.getBoundingClientRect();
            return [Number(f.dataset.index), f.querySelector('.dup-role').textContent, f.querySelector('.dup-name').textContent,
                    r.left, r.top]; })""")
        name = {members[2]: f"photo_{members[2]:04d}.jpg", members[3]: f"photo_{members[3]:04d}.jpg",
                members[4]: '<img src=x onerror="window.pwned=1">.jpg'}
        assert [s[:3] for s in shown] == [[members[2], "kept", name[members[2]]]] + [  # then the copies, by index
            [i, "copy", name[i]] for i in sorted(members[3:5])]
        assert shown[0][4] == shown[1][4] == shown[2][4] and shown[0][3] < shown[1][3] < shown[2][3]  # one row
        assert page.locator("#results img").count() == 0 and not page.evaluate("window.pwned")
        assert "Duplicate group" in page.inner_text("#results h3")
        assert sorted(page.evaluate("window.conceptExplorer.scatterplot.get('selectedPoints')")) == sorted(members[2:5])
        page.screenshot(path=str(tmp_path / "duplicate_group.png"))
        # the kept image's badge of the exact pair
        page.click(f"#members .member[data-index='{members[0]}'] .badge.dup")
        page.wait_for_selector(f"#results .dup-group .dup-member[data-index='{members[1]}']")
        assert page.evaluate("""[...document.querySelectorAll('#results .dup-member')].map((f) =>
            [Number(f.dataset.index), f.querySelector('.dup-role').textContent])""") == [[members[0], "kept"],
                                                                                          [members[1], "copy"]]

        # most unusual first: by the page's uniqueness, ties by confidence
        page.select_option("#members .member-sort", "unusual")
        by_uniqueness = listed()
        assert by_uniqueness == sorted(members, key=lambda i: (-u[i], -p[i], i))[:MEMBERS_PAGE]
        assert by_uniqueness != typical
        assert all(u[a] >= u[b] for a, b in pairwise(by_uniqueness))
        badge = page.inner_text(f"#members .member[data-index='{by_uniqueness[0]}'] .badge.uniqueness")
        assert len(badge) == 4 and abs(float(badge) - u[by_uniqueness[0]]) <= 0.0051  # its value, 2 decimals
        page.screenshot(path=str(tmp_path / "by_uniqueness.png"))
        page.click(".concept-card[data-concept='5']")  # the choice stays for the next concept
        page.wait_for_selector("#members .panel[data-concept='5'] .member")
        five = [i for i in range(3000) if model.labels_[i] == 5]
        assert listed() == sorted(five, key=lambda i: (-u[i], -p[i], i))[:MEMBERS_PAGE]
        page.evaluate("window.conceptExplorer.sortMembers('typical')")
        assert listed() == sorted(five, key=lambda i: (-p[i], i))[:MEMBERS_PAGE]
        assert not tab.errors, tab.errors
    finally:
        tab.close()


def test_a_fitted_models_duplicate_group_and_uniqueness_order(browser, clipart_model, tiny_clip, tmp_path):
    """Issue 27 end to end: a model fitted with find_duplicates=True on drawings and two byte copies of them; a copy's
    badge shows its group with the files' names, and the uniqueness order is the model's `duplicates_.uniqueness`."""
    import shutil

    from concept.duplicates import duplicate_groups

    _, _, paths = clipart_model
    copies = []
    for k in (3, 25):
        copies.append(tmp_path / f"copy_of_{paths[k].name}")
        shutil.copy(paths[k], copies[-1])
    model = ConceptModel(min_concept_size=5, embedding_model=str(tiny_clip), random_state=0, verbose=False,
                         find_duplicates=True)
    model.fit([str(p) for p in [*paths, *copies]], docs=WORDS)
    found = model.__dict__["_duplicates"]
    assert found is not None and found.uniqueness is not None
    groups = duplicate_groups(found)
    row = len(paths) + 1  # the copy of paths[25]
    assert groups[row] >= 0 and groups[row] == groups[25]
    group = np.flatnonzero(groups == groups[row]).tolist()
    kept = [i for i in group if i not in set(found.droppable())]
    assert len(kept) == 1
    report = write_report(model, tmp_path / "fitted_dup.html", verbose=False)
    tab = Page(browser, report.as_uri())
    page = tab.page
    try:
        c = int(model.labels_[row])
        page.click(f".card[data-concept='{c}']")
        page.wait_for_selector(f"#members .member[data-index='{row}'] .badge.dup")
        page.click(f"#members .member[data-index='{row}'] .badge.dup")
        page.wait_for_selector("#results .dup-group .dup-member")
        shown = page.evaluate("""[...document.querySelectorAll('#results .dup-member')].map((f) =>
            [Number(f.dataset.index), f.querySelector('.dup-role').textContent, f.querySelector('.dup-name').textContent])""")
        names = [os.path.basename(s) for s in model.image_sources_]
        assert shown == [[kept[0], "kept", names[kept[0]]]] + [[i, "copy", names[i]] for i in sorted(set(group) - set(kept))]
        assert names[row] == f"copy_of_{paths[25].name}"

        data = page.evaluate("window.conceptExplorer.data")
        u, p = data["uniqueness"], data["points"]["probability"]
        assert np.allclose(u, found.uniqueness, atol=0.0005) and all(0 <= v <= 1 for v in u)
        page.select_option("#members .member-sort", "unusual")
        listed = page.evaluate("[...document.querySelectorAll('#members .grid .member')].map((m) => Number(m.dataset.index))")
        in_c = np.flatnonzero(model.labels_ == c).tolist()
        assert listed == sorted(in_c, key=lambda i: (-u[i], -p[i], i))[:MEMBERS_PAGE]
        page.screenshot(path=str(tmp_path / "fitted_duplicates.png"))
        assert not tab.errors, tab.errors
    finally:
        tab.close()
