"""A fitted model's duplicates (`concept.deduplicated`: `duplicates_`, `uniqueness_`, `typicality_`,
`get_frequency(count_duplicates=False)`, exemplars and collages that show one image per group, saving, and
`concept export --dedupe`), on real OpenClipart images with planted copies (made as in test_duplicates.py)."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest
from test_duplicates import _copy, _originals

from concept import ConceptError
from concept.duplicates import duplicate_groups, find_duplicates, typicality, uniqueness
from concept.mmr import mmr
from concept.model import ConceptModel
from concept.representation import describe_concepts

#: Copies planted per original, of the kinds test_duplicates.py makes: two exact, two altered.
PLANTED = ("bytes", "resave", "jpeg", "brighter")


@pytest.fixture(scope="module")
def planted(tmp_path_factory, offline_embedder):
    """36 originals of six categories (+2 cards), each of the first 12 with four copies (48 copies in all), and the
    offline model's CNN features of every image."""
    folder = tmp_path_factory.mktemp("planted")
    originals = _originals()
    images, origin = list(originals), list(range(len(originals)))
    for number, original in enumerate(originals[:12]):
        for j, kind in enumerate(PLANTED):
            images.append(_copy(original, kind, folder, 100 * j + number))
            origin.append(number)
    _, features = offline_embedder.embed_images_and_features(images, 32)
    return images, np.asarray(origin), features


def _fit(planted, **params) -> ConceptModel:
    images, _, features = planted
    model = ConceptModel(embedding_model=None, min_concept_size=5, verbose=False, random_state=0, **params)
    return model.fit([str(p) for p in images], image_embeddings=features, image_features=features)


def _shown_twice(model: ConceptModel, groups: np.ndarray) -> list[tuple[int, int]]:
    """(layer, concept) of every exemplar list that shows two images of one group."""
    out = []
    for layer, exemplars in enumerate(model.layer_exemplars_):
        for c, rows in exemplars.items():
            g = groups[rows]
            g = g[g >= 0]
            if len(g) != len(set(g.tolist())):
                out.append((layer, c))
    return out


@pytest.fixture(scope="module")
def plain(planted):
    return _fit(planted)


@pytest.fixture(scope="module")
def deduplicated(planted):
    return _fit(planted, find_duplicates=True)


def test_the_planted_copies_are_found_as_groups_of_the_fitted_rows(deduplicated, planted):
    _, origin, _ = planted
    found = deduplicated.duplicates_
    groups = duplicate_groups(found)
    together = [(groups[r] >= 0) and groups[r] == groups[origin[r]] for r in range(len(origin)) if origin[r] != r]
    exact = [groups[r] == groups[origin[r]] for r in range(len(origin)) if r >= len(origin) - 48 and (r - len(origin) + 48) % 4 < 2]
    assert len(exact) == 24 and all(exact)  # the byte copies and lossless re-saves, always
    assert sum(together) >= 45  # of 48: the JPEGs and brighter copies nearly always
    assert len(found.exact) == 12 and found.paths == deduplicated.image_sources_


def test_exemplars_and_collages_never_show_two_images_of_one_group(plain, deduplicated, planted):
    groups = duplicate_groups(deduplicated.duplicates_)
    # Without the duplicates, small concepts show copies side by side (every member is an exemplar) ...
    assert len(_shown_twice(plain, groups)) >= 3
    # ... with them, no exemplar list of any layer does, and each concept still shows as many groups as before.
    assert _shown_twice(deduplicated, groups) == []
    for c, rows in plain.exemplars_.items():
        distinct = {int(g) if g >= 0 else -1 - r for r, g in zip(rows, groups[rows])}
        assert len(deduplicated.exemplars_[c]) >= min(len(distinct), deduplicated.n_exemplars)
    np.testing.assert_array_equal(plain.labels_, deduplicated.labels_)  # the concepts are the same
    changed = [c for c in plain.exemplars_ if plain.exemplars_[c] != deduplicated.exemplars_[c]]
    assert changed and all(plain.collages_[c].tobytes() != deduplicated.collages_[c].tobytes() for c in changed)


