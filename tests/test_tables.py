"""A fitted model's results as tables (`concept.tables`): concept sizes, concepts with their
words and names, and the concept tree."""

from __future__ import annotations

import numpy as np

from concept.tables import concept_info, frequency_table, hierarchy_table, image_table

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


def test_image_info_of_a_real_fit_has_a_row_per_image_that_agrees_with_the_model(clipart_model):
    m = clipart_model
    df = m.get_image_info()
    assert len(df) == len(m.labels_) and list(df.Image) == m.image_sources_
    assert (df.Concept.to_numpy() == m.labels_).all() and (df.Input.to_numpy() == m.image_indices_).all()
    assert np.allclose(df.Probability.to_numpy(), m.probabilities_)
    for i, layer in enumerate(m.layers_):
        assert (df[f"Concept L{i}"].to_numpy() == layer).all()
    for c, rows in m.exemplars_.items():
        assert df.Representative.to_numpy()[rows].all()
    assert int(df.Representative.sum()) == len({r for rows in m.exemplars_.values() for r in rows})
    inside = df[df.Concept >= 0]
    assert all(name == ", ".join(m.topics[c][:3]) for name, c in zip(inside.Name, inside.Concept))
    assert (df[df.Concept < 0].Name == "(outlier)").all()
    captioned = df["Caption terms"] != ""
    assert captioned.any() and not captioned.all()  # half the images had a caption of their own


def test_image_table_names_words_and_missing_sources():
    layers = [np.array([0, 1, 1, -1]), np.array([0, 0, 0, -1])]
    topics = {0: [("cat", 0.9), ("kitten", 0.5)], 1: [("dog", 0.8)]}
    df = image_table(None, np.array([0, 2, 3, 5]), layers, 0, np.array([1.0, 0.5, 0.2, 0.0]), {0: [0], 1: [2]},
                     topics, {1: "dogs"}, caption_docs=[["a", "cat"], None, ["dog"]], captioned=np.array([1, 0, 1]))
    assert df.Image.isna().all() and df.Input.tolist() == [0, 2, 3, 5]
    assert df.Name.tolist() == ["cat, kitten", "dogs", "dogs", "(outlier)"]
    assert df.Words.tolist() == ["cat, kitten", "dog", "dog", ""]
    assert df.Representative.tolist() == [True, False, True, False]
    assert df["Concept L1"].tolist() == [0, 0, 0, -1]
    assert df["Caption terms"].tolist() == ["a cat", "", "dog", ""]  # the 4th row came after the fit (partial_fit)


def test_concept_info_names_each_concepts_exemplars_when_the_images_have_names():
    names = [f"img{i}.jpg" for i in range(len(LABELS))]
    exemplars = {2: [3, 0], 0: [1], 1: [5], 3: []}
    assert "Exemplars" not in concept_info(LABELS, TOPICS, exemplars=exemplars).columns
    df = concept_info(LABELS, TOPICS, {1: "Cups"}, exemplars, names)
    assert list(df.columns) == ["Concept", "Frequency", "Name", "Words", "Exemplars"]
    assert dict(zip(df.Concept, df.Exemplars, strict=True)) == {
        2: ["img3.jpg", "img0.jpg"], 0: ["img1.jpg"], 3: [], 1: ["img5.jpg"], -1: []}


def test_image_table_shows_the_given_image_names_next_to_the_files():
    layers = [np.array([0, 1, -1])]
    args = (["a.png", "b.png", "c.png"], np.array([0, 1, 2]), layers, 0, np.ones(3), {0: [0]}, {0: [], 1: []})
    assert "Image name" not in image_table(*args).columns
    df = image_table(*args, image_names=["cat", "dog", "tree"])
    assert list(df.columns[:3]) == ["Image", "Image name", "Input"]
    assert df["Image name"].tolist() == ["cat", "dog", "tree"] and df.Image.tolist() == ["a.png", "b.png", "c.png"]


