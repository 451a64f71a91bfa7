"""Word quality as a number: do a concept's words name its members?

OpenClipart's 17 subject folders (2,262 images embedded with the offline model, cached in
benchmarks/cache/openclipart_lite0.npz by benchmarks/embedding_space.py), each PNG's caption the
`<dc:title>` of its SVG twin. For each seed, a random half of the images is fitted with its
titles as captions, the other half without; the candidate vocabulary (`docs`) is the demo's
(every distinct title and keyword). Scored on the *uncaptioned* half only:

  - word hit rate: for each concept, the share of its uncaptioned members whose own title
    shares a word (3+ letters, no stop words) with the concept's top 10 words, averaged over
    concepts (macro);
  - caption retrieval: the rank of an uncaptioned image's own title among the uncaptioned
    half's titles (median, and the share within the top 10), by cosine in the space words
    are read in (the plain shared space, or the learned map).

Methods on the same split: today (no captions, words by similarity to the concept), today with
words down-weighted by their mean similarity to every concept (distinctiveness 0.5, 1), captions
with c-TF-IDF only (no learned map), captions + learned map (with caption terms weighed by the share
of members that have them, "sharing", and without: issue 28), and the bundled nouns as vocabulary
with and without the offline model's hypernym words leading (issue 28). Tux Paint's stamps (one object per
caption, "A brown bear.": benchmarks/image_collections.py) the same way, with the descriptions' words as
vocabulary (issue 28: captions must help there too). A second table compares the map's
inputs (CNN features or the shared vectors) and ridge with CCA. Fashion-MNIST's test split (10,000)
with the 10 class names as vocabulary and, for the captioned half, as captions: accuracy of the
top word of an uncaptioned image's concept.

    python benchmarks/words.py            # tables -> benchmarks/out/words*.md
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings

import numpy as np
from _common import cached, publish

import concept.alignment as alignment_module
import concept.describing as describing_module
from concept import ConceptModel
from concept.alignment import caption_ranks, fit_alignment
from concept.datasets import fashion_mnist, openclipart
from concept.embedding import OfflineEmbedder, l2_normalize
from concept.words import caption_analyzer

warnings.filterwarnings("ignore")
logging.basicConfig(level=logging.ERROR)
logging.getLogger("concept").setLevel(logging.ERROR)

SEEDS = (0, 1, 2)
TOP = 10


def _missing():
    raise FileNotFoundError("benchmarks/cache/openclipart_lite0.npz is missing: run benchmarks/embedding_space.py")


def load_openclipart(embedder) -> dict:
    data = openclipart()
    arrays = cached("openclipart_lite0", _missing)
    kept = arrays["kept"]
    return {"shared": l2_normalize(embedder.conse(arrays["probs"])), "features": l2_normalize(arrays["features"]),
            "titles": [data.captions[i] for i in kept], "docs": data.docs, "y": data.labels[kept]}


def load_fashion() -> dict:
    data = fashion_mnist("test")
    arrays = cached("fashion_test_lite0", lambda: (_ for _ in ()).throw(FileNotFoundError(
        "benchmarks/cache/fashion_test_lite0.npz is missing: run benchmarks/quality.py --embed")))
    kept = arrays["kept"]
    names = [c.lower() for c in data.label_names]
    return {"shared": l2_normalize(arrays["shared"]), "features": l2_normalize(arrays["features"]),
            "titles": [names[y] for y in data.labels[kept]], "docs": names, "y": data.labels[kept]}


def load_stamps() -> dict:
    """Tux Paint's stamps (benchmarks/image_collections.py, embedded there and cached), each stamp's caption its
    one-object description ("A brown bear."); the vocabulary every word of those descriptions."""
    import image_collections

    data = image_collections.load("stamps")
    image_collections.features("stamps")  # embeds and caches them when missing
    arrays = cached("stamps_lite0", _missing)
    kept = arrays["kept"]
    titles = [data.captions[i] for i in kept]
    return {"shared": l2_normalize(arrays["shared"]), "features": l2_normalize(arrays["features"]),
            "titles": titles, "docs": sorted({t for t in titles if t}), "y": data.labels[kept]}


def fit(data: dict, embedder, seed: int, captions, *, distinct: float, learned: bool,
        concentration: float = 0.5, method: str = "") -> tuple[ConceptModel, float]:
    describing_module.DISTINCTIVENESS = distinct
    describing_module.CAPTION_CONCENTRATION = concentration
    describing_module.CAPTION_SHARING = 0.0 if "sharing 0" in method else SHARING
    describing_module.HYPERNYMS_LEAD = "no hypernyms" not in method
    alignment_module.MIN_CAPTIONED = 50 if learned else 10**12
    model = ConceptModel(embedding_model=embedder, random_state=seed, verbose=False)
    start = time.perf_counter()
    model.fit(image_embeddings=data["shared"], image_features=data["features"],
              docs=None if "bundled nouns" in method else data["docs"], captions=captions)
    return model, time.perf_counter() - start


def hit_rate(model: ConceptModel, title_tokens: list[set], held_out: np.ndarray, analyzer) -> float:
    """Macro-average over concepts of the share of held-out members whose title shares a word
    with the concept's top words (concepts with no held-out titled member are left out)."""
    shares = []
    for c, words in model.topics.items():
        tokens = {t for w in words[:TOP] for t in (analyzer(w) or [w.lower()])}
        members = [i for i in held_out if model.labels_[i] == c and title_tokens[i]]
        if members:
            shares.append(np.mean([bool(title_tokens[i] & tokens) for i in members]))
    return float(np.mean(shares)) if shares else 0.0


