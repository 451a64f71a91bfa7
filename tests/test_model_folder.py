"""A fitted model's folder (`concept.model_folder`): its schema, the conversion between the
model's fitted attributes and the stored state, and the check of a loaded state.
(`tests/test_persistence.py` covers saving and loading whole models and many damaged folders.)"""

from __future__ import annotations

import logging
import zlib

import numpy as np
import pytest
from conftest import nested_blobs
from PIL import Image

from concept import ConceptModel
from concept._errors import ModelFileError
from concept.embedding.base import l2_normalize
from concept.model_folder import (
    SETTINGS,
    check_fitted_state,
    from_state,
    schema,
    to_state,
)
from concept.persistence import ModelState, load_model_state, save_model_state

WORDS = [f"word{i}" for i in range(40)]


class Words:
    """A custom text 'model': each word at a point seeded by its CRC32. It has a name but no
    `spec`, so a saved model cannot rebuild it by name."""

    name = "test-model-folder-words"

    def __init__(self, dim: int):
        self.dim = dim

    def embed_images(self, images, batch_size=32, report=None):
        raise AssertionError("only precomputed embeddings in these tests")

    def embed_texts(self, texts, batch_size=32):
        rows = [np.random.default_rng(zlib.crc32(t.encode())).normal(size=self.dim) for t in texts]
        return l2_normalize(np.asarray(rows, np.float32))


@pytest.fixture(scope="module")
def model() -> ConceptModel:
    """Fitted on 800 vectors in 5 groups of 4: a finest layer of 20 under a default of 5."""
    x, _, _ = nested_blobs(groups=5, subs=4, per=40, dim=32)
    m = ConceptModel(min_concept_size=15, embedding_model=Words(32), random_state=0, verbose=False)
    m.fit(image_embeddings=x, docs=WORDS)
    m.set_concept_labels({0: "zero", 3: "three"})
    return m


def copy_state(state: ModelState) -> ModelState:
    return ModelState(dict(state.settings), {k: v.copy() for k, v in state.arrays.items()}, dict(state.texts),
                      dict(state.images))


# -- schema ----------------------------------------------------------------------------------
def test_collage_names_round_trip():
    assert schema.collage_name(7) == "concept_7"
    assert schema.collage_id(schema.collage_name(7)) == 7
    assert schema.collage_id(schema.collage_name(1234)) == 1234
    assert schema.COLLAGE.fullmatch(schema.collage_name(7)).group(1) == "7"


def test_array_keys_name_their_layer():
    assert schema.layer_key(2, "embeddings") == "layer_2_embeddings"
    assert schema.parents_key(0) == "parents_0"
    assert len({schema.layer_key(i, p) for i in range(3) for p in ("embeddings", "exemplars", "exemplar_counts")}
               | {schema.parents_key(i) for i in range(3)}) == 12


# -- to_state --------------------------------------------------------------------------------
def test_to_state_holds_every_setting(model):
    state = to_state(model)
    assert set(SETTINGS) <= set(state.settings)
    for key in SETTINGS:
        assert state.settings[key] == getattr(model, key), key
    assert state.settings["layer"] == model.layer_ == 1
    assert state.settings["n_layers"] == len(model.layers_) == 2
    assert state.settings["embedding_name"] == "test-model-folder-words"
    assert state.settings["embedding_model"] is None  # no spec to rebuild it by


def test_to_state_names_each_layers_arrays_by_the_schema(model):
    state = to_state(model)
    n_layers = len(model.layers_)
    for i in range(n_layers):
        np.testing.assert_array_equal(state.arrays[schema.layer_key(i, "embeddings")], model.layer_embeddings_[i])
        assert schema.layer_key(i, "exemplars") in state.arrays
        assert schema.layer_key(i, "exemplar_counts") in state.arrays
    for i in range(n_layers - 1):
        np.testing.assert_array_equal(state.arrays[schema.parents_key(i)], model.hierarchy_.parents[i])
    assert schema.layer_key(n_layers, "embeddings") not in state.arrays
    assert schema.parents_key(n_layers - 1) not in state.arrays
    np.testing.assert_array_equal(state.arrays["labels"], model.labels_)
    assert state.texts["custom_labels"] == {"0": "zero", "3": "three"}
    assert state.texts["docs"] == WORDS


# -- from_state ------------------------------------------------------------------------------
def test_from_state_restores_the_fitted_model(model, tmp_path):
    save_model_state(to_state(model), tmp_path / "m")
    state = load_model_state(tmp_path / "m")
    check_fitted_state(state, tmp_path / "m")
    embedder = Words(32)
    params, attrs = from_state(state, tmp_path / "m", embedding_model=embedder)
    assert params["embedding_model"] is embedder
    assert {k: params[k] for k in SETTINGS} == {k: getattr(model, k) for k in SETTINGS}
    h = attrs["hierarchy_"]
    assert h.default == model.layer_
    for got, want in zip(h.layers, model.layers_, strict=True):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(h.probabilities, model.hierarchy_.probabilities)
    np.testing.assert_array_equal(h.centres, model.hierarchy_.centres)
    assert attrs["layer_topics_"] == model.layer_topics_
    assert attrs["topics_"] == model.topics_
    assert attrs["layer_exemplars_"] == model.layer_exemplars_
    assert attrs["exemplars_"] == model.exemplars_
    for got, want in zip(attrs["layer_embeddings_"], model.layer_embeddings_, strict=True):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(attrs["concept_embeddings_"], model.concept_embeddings_)
    np.testing.assert_array_equal(attrs["embeddings_"], model.embeddings_)
    assert attrs["custom_labels_"] == {0: "zero", 3: "three"}
    assert attrs["_docs"] == WORDS
    assert attrs["features_"] is None and attrs["failures_"] == []


