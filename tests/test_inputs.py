"""The embedding stage of a fit (`concept.embedding.inputs`): images or precomputed vectors in,
checked unit rows out, with the inputs they came from and the ones that failed."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from conftest import ColorEmbedder, random_unit, solid

from concept._errors import ConceptError, EmbeddingError, ImageLoadError
from concept.embedding.inputs import (
    Embedded,
    Rows,
    append_rows,
    as_embeddings,
    embed_inputs,
    image_sources,
    require_embedder,
    unseen_images,
)
from concept.images import LoadFailure


# -- as_embeddings ---------------------------------------------------------------------------
def test_as_embeddings_normalises_rows_to_unit_float32():
    x = np.array([[3.0, 4.0], [0.0, 2.0]], dtype=np.float64)
    out = as_embeddings(x)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 1.0]], atol=1e-6)


def test_as_embeddings_does_not_copy_unit_float32_rows():
    x = random_unit(50, 16)
    assert as_embeddings(x) is x
    assert as_embeddings(x, dim=16) is x


def test_as_embeddings_copies_rather_than_changing_the_callers_array():
    x = 3 * random_unit(5, 4)
    before = x.copy()
    out = as_embeddings(x)
    np.testing.assert_array_equal(x, before)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-6)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_as_embeddings_names_the_rows_with_nan_or_infinity(bad):
    x = random_unit(8, 4)
    x[2, 1] = bad
    x[5, 3] = bad
    with pytest.raises(ConceptError, match=r"NaN or infinite values in rows \[2, 5\]"):
        as_embeddings(x)


def test_as_embeddings_rejects_the_wrong_dimension():
    with pytest.raises(ConceptError, match="8 dimensions but the model was fitted on 16"):
        as_embeddings(random_unit(4, 8), dim=16)


@pytest.mark.parametrize("shape", [(10,), (2, 3, 4), (0, 8)])
def test_as_embeddings_needs_a_non_empty_2d_array(shape):
    with pytest.raises(ConceptError, match="non-empty 2-D array"):
        as_embeddings(np.ones(shape, np.float32))


# -- require_embedder ------------------------------------------------------------------------
def test_require_embedder_returns_the_embedder_or_says_what_needs_one():
    embedder = object()
    assert require_embedder(embedder, "Searching") is embedder
    with pytest.raises(EmbeddingError, match="^Searching needs an embedding model"):
        require_embedder(None, "Searching")


# -- embed_inputs ----------------------------------------------------------------------------
def test_precomputed_embeddings_are_checked_and_every_row_kept():
    x = 2 * random_unit(12, 8)
    out = embed_inputs(None, None, x, dim=8)
    assert isinstance(out, Embedded)
    np.testing.assert_allclose(np.linalg.norm(out.x, axis=1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(out.kept, np.arange(12))
    assert out.features is None and out.failures == []


def test_precomputed_embeddings_with_images_must_match_one_to_one():
    images = [solid((255, 0, 0))] * 3
    with pytest.raises(ConceptError, match="Got 3 images but 4 image_embeddings"):
        embed_inputs(None, images, random_unit(4, 8), dim=8)
    # The check of the vectors comes first: a wrong dimension is reported as such.
    with pytest.raises(ConceptError, match="dimensions"):
        embed_inputs(None, images, random_unit(3, 4), dim=8)


def test_no_images_and_no_embeddings_is_an_error():
    with pytest.raises(ConceptError, match="Pass images"):
        embed_inputs(ColorEmbedder(), None, None)


@pytest.mark.parametrize("single", ["photo.png", Path("photo.png"), solid((0, 0, 255))], ids=["str", "path", "pil"])
def test_a_single_image_instead_of_a_list_is_a_clear_error(single):
    with pytest.raises(ConceptError, match="images must be a list.*list_image_files"):
        embed_inputs(ColorEmbedder(), single, None)


@pytest.mark.parametrize("single", ["abc", Path("abc"), solid((0, 0, 255))], ids=["str", "path", "pil"])
def test_a_single_image_with_precomputed_embeddings_is_a_clear_error(single):
    # "abc" has as many characters as there are rows: it must not pass as the paths "a", "b", "c"
    with pytest.raises(ConceptError, match="images must be a list"):
        embed_inputs(None, single, random_unit(3, 8), dim=8)


def test_images_need_an_embedder():
    with pytest.raises(EmbeddingError, match="Embedding images needs an embedding model"):
        embed_inputs(None, [solid((255, 0, 0))], None)


def test_real_images_are_embedded_and_failures_reported_per_item(clipart_paths, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png at all")
    missing = tmp_path / "missing.png"
    images = [clipart_paths[0], broken, clipart_paths[1], missing, clipart_paths[2]]
    out = embed_inputs(ColorEmbedder(), images, None, dim=8, batch_size=2, verbose=False)
    np.testing.assert_array_equal(out.kept, [0, 2, 4])
    assert out.x.shape == (3, 8) and out.x.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out.x, axis=1), 1.0, atol=1e-6)
    assert [f.index for f in out.failures] == [1, 3]
    assert [f.source for f in out.failures] == [str(broken), str(missing)]
    assert all(f.reason for f in out.failures)
    # The rows are the embeddings of the images that loaded, in input order.
    alone = embed_inputs(ColorEmbedder(), [clipart_paths[2]], None, verbose=False)
    np.testing.assert_allclose(out.x[2], alone.x[0], atol=1e-6)


def test_no_loadable_image_raises_image_load_error(tmp_path):
    paths = [tmp_path / "a.png", tmp_path / "b.jpg"]
    paths[1].write_bytes(b"\0" * 10)
    with pytest.raises(ImageLoadError, match="None of the 2 images could be loaded"):
        embed_inputs(ColorEmbedder(), paths, None, verbose=False)


def test_embedded_dimension_is_checked_against_the_fitted_one():
    with pytest.raises(ConceptError, match="8 dimensions but the model was fitted on 4"):
        embed_inputs(ColorEmbedder(), [solid((1, 2, 3))], None, dim=4, verbose=False)


class _FeatureEmbedder:
    """Embeds in-memory images as fixed rows, with 3-d features on request; counts the calls."""

    name = "test-features"

    def __init__(self):
        self.calls: list[str] = []

    def embed_images(self, images, batch_size=32, report=None):
        self.calls.append("images")
        report.loaded.extend(range(len(images)))
        return np.tile([1.0, 1.0, 0.0, 0.0], (len(images), 1)).astype(np.float32)

    def embed_images_and_features(self, images, batch_size=32, report=None):
        self.calls.append("features")
        return self.embed_images(images, batch_size, report), np.ones((len(images), 3), np.float32)


def test_features_are_returned_only_when_asked_for():
    images = [solid((255, 0, 0)), solid((0, 255, 0))]
    embedder = _FeatureEmbedder()
    plain = embed_inputs(embedder, images, None)
    assert plain.features is None and embedder.calls == ["images"]
    np.testing.assert_allclose(plain.x, np.tile([2 ** -0.5, 2 ** -0.5, 0, 0], (2, 1)), atol=1e-6)
    both = embed_inputs(embedder, images, None, features=True)
    assert both.features.shape == (2, 3)
    np.testing.assert_array_equal(both.kept, [0, 1])


def test_store_embeds_only_files_it_has_not_seen(clipart_paths, tmp_path):
    embedder = ColorEmbedder()
    first = embed_inputs(embedder, clipart_paths[:3], None, store=tmp_path / "store", verbose=False)
    seen: list[int] = []
    original = embedder.embed_images

    def counting(images, *args, **kwargs):
        seen.append(len(images))
        return original(images, *args, **kwargs)

    embedder.embed_images = counting
    again = embed_inputs(embedder, clipart_paths[:4], None, store=tmp_path / "store", verbose=False)
    assert sum(seen) == 1
    np.testing.assert_allclose(again.x[:3], first.x, atol=1e-6)
    np.testing.assert_array_equal(again.kept, [0, 1, 2, 3])


def test_store_is_not_used_for_an_embedder_without_a_name(clipart_paths, tmp_path, caplog):
    class Nameless(_FeatureEmbedder):
        name = "base"

    with caplog.at_level(logging.WARNING, logger="concept.model"):
        out = embed_inputs(Nameless(), [str(p) for p in clipart_paths[:2]], None, store=tmp_path / "s")
    assert "Not using the embedding store" in caplog.text
    assert len(out.x) == 2
    assert not (tmp_path / "s").exists()


# -- image_sources / unseen_images -----------------------------------------------------------
def test_image_sources_are_the_kept_paths_as_strings(tmp_path):
    images = [tmp_path / "a.png", str(tmp_path / "b.png"), tmp_path / "c.png"]
    assert image_sources(images, np.array([0, 2])) == [str(tmp_path / "a.png"), str(tmp_path / "c.png")]
    assert image_sources(None, np.array([0])) is None


def test_image_sources_are_none_unless_every_kept_image_is_a_path(tmp_path):
    images = [tmp_path / "a.png", solid((0, 0, 0))]
    assert image_sources(images, np.array([0, 1])) is None
    # the failed in-memory image is not among the kept ones
    assert image_sources(images, np.array([0])) == [str(tmp_path / "a.png")]


def test_unseen_images_drops_paths_already_in_the_model(tmp_path, caplog):
    a, b, c = (tmp_path / n for n in ("a.png", "b.png", "c.png"))
    photo = solid((0, 0, 0))
    with caplog.at_level(logging.INFO, logger="concept.model"):
        fresh = unseen_images([a, str(b), photo, c], [str(a), str(b)])
    assert fresh == [photo, c]
    assert "2 of the 4 images are already in the model" in caplog.text


def test_unseen_images_returns_the_input_when_there_is_nothing_to_compare(tmp_path):
    images = [tmp_path / "a.png"]
    assert unseen_images(images, None) is images
    assert unseen_images(None, ["x"]) is None
    assert unseen_images("folder", ["folder"]) == "folder"  # embed_inputs then says it must be a list


# -- append_rows -----------------------------------------------------------------------------
def _rows(n: int, failures: list[LoadFailure], features: bool, sources: list[str] | None) -> Rows:
    kept = np.setdiff1d(np.arange(n + len(failures)), [f.index for f in failures])
    return Rows(random_unit(n, 4, seed=1), np.zeros((n, 2), np.float32) if features else None, kept,
                failures, sources)


def test_appended_positions_continue_after_earlier_inputs_and_failures():
    # earlier inputs 0..4, of which 4 (the last) failed: new positions start at 5
    rows = _rows(4, [LoadFailure(4, "e.png", "file not found")], features=False, sources=None)
    new = Embedded(random_unit(3, 4, seed=2), None, np.array([0, 2, 3]), [LoadFailure(1, "g.png", "broken")])
    out = append_rows(rows, new, None)
    np.testing.assert_array_equal(out.image_indices, [0, 1, 2, 3, 5, 7, 8])
    assert [(f.index, f.source) for f in out.failures] == [(4, "e.png"), (6, "g.png")]
    np.testing.assert_array_equal(out.embeddings, np.vstack([rows.embeddings, new.x]))
    assert out.features is None and out.sources is None


def test_appended_rows_keep_features_and_sources_when_the_model_has_them():
    rows = _rows(2, [], features=True, sources=["a.png", "b.png"])
    new = Embedded(random_unit(1, 4), np.ones((1, 2), np.float32), np.array([0]))
    out = append_rows(rows, new, ["c.png"])
    np.testing.assert_array_equal(out.features, [[0, 0], [0, 0], [1, 1]])
    np.testing.assert_array_equal(out.image_indices, [0, 1, 2])
    assert out.sources == ["a.png", "b.png", "c.png"]
    # sources are dropped as soon as one side has none
    assert append_rows(rows, new, None).sources is None


def test_appended_rows_without_earlier_rows_start_after_the_failures():
    rows = Rows(np.zeros((0, 4), np.float32), None, np.zeros(0, np.int64),
                [LoadFailure(0, "a.png", "x"), LoadFailure(1, "b.png", "x")], None)
    out = append_rows(rows, Embedded(random_unit(2, 4), None, np.array([0, 1])), None)
    np.testing.assert_array_equal(out.image_indices, [2, 3])
