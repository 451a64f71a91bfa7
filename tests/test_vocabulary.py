"""Tests of the bundled WordNet nouns and ImageNet-1k classes."""

from __future__ import annotations

from importlib.resources import files

import pytest

from concept._errors import ConceptError
from concept.vocabulary import ImageNetClass, imagenet_classes, load_vocabulary


@pytest.fixture(scope="module")
def everything() -> list[str]:
    return load_vocabulary(multiword=True, proper_nouns=True)


def test_full_vocabulary_has_every_wordnet_noun(everything: list[str]) -> None:
    assert 118_000 <= len(everything) <= 120_000
    single = [w for w in everything if " " not in w]
    assert 55_000 <= len(single) <= 62_000


def test_no_duplicates_underscores_or_blanks(everything: list[str]) -> None:
    assert len(set(everything)) == len(everything)
    assert not any("_" in w for w in everything)
    assert all(w and w == w.strip() for w in everything)


def test_common_nouns_come_first() -> None:
    vocab = load_vocabulary()
    first_1000, first_10000 = set(vocab[:1000]), set(vocab[:10_000])
    assert {"time", "person", "man"} <= first_1000
    assert {"dog", "cat"} <= first_10000
    # a rare noun sits far behind
    assert vocab.index("aardvark") > 10_000


def test_multiword_filter() -> None:
    vocab = load_vocabulary(multiword=False, proper_nouns=True)
    assert not any(" " in w for w in vocab)
    assert "ice cream" in load_vocabulary(multiword=True)
    assert "ice cream" not in load_vocabulary(multiword=False)


def test_proper_noun_filter(everything: list[str]) -> None:
    vocab = load_vocabulary()
    assert not any(w[0].isupper() for w in vocab)
    assert "Paris" in everything and "Paris" not in vocab
    assert len(vocab) < len(everything)


def test_filters_keep_frequency_order(everything: list[str]) -> None:
    vocab = load_vocabulary(multiword=False)
    rank = {w: i for i, w in enumerate(everything)}
    assert [rank[w] for w in vocab] == sorted(rank[w] for w in vocab)


def test_max_words_applies_after_filtering() -> None:
    vocab = load_vocabulary(50, multiword=False)
    assert len(vocab) == 50
    assert vocab == load_vocabulary(multiword=False)[:50]
    assert len(load_vocabulary(10**9)) == len(load_vocabulary())


@pytest.mark.parametrize("bad", [0, -5])
def test_max_words_must_be_positive(bad: int) -> None:
    with pytest.raises(ConceptError, match="max_words"):
        load_vocabulary(bad)


def test_returns_a_fresh_list_each_call() -> None:
    a = load_vocabulary(10)
    a.clear()
    assert len(load_vocabulary(10)) == 10


def test_imagenet_classes_in_output_order() -> None:
    classes = imagenet_classes()
    assert len(classes) == 1000
    assert [c.index for c in classes] == list(range(1000))
    assert len({c.wnid for c in classes}) == 1000
    assert all(isinstance(c, ImageNetClass) for c in classes)


def test_imagenet_known_classes() -> None:
    classes = imagenet_classes()
    assert (classes[0].wnid, classes[0].name) == ("n01440764", "tench")
    assert classes[0].lemmas == ("tench", "Tinca tinca")
    assert (classes[281].wnid, classes[281].name) == ("n02123045", "tabby")
    assert (classes[999].wnid, classes[999].name) == ("n15075141", "toilet tissue")
    assert "toilet paper" in classes[999].lemmas


def test_imagenet_every_class_has_lemmas_and_gloss() -> None:
    for c in imagenet_classes():
        assert c.lemmas and all(c.lemmas)
        assert not any("_" in lemma for lemma in c.lemmas)
        assert c.gloss.strip()
        assert c.wnid.startswith("n") and len(c.wnid) == 9


def test_imagenet_names_are_not_unique() -> None:
    # WordNet gives two classes each the first lemma "crane" (bird, machine) and "maillot".
    names = [c.name for c in imagenet_classes()]
    assert names.count("crane") == 2
    assert names.count("maillot") == 2


def test_licence_ships() -> None:
    text = files("concept.data").joinpath("LICENSE.wordnet").read_text(encoding="utf-8")
    assert "WordNet 3.0 Copyright 2006 by Princeton University" in text
    assert "timm" in text and "Apache-2.0" in text
