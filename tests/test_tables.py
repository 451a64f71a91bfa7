"""A fitted model's results as tables (`concept.tables`): concept sizes, concepts with their
words and names, and the concept tree."""

from __future__ import annotations

import numpy as np

from concept.tables import concept_info, frequency_table, hierarchy_table

# concept 2 is the largest, 0 and 3 tie, 1 is the smallest; three outliers
LABELS = np.array([2, 0, -1, 2, 3, 1, 2, -1, 0, 3, 2, -1])
TOPICS = {0: [("cat", 0.9), ("kitten", 0.8)], 1: [("cup", 0.7)], 2: [("boat", 0.6), ("ship", 0.5)], 3: []}


def test_frequency_table_is_largest_first_with_outliers_last():
    df = frequency_table(LABELS)
    assert list(df.columns) == ["Concept", "Frequency"]
    assert df.Concept.tolist() == [2, 0, 3, 1, -1]  # ties by id
    assert df.Frequency.tolist() == [4, 2, 2, 1, 3]
    assert list(df.index) == [0, 1, 2, 3, 4]


def test_frequency_table_without_outliers_has_no_outlier_row():
    df = frequency_table(np.array([1, 1, 0]))
    assert df.Concept.tolist() == [1, 0] and df.Frequency.tolist() == [2, 1]


def test_concept_info_lists_each_concepts_words():
    df = concept_info(LABELS, TOPICS)
    assert list(df.columns) == ["Concept", "Frequency", "Words"]
    assert dict(zip(df.Concept, df.Words, strict=True)) == {
        2: "boat, ship", 0: "cat, kitten", 3: "", 1: "cup", -1: "(outliers)"}


def test_concept_info_has_a_name_column_only_with_names():
    assert "Name" not in concept_info(LABELS, TOPICS, names={}).columns
    df = concept_info(LABELS, TOPICS, names={2: "Boats", 1: "Cups"})
    assert list(df.columns) == ["Concept", "Frequency", "Name", "Words"]
    assert df.Name.tolist() == ["Boats", "", "", "Cups", ""]


def test_concept_info_of_a_concept_without_topics_has_no_words():
    df = concept_info(np.array([0, 1, 1]), {1: [("dog", 0.5)]})
    assert df.Words.tolist() == ["dog", ""]


def test_hierarchy_table_lists_each_concept_under_its_parent():
    fine = np.array([0, 0, 0, 1, 1, 2, -1, 3])
    parents = [np.array([0, 1, 1, -1]), np.array([0, 0])]
    layers = [fine, np.array([0, 0, 0, 1, 1, 1, -1, -1]), np.array([0, 0, 0, 0, 0, 0, -1, -1])]
    words = [{0: [(f"w{i}", 1.0) for i in range(7)], 1: [("b", 1.0)], 2: [], 3: [("d", 1.0)]},
             {0: [("top", 1.0)], 1: [("one", 1.0)]}, {0: []}]
    df = hierarchy_table(parents, layers, words)
    assert list(df.columns) == ["Layer", "Concept", "Parent layer", "Parent", "Size", "Words"]
    assert df[["Layer", "Concept", "Parent layer", "Parent", "Size"]].values.tolist() == [
        [0, 0, 1, 0, 3], [0, 1, 1, 1, 2], [0, 2, 1, 1, 1], [0, 3, 1, -1, 1],
        [1, 0, 2, 0, 3], [1, 1, 2, 0, 3]]
    assert df.Words.tolist() == ["w0, w1, w2, w3, w4", "b", "", "d", "top", "one"]  # at most five words


def test_hierarchy_table_of_one_layer_is_empty_with_its_columns():
    df = hierarchy_table([], [np.array([0, 1])], [{0: [], 1: []}])
    assert df.empty
    assert list(df.columns) == ["Layer", "Concept", "Parent layer", "Parent", "Size", "Words"]
