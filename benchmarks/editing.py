"""Shaping concepts (issue 13): reduce to the true number, zero-shot names, partial_fit.

On the offline model's cached vectors (benchmarks/cache/, see quality.py):
  - reduce: fit ConceptModel (CNN features, no words, min_concept_size 10), then `reduce_concepts(k)` to the number
    of OpenClipart folders (17) / Fashion-MNIST classes (10); NMI/ARI before and after, seconds
    of the reduce (words skipped, so it is the hierarchy and descriptions only);
  - zero-shot: Fashion-MNIST's test images against its 10 class names embedded by the offline
    text model: accuracy of the raw argmax, how many pass BERTopic's fixed 0.7, and the
    calibrated match (`calibrated_matches`) at several thresholds: share assigned, accuracy of
    the assigned; then the same through `ConceptModel(zeroshot_concepts=...)`;
  - partial_fit: fit on 9 Fashion-MNIST classes, then add the held-back class ("Ankle boot")
    with 10% more of the others: old labels kept, new concepts, their purity and recall.
  - tiny CLIP (random weights, `--tiny-clip`): the zero-shot code path on 1,000 Fashion-MNIST
    images; its accuracy only says the path runs (random weights know nothing).
  - seeded concepts (`--seeded` runs only these): Fashion-MNIST fitted with no seeds, with the
    footwear class names as seeds, and with all 10; for each seeded class the concept holding
    most of its images (its purity and recall), NMI at the default layer and after
    `reduce_concepts(10)`, and how many images matched a seed and how many of them rightly.
    "oracle" rows replace the offline model's matches by a random 30% (or all) of each seeded
    class's true images (what a strong joint space could match) and run the same pull,
    clustering and re-measuring (`concept.seeding`): what the mechanism does with good matches.

    python benchmarks/editing.py [--tiny-clip] [--seeded]   -> benchmarks/out/editing*.md
"""

from __future__ import annotations

import argparse
import logging
import warnings

import numpy as np
from _common import Timer, publish, scores
from quality import load_fashion, load_openclipart

from concept import ConceptModel
from concept.editing import calibrated_matches