def test_a_loaded_model_gives_the_same_results(model, tmp_path):
    model.save(tmp_path / "m")
    loaded = ConceptModel.load(tmp_path / "m", embedding_model=Words(32))
    np.testing.assert_array_equal(loaded.labels_, model.labels_)
    assert loaded.topics_ == model.topics_
    x = model.embeddings_[::7]
    np.testing.assert_array_equal(loaded.transform(image_embeddings=x), model.transform(image_embeddings=x))


def test_from_state_without_the_custom_embedding_model_warns(model, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="concept.model"):
        params, _ = from_state(to_state(model), tmp_path, embedding_model=None)
    assert params["embedding_model"] is None
    assert "fitted with test-model-folder-words, which cannot be rebuilt by name" in caplog.text
    assert "load(path, embedding_model=...)" in caplog.text


def test_from_state_maps_collages_to_their_concepts(model, tmp_path):
    state = copy_state(to_state(model))
    collage = Image.new("RGB", (8, 8), (255, 0, 0))
    state.images[schema.collage_name(3)] = collage
    _, attrs = from_state(state, tmp_path, embedding_model=Words(32))
    assert attrs["collages_"] == {3: collage}


def test_from_state_of_a_folder_saved_before_layers_has_one_layer(model, tmp_path):
    state = copy_state(to_state(model))
    for key in [k for k in state.arrays if k.startswith(("layer_", "parents_"))]:
        del state.arrays[key]
    for key in ("centres", "medians", "sds", "fine_labels", "nearest"):
        del state.arrays[key]
    _, attrs = from_state(state, tmp_path, embedding_model=Words(32))
    h = attrs["hierarchy_"]
    assert h.parents == [] and h.default == 0
    np.testing.assert_array_equal(h.layers[0], model.labels_)
    assert attrs["topics_"] == model.topics_
    assert attrs["exemplars_"] == model.exemplars_


# -- check_fitted_state ----------------------------------------------------------------------
def test_check_accepts_a_fitted_models_state(model, tmp_path):
    check_fitted_state(to_state(model), tmp_path)


def test_check_rejects_labels_out_of_range(model, tmp_path):
    state = copy_state(to_state(model))
    state.arrays["labels"][0] = model.n_concepts_
    with pytest.raises(ModelFileError, match=r"does not hold a valid fitted model: the array 'labels' holds "
                                             r"values outside \[-1, 5\)"):
        check_fitted_state(state, tmp_path / "folder")


def test_check_reads_the_duplicates_and_rejects_bad_ones(model, tmp_path):
    from concept.duplicates import find_duplicates
    from concept.model_folder.state import _duplicates_state

    found = find_duplicates(embeddings=np.concatenate([model.embeddings_[:-3], model.embeddings_[:3]]), near=0.999)
    assert [g[1] for g in found.near] == [797, 798, 799]
    state = copy_state(to_state(model))
    _duplicates_state(found, state.settings, state.arrays)
    check_fitted_state(state, tmp_path)
    _, attrs = from_state(state, tmp_path, embedding_model=Words(32))
    assert attrs["_duplicates"].near == found.near and attrs["_duplicates"].n_images == 800
    assert to_state(model).settings.get("duplicates") is None  # none found: none saved
    for change, message in [
            (lambda s: s.arrays.__setitem__("duplicates_near_rows", s.arrays["duplicates_near_rows"] + 800),
             r"'duplicates_near_rows' holds values outside \[0, 800\)"),
            (lambda s: s.arrays.__setitem__("duplicates_near_counts", np.array([1, 2, 3])),
             r"'duplicates_near_counts' holds values outside \[2, 801\)"),
            (lambda s: s.arrays.__setitem__("duplicates_uniqueness", s.arrays["duplicates_uniqueness"] + 2),
             r"'duplicates_uniqueness' must lie in \[0, 1\]"),
            (lambda s: s.settings.__setitem__("duplicates", {"near_threshold": 7}), "near_threshold in"),
            (lambda s: s.settings.pop("duplicates"), "duplicate arrays are saved but settings has no"),
            (lambda s: s.settings.__setitem__("find_duplicates", "yes"), "find_duplicates"),
    ]:
        bad = copy_state(state)
        change(bad)
        with pytest.raises(ModelFileError, match=message):
            check_fitted_state(bad, tmp_path / "folder")
