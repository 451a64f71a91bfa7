"""Shaping fitted concepts (editing.py): reduce, merge, delete, name, outliers, evaluate."""

from __future__ import annotations

import dataclasses

import itertools

import numpy as np
import pytest
from conftest import blobs, nested_blobs
from sklearn.metrics import normalized_mutual_info_score
from test_model import WORDS, HashTexts

from concept import ConceptError, ConceptModel, evaluate
from concept.editing import calibrated_matches, merge_mapping
from concept.shaping import Edit


def nested(seed: int = 0, **kwargs) -> tuple[ConceptModel, np.ndarray, np.ndarray, np.ndarray]:
    """5 groups of 4 sub-clusters of 40 (800 rows, 32-d): layers of 20 and 5 concepts."""
    x, groups, subs = nested_blobs(groups=5, subs=4, per=40, dim=32)
    model = ConceptModel(min_concept_size=15, embedding_model=HashTexts(32), random_state=seed,
                         verbose=False, **kwargs)
    return model.fit(image_embeddings=x, docs=WORDS), x, groups, subs


def near(x: np.ndarray, seed: int = 5) -> np.ndarray:
    return x[::3] + 0.01 * np.random.default_rng(seed).normal(size=x[::3].shape).astype(np.float32)


def assert_consistent(model: ConceptModel, x: np.ndarray) -> None:
    """What every edit must keep: transform gives labels_ back, layers nest, descriptions per concept."""
    np.testing.assert_array_equal(model.transform(image_embeddings=x), model.labels_)
    k = model.n_concepts_
    assert model.layer_sizes_[model.layer_] == k and set(model.labels_[model.labels_ >= 0]) == set(range(k))
    assert sorted(model.topics_) == list(range(k)) and sorted(model.exemplars_) == list(range(k))
    for c, rows in model.exemplars_.items():
        assert (model.labels_[rows] == c).all()
    for fine, coarse in itertools.pairwise(model.layers_):
        for c in np.unique(fine[fine >= 0]):
            assert len(np.unique(coarse[fine == c])) == 1


def assert_same_after_load(model: ConceptModel, x: np.ndarray, tmp_path) -> ConceptModel:
    new = near(x)
    before = model.transform(image_embeddings=new, return_probabilities=True)
    model.save(tmp_path / "m")
    loaded = ConceptModel.load(tmp_path / "m", embedding_model=HashTexts(32))
    after = loaded.transform(image_embeddings=new, return_probabilities=True)
    np.testing.assert_array_equal(after[0], before[0])
    np.testing.assert_array_equal(after[1], before[1])
    np.testing.assert_array_equal(loaded.labels_, model.labels_)
    np.testing.assert_array_equal(loaded.probabilities_, model.probabilities_)
    assert loaded.layer_ == model.layer_ and loaded.layer_sizes_ == model.layer_sizes_
    assert loaded.topics_ == model.topics_ and loaded.custom_labels_ == model.custom_labels_
    assert loaded.concept_mapping_ == model.concept_mapping_
    return loaded


def test_reduce_concepts_gives_exactly_n_along_the_hierarchy(tmp_path):
    model, x, groups, subs = nested()
    assert model.layer_sizes_ == [20, 5] and model.layer_ == 1
    model.reduce_concepts(12)  # more than labels_ has: re-cut from the finest layer
    assert model.n_concepts_ == 12 and model.layer_sizes_[0] == 20
    assert_consistent(model, x)
    mapping = model.reduce_concepts(5)
    assert model.n_concepts_ == 5 and sorted(set(mapping.values())) == list(range(5))
    assert normalized_mutual_info_score(groups, model.labels_) > 0.95
    sizes = np.bincount(model.labels_[model.labels_ >= 0])
    assert (np.diff(sizes) <= 0).all()  # renumbered by size
    assert_consistent(model, x)
    model.reduce_concepts(3)
    assert model.n_concepts_ == 3
    assert_consistent(model, x)
    assert_same_after_load(model, x, tmp_path)
    with pytest.raises(ConceptError, match="finest layer has 20"):
        model.reduce_concepts(21)


