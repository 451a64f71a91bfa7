"""The on-disk cache of word embeddings: computed once, read back mapped, never a reason to fail."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest

from concept import _cache
from concept._cache import cache_dir, cached_array, vocabulary_embeddings

WORDS = ["apple", "boat", "cat"]


class Counting:
    """compute() for cached_array that counts its calls."""

    def __init__(self, rows: int = 3) -> None:
        self.calls, self.rows = 0, rows

    def __call__(self) -> np.ndarray:
        self.calls += 1
        return np.arange(self.rows * 4, dtype=np.float32).reshape(self.rows, 4)


class NamedBackend:
    def __init__(self, name: str = "test-words") -> None:
        self.name, self.calls = name, []

    def embed_texts(self, texts):
        self.calls.append(list(texts))
        return np.array([[len(t), 1.0] for t in texts], np.float32)


@pytest.fixture()
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("CONCEPT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_cache_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("CONCEPT_CACHE", str(tmp_path / "mine"))
    assert cache_dir() == tmp_path / "mine"
    monkeypatch.delenv("CONCEPT_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "concept"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_dir() == Path.home() / ".cache" / "concept"


def test_an_array_is_computed_once_then_read_back_mapped_read_only(cache):
    compute = Counting()
    first = cached_array("texts", "model-a", WORDS, compute)
    again = cached_array("texts", "model-a", WORDS, compute)
    assert compute.calls == 1
    np.testing.assert_array_equal(again, first)
    assert isinstance(again, np.memmap) and not again.flags.writeable
    assert [p.suffix for p in cache.iterdir()] == [".npy"]  # one entry, no temporary left
    # Another model or other texts are other entries.
    cached_array("texts", "model-b", WORDS, compute)
    cached_array("texts", "model-a", WORDS[:2], Counting(2))
    assert compute.calls == 2 and len(list(cache.iterdir())) == 3


def test_a_damaged_or_mismatched_entry_is_recomputed_and_repaired(cache, caplog):
    compute = Counting()
    cached_array("texts", "model-a", WORDS, compute)
    (entry,) = cache.iterdir()
    entry.write_bytes(b"not an npy file")
    with caplog.at_level(logging.WARNING, logger="concept._cache"):
        vectors = cached_array("texts", "model-a", WORDS, compute)
    assert compute.calls == 2 and "damaged cache file" in caplog.text
    np.testing.assert_array_equal(np.load(entry), vectors)  # rewritten whole
    np.save(entry, np.zeros((5, 4), np.float32))  # a row count that does not fit the texts
    assert cached_array("texts", "model-a", WORDS, compute).shape == (3, 4) and compute.calls == 3


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs a folder root cannot bypass")
def test_an_unwritable_cache_does_not_stop_the_work(cache):
    cache.mkdir()
    cache.chmod(0o500)
    try:
        vectors = cached_array("texts", "model-a", WORDS, Counting())
    finally:
        cache.chmod(0o700)
    assert vectors.shape == (3, 4) and list(cache.iterdir()) == []


def test_an_unwritable_cache_location_does_not_stop_the_work(tmp_path, monkeypatch):
    (tmp_path / "a_file").write_text("x")
    monkeypatch.setenv("CONCEPT_CACHE", str(tmp_path / "a_file" / "cache"))  # cannot be a folder
    assert cached_array("texts", "model-a", WORDS, Counting()).shape == (3, 4)


def test_a_named_backends_words_are_embedded_in_steps_and_cached_on_disk(cache, monkeypatch):
    monkeypatch.setattr(_cache, "WORDS_PER_STEP", 2)
    backend = NamedBackend()
    vectors = vocabulary_embeddings(backend, WORDS, verbose=False)
    assert backend.calls == [["apple", "boat"], ["cat"]]
    np.testing.assert_array_equal(vectors, [[5, 1], [4, 1], [3, 1]])
    # Another process (a new backend object of the same name) reads them from disk.
    other = NamedBackend()
    np.testing.assert_array_equal(vocabulary_embeddings(other, WORDS, verbose=False), vectors)
    assert other.calls == []


def test_an_unnamed_backend_is_remembered_in_memory_and_normalised(cache):
    backend = NamedBackend()
    del backend.name  # a user's own object: no name to key the disk cache by
    first = vocabulary_embeddings(backend, WORDS, verbose=False)
    second = vocabulary_embeddings(backend, WORDS, verbose=False)
    assert second is first and len(backend.calls) == 1
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1, rtol=1e-6)
    vocabulary_embeddings(backend, WORDS[:2], verbose=False)  # other words: computed anew
    assert len(backend.calls) == 2 and not cache.exists()
