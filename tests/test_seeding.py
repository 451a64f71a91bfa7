"""Seeded concepts (issue 13): seed lists steer the clustering, their words come first, the
parameter is checked, and a seeded model saves, loads and transforms exactly."""

from __future__ import annotations

import numpy as np
import pytest

from concept import ConceptModel
from concept._errors import ConceptError, ModelFileError
from concept.seeding import (
    check_seed_concepts,
    pull_towards_seeds,
    reanchor,
    seed_matches,
    seed_vectors,
    seeded_concepts,
)

WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]


class TableEmbedder:
    """Texts embedded by a table (the words of WORDS at their class direction); no images."""

    name = None  # no disk cache key: the table is this test's own

    def __init__(self, table: dict[str, np.ndarray]) -> None:
        self.table = table

    def embed_images(self, images, batch_size=32, report=None):
        raise AssertionError("the tests pass embeddings")

    def embed_texts(self, texts, batch_size=32):
        return np.stack([self.table[t] for t in texts]).astype(np.float32)


def _unit(a: np.ndarray) -> np.ndarray:
    return (a / np.linalg.norm(a, axis=-1, keepdims=True)).astype(np.float32)


def split_class(seed: int, n: int = 60, gap: float = 0.35):
    """Eight classes of images; class 0 ("alpha") is two sub-blobs in the clustering features
    (which the unseeded clustering keeps apart), one group in the shared image-text space,
    where its images lie near the word "alpha". Returns shared vectors, features, classes and
    the embedder."""
    rng = np.random.default_rng(seed)
    d = 32
    sub = np.repeat(np.arange(9), n)
    cls = np.maximum(sub - 1, 0)
    a = _unit(rng.normal(size=d))
    off = rng.normal(size=d)
    off = _unit(off - off @ a * a)
    centres = np.vstack([a + gap * off, a - gap * off, _unit(rng.normal(size=(7, d)))])
    feats = _unit(centres[sub] + 0.3 * rng.normal(size=(len(sub), d)) / np.sqrt(d))
    dirs = _unit(rng.normal(size=(8, 16)))
    shared = _unit(dirs[cls] + 0.6 * rng.normal(size=(len(sub), 16)) / np.sqrt(16))
    table = {w: dirs[i] for i, w in enumerate(WORDS)} | {"other": _unit(rng.normal(size=16))}
    return shared, feats, cls, TableEmbedder(table)


def _largest_share(labels: np.ndarray) -> float:
    kept = labels[labels >= 0]
    return np.bincount(kept).max() / len(labels) if len(kept) else 0.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_seed_brings_a_split_class_into_one_concept(seed):
    x, f, y, embedder = split_class(seed)
    kwargs = {"min_concept_size": 20, "embedding_model": embedder, "random_state": seed, "verbose": False}
    docs = ["beta", "gamma", "other"]  # no "alpha": the seed word must be added to the candidates
    plain = ConceptModel(**kwargs).fit(image_embeddings=x, image_features=f, docs=docs)
    assert _largest_share(plain.labels_[y == 0]) < 0.6  # unseeded: the two sub-blobs stay apart
    seeded = ConceptModel(**kwargs, seed_concepts=[["alpha"]]).fit(image_embeddings=x, image_features=f, docs=docs)
    matched = seeded.seed_matches_ >= 0
    assert matched.sum() >= 30 and (y[matched] == 0).mean() > 0.9
    assert _largest_share(seeded.labels_[y == 0]) > 0.9  # seeded: one concept
    concept = np.bincount(seeded.labels_[(y == 0) & (seeded.labels_ >= 0)]).argmax()
    assert seeded.topics[concept][0] == "alpha"  # the seed's words lead that concept's words
    assert not any("alpha" in ws for ws in plain.topics.values())  # a candidate only through the seed
    # the concepts are measured on the unpulled features: transform gives the fitted images their labels
    assert np.array_equal(seeded.transform(image_embeddings=x, image_features=f), seeded.labels_)


def test_seeded_model_saves_loads_and_edits_exactly(tmp_path):
    x, f, y, embedder = split_class(0)
    model = ConceptModel(min_concept_size=20, embedding_model=embedder, random_state=0, verbose=False,
                         seed_concepts=[["alpha"], ["beta", "gamma"]])
    model.fit(image_embeddings=x, image_features=f, docs=["other"])
    model.save(tmp_path / "m")
    loaded = ConceptModel.load(tmp_path / "m", embedding_model=embedder)
    assert loaded.seed_concepts == [["alpha"], ["beta", "gamma"]]
    assert np.array_equal(loaded.seed_matches_, model.seed_matches_)
    assert loaded.topics == model.topics
    for m in (model, loaded):
        np.testing.assert_array_equal(m.transform(image_embeddings=x, image_features=f), model.labels_)
    # an edit re-describes with the seeds on both sides alike
    alpha = int(np.bincount(model.labels_[(y == 0) & (model.labels_ >= 0)]).argmax())
    other = next(c for c in range(model.n_concepts_) if c != alpha)
    for m in (model, loaded):
        m.merge_concepts([[alpha, other]])
    assert loaded.topics == model.topics
    merged = min(alpha, other)
    assert model.topics[merged][0] == "alpha"
    np.testing.assert_array_equal(loaded.transform(image_embeddings=x, image_features=f),
                                  model.transform(image_embeddings=x, image_features=f))
    # partial_fit: the new rows match no seed, and the words keep the seeds
    model.partial_fit(image_embeddings=x[:30], image_features=f[:30])
    assert len(model.seed_matches_) == len(model.labels_) and (model.seed_matches_[-30:] == -1).all()


