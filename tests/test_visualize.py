"""Tests for concept.visualize: one titled image panel per concept, saved headless."""

from __future__ import annotations

import textwrap
import threading

import pytest
import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from concept._errors import ConceptError
from concept.collage import make_collage
from concept.visualize import barchart_figure, concept_title, concepts_figure, heatmap_figure, hierarchy_order

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


def test_barchart_of_a_real_fit_shows_each_concepts_words_and_scores(clipart_model, tmp_path):
    m = clipart_model
    fig = m.visualize_barchart(top_n=3, n_words=4)
    axes = fig.axes
    largest = list(m.frequency.Concept[lambda c: c >= 0])[:3]
    assert len(axes) == len(largest)
    for ax, c in zip(axes, largest):
        assert [t.get_text() for t in ax.get_yticklabels()] == [textwrap.shorten(w, 24, placeholder="…")
                                                                for w in m.topics[c][:4]]
        assert [round(p.get_width(), 6) for p in ax.patches] == [round(s, 6) for _, s in m.topics_[c][:4]]
        assert ax.get_title().startswith(f"Concept {c} · ")
    fig.savefig(tmp_path / "bars.png")
    with pytest.raises(ConceptError, match="Unknown concepts"):
        m.visualize_barchart(concepts=[99])


def test_heatmap_of_a_real_fit_orders_siblings_together(clipart_model, tmp_path):
    m = clipart_model
    checked = [layer for layer in range(len(m.layers_)) if m.layer_sizes_[layer] >= 2]
    assert checked  # the 24 images of 3 folders give at least one layer of several concepts
    for layer in checked:
        fig = m.visualize_heatmap(layer=layer)
        matrix = fig.axes[0].images[0].get_array()
        order = hierarchy_order(m.hierarchy_.parents, layer, m.layer_sizes_[layer])
        emb = m.layer_embeddings_[layer] - m.image_center_  # centred as words are compared
        emb = emb / np.linalg.norm(emb, axis=1, keepdims=True)
        np.testing.assert_allclose(matrix, (emb @ emb.T)[np.ix_(order, order)], atol=1e-6)
        labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
        assert [int(t.split(":")[0]) for t in labels] == order.tolist()
        fig.savefig(tmp_path / f"heat{layer}.png")
    with pytest.raises(ConceptError, match="layer must be"):
        m.visualize_heatmap(layer=len(m.layers_))


def test_hierarchy_order_groups_by_the_coarsest_ancestor():
    parents = [np.array([1, 0, 1, 0, -1]), np.array([1, 0])]  # layer 0 -> 1 -> 2
    # layer-0 concepts 0..4: parents 1,0,1,0,-; grandparents 0,1,0,1,-: grouped by grandparent, then parent
    assert hierarchy_order(parents, 0, 5).tolist() == [0, 2, 1, 3, 4]
    assert hierarchy_order(parents, 1, 2).tolist() == [1, 0]
    assert hierarchy_order(parents, 2, 2).tolist() == [0, 1]


def test_barchart_and_heatmap_figures_check_their_input():
    with pytest.raises(ConceptError):
        barchart_figure({}, [])
    with pytest.raises(ConceptError):
        heatmap_figure(np.eye(2), ["a"])
