"""Embedding backends: the offline default on real photos, CLIP on a tiny random CLIP, auto choice."""

from __future__ import annotations

import logging
import time

import numpy as np
import pytest
from conftest import make_tiny_clip, solid

from concept import EmbeddingError
from concept.embedding import CLIPEmbedder, OfflineEmbedder, load_embedding_model
from concept.images import LoadReport

CANDIDATES = ["cat", "coffee", "rocket", "car", "flower", "dog", "house", "tree", "book", "shoe"]


def test_offline_ranks_the_right_word_first(offline_embedder, sample_photos):
    images = offline_embedder.embed_images(list(sample_photos.values()))
    words = offline_embedder.embed_texts(CANDIDATES)
    best = [CANDIDATES[i] for i in (images @ words.T).argmax(axis=1)]
    assert best == ["cat", "coffee", "rocket"]


def test_offline_vectors_are_unit_norm_float32_and_deterministic(offline_embedder, sample_photos):
    photos = list(sample_photos.values())
    a = offline_embedder.embed_images(photos, batch_size=2)
    b = offline_embedder.embed_images(photos[::-1], batch_size=3)[::-1]
    assert a.dtype == np.float32 and a.shape == (3, offline_embedder.dim)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(a, b, atol=1e-5)  # batch size and order do not matter
    t = offline_embedder.embed_texts(["beach", "beach"])
    assert t.dtype == np.float32 and np.allclose(t[0], t[1], atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(t, axis=1), 1.0, atol=1e-5)