def test_n_concepts_parameter_reduces_after_the_fit():
    model, x, groups, _ = nested(n_concepts=4)
    assert model.n_concepts_ == 4 and len(model.concept_mapping_) == 1
    assert_consistent(model, x)


def test_merge_keeps_the_smallest_id_and_closes_up_the_others(tmp_path):
    assert merge_mapping(6, [[1, 4]]).tolist() == [0, 1, 2, 3, 1, 4]
    assert merge_mapping(6, [4, 2]).tolist() == [0, 1, 2, 3, 2, 4]
    model, x, groups, subs = nested()
    model.reduce_concepts(12)
    before = model.labels_.copy()
    words_before = model.topics_[1]
    model.set_concept_labels({1: "first", 4: "second", 7: "seventh"})
    mapping = model.merge_concepts([[1, 4], [2, 3, 7]])
    assert mapping == {0: 0, 1: 1, 2: 2, 3: 2, 4: 1, 5: 3, 6: 4, 7: 2, 8: 5, 9: 6, 10: 7, 11: 8}
    assert model.n_concepts_ == 9
    lookup = np.array([mapping[c] for c in range(12)])
    np.testing.assert_array_equal(model.labels_, np.where(before >= 0, lookup[np.maximum(before, 0)], -1))
    assert model.custom_labels_ == {1: "first", 2: "seventh"}  # names follow; a merge keeps the smallest id's
    assert model.topics_[1] != words_before  # described again from the merged members
    assert_consistent(model, x)
    loaded = assert_same_after_load(model, x, tmp_path)
    info = loaded.get_concept_info()
    assert info.set_index("Concept").Name[1] == "first"
    with pytest.raises(ConceptError, match="more than one group"):
        model.merge_concepts([[0, 1], [1, 2]])
    with pytest.raises(ConceptError, match="not a concept id"):
        model.merge_concepts([[0, 99]])


def test_merge_at_the_finest_layer_adds_a_layer_and_keeps_the_finest(tmp_path):
    x, groups, subs = nested_blobs(groups=5, subs=4, per=40, dim=32)
    model = ConceptModel(min_concept_size=15, embedding_model=HashTexts(32), random_state=0, verbose=False)
    model.fit(image_embeddings=x, docs=WORDS)
    finest = model.layers_[0].copy()
    # labels_ the finest layer, as on data with no clear gap (an edit that changes nothing else)
    model._apply(Edit(dataclasses.replace(model.hierarchy_, default=0), 0, None), "default layer 0")
    model.merge_concepts([[0, 1]])
    assert model.layer_ == 1 and model.n_concepts_ == 19
    np.testing.assert_array_equal(model.layers_[0], finest)
    assert_consistent(model, x)
    assert_same_after_load(model, x, tmp_path)


def test_delete_to_outliers_or_to_the_nearest_concept(tmp_path):
    model, x, groups, subs = nested()
    model.reduce_concepts(10)
    members = model.labels_ == 3
    mapping = model.delete_concepts([3])
    assert mapping[3] == -1 and mapping[4] == 3 and model.n_concepts_ == 9
    assert (model.labels_[members] == -1).all() and (model.probabilities_[members] == 0).all()
    assert (model.transform(image_embeddings=x[members]) == -1).all()
    _, probs = model.transform(image_embeddings=x[members], return_probabilities=True)
    assert probs.shape == (members.sum(), 9)
    assert_consistent(model, x)
    assert_same_after_load(model, x, tmp_path)
    # The deleted images stay outliers when outliers are reduced.
    assert (model.reduce_outliers()[members] == -1).all()

    model, x, groups, subs = nested()
    model.reduce_concepts(10)
    members = model.labels_ == 3
    model.delete_concepts([3], to="nearest")
    assert model.n_concepts_ == 9 and (model.labels_[members] >= 0).all()
    assert normalized_mutual_info_score(groups, model.labels_) > 0.8  # they went to their own group
    assert_consistent(model, x)
    with pytest.raises(ConceptError, match="to must be"):
        model.delete_concepts([0], to="elsewhere")


