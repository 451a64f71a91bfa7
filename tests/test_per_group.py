"""Concepts per group (`concept.per_group`, `ConceptModel.concepts_per_group`): counts, shares
and the smoothed log2 lift, on plain labels and on a model fitted on real image files."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from conftest import ColorEmbedder
from PIL import Image

from concept import ConceptModel
from concept._errors import ConceptError
from concept.per_group import DEFAULT_PRIOR, NO_GROUP, per_group_table

# 10 images: concept 0 six times, concept 1 three times, one outlier.
LABELS = np.array([0, 0, 0, 0, 1, 1, 0, 1, 0, -1])
GROUPS = ["a", "a", "a", "a", "b", "b", "b", "b", "solo", "b"]
TOPICS = {0: [("cat", 0.9), ("kitten", 0.5)], 1: [("car", 0.8)]}


def smoothed_lift(n_gc: int, n_g: int, n_c: int, n: int, prior: float) -> float:
    p = n_c / n
    return math.log2((n_gc + prior * p) / (n_g + prior) / p)


def test_each_group_and_concept_is_counted_with_its_share_and_score():
    df = per_group_table(LABELS, GROUPS, TOPICS, names={1: "Cars"})
    assert list(df.columns) == ["Group", "Concept", "Frequency", "Share in group", "Expected", "Score", "Name",
                                "Words"]
    # groups largest first (b: 5, a: 4, solo: 1), concepts by id, the outliers last; zeros kept
    assert list(zip(df.Group, df.Concept, df.Frequency)) == [
        ("b", 0, 1), ("b", 1, 3), ("b", -1, 1),
        ("a", 0, 4), ("a", 1, 0), ("a", -1, 0),
        ("solo", 0, 1), ("solo", 1, 0), ("solo", -1, 0)]
    assert int(df.Frequency.sum()) == len(LABELS)
    assert np.allclose(df["Share in group"], [0.2, 0.6, 0.2, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0])
    assert np.allclose(df.Expected, [3.0, 1.5, 0.5, 2.4, 1.2, 0.4, 0.6, 0.3, 0.1])
    sizes = {"b": 5, "a": 4, "solo": 1}
    totals = {0: 6, 1: 3, -1: 1}
    want = [smoothed_lift(f, sizes[g], totals[c], 10, DEFAULT_PRIOR) for g, c, f in zip(df.Group, df.Concept,
                                                                                         df.Frequency)]
    assert np.allclose(df.Score, want)
    assert df.Name.tolist()[:3] == ["cat, kitten", "Cars", "(outliers)"]
    assert df.Words.tolist()[:3] == ["cat, kitten", "car", "(outliers)"]
    assert df.attrs["prior"] == DEFAULT_PRIOR


def test_the_score_ranks_a_large_clear_excess_above_a_single_image():
    # 1,000 images; concept 1 has 21 (2.1 %): 20 in group "big" (40 % of its 50 images), 1 alone in "one"
    labels = np.array([1] * 20 + [0] * 30 + [0] * 949 + [1])
    groups = ["big"] * 50 + ["rest"] * 949 + ["one"]
    df = per_group_table(labels, groups, {}).set_index(["Group", "Concept"])
    raw = per_group_table(labels, groups, {}, prior=0).set_index(["Group", "Concept"])
    assert math.isclose(raw.loc[("one", 1), "Score"], math.log2(1 / 0.021))  # 5.6: the unsmoothed lift
    assert raw.loc[("one", 1), "Score"] > raw.loc[("big", 1), "Score"]  # which ranks one image first
    assert df.loc[("big", 1), "Score"] > df.loc[("one", 1), "Score"] > 0  # the smoothed one does not
    assert math.isclose(df.loc[("big", 1), "Score"], smoothed_lift(20, 50, 21, 1000, DEFAULT_PRIOR))
    assert df.loc[("one", 0), "Score"] >= math.log2(DEFAULT_PRIOR / (1 + DEFAULT_PRIOR)) - 1e-12  # bounded below
    assert raw.loc[("one", 0), "Score"] == -math.inf  # absent, unsmoothed
    assert df.loc[("rest", 1), "Score"] < 0


def test_groups_of_one_image_each_work():
    df = per_group_table(np.array([0, 1, 1]), ["x", "y", "z"], {})
    assert df.Group.tolist() == ["x", "x", "y", "y", "z", "z"]
    assert df.Frequency.tolist() == [1, 0, 0, 1, 0, 1]
    assert np.isfinite(df.Score).all()


def test_bad_groups_are_clear_errors():
    with pytest.raises(ConceptError, match="3 values for 2 images"):
        per_group_table(np.array([0, 1]), ["a", "b", "c"], {})
    with pytest.raises(ConceptError, match="prior"):
        per_group_table(np.array([0, 1]), ["a", "b"], {}, prior=-1)


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> list[Path]:
    """Real JPEG files in three folders (cameras): red and green photos mixed, one blue photo alone."""
    root = tmp_path_factory.mktemp("cameras")
    plan = {"canon": [(220, 20, 20)] * 8 + [(20, 200, 40)] * 2, "nikon": [(20, 200, 40)] * 8 + [(220, 20, 20)] * 2,
            "phone": [(30, 40, 230)] * 6}
    paths = []
    for camera, colors in plan.items():
        (root / camera).mkdir()
        for i, rgb in enumerate(colors):
            path = root / camera / f"{i:02d}.jpg"
            Image.new("RGB", (30 + i, 24), rgb).save(path)
            paths.append(path)
    return paths


@pytest.fixture(scope="module")
def model(folders) -> ConceptModel:
    m = ConceptModel(min_concept_size=5, embedding_model=ColorEmbedder(), random_state=0, verbose=False)
    return m.fit([str(p) for p in folders] + ["/nowhere/lost.jpg"], docs=["red", "green", "blue"])


def test_folder_groups_of_a_fitted_model(model, folders):
    red = int(model.labels_[0])
    df = model.concepts_per_group("folder")
    assert df.Group.unique().tolist() == ["canon", "nikon", "phone"]  # 10, 10, 6 images
    counts = df.set_index(["Group", "Concept"]).Frequency
    assert counts[("canon", red)] == 8 and counts[("nikon", red)] == 2 and counts[("phone", red)] == 0
    assert int(df.Frequency.sum()) == len(folders) == len(model.labels_)
    top = df.sort_values("Score", ascending=False).groupby("Group").head(1).set_index("Group").Concept
    assert top["canon"] == red and top["phone"] == int(model.labels_[-1])


def test_given_groups_per_fitted_or_per_input_image_and_missing_ones(model):
    per_row = ["x"] * 20 + [None] * 5 + ["solo"]
    a = model.concepts_per_group(per_row)
    b = model.concepts_per_group(per_row + ["the unreadable input"])  # one per input: lost.jpg last
    assert a.equals(b)
    assert a.Group.unique().tolist() == ["x", NO_GROUP, "solo"]
    with pytest.raises(ConceptError, match="25 values"):
        model.concepts_per_group(per_row[:25])
    with pytest.raises(ConceptError, match="'folder'"):
        model.concepts_per_group("camera")
    for layer in range(len(model.layers_)):
        assert int(model.concepts_per_group(per_row, layer=layer).Frequency.sum()) == 26


def test_folder_groups_need_files():
    m = ConceptModel(min_concept_size=5, embedding_model=ColorEmbedder(), random_state=0, verbose=False)
    m.fit([Image.new("RGB", (20, 20), (250, 0, 0))] * 6 + [Image.new("RGB", (20, 20), (0, 0, 250))] * 6,
          docs=["red", "blue"])
    with pytest.raises(ConceptError, match="image files"):
        m.concepts_per_group("folder")


def test_the_heatmap_shows_the_score_and_the_counts(model):
    table = model.concepts_per_group("folder")
    fig = model.visualize_concepts_per_group(table)
    ax = fig.axes[0]
    shown = ax.images[0].get_array()
    k = len([c for c in table.Concept.unique() if c >= 0])
    assert shown.shape == (3, k)  # groups x concepts (outliers left out)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["canon", "nikon", "phone"]
    assert sorted(int(t.get_text()) for t in ax.texts) == sorted(table[table.Concept >= 0].Frequency.tolist())
    one = model.visualize_concepts_per_group("folder", max_groups=1, top_n=1)  # groups given, table computed
    assert one.axes[0].images[0].get_array().shape == (1, 1)