def distinct_share(model: ConceptModel) -> float:
    """Distinct words among all concepts' top 10 over the number of slots: 1 when no two
    concepts share a word ("envelope" for 4 of 11 concepts lowers it)."""
    words = [w for ws in model.topics.values() for w in ws[:TOP]]
    return len(set(words)) / max(len(words), 1)


def top_word_accuracy(model: ConceptModel, title_tokens: list[set], held_out: np.ndarray, analyzer) -> float:
    """Share of held-out images whose concept's first word names their class (outliers count as misses)."""
    hits = []
    for i in held_out:
        c = int(model.labels_[i])
        words = model.topics.get(c, []) if c >= 0 else []
        first = set(analyzer(words[0]) or [words[0].lower()]) if words else set()
        hits.append(bool(first & title_tokens[i]))
    return float(np.mean(hits))


def retrieval(model: ConceptModel, embedder, titles: list[str], held_out: np.ndarray) -> dict:
    """Rank of each held-out image's own title among the held-out titles."""
    rows = np.asarray([i for i in held_out if titles[i]])
    texts = [titles[i] for i in rows]
    unique = list(dict.fromkeys(texts))
    position = {t: j for j, t in enumerate(unique)}
    groups = np.asarray([position[t] for t in texts])
    vectors = embedder.embed_texts(unique)
    vectors = l2_normalize(vectors - vectors.mean(axis=0))[groups]
    images = (model.aligned_embeddings_[rows] if model.aligned_embeddings_ is not None
              else l2_normalize(model.embeddings_[rows] - model.image_center_))
    ranks = caption_ranks(images, vectors, groups)
    return {"median_rank": float(np.median(ranks)), "recall10": float((ranks <= 10).mean()),
            "n_titles": len(unique)}