def test_custom_labels_are_shown_and_checked(tmp_path):
    model, x, _, _ = nested()
    model.set_concept_labels({0: "beach", 2: "  sea "})
    assert model.custom_labels_ == {0: "beach", 2: "sea"}
    info = model.get_concept_info()
    assert list(info.columns) == ["Concept", "Frequency", "Name", "Words"]
    assert "Name" not in model.get_concept_info(layer=0).columns
    model.set_concept_labels({2: ""})
    assert model.custom_labels_ == {0: "beach"}
    model.set_concept_labels(["a", "b", "c", "d", "e"])
    assert model.custom_labels_[4] == "e"
    for bad, message in [({9: "x"}, "not a concept id"), ({0: 3}, "must be a string"), (["a"], "one per concept")]:
        with pytest.raises(ConceptError, match=message):
            model.set_concept_labels(bad)


def test_reduce_outliers_and_update_concepts(tmp_path):
    model, x, groups, _ = nested(outlier_threshold=1.0)
    outliers = model.labels_ < 0
    assert outliers.sum() > 20
    labels = model.reduce_outliers()
    assert (labels[~outliers] == model.labels_[~outliers]).all() and (labels >= 0).all()
    strict = model.reduce_outliers(threshold=0.999)
    assert (strict < 0).sum() > (labels < 0).sum()
    votes = model.reduce_outliers(strategy="neighbours", n_neighbors=5)
    assert (votes[outliers] >= 0).mean() > 0.9
    assert normalized_mutual_info_score(groups[outliers], votes[outliers]) > 0.8
    assert (model.labels_ < 0).sum() == outliers.sum()  # nothing applied yet
    joined = model.update_concepts(labels)
    assert joined == outliers.sum() and (model.labels_ >= 0).all()
    assert_consistent(model, x)
    assert_same_after_load(model, x, tmp_path)
    with pytest.raises(ConceptError, match="only gives outliers"):
        model.update_concepts(np.zeros(len(x), np.int64))
    with pytest.raises(ConceptError, match="strategy"):
        model.reduce_outliers(strategy="magic")


def test_hierarchy_table():
    model, x, groups, subs = nested()
    table = model.get_hierarchy()
    assert list(table.columns) == ["Layer", "Concept", "Parent layer", "Parent", "Size", "Words"]
    assert len(table) == 20 and table.Size.sum() == (model.layers_[0] >= 0).sum()
    for row in table.itertuples():
        assert (model.layers_[1][model.layers_[0] == row.Concept] == row.Parent).all()


def test_evaluate_scores_labels_and_models():
    model, x, groups, subs = nested()
    scores = evaluate(model, groups)
    assert scores["nmi"] > 0.95 and scores["ari_clustered"] > 0.95 and 0.9 < scores["fraction_clustered"] <= 1
    assert scores["n_concepts"] == 5 and scores["silhouette"] > 0.2
    stable = evaluate(model, seeds=[1])
    assert stable["seed_stability_ari"] > 0.9 and "nmi" not in stable
    rng = np.random.default_rng(0)
    bad = evaluate(rng.integers(0, 5, len(groups)), groups, space=x)
    assert bad["nmi"] < 0.05 and bad["silhouette"] < 0.05
    with pytest.raises(ConceptError, match="one per fitted image"):
        evaluate(model, groups[:10])


def test_zero_shot_threshold_is_calibrated_on_the_modality_gap():
    """Images far from every text in raw cosine (as with CLIP: ~0.3) still match their own."""
    rng = np.random.default_rng(0)
    texts = rng.normal(size=(4, 32))
    texts /= np.linalg.norm(texts, axis=1, keepdims=True)
    gap = rng.normal(size=32)
    which = np.repeat(np.arange(5), 50)  # the images of "class 4" match no text, nor each other
    own = np.vstack([texts, np.zeros((1, 32))])[which]
    own[which == 4] = rng.normal(size=((which == 4).sum(), 32)) / np.sqrt(32)
    images = 0.35 * own + gap / np.linalg.norm(gap) + 0.25 * rng.normal(size=(len(which), 32)) / np.sqrt(32)
    images /= np.linalg.norm(images, axis=1, keepdims=True)
    raw = images @ texts.T
    assert raw.max() < 0.7  # a fixed 0.7 would match nothing
    match, _ = calibrated_matches(images.astype(np.float32), texts.astype(np.float32), z=2.0)
    named = which < 4
    assert (match[named] == which[named]).mean() > 0.8
    assert (match[~named] == -1).mean() > 0.8