def test_first_use_of_duplicates_picks_the_exemplars_and_collages_again(planted, deduplicated):
    model = _fit(planted)
    groups = duplicate_groups(deduplicated.duplicates_)
    assert _shown_twice(model, groups)
    found = model.duplicates_  # found now, from the model's vectors and files
    assert found.exact == deduplicated.duplicates_.exact and found.near == deduplicated.duplicates_.near
    assert model.layer_exemplars_ == deduplicated.layer_exemplars_
    assert {c: im.tobytes() for c, im in model.collages_.items()} == {
        c: im.tobytes() for c, im in deduplicated.collages_.items()}
    # Setting other groups (here: none) puts every exemplar back as without duplicates.
    model.duplicates_ = find_duplicates(model=model, near=0.9999, exact=False)
    assert model.duplicates_.near_threshold == 0.9999
    with pytest.raises(ConceptError, match="of 5 images"):
        model.duplicates_ = find_duplicates(embeddings=model.features_[:5])


def test_edits_keep_one_image_per_group(planted, tmp_path):
    import shutil

    model = _fit(planted, find_duplicates=True)
    groups = duplicate_groups(model.duplicates_)
    model.reduce_concepts(max(2, model.n_concepts_ - 2))
    assert _shown_twice(model, groups) == []
    images, _, features = planted
    again = shutil.copy(images[0], tmp_path / "again.png")
    model.partial_fit([again], image_embeddings=features[:1], image_features=features[:1])
    assert model.duplicates_.n_images == len(model.labels_)  # found again with the new row
    assert any(0 in g and len(model.labels_) - 1 in g for g in model.duplicates_.exact)
    assert _shown_twice(model, duplicate_groups(model.duplicates_)) == []


def test_a_fit_without_duplicates_is_unchanged_by_find_duplicates():
    from conftest import blobs

    x, _ = blobs(n_per=40, centers=4, dim=64, spread=0.3)
    kwargs = {"embedding_model": None, "min_concept_size": 10, "verbose": False, "random_state": 0, "diversity": 0.0}
    a = ConceptModel(**kwargs).fit(image_embeddings=x)  # no images: near groups only
    b = ConceptModel(**kwargs, find_duplicates=True).fit(image_embeddings=x)
    assert b.__dict__["_duplicates"] is not None and b.duplicates_.near == [] and b.duplicates_.exact == []
    assert a.layer_exemplars_ == b.layer_exemplars_
    c = ConceptModel(**kwargs, find_duplicates=True).fit(image_embeddings=np.concatenate([x, x[:3]]))
    assert c.duplicates_.near == [[0, 160], [1, 161], [2, 162]]
    assert _shown_twice(c, duplicate_groups(c.duplicates_)) == []


def test_frequency_can_count_each_group_once(deduplicated):
    found = deduplicated.duplicates_
    plain = deduplicated.frequency
    assert deduplicated.get_frequency().equals(plain)
    once = deduplicated.get_frequency(count_duplicates=False)
    assert list(once.columns) == ["Concept", "Frequency"] and set(once.Concept) == set(plain.Concept)
    assert once.Frequency.sum() == len(deduplicated.labels_) - len(found.droppable()) == plain.Frequency.sum() - len(
        found.droppable())
    assert len(found.droppable()) >= 45  # most of the 48 planted copies
    kept = np.delete(deduplicated.labels_, found.droppable())
    for c, f in zip(once.Concept, once.Frequency):
        assert f == (kept == c).sum()


def test_uniqueness_and_typicality(deduplicated, planted):
    _, origin, features = planted
    model = deduplicated
    np.testing.assert_allclose(model.uniqueness_, model.duplicates_.uniqueness)
    np.testing.assert_allclose(model.uniqueness_, uniqueness(features))
    copied = np.unique(origin[origin != np.arange(len(origin))])
    lone = np.setdiff1d(np.flatnonzero(origin == np.arange(len(origin))), copied)
    assert np.median(model.uniqueness_[copied]) < np.median(model.uniqueness_[lone])
    t = model.typicality_
    labels = model.labels_
    assert ((t > 0) & (t <= 1))[labels >= 0].all() and (t[labels < 0] == 0).all()
    centres = np.stack([features[labels == c].mean(axis=0) for c in range(model.n_concepts_)])
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    for c in range(model.n_concepts_):
        members = np.flatnonzero(labels == c)
        sims = features[members] @ centres[c]
        # The share of members no closer to the centre (ties: copies of one image are equally typical).
        np.testing.assert_allclose(t[members], [(sims <= s + 1e-6).mean() for s in sims])
        assert t[members[np.argmax(sims)]] == 1.0
    # probabilities_ is clipped at 1 from the median member up: typicality still orders those images.
    top = (model.probabilities_ == 1) & (labels >= 0)
    assert top.sum() > model.n_concepts_ and len(np.unique(t[top])) > len(np.unique(model.probabilities_[top]))
    assert np.median(t[top]) > np.median(t[(model.probabilities_ < 1) & (labels >= 0)])