METHODS = (  # name, captions?, distinctiveness, learned map?, caption concentration
    ("today (no captions)", False, 0.0, False, 0.5),
    ("no captions, distinctiveness 0.5 (default)", False, 0.5, False, 0.5),
    ("captions, c-TF-IDF only", True, 0.5, False, 0.5),
    ("captions + learned map (default)", True, 0.5, True, 0.5),
    ("captions + learned map, concentration 0", True, 0.5, True, 0.0),
    ("captions + learned map, sharing 0 (before issue 28)", True, 0.5, True, 0.5),
    ("no captions, bundled nouns (docs=None)", False, 0.5, False, 0.5),
    ("no captions, bundled nouns, no hypernyms", False, 0.5, False, 0.5),
)
#: The default caption sharing exponent (`concept.describing.CAPTION_SHARING`), off in "sharing 0" rows;
#: hypernym words (the offline model's class hierarchy) lead a concept's words except in "no hypernyms" rows.
SHARING = describing_module.CAPTION_SHARING
#: OpenClipart title boilerplate ("Clipart by Nicu Buculei - ...", "SVG Road Signs", "R16 sibmission"):
#: a concept word matching it matches the uploader, not the picture; the "hit (no boilerplate)"
#: column drops these tokens from the titles.
BOILERPLATE = {"clipart", "nicu", "buculei", "svg", "openclipart", "sibmission"}


