"""Tests for concept.visualize: one titled image panel per concept, saved headless."""

from __future__ import annotations

import threading

import pytest
from matplotlib.figure import Figure
from PIL import Image

from concept._errors import ConceptError
from concept.collage import make_collage
from concept.visualize import concept_title, concepts_figure

WORDS = {0: "dog, puppy, hound", 1: "cat, kitten", 2: "car", 3: "apple, pear", 4: "boat"}


def _collages(n: int = 5) -> dict[int, Image.Image]:
    colors = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30), (30, 200, 200)]
    return {i: make_collage([Image.new("RGB", (40, 30), colors[i % 5])] * 4, tile=32)
            for i in range(n)}


def _visible_image_axes(fig: Figure) -> list:
    return [ax for ax in fig.axes if ax.get_visible() and ax.get_images()]


def test_one_image_panel_per_concept_and_no_extra_axes():
    fig = concepts_figure(_collages(5), WORDS, columns=3)
    assert len(_visible_image_axes(fig)) == 5
    assert len([ax for ax in fig.axes if ax.get_visible()]) == 5  # the empty 6th cell has none
    assert all(not ax.axison for ax in fig.axes)  # axis off


def test_titles_hold_id_size_and_words_in_order():
    sizes = {0: 120, 1: 1, 2: 3_400, 3: 7, 4: 9}
    fig = concepts_figure(_collages(5), WORDS, sizes=sizes)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0] == "Concept 0 · 120 images\ndog, puppy, hound"
    assert "Concept 1 · 1 image\n" in titles[1]
    assert "3,400 images" in titles[2] and "car" in titles[2]


def test_order_follows_mapping_and_missing_title_or_size():
    collages = {7: _collages(1)[0], 2: _collages(1)[0]}
    fig = concepts_figure(collages, {2: ["tree", "leaf"]}, sizes={7: 5})
    assert [ax.get_title() for ax in fig.axes] == ["Concept 7 · 5 images", "Concept 2\ntree, leaf"]


def test_long_word_lists_are_wrapped_to_two_lines():
    words = ", ".join(f"word{i:02d}" for i in range(30))
    title = concept_title(3, words, 10)
    head, *lines = title.split("\n")
    assert head == "Concept 3 · 10 images"
    assert len(lines) == 2 and all(len(line) <= 40 for line in lines)
    assert lines[1].endswith("…") and lines[0].startswith("word00, word01")


def test_figure_size_follows_grid_and_panel_inches():
    w, h = concepts_figure(_collages(5), WORDS, columns=3, panel_inches=2.0).get_size_inches()
    assert w == pytest.approx(6.0) and h > 4.0
    w1, _ = concepts_figure(_collages(1), WORDS, columns=3, panel_inches=2.0).get_size_inches()
    assert w1 == pytest.approx(2.0)  # one concept: one column, not a wide empty figure


def test_saves_png_headless(tmp_path):
    path = tmp_path / "concepts.png"
    concepts_figure(_collages(5), WORDS, sizes=dict.fromkeys(range(5), 12)).savefig(path)
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.format == "PNG" and im.width > 400 and im.height > 300


def test_works_in_threads(tmp_path):
    errors: list[BaseException] = []

    def draw(i: int) -> None:
        try:
            concepts_figure(_collages(2), WORDS).savefig(tmp_path / f"{i}.png")
        except BaseException as exc:  # noqa: BLE001 - reported to the main thread
            errors.append(exc)

    threads = [threading.Thread(target=draw, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(list(tmp_path.glob("*.png"))) == 3


def test_bad_arguments_raise():
    with pytest.raises(ConceptError, match="at least one collage"):
        concepts_figure({}, {})
    with pytest.raises(ConceptError, match="columns"):
        concepts_figure(_collages(1), WORDS, columns=0)
    with pytest.raises(ConceptError, match="panel_inches"):
        concepts_figure(_collages(1), WORDS, panel_inches=0)