def test_partial_fit_keeps_ids_and_finds_a_held_back_concept(tmp_path):
    x, groups = blobs(n_per=100, centers=6, dim=32, spread=0.1)
    old, held = groups < 5, groups == 5
    model = ConceptModel(min_concept_size=15, embedding_model=HashTexts(32), random_state=0, verbose=False)
    model.fit(image_embeddings=x[old], docs=WORDS)
    before, k = model.labels_.copy(), model.n_concepts_
    assert k == 5
    names = {0: "kept"}
    model.set_concept_labels(names)
    new_rows = np.concatenate([np.flatnonzero(held), np.flatnonzero(old)[::10]])
    model.partial_fit(image_embeddings=x[new_rows])
    assert len(model.labels_) == old.sum() + len(new_rows)
    np.testing.assert_array_equal(model.labels_[:len(before)], before)  # every old label and id stays
    added = model.labels_[len(before):]
    # The held-back blob is new concepts, after the old ids (one Gaussian blob: Ward's tree of its
    # 100 images splits it, and the excess of mass keeps the parts; see exact.excess_of_mass).
    assert model.n_concepts_ > k and (added[:held.sum()] >= k).mean() > 0.95
    assert set(np.unique(added[:held.sum()])) >= set(range(k, model.n_concepts_))
    assert (added[held.sum():] == before[::10]).mean() > 0.95
    assert model.custom_labels_ == names and model.concept_mapping_[-1]["operation"].startswith("partial_fit")
    all_x = np.vstack([x[old], x[new_rows]])
    assert_consistent(model, all_x)
    loaded = assert_same_after_load(model, all_x, tmp_path)
    # Images that all fit the concepts add none.
    loaded.partial_fit(image_embeddings=x[old][::7])
    assert loaded.n_concepts_ == model.n_concepts_


def test_partial_fit_on_a_growing_folder_of_real_images(clipart_paths, offline_embedder, tmp_path):
    """OpenClipart: fit on two folders, then the whole folder list; only new files are embedded."""
    first = [p for p in clipart_paths if p.parent.name != "transportation"]
    model = ConceptModel(min_concept_size=4, embedding_model=offline_embedder, random_state=0, verbose=False,
                         store=tmp_path / "store")
    model.fit(first, docs=["animal", "food", "car", "bus", "plane", "fruit"])
    before = model.labels_.copy()
    model.partial_fit(clipart_paths)
    assert len(model.labels_) == len(clipart_paths) and model.image_sources_[:len(first)] == list(map(str, first))
    np.testing.assert_array_equal(model.labels_[:len(first)], before)
    assert set(model.collages_) == set(range(model.n_concepts_))
    model.partial_fit(clipart_paths)  # nothing new
    assert len(model.labels_) == len(clipart_paths)


def test_zero_shot_concepts_with_a_tiny_clip_are_named_and_survive_save(clipart_paths, tiny_clip, tmp_path):
    """The code path with a random tiny CLIP: names embedded, matched images a named concept."""
    from concept.embedding import load_embedding_model

    clip = load_embedding_model(str(tiny_clip), verbose=False)
    names = ["animal", "food", "vehicle"]
    model = ConceptModel(min_concept_size=3, embedding_model=clip, random_state=0, verbose=False,
                         zeroshot_concepts=names, zeroshot_threshold=1.0)
    model.fit(clipart_paths, docs=["cat", "apple", "bus", "dog", "pear", "car"])
    assert set(model.custom_labels_.values()) <= set(names) and model.custom_labels_
    x = model.embeddings_
    for c in model.custom_labels_:
        assert (model.labels_ == c).sum() >= 3
    info = model.get_concept_info()
    assert set(info.Name) >= set(model.custom_labels_.values())
    model.save(tmp_path / "m")
    loaded = ConceptModel.load(tmp_path / "m", embedding_model=clip)
    assert loaded.custom_labels_ == model.custom_labels_ and loaded.zeroshot_concepts == names
    np.testing.assert_array_equal(loaded.transform(image_embeddings=x), model.transform(image_embeddings=x))
    with pytest.raises(ConceptError, match="zeroshot_concepts"):
        ConceptModel(zeroshot_concepts="cat").fit(image_embeddings=x)


