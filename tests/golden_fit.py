"""What a fit (and the edits after it) produces, as digests, on three collections: a synthetic
mixture, OpenClipart and Fashion-MNIST (issue 24: a restructuring keeps the results bit for bit).

`python3 tests/golden_fit.py --write` records them in tests/data/golden_fit.json; the test
`test_fit_equality.py` computes them again and compares. Each case also records a digest of its
inputs (the embeddings the images got and a few word vectors): those come from the offline
network, whose float arithmetic may differ on another CPU, and then the comparison says so
instead of blaming the fit. Only public API is used, so the same code runs before and after a
restructuring.
"""

from __future__ import annotations

import hashlib
import json
import sys
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

GOLDEN = Path(__file__).parent / "data" / "golden_fit.json"
FASHION_WORDS = ["shoe", "shirt", "bag", "trousers", "dress", "coat", "sandal", "sneaker", "boot", "pullover",
                 "jacket", "skirt", "handbag", "sock", "hat", "glove", "scarf", "belt", "jeans", "sweater"]


def _digest(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str((a.dtype.str, a.shape)).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def _json_digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]


def _topics(topics: dict) -> dict:
    return {str(c): [[w, float(s).hex()] for w, s in ws] for c, ws in topics.items()}


def snapshot(model) -> dict:
    """The results a user sees, as digests (and the default layer's words in clear, to read a
    difference)."""
    return {
        "labels": _digest(model.labels_),
        "probabilities": _digest(np.asarray(model.probabilities_, np.float64)),
        "layers": _digest(*model.layers_),
        "nearest_labels": _digest(model.nearest_labels_),
        "concept_embeddings": _digest(*model.layer_embeddings_),
        "exemplars": _json_digest([{str(c): list(map(int, r)) for c, r in ex.items()}
                                   for ex in model.layer_exemplars_]),
        "topics": _json_digest([_topics(t) for t in model.layer_topics_]),
        "custom_labels": {str(c): n for c, n in sorted(model.custom_labels_.items())},
        "words": {str(c): [w for w, _ in ws[:5]] for c, ws in sorted(model.topics_.items())},
        "layer": int(model.layer_),
        "n_concepts": int(model.n_concepts_),
    }


class HashedWords:
    """A deterministic text 'model' for the synthetic case: each word a fixed random direction
    (seeded by its CRC32), mixed towards the image clusters' centres so that words describe them."""

    name = "base"

    def __init__(self, centres: np.ndarray) -> None:
        self.centres = centres

    def embed_images(self, images, batch_size: int = 32) -> np.ndarray:
        raise AssertionError("the synthetic case passes image_embeddings")

    def embed_texts(self, texts, batch_size: int = 64) -> np.ndarray:
        rows = []
        for t in texts:
            rng = np.random.default_rng(zlib.crc32(t.encode()))
            v = rng.normal(size=self.centres.shape[1])
            rows.append(v / np.linalg.norm(v) + self.centres[zlib.crc32(t.encode()) % len(self.centres)])
        return np.asarray(rows, np.float32)


def _synthetic():
    rng = np.random.default_rng(0)
    groups, subs, per, dim = 6, 4, 50, 48
    g = rng.normal(size=(groups, dim))
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    centres = g[np.repeat(np.arange(groups), subs)] + 0.6 * rng.normal(size=(groups * subs, dim)) / np.sqrt(dim)
    sub = np.repeat(np.arange(groups * subs), per)
    x = centres[sub] + 0.25 * rng.normal(size=(len(sub), dim)) / np.sqrt(dim)
    noise = rng.normal(size=(40, dim))
    x = np.concatenate([x, noise / np.linalg.norm(noise, axis=1, keepdims=True)])
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    words = [f"word{i}" for i in range(300)]
    return x, g, words