def test_offline_embeds_a_folder_of_clipart_and_reports_bad_files(offline_embedder, clipart_paths, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png at all")
    paths = [*clipart_paths[:5], broken, tmp_path / "missing.png", *clipart_paths[5:8]]
    report = LoadReport()
    vectors = offline_embedder.embed_images(paths, batch_size=4, report=report)
    assert vectors.shape == (8, 384)
    assert [f.index for f in report.failures] == [5, 6]
    assert offline_embedder.last_report_ is report
    assert np.isfinite(vectors).all()


def test_pooled_features_come_with_the_shared_vectors_in_one_pass(offline_embedder, sample_photos):
    photos = list(sample_photos.values())
    shared, feats = offline_embedder.embed_images_and_features(photos)
    assert feats.shape == (3, 1280) and shared.shape == (3, 384)
    np.testing.assert_allclose(shared, offline_embedder.embed_images(photos), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, atol=1e-5)


def test_offline_rejects_bad_settings():
    with pytest.raises(EmbeddingError, match="variant"):
        OfflineEmbedder("lite9")
    with pytest.raises(EmbeddingError, match="top_k"):
        OfflineEmbedder(top_k=0)
    with pytest.raises(EmbeddingError, match="runtime"):
        OfflineEmbedder(runtime="tensorrt")
    with pytest.raises(EmbeddingError, match="precision"):
        OfflineEmbedder(precision="int4")


def test_openvino_runtime_gives_pytorchs_vectors(offline_embedder, sample_photos, clipart_paths,
                                                  tmp_path, monkeypatch):
    """The default CPU runtime is a faster engine for the same float32 network, not another model."""
    pytest.importorskip("openvino")
    monkeypatch.setenv("CONCEPT_CACHE", str(tmp_path))
    images = list(sample_photos.values()) + list(clipart_paths[:5])
    fast = OfflineEmbedder(runtime="openvino", verbose=False)
    slow = OfflineEmbedder(runtime="torch", verbose=False)
    shared_fast, feats_fast = fast.embed_images_and_features(images, batch_size=3)
    shared_slow, feats_slow = slow.embed_images_and_features(images, batch_size=3)
    assert fast.runtime_ == "openvino" and slow.runtime_ == "torch"
    assert fast.name == slow.name  # equal vectors may share caches and stores
    # A batch is split over the network's streams (one per core or so), run at once.
    compiled = fast._infer_requests[0].get_compiled_model()
    assert len(fast._infer_requests) == max(1, int(compiled.get_property("NUM_STREAMS")))
    np.testing.assert_allclose(shared_fast, shared_slow, atol=1e-4)
    np.testing.assert_allclose(feats_fast, feats_slow, atol=1e-4)
    # The converted network was cached, and a new embedder reads it back instead of converting.
    assert list(tmp_path.glob("openvino/*/model.xml"))
    again = OfflineEmbedder(runtime="openvino", verbose=False)
    np.testing.assert_allclose(again.embed_images(images[:2]), shared_fast[:2], atol=1e-5)


WORDS = ["dog", "hot dog stand", "a photo of a cat on a red sofa", "bicycle", "énorme maison", "x",
         "the quick brown fox jumps over the lazy dog", "tree"] * 5


def test_words_embed_in_openvino_with_pytorchs_vectors(tmp_path, monkeypatch):
    """The text network runs in OpenVINO beside the image network (batched by token count, over
    the streams); tokenising and pooling stay the SentenceTransformer's: the same vectors."""
    pytest.importorskip("openvino")
    monkeypatch.setenv("CONCEPT_CACHE", str(tmp_path))
    fast = OfflineEmbedder(runtime="openvino", verbose=False)
    slow = OfflineEmbedder(runtime="torch", verbose=False)
    got = fast.embed_texts(WORDS, batch_size=4)
    assert fast._openvino_text is not None and slow._openvino_text is None
    np.testing.assert_allclose(got, slow.embed_texts(WORDS), atol=1e-5)
    assert list(tmp_path.glob("openvino/minilm-*/model.xml"))  # converted once, then read back
    np.testing.assert_allclose(OfflineEmbedder(verbose=False).embed_texts(WORDS[:3]), got[:3], atol=1e-6)


def test_int8_is_close_to_f32_built_once_and_named_apart(offline_embedder, sample_photos, clipart_paths,
                                                         tmp_path, monkeypatch):
    """The opt-in int8 networks (NNCF, calibrated on fixed inputs): near float32's vectors, a
    name of their own (caches and stores keep them apart), built once into the cache folder."""
    pytest.importorskip("nncf")
    pytest.importorskip("skimage")
    monkeypatch.setenv("CONCEPT_CACHE", str(tmp_path))
    quick = load_embedding_model("offline-int8", verbose=False)
    assert quick.precision == "int8" and quick.spec == "offline-lite0-int8" and quick.name != offline_embedder.name
    images = list(sample_photos.values()) + list(clipart_paths[:10])
    shared, feats = quick.embed_images_and_features(images)
    ref_shared, ref_feats = offline_embedder.embed_images_and_features(images)
    assert np.sum(feats * ref_feats, axis=1).mean() > 0.97 and np.sum(shared * ref_shared, axis=1).mean() > 0.9
    assert np.sum(quick.embed_texts(WORDS) * offline_embedder.embed_texts(WORDS), axis=1).mean() > 0.98
    assert len(list(tmp_path.glob("openvino/*-int8-nncf*/model.xml"))) == 2
    with pytest.raises(EmbeddingError, match="OpenVINO only"):
        OfflineEmbedder(precision="int8", runtime="torch")


def test_bf16_is_close_to_f32_and_named_apart(offline_embedder, sample_photos, tmp_path, monkeypatch):
    monkeypatch.setenv("CONCEPT_CACHE", str(tmp_path))
    photos = list(sample_photos.values())
    half = load_embedding_model("offline-bf16", verbose=False)
    assert half.precision == "bf16" and half.spec == "offline-lite0-bf16"
    assert half.name != offline_embedder.name
    cosine = np.sum(half.embed_images(photos) * offline_embedder.embed_images(photos), axis=1)
    assert cosine.min() > 0.9


def test_auto_runtime_falls_back_to_pytorch_without_openvino(sample_photos, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "openvino" else real(name, *a))
    model = OfflineEmbedder(verbose=False)
    assert model.runtime_ == "torch"
    assert model.embed_images(list(sample_photos.values())[:1]).shape == (1, 384)
    with pytest.raises(EmbeddingError, match="pip install openvino"):
        _ = OfflineEmbedder(runtime="openvino", verbose=False).runtime_


def test_embed_texts_refuses_a_single_string(offline_embedder):
    with pytest.raises(TypeError, match="list of strings"):
        offline_embedder.embed_texts("beach")


# -- CLIP on a tiny randomly initialised CLIP (tests the code path, not quality) ----------

def test_clip_from_local_folder_embeds_images_and_texts(tiny_clip):
    model = CLIPEmbedder(str(tiny_clip), device="cpu", verbose=False)
    imgs = model.embed_images([solid((255, 0, 0)), solid((0, 0, 255), size=(20, 60))])
    txt = model.embed_texts(["a red square", "a blue bar", "x"])
    assert imgs.shape == (2, 16) and txt.shape == (3, 16)
    np.testing.assert_allclose(np.linalg.norm(imgs, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(imgs[0], imgs[1])


def test_local_clip_folders_that_share_a_name_are_named_apart(tiny_clip, tmp_path):
    import shutil

    other = make_tiny_clip(tmp_path / "b" / tiny_clip.name, seed=1)  # same folder name, other weights
    copy = shutil.copytree(tiny_clip, tmp_path / "c" / tiny_clip.name)  # same weights elsewhere
    name = CLIPEmbedder(str(tiny_clip), device="cpu", verbose=False).name
    assert name.startswith(f"clip:{tiny_clip.name}@")
    assert CLIPEmbedder(str(other), device="cpu", verbose=False).name != name
    assert CLIPEmbedder(str(copy), device="cpu", verbose=False).name == name


def test_clip_fast_path_matches_sentence_transformers_own_preprocessing(tiny_clip, sample_photos):
    model = CLIPEmbedder(str(tiny_clip), device="cpu", verbose=False)
    photos = list(sample_photos.values())
    ours = model.embed_images(photos)
    theirs = model.image_model.encode(photos, normalize_embeddings=True)
    assert (ours * theirs).sum(axis=1).min() > 0.99


def _text_only_model(folder, dim: int):
    """A text-only sentence-transformers model (MiniLM + a Dense head) of the given dimension."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Dense

    from concept.embedding.base import load_sentence_transformer
    from concept.embedding.offline import text_model_path

    base = load_sentence_transformer(text_model_path(), "cpu")
    model = SentenceTransformer(modules=[*base, Dense(384, dim)], device="cpu")
    model.save(str(folder))
    return str(folder)


def test_text_only_model_is_paired_with_an_image_model(tiny_clip, tmp_path):
    text_only = _text_only_model(tmp_path / "multilingual", 16)
    with pytest.raises(EmbeddingError, match="text-only"):
        CLIPEmbedder(text_only, device="cpu")
    model = CLIPEmbedder(str(tiny_clip), text_model=text_only, device="cpu", verbose=False)
    assert model.embed_images([solid((0, 255, 0))]).shape == (1, 16)
    assert model.embed_texts(["ein Hund", "un chat"]).shape == (2, 16)


def test_text_model_of_another_dimension_is_refused(tiny_clip, tmp_path):
    text_only = _text_only_model(tmp_path / "wrong", 24)
    with pytest.raises(EmbeddingError, match="do not share a space"):
        CLIPEmbedder(str(tiny_clip), text_model=text_only, device="cpu")


@pytest.mark.parametrize("name", ["clip-ViT-B-32", "openai/clip-vit-base-patch32", "clip-ViT-B-32-multilingual-v1"])
def test_clip_weights_missing_from_this_machine_fail_at_once_with_what_to_do(name, tmp_path, monkeypatch):
    # issue 11, item 13: not a long Hugging Face traceback about the internet connection
    monkeypatch.setenv("SENTENCE_TRANSFORMERS_HOME", str(tmp_path / "cache"))
    start = time.monotonic()
    with pytest.raises(EmbeddingError) as info:
        CLIPEmbedder(name, device="cpu")
    assert time.monotonic() - start < 5
    message = str(info.value)
    for needle in ("not on this machine", str(tmp_path / "cache"), "local folder", "'offline'", "works now"):
        assert needle in message
    assert info.value.__cause__ is None and info.value.__context__ is None  # no chained traceback
    with pytest.raises(EmbeddingError, match="folder '/no/such/clip' does not exist"):
        load_embedding_model("/no/such/clip")


def test_clip_in_the_local_cache_passes_the_check(tmp_path, monkeypatch):
    from concept.embedding.clip import require_local_weights

    repo = tmp_path / "cache" / "models--sentence-transformers--clip-ViT-B-32"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    (repo / "snapshots" / ("0" * 40)).mkdir(parents=True)
    (repo / "snapshots" / ("0" * 40) / "modules.json").write_text("[]")
    monkeypatch.setenv("SENTENCE_TRANSFORMERS_HOME", str(tmp_path / "cache"))
    require_local_weights("clip-ViT-B-32")  # found: no error
    with pytest.raises(EmbeddingError, match="not on this machine"):
        require_local_weights("clip-ViT-L-14")


def test_a_model_with_missing_clip_weights_fails_before_reading_any_image(tmp_path, monkeypatch):
    from concept import ConceptModel

    monkeypatch.setenv("SENTENCE_TRANSFORMERS_HOME", str(tmp_path / "cache"))
    model = ConceptModel(embedding_model="clip-ViT-B-32", verbose=False)
    with pytest.raises(EmbeddingError, match="not on this machine.*'offline'"):
        model.fit([str(tmp_path / f"{i}.png") for i in range(40)])  # none exists: never looked at


# -- the automatic choice ------------------------------------------------------------------

def test_auto_falls_back_to_offline_quickly_without_network(monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty_cache"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty_cache" / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens: refused at once
    caplog.set_level(logging.WARNING)
    start = time.monotonic()
    model = load_embedding_model("auto", allow_download=True, verbose=False)
    assert time.monotonic() - start < 5
    assert isinstance(model, OfflineEmbedder)
    assert "offline model" in caplog.text


def test_explicit_choices_and_user_objects(tiny_clip):
    assert isinstance(load_embedding_model("offline-lite1", verbose=False), OfflineEmbedder)
    assert isinstance(load_embedding_model(str(tiny_clip), device="cpu"), CLIPEmbedder)

    class Mine:
        def embed_images(self, images, batch_size=32):
            return np.ones((len(images), 3), np.float32)

        def embed_texts(self, texts, batch_size=64):
            return np.ones((len(texts), 3), np.float32)

    mine = Mine()
    assert load_embedding_model(mine) is mine
    with pytest.raises(EmbeddingError, match="embed_images"):
        load_embedding_model(42)


def test_offline_class_names_are_embedded_once_then_read_from_the_cache(offline_embedder, tmp_path, monkeypatch):
    monkeypatch.setenv("CONCEPT_CACHE", str(tmp_path))
    first = OfflineEmbedder(verbose=False)
    first.__dict__["text_model"] = offline_embedder.text_model  # skip loading MiniLM again
    computed = np.array(first.class_embeddings)
    assert computed.shape == (1000, 384) and len(list(tmp_path.glob("texts-*.npy"))) == 1

    def no_encoding(texts, batch_size):
        raise AssertionError("the class names were embedded again")

    second = OfflineEmbedder(verbose=False)
    monkeypatch.setattr(second, "_encode_texts", no_encoding)
    np.testing.assert_array_equal(second.class_embeddings, computed)