def test_zero_shot_concepts_on_precomputed_embeddings():
    """Images near a name's direction get it; the rest are clustered as usual."""
    rng = np.random.default_rng(0)
    emb = HashTexts(32)
    names = ["cat", "car"]
    t = emb.embed_texts(names)
    x, groups = blobs(n_per=80, centers=3, dim=32, spread=0.1)
    cats = t[0] + 0.1 * rng.normal(size=(60, 32)) / np.sqrt(32)
    data = np.vstack([x, cats / np.linalg.norm(cats, axis=1, keepdims=True)]).astype(np.float32)
    model = ConceptModel(min_concept_size=15, embedding_model=emb, random_state=0, verbose=False,
                         zeroshot_concepts=names, zeroshot_threshold=2.0)  # (at 3, a third of the cats)
    model.fit(image_embeddings=data, docs=WORDS)
    named = {name: c for c, name in model.custom_labels_.items()}
    assert "cat" in named and (model.labels_[240:] == named["cat"]).mean() > 0.9
    assert normalized_mutual_info_score(groups, model.labels_[:240]) > 0.9
    assert_consistent(model, data)


def test_visualize_hierarchy_draws_every_concept_with_its_collage(clipart_paths, offline_embedder, tmp_path):
    model = ConceptModel(min_concept_size=3, embedding_model=offline_embedder, random_state=0, verbose=False)
    model.fit(clipart_paths, docs=["animal", "food", "car", "bus", "plane", "fruit"])
    fig = model.visualize_hierarchy(first_layer=0)
    ax = fig.axes[0]
    n_nodes = sum(model.layer_sizes_)
    assert len(ax.texts) == n_nodes and len(ax.images) == n_nodes
    fig.savefig(tmp_path / "tree.png")
    nested_model, *_ = nested()
    with pytest.raises(ConceptError, match="max_leaves"):
        nested_model.visualize_hierarchy(first_layer=0, max_leaves=10)
    assert len(nested_model.visualize_hierarchy().axes[0].texts) == 5  # labels_'s layer, no images


def test_reduce_and_merge_real_images_remake_collages_and_survive_save(clipart_paths, offline_embedder, tmp_path):
    """OpenClipart (3 folders): reduce to the number of folders, merge, delete; collages from the files."""
    folders = np.array([p.parent.name for p in clipart_paths])
    model = ConceptModel(min_concept_size=3, embedding_model=offline_embedder, random_state=0, verbose=False)
    model.fit(clipart_paths, docs=["animal", "food", "car", "bus", "plane", "fruit"])
    model.reduce_concepts(3)
    assert model.n_concepts_ == 3 and set(model.collages_) == {0, 1, 2}
    scores = evaluate(model, folders)
    assert 0 <= scores["nmi"] <= 1 and scores["n_concepts"] == 3
    old_collage = model.collages_[2]
    model.merge_concepts([[0, 1]])
    assert model.n_concepts_ == 2 and set(model.collages_) == {0, 1}
    for c, rows in model.exemplars_.items():
        assert (model.labels_[rows] == c).all()
    assert model.collages_[1].tobytes() == old_collage.tobytes()  # unchanged concept, same exemplars
    x = model.embeddings_
    np.testing.assert_array_equal(model.transform(clipart_paths), model.labels_)
    model.save(tmp_path / "m")
    loaded = ConceptModel.load(tmp_path / "m", embedding_model=offline_embedder)
    np.testing.assert_array_equal(loaded.transform(clipart_paths), model.labels_)
    np.testing.assert_array_equal(loaded.transform(image_embeddings=x), model.transform(image_embeddings=x))
    assert set(loaded.collages_) == {0, 1} and loaded.topics_ == model.topics_