def cases() -> Iterator[tuple[str, Callable[[], tuple[str, dict]]]]:
    """(name, run) pairs; run() returns (inputs digest, {step: snapshot})."""
    from concept import ConceptModel

    def synthetic():
        x, centres, words = _synthetic()
        embedder = HashedWords(centres)
        inputs = _digest(x, embedder.embed_texts(words[:20]))
        out = {}
        m = ConceptModel(embedding_model=embedder, random_state=0, verbose=False, min_concept_size=15)
        m.fit(docs=words, image_embeddings=x[:-100])
        out["fit"] = snapshot(m)
        m.set_concept_labels({0: "first"})
        m.merge_concepts([[0, 1]])
        out["merge"] = snapshot(m)
        m.delete_concepts([2], to="nearest")
        out["delete"] = snapshot(m)
        m.update_concepts(m.reduce_outliers(strategy="neighbours", threshold=0.3))
        out["outliers"] = snapshot(m)
        m.partial_fit(image_embeddings=x[-100:])
        out["partial_fit"] = snapshot(m)
        m.reduce_concepts(3)
        out["reduce"] = snapshot(m)
        out["transform"] = _digest(*m.transform(image_embeddings=x[::7], return_probabilities=True))
        m2 = ConceptModel(embedding_model=embedder, random_state=1, verbose=False, ctfidf=True,
                          n_concepts=5, min_concept_size=15)
        m2.fit(docs=words, image_embeddings=x)
        out["ctfidf_n_concepts"] = snapshot(m2)
        m3 = ConceptModel(embedding_model=embedder, random_state=2, verbose=False, min_concept_size=15,
                          seed_concepts=[["word1", "word7"], ["word30"]])
        m3.fit(docs=words, image_embeddings=x)
        out["seeded"] = snapshot(m3)
        return inputs, out

    def openclipart():
        from concept.datasets import openclipart as load

        data = load(("animals", "food", "transportation", "buildings"))
        rows = np.concatenate([np.flatnonzero(data.labels == c)[:30] for c in range(4)])
        paths = [data.images[i] for i in rows]
        captions = [data.captions[i] for i in rows]
        out = {}
        m = ConceptModel(embedding_model="offline", random_state=0, verbose=False, vocabulary_size=3000)
        m.fit(paths)
        inputs = _digest(m.embeddings_, m.features_, m.embedder_.embed_texts(FASHION_WORDS))
        out["fit"] = snapshot(m)
        out["collages"] = _digest(*[np.asarray(m.collages_[c]) for c in sorted(m.collages_)])
        m.reduce_concepts(max(1, m.n_concepts_ - 2))
        out["reduce"] = snapshot(m)
        c = ConceptModel(embedding_model="offline", random_state=0, verbose=False, ctfidf=True,
                         vocabulary_size=3000)
        c.fit(paths, captions=captions)
        out["captions_ctfidf"] = snapshot(c)
        c.merge_concepts([[0, 1]])
        out["captions_merge"] = snapshot(c)
        s = ConceptModel(embedding_model="offline", random_state=0, verbose=False, vocabulary_size=3000,
                         seed_concepts=[["dog", "cat"], ["car", "bus"]])
        s.fit(paths)
        out["seeded"] = snapshot(s)
        return inputs, out

    def fashion():
        from concept.datasets import fashion_mnist

        data = fashion_mnist("test")
        images = data.images[:400]
        out = {}
        m = ConceptModel(embedding_model="offline", random_state=0, verbose=False,
                         zeroshot_concepts=["sneaker", "trousers", "bag"])
        m.fit(images, docs=FASHION_WORDS)
        inputs = _digest(m.embeddings_, m.features_, m.embedder_.embed_texts(FASHION_WORDS))
        out["zeroshot"] = snapshot(m)
        p = ConceptModel(embedding_model="offline", random_state=3, verbose=False, min_concept_size=10)
        p.fit(images[:300], docs=FASHION_WORDS)
        out["fit"] = snapshot(p)
        p.partial_fit(images[300:])
        out["partial_fit"] = snapshot(p)
        out["transform"] = _digest(p.transform(images[::9]))
        return inputs, out

    yield "synthetic", synthetic
    yield "openclipart", openclipart
    yield "fashion", fashion


def compute() -> dict:
    return {name: dict(zip(("inputs", "results"), run())) for name, run in cases()}


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python3 tests/golden_fit.py --write")
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps(compute(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN}")