NAMES = ["t-shirt", "trousers", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot"]


def fit(d: dict, seed: int = 0, **kwargs) -> ConceptModel:
    model = ConceptModel(embedding_model=None, random_state=seed, verbose=False, **kwargs)
    return model.fit(image_embeddings=d["shared"], image_features=d["features"])


def reduce_rows() -> list[dict]:
    rows = []
    for d in (load_openclipart(), load_fashion()):
        for seed in (0, 1, 2):
            model = fit(d, seed, min_concept_size=10)  # fine enough to have more than k concepts
            before = scores(d["y"], model.labels_)
            k_before = f"{model.n_concepts_} (finest {model.layer_sizes_[0]})"
            with Timer() as t:
                model.reduce_concepts(d["k"])
            after = scores(d["y"], model.labels_)
            rows.append({"set": d["name"], "seed": seed, "fitted concepts": k_before,
                         "NMI fitted": before["nmi"], "reduced to": model.n_concepts_,
                         "NMI reduced": after["nmi"], "ARI reduced": after["ari"],
                         "NMI inliers": after["nmi_inliers"], "reduce s": t.seconds})
    return rows


def zeroshot_rows(d: dict, texts: np.ndarray, label: str) -> list[dict]:
    x, y = d["shared"], d["y"]
    raw = x @ texts.T
    rows = [{"model": label, "method": "raw argmax", "assigned": 1.0, "accuracy": float((raw.argmax(1) == y).mean())},
            {"model": label, "method": "raw cosine >= 0.7 (BERTopic)", "assigned": float((raw.max(1) >= 0.7).mean()),
             "accuracy": float((raw.argmax(1) == y)[raw.max(1) >= 0.7].mean()) if (raw.max(1) >= 0.7).any() else ""},
            {"model": label, "method": f"raw cosine mean / max: {raw.mean():.3f} / {raw.max():.3f}"}]
    for z in (1.0, 2.0, 3.0, 4.0):
        match, _ = calibrated_matches(x, texts, z)
        ok = match >= 0
        rows.append({"model": label, "method": f"calibrated, z = {z:g}", "assigned": float(ok.mean()),
                     "accuracy": float((match[ok] == y[ok]).mean()) if ok.any() else ""})
    return rows


def zeroshot_model_row(d: dict, embedder, label: str) -> dict:
    model = ConceptModel(embedding_model=embedder, random_state=0, verbose=False, zeroshot_concepts=NAMES)
    with Timer() as t:
        model.fit(image_embeddings=d["shared"], image_features=d["features"], docs=NAMES)
    named = {c: NAMES.index(n) for c, n in model.custom_labels_.items()}
    hit = np.isin(model.labels_, list(named))
    pred = np.array([named.get(int(c), -1) for c in model.labels_])
    return {"model": label, "method": f"ConceptModel(zeroshot_concepts), default z = {model.zeroshot_threshold:g}",
            "assigned": float(hit.mean()), "accuracy": float((pred[hit] == d["y"][hit]).mean()) if hit.any() else "",
            "note": f"{len(named)} named concepts, {model.n_concepts_} in all, NMI {scores(d['y'], model.labels_)['nmi']:.3f}, "
                    f"fit {t.seconds:.0f} s"}


FOOTWEAR = [5, 7, 9]  # sandal, sneaker, ankle boot: the classes the unseeded concepts mix most


def _seed_scores(y: np.ndarray, labels: np.ndarray, seeded: list[int]) -> dict:
    """Purity and recall of the concept holding most of each seeded class, averaged."""
    purity, recall = [], []
    for c in seeded:
        ids, counts = np.unique(labels[(y == c) & (labels >= 0)], return_counts=True)
        top = ids[counts.argmax()]
        purity.append(float(np.mean(y[labels == top] == c)))
        recall.append(float(counts.max() / np.sum(y == c)))
    return {"purity": float(np.mean(purity)), "recall": float(np.mean(recall))}


def seeded_rows(seeds=(0, 1, 2)) -> list[dict]:
    from concept.clustering import find_hierarchy
    from concept.embedding import OfflineEmbedder
    from concept.seeding import pull_towards_seeds, reanchor

    d = load_fashion()
    x, f, y = d["shared"], d["features"], d["y"]
    offline = OfflineEmbedder("lite0", verbose=False)
    rows = []
    for label, classes in (("no seeds", FOOTWEAR), ("no seeds (all 10 scored)", list(range(10))),
                           ("footwear names", FOOTWEAR), ("all 10 names", list(range(10)))):
        for seed in seeds:
            seeded = None if label.startswith("no seeds") else [[NAMES[c]] for c in classes]
            model = ConceptModel(embedding_model=offline, random_state=seed, verbose=False, seed_concepts=seeded)
            with Timer() as t:
                model.fit(image_embeddings=x, image_features=f, docs=NAMES)
            row = {"seeds": label, "seed": seed, "concepts": model.n_concepts_,
                   "NMI": scores(y, model.labels_)["nmi"], **_seed_scores(y, model.labels_, classes), "fit s": t.seconds}
            if seeded:
                m = model.seed_matches_
                ok = m >= 0
                row["matched"] = int(ok.sum())
                row["matched rightly"] = float(np.mean(np.asarray(classes)[m[ok]] == y[ok])) if ok.any() else ""
                row["seed word leads"] = sum(model.topics[c][0] == NAMES[classes[j]]
                                             for c, js in _leaders(model, classes).items() for j in js)
            model.reduce_concepts(10)
            row["NMI at 10"] = scores(y, model.labels_)["nmi"]
            rows.append(row)
    for label, classes, share in (("oracle 30%: footwear", FOOTWEAR, 0.3), ("oracle 30%: all 10", list(range(10)), 0.3),
                                  ("oracle 100%: footwear", FOOTWEAR, 1.0)):
        for seed in seeds:
            rng = np.random.default_rng(seed)
            match = np.full(len(y), -1)
            for j, c in enumerate(classes):
                members = np.flatnonzero(y == c)
                match[rng.choice(members, int(share * len(members)), replace=False)] = j
            with Timer() as t:
                h = reanchor(find_hierarchy(pull_towards_seeds(f, match), 30, random_state=seed), f)
            labels = h.layers[h.default]
            rows.append({"seeds": label, "seed": seed, "concepts": int(labels.max()) + 1,
                         "NMI": scores(y, labels)["nmi"], **_seed_scores(y, labels, classes),
                         "matched": int((match >= 0).sum()), "matched rightly": 1.0, "fit s": t.seconds})
    return rows


def _leaders(model: ConceptModel, classes: list[int]) -> dict[int, list[int]]:
    from concept.seeding import seeded_concepts

    return seeded_concepts(model.labels_, model.seed_matches_, model.n_concepts_)


def partial_fit_rows() -> list[dict]:
    d = load_fashion()
    held = 9
    rows = []
    for seed in (0, 1, 2):
        rng = np.random.default_rng(seed)
        old = np.flatnonzero(d["y"] != held)
        rng.shuffle(old)
        first, more = old[: int(0.9 * len(old))], old[int(0.9 * len(old)):]
        new = np.concatenate([np.flatnonzero(d["y"] == held), more])
        part = {"shared": d["shared"][first], "features": d["features"][first]}
        model = fit(part, seed)
        before, k = model.labels_.copy(), model.n_concepts_
        with Timer() as t:
            model.partial_fit(image_embeddings=d["shared"][new], image_features=d["features"][new])
        added = model.labels_[len(first):]
        is_held = d["y"][new] == held
        new_ids = added >= k
        rows.append({"seed": seed, "concepts before": k, "after": model.n_concepts_,
                     "old labels kept": float((model.labels_[: len(first)] == before).mean()),
                     "held-back images in new concepts": float(new_ids[is_held].mean()),
                     "purity of new concepts": float(is_held[new_ids].mean()) if new_ids.any() else "",
                     "other new images in old concepts": float(((added >= 0) & (added < k))[~is_held].mean()),
                     "partial_fit s": t.seconds})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny-clip", action="store_true", help="also run the zero-shot path with a random tiny CLIP")
    parser.add_argument("--seeded", action="store_true", help="run only the seeded-concepts measurement")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore")
    publish("editing_seeded", "Seeded concepts on Fashion-MNIST test (offline model)",
            "ConceptModel(seed_concepts=[[name], ...]) on the cached Lite0 vectors, docs = the 10 class names; "
            "purity/recall: of the concept holding most of each seeded class, averaged over the seeded "
            "classes; 'seed word leads': seeded concepts whose first word is their class's name; "
            "oracle rows: the same pull on true matches (30% or all of each class). `python benchmarks/editing.py --seeded`.",
            seeded_rows(), ["seeds", "seed", "concepts", "NMI", "NMI at 10", "purity", "recall", "matched",
                            "matched rightly", "seed word leads", "fit s"])
    if args.seeded:
        return
    from concept.embedding import OfflineEmbedder
    from concept.embedding.base import l2_normalize

    publish("editing_reduce", "reduce_concepts to the true number of labels",
            "Offline model (Lite0 CNN features), ConceptModel(min_concept_size=10), then `reduce_concepts(k)`; "
            "`python benchmarks/editing.py`.",
            reduce_rows(), ["set", "seed", "fitted concepts", "NMI fitted", "reduced to", "NMI reduced",
                            "ARI reduced", "NMI inliers", "reduce s"])
    d = load_fashion()
    offline = OfflineEmbedder("lite0", verbose=False)
    texts = l2_normalize(offline.embed_texts(NAMES))
    rows = zeroshot_rows(d, texts, "offline") + [zeroshot_model_row(d, offline, "offline")]
    if args.tiny_clip:
        import tempfile

        from concept.datasets import fashion_mnist
        from concept.embedding import load_embedding_model
        from concept.testing import write_random_clip

        with tempfile.TemporaryDirectory() as folder:
            clip = load_embedding_model(str(write_random_clip(folder, "tiny", image_size=32, patch_size=8)),
                                        verbose=False)
            data = fashion_mnist("test")
            x = l2_normalize(clip.embed_images(list(data.images[:1000]), 64))
            small = {"shared": x, "y": data.labels[:1000]}
            rows += zeroshot_rows(small, l2_normalize(clip.embed_texts(NAMES)), "tiny random CLIP (1,000 images)")
    publish("editing_zeroshot", "Zero-shot: Fashion-MNIST test images against its class names",
            "Accuracy is over the images assigned a name; chance is 0.1. `python benchmarks/editing.py --tiny-clip`.",
            rows, ["model", "method", "assigned", "accuracy", "note"])
    publish("editing_partial_fit", "partial_fit with a held-back class (Fashion-MNIST test, 'Ankle boot')",
            "Fit on 90% of the 9 other classes, then add the 1,000 ankle boots and the other 10%; "
            "`python benchmarks/editing.py`.",
            partial_fit_rows(), ["seed", "concepts before", "after", "old labels kept",
                                 "held-back images in new concepts", "purity of new concepts",
                                 "other new images in old concepts", "partial_fit s"])


if __name__ == "__main__":
    main()