def test_seed_concepts_are_checked():
    assert check_seed_concepts(None) is None
    assert check_seed_concepts([[" beach ", "sea", "sea"], ("cat",)]) == [["beach", "sea"], ["cat"]]
    for bad in ("beach", [], ["beach", "sea"], [[]], [["beach", ""]], [["beach", 3]], [None], 5):
        with pytest.raises(ConceptError, match="seed_concepts"):
            ConceptModel(seed_concepts=bad, embedding_model=None, verbose=False).fit(
                image_embeddings=np.eye(8, dtype=np.float32)[np.arange(40) % 8])
    with pytest.raises(ConceptError, match="cannot be combined"):
        ConceptModel(seed_concepts=[["a"]], zeroshot_concepts=["b"], embedding_model=None, verbose=False).fit(
            image_embeddings=np.eye(8, dtype=np.float32)[np.arange(40) % 8])


def test_seeds_need_an_embedding_model_in_the_same_space():
    x, _f, _y, embedder = split_class(0)
    with pytest.raises(ConceptError, match="embedding model"):
        ConceptModel(seed_concepts=[["alpha"]], embedding_model=None, verbose=False).fit(image_embeddings=x)
    with pytest.raises(ConceptError, match="dimensions"):
        ConceptModel(seed_concepts=[["alpha"]], embedding_model=embedder, verbose=False).fit(
            image_embeddings=np.hstack([x, x]))


def test_saved_seed_state_is_checked(tmp_path):
    import json

    import safetensors.numpy

    x, f, _y, embedder = split_class(0)
    model = ConceptModel(min_concept_size=20, embedding_model=embedder, random_state=0, verbose=False,
                         seed_concepts=[["alpha"]]).fit(image_embeddings=x, image_features=f, docs=["other"])
    path = model.save(tmp_path / "m")
    manifest = json.loads((path / "concept.json").read_text())
    manifest["settings"]["seed_concepts"] = [["alpha", ""]]
    (path / "concept.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelFileError):  # the checksum or the check: either way a clear error
        ConceptModel.load(path, embedding_model=embedder)
    from concept.model_folder import check_fitted_state
    from concept.persistence import ModelState

    arrays = safetensors.numpy.load_file(str(model.save(tmp_path / "n") / "arrays.safetensors"))
    state = json.loads((tmp_path / "n" / "concept.json").read_text())
    good = ModelState(state["settings"], dict(arrays), state["texts"], {})
    check_fitted_state(good, "n")
    for change, message in [
        (lambda s: s.arrays.__setitem__("seed_matches", np.full(len(x), 1, np.int64)), "seed_matches"),
        (lambda s: s.settings.__setitem__("seed_concepts", None), "seed_matches"),
        (lambda s: s.settings.__setitem__("seed_concepts", [["alpha"], []]), "seed_concepts"),
    ]:
        bad = ModelState(dict(good.settings), dict(good.arrays), dict(good.texts), {})
        change(bad)
        with pytest.raises(ModelFileError, match=message):
            check_fitted_state(bad, "n")


def test_the_pieces():
    rng = np.random.default_rng(0)
    vectors = seed_vectors(lambda ws: np.asarray([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])[[["a", "b", "c"].index(w)
                                                                                           for w in ws]],
                           [["a", "b"], ["c"]])
    np.testing.assert_allclose(vectors, np.full((2, 2), np.sqrt(0.5)), atol=1e-6)  # mean of a and b, and c
    space = _unit(rng.normal(size=(50, 4)))
    match = np.full(50, -1)
    match[:10] = 0
    pulled = pull_towards_seeds(space, match, 0.5)
    np.testing.assert_array_equal(pulled[10:], space[10:])
    mean = _unit(space[:10].mean(axis=0))
    assert (pulled[:10] @ mean > space[:10] @ mean).all()  # the matched rows moved towards their mean
    np.testing.assert_allclose(np.linalg.norm(pulled, axis=1), 1.0, atol=1e-5)
    assert seeded_concepts(np.r_[np.zeros(6, int), np.ones(4, int), np.zeros(40, int)], match, 2) == {0: [0]}
    assert seeded_concepts(np.r_[np.zeros(4, int), np.ones(3, int), -np.ones(3, int), np.zeros(40, int)],
                           match, 2) == {}  # no concept holds half of the matches
    # too few matches: the seed is dropped
    few = seed_matches(space, _unit(space[:1] + 0.0), threshold=50.0)
    assert (few == -1).all()


def test_reanchor_drops_concepts_left_empty_and_keeps_layers():
    from concept.clustering import find_hierarchy

    rng = np.random.default_rng(1)
    centres = _unit(rng.normal(size=(4, 16)))
    x = _unit(centres[np.repeat(np.arange(4), 50)] + 0.1 * rng.normal(size=(200, 16)))
    h = find_hierarchy(x, 10, random_state=0)
    again = reanchor(h, x)
    assert len(again.centres) == len(h.centres) and len(again.parents) == len(h.parents)
    np.testing.assert_array_equal(again.layers[again.default] >= 0, h.layers[h.default] >= 0)
    # a hierarchy whose finest concept 0 has no row nearest in the other space: it is dropped
    fake = type(h)(np.r_[np.zeros(5, int), np.ones(195, int)], np.r_[np.zeros(5, int), np.ones(195, int)],
                   np.ones(200), centres[:2], np.ones(2, np.float32), np.ones(2, np.float32) * 0.01,
                   [np.array([0, 0])], 0, 3.0, 200)
    same = np.repeat(x[100:101], 200, axis=0)  # every row alike: one concept survives
    dropped = reanchor(fake, same)
    assert len(dropped.centres) == 1 and dropped.parents[0].tolist() == [0]