def test_frequency_table_can_leave_rows_out_and_still_lists_every_concept():
    from concept.tables import frequency_table

    labels = np.array([1, 1, 0, -1, 2, 2, 2])
    assert frequency_table(labels).to_dict("list") == {"Concept": [2, 1, 0, -1], "Frequency": [3, 2, 1, 1]}
    fewer = frequency_table(labels, left_out=[1, 4, 5, 2])  # concept 0's only image left out: listed with 0
    assert fewer.to_dict("list") == {"Concept": [1, 2, 0, -1], "Frequency": [1, 1, 0, 1]}
    assert frequency_table(labels, left_out=[]).equals(frequency_table(labels))


def test_duplicate_columns_mark_each_groups_kept_image():
    from concept.tables import duplicate_columns

    df = image_table(None, np.arange(5), [np.array([0, 0, 1, 1, -1])], 0, np.ones(5), {}, {0: [], 1: []})
    out = duplicate_columns(df, np.array([0, -1, 0, 1, 1]), [2, 4], np.linspace(0, 1, 5), np.full(5, 0.5))
    assert list(out.columns[-4:]) == ["Duplicate group", "Kept", "Uniqueness", "Typicality"]
    assert out["Duplicate group"].tolist() == [0, -1, 0, 1, 1]
    assert out.Kept.tolist() == [True, True, False, True, False]  # one per group, and every image in none
    assert out.Uniqueness.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0] and (out.Typicality == 0.5).all()


def test_image_info_has_the_duplicate_columns_only_when_the_duplicates_are_known(tmp_path):
    from conftest import blobs

    from concept.duplicates import Duplicates, duplicate_groups
    from concept.model import ConceptModel

    x, _ = blobs(n_per=40, centers=4, dim=64, spread=0.3)
    x = np.concatenate([x, x[:3]])  # rows 160-162 copy rows 0-2
    kwargs = {"embedding_model": None, "min_concept_size": 10, "verbose": False, "random_state": 0}
    plain = ConceptModel(**kwargs).fit(image_embeddings=x)
    before = plain.get_image_info()
    assert "Duplicate group" not in before.columns and plain.__dict__["_duplicates"] is None  # nothing found for it
    found = ConceptModel(**kwargs, find_duplicates=True).fit(image_embeddings=x)
    found.save(tmp_path / "m")
    for model in (found, ConceptModel.load(tmp_path / "m")):  # the duplicates are saved with the model
        df = model.get_image_info()
        assert list(df.columns[:len(before.columns)]) == list(before.columns)
        assert list(df.columns[len(before.columns):]) == ["Duplicate group", "Kept", "Uniqueness", "Typicality"]
        groups = df["Duplicate group"].to_numpy()
        np.testing.assert_array_equal(groups, duplicate_groups(model.duplicates_))
        assert [groups[r] for r in (0, 160, 1, 161, 2, 162)] == [0, 0, 1, 1, 2, 2] and (groups[3:160] == -1).all()
        assert df.Kept.sum() == len(x) - 3 and not df.Kept[160:].any()
        np.testing.assert_allclose(df.Uniqueness, model.uniqueness_)
        np.testing.assert_allclose(df.Typicality, model.typicality_)
    assert plain.duplicates_.n_images == len(x)  # found on first use: the table shows them from then on
    assert "Kept" in plain.get_image_info().columns
    # Exact and near groups joined: an exact copy of a near group's member is in that group, and not kept.
    plain.duplicates_ = Duplicates(exact=[[5, 7]], near=[[3, 5, 9]], near_threshold=0.95, uniqueness=None,
                                   n_images=len(x))
    df = plain.get_image_info()
    assert df["Duplicate group"][[3, 5, 7, 9]].tolist() == [0, 0, 0, 0] and (df["Duplicate group"] >= 0).sum() == 4
    assert df.Kept[[3, 5, 7, 9]].tolist() == [True, False, False, False] and df.Kept.sum() == len(x) - 3