def test_typicality_ranks_members_by_their_cosine_to_the_centre():
    x = np.array([[1, 0], [0.8, 0.6], [0.6, 0.8], [0, 1], [1, 0]], np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    t = typicality(x, np.array([0, 0, 0, 0, -1]), 1)
    np.testing.assert_allclose(t, [0.5, 1.0, 1.0, 0.5, 0.0])  # ties count each other


def test_mmr_and_describe_concepts_skip_groups_already_shown():
    x = np.array([[1, 0, 0], [1, 0, 0], [0.9, 0.1, 0], [0.6, 0.8, 0], [0.6, 0, 0.8]], np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    query = x[0]
    assert mmr(query, x, 3, diversity=0.0) == [0, 1, 2]
    assert mmr(query, x, 3, diversity=0.0, groups=np.array([0, 0, -1, -1, -1])) == [0, 2, 3]
    assert mmr(query, x, 5, diversity=0.0, groups=np.array([0, 0, 0, 1, 1])) == [0, 3]  # fewer than asked
    labels = np.zeros(5, np.int64)
    plain = describe_concepts(x, labels, n_exemplars=3, diversity=0.0)
    grouped = describe_concepts(x, labels, n_exemplars=3, diversity=0.0, groups=np.array([0, 0, 0, -1, -1]))
    assert sorted(plain.exemplars[0].tolist()) == [0, 1, 2]
    assert sorted(grouped.exemplars[0].tolist()) == [2, 3, 4]  # the group's member closest to the centre, once
    np.testing.assert_array_equal(plain.embeddings, grouped.embeddings)


def test_duplicates_are_saved_and_loaded(deduplicated, plain, tmp_path):
    deduplicated.save(tmp_path / "d")
    loaded = ConceptModel.load(tmp_path / "d")
    assert loaded.__dict__["_duplicates"] is not None  # not found again: saved
    found, again = deduplicated.duplicates_, loaded.duplicates_
    assert (again.exact, again.near, again.near_threshold, again.paths) == (
        found.exact, found.near, found.near_threshold, found.paths)
    np.testing.assert_allclose(again.uniqueness, found.uniqueness)
    assert loaded.find_duplicates is True and loaded.layer_exemplars_ == deduplicated.layer_exemplars_
    # A model whose duplicates were never looked for saves none (as folders older than them), and finds them on use.
    fresh = ConceptModel(embedding_model=None, min_concept_size=5, verbose=False, random_state=0)
    fresh.fit(image_embeddings=plain.features_[:40])
    fresh.save(tmp_path / "p")
    from concept.persistence import load_model_state

    state = load_model_state(tmp_path / "p")
    assert "duplicates" not in state.settings and not any(k.startswith("duplicates") for k in state.arrays)
    assert "duplicates" in load_model_state(tmp_path / "d").settings
    old = ConceptModel.load(tmp_path / "p")
    assert old.__dict__["_duplicates"] is None and old.find_duplicates is False
    assert old.duplicates_.n_images == 40


@pytest.mark.skipif(os.name != "posix", reason="symbolic links")
def test_export_dedupe_writes_one_file_per_group(deduplicated, tmp_path, capsys):
    from concept.cli import main

    deduplicated.save(tmp_path / "m")
    assert main(["export", str(tmp_path / "m"), "--out", str(tmp_path / "all")]) == 0
    assert main(["export", str(tmp_path / "m"), "--out", str(tmp_path / "once"), "--dedupe"]) == 0
    found = deduplicated.duplicates_
    assert f"{len(found.droppable()):,} duplicates left out" in capsys.readouterr().out
    everything = [p for p in (tmp_path / "all").rglob("*") if p.is_symlink()]
    once = [p for p in (tmp_path / "once").rglob("*") if p.is_symlink()]
    assert len(once) == len(everything) - len(found.droppable())
    targets = {os.readlink(p) for p in once}
    sources = deduplicated.image_sources_
    groups = duplicate_groups(found)  # exact and near joined
    for g in range(groups.max() + 1):  # exactly one file of each
        assert len(targets & {os.path.abspath(sources[r]) for r in np.flatnonzero(groups == g)}) == 1
    with open(tmp_path / "once" / "concepts.csv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    dropped = [r for r in rows if r["status"] == "duplicate"]
    assert len(dropped) == len(found.droppable()) and all(r["exported"] == "" for r in dropped)
    kept = {os.path.abspath(sources[r]) for r in range(len(sources)) if r not in set(found.droppable())}
    assert {r["duplicate_of"] for r in dropped} <= kept and all(Path(r["duplicate_of"]).is_file() for r in dropped)