def word_table(data: dict, embedder, analyzer, name: str, score, seeds=SEEDS, methods=METHODS) -> list[dict]:
    title_tokens = [set(analyzer(t)) if t else set() for t in data["titles"]]
    plain_tokens = [t - BOILERPLATE for t in title_tokens]
    results: dict[str, list] = {}
    for seed in seeds:
        rng = np.random.default_rng(seed)
        n = len(data["titles"])
        captioned = np.zeros(n, bool)
        captioned[rng.choice(n, n // 2, replace=False)] = True
        held_out = np.flatnonzero(~captioned)
        captions = [t if captioned[i] else None for i, t in enumerate(data["titles"])]
        for method, use_captions, distinct, learned, concentration in methods:
            model, seconds = fit(data, embedder, seed, captions if use_captions else None,
                                 distinct=distinct, learned=learned, concentration=concentration, method=method)
            row = {"score": score(model, title_tokens, held_out, analyzer), "distinct": distinct_share(model),
                   "seconds": seconds,
                   "concepts": model.n_concepts_, "map": model.alignment_ is not None}
            if name == "openclipart":
                row["hit_no_boilerplate"] = score(model, plain_tokens, held_out, analyzer)
                row.update(retrieval(model, embedder, data["titles"], held_out))
            results.setdefault(method, []).append(row)
            print(seed, method, {k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}, flush=True)
            if seed == seeds[0] and name == "openclipart":
                for c in list(model.frequency.Concept[lambda c: c >= 0])[:12]:
                    print("   ", c, ", ".join(model.topics[c][:8]))
    rows = []
    for method, runs in results.items():
        row = {"method": method}
        for key in runs[0]:
            values = [r[key] for r in runs]
            row[key] = (f"{np.mean(values):.3f} ± {np.std(values):.3f}" if isinstance(values[0], float)
                        else ", ".join(str(v) for v in values))
        rows.append(row)
    return rows


def map_table(data: dict, embedder, cca: bool = False) -> list[dict]:
    """The learned map alone, on the captioned half of seed 0: inputs and method, validation
    ranks on a held-out fifth of the captioned half (what fit_alignment measures)."""
    rng = np.random.default_rng(0)
    n = len(data["titles"])
    rows_ = np.sort(rng.choice(n, n // 2, replace=False))
    rows_ = np.asarray([i for i in rows_ if data["titles"][i]])
    texts = [data["titles"][i] for i in rows_]
    unique = list(dict.fromkeys(texts))
    position = {t: j for j, t in enumerate(unique)}
    groups = np.asarray([position[t] for t in texts])
    vectors = embedder.embed_texts(unique)
    vectors = l2_normalize(vectors - vectors.mean(axis=0))[groups]
    plain = l2_normalize(data["shared"][rows_] - data["shared"].mean(axis=0))
    out = []
    for space in ("features", "shared"):
        start = time.perf_counter()
        _, report = fit_alignment(data[space][rows_], vectors, plain, groups, random_state=0)
        seconds = time.perf_counter() - start
        out.append({"map": "plain shared space (no map)", "median_rank": report["plain"]["median_rank"],
                    "recall10": report["plain"]["recall_at_10"]} if space == "features" else None)
        for alpha in alignment_module.ALPHAS:
            r = report[f"alpha_{alpha:g}"]
            out.append({"map": f"ridge on {space}, alpha {alpha:g}", "median_rank": r["median_rank"],
                        "recall10": r["recall_at_10"], "seconds": f"{seconds:.2f} (all alphas)"})
    out = [r for r in out if r]
    if not cca:
        return out
    try:  # CCA into 32 and 64 components, the same split as fit_alignment's
        from sklearn.cross_decomposition import CCA

        order = np.random.default_rng(0).permutation(len(rows_))
        n_val = max(10, len(rows_) // 5)
        val, train = np.sort(order[:n_val]), np.sort(order[n_val:])
        x = data["features"][rows_]
        for k in (16, 32):
            start = time.perf_counter()
            cca = CCA(n_components=k, max_iter=200).fit(x[train], vectors[train])
            xs, ys = cca.transform(x[val], vectors[val])
            ranks = caption_ranks(l2_normalize(xs), l2_normalize(ys), groups[val])
            out.append({"map": f"CCA on features, {k} components", "median_rank": float(np.median(ranks)),
                        "recall10": float((ranks <= 10).mean()), "seconds": f"{time.perf_counter() - start:.1f}"})
    except Exception as exc:  # noqa: BLE001 - a failed comparison is reported, not fatal
        out.append({"map": f"CCA failed: {exc}"})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-fashion", action="store_true")
    parser.add_argument("--only-fashion", action="store_true")
    parser.add_argument("--only-stamps", action="store_true")
    parser.add_argument("--cca", action="store_true", help="also compare CCA (slow: minutes)")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    args = parser.parse_args()
    embedder = OfflineEmbedder("lite0", verbose=False)
    analyzer = caption_analyzer()
    if args.only_fashion:
        return fashion(embedder, analyzer, args.seeds)
    if args.only_stamps:
        return stamps(embedder, analyzer, args.seeds)
    oc = load_openclipart(embedder)
    publish("words_map", "Learned image-text map on OpenClipart (words.py)",
            "Captioned half of seed 0's split; a fifth of it held out: rank of each held-out image's own "
            "title among the held-out titles (median; share in the top 10).",
            map_table(oc, embedder, args.cca), ["map", "median_rank", "recall10", "seconds"])
    rows = word_table(oc, embedder, analyzer, "openclipart", hit_rate, args.seeds)
    publish("words", "Word quality on OpenClipart (words.py)",
            "Fit with titles as captions for a random half (seeds 0, 1, 2; mean ± std); scored on the other half: "
            "word hit rate (macro over concepts) and the rank of each image's own title among the half's titles.",
            rows, ["method", "score", "hit_no_boilerplate", "distinct", "median_rank", "recall10", "concepts", "map",
             "seconds"])
    stamps(embedder, analyzer, args.seeds)
    if not args.skip_fashion:
        fashion(embedder, analyzer, args.seeds)


def stamps(embedder, analyzer, seeds) -> None:
    methods = [m for m in METHODS if "bundled nouns" not in m[0] and "concentration 0" not in m[0]]
    rows = word_table(load_stamps(), embedder, analyzer, "stamps", hit_rate, seeds, methods)
    publish("words_stamps", "Word quality on Tux Paint stamps, one object per caption (words.py)",
            "Each stamp's description (\"A brown bear.\") as its caption for a random half (seeds as above); the "
            "descriptions' words as vocabulary; word hit rate on the other half, as for OpenClipart.",
            rows, ["method", "score", "distinct", "concepts", "map", "seconds"])


def fashion(embedder, analyzer, seeds) -> None:
    rows = word_table(load_fashion(), embedder, analyzer, "fashion", top_word_accuracy, seeds,
                      [m for m in METHODS if "concentration 0" not in m[0] and "sharing 0" not in m[0]])
    publish("words_fashion", "Top word on Fashion-MNIST test (words.py)",
            "The 10 class names as vocabulary; for a random half, the class name as caption; accuracy of "
            "the top word of each other-half image's concept (outliers count as misses).",
            rows, ["method", "score", "distinct", "concepts", "map", "seconds"])


if __name__ == "__main__":
    main()
