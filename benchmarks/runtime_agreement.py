"""Does the faster CPU runtime change the embeddings, or the concepts found from them?

Embeds the OpenClipart subject subset with the offline model: PyTorch eager float32 (the
reference network), OpenVINO float32 (the default on CPUs), OpenVINO int8 (opt-in,
`"offline-int8"`) and, with --bf16, OpenVINO bfloat16 (opt-in, `"offline-bf16"`). Against PyTorch it reports, image by image, the cosine of the shared-space
vectors and of the CNN features, then fits `ConceptModel` (defaults, seeds 0-2) on each and
compares the concepts: NMI against the folders, and NMI/ARI between each runtime's labels and
PyTorch's labels for the same seed (1.0 = the same partition), next to PyTorch's labels
against its own labels of the next seed (how much the concepts move with the seed alone).
A control row gives how much any change of the last digits moves the concepts: PyTorch's
vectors plus noise of cosine 0.99995, clustered with the same seed. A second table does the same
for int8 against OpenVINO float32 on Fashion-MNIST's 10,000 test images (concepts with structure:
NMI about 0.66 against the classes, where OpenClipart's is 0.25).
Embeddings are cached in benchmarks/cache/ per runtime (--fresh: embed again).

    python benchmarks/runtime_agreement.py [--fresh] [--bf16]
"""

from __future__ import annotations

import logging
import time
import warnings

import numpy as np
from _common import cached, publish
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from concept import ConceptModel
from concept.datasets import openclipart
from concept.embedding import OfflineEmbedder
from concept.images import LoadReport

warnings.filterwarnings("ignore")
logging.basicConfig(level=logging.ERROR)
RUNTIMES = [("torch", "f32"), ("openvino", "f32"), ("openvino", "int8")]
SEEDS = (0, 1, 2)


def embed(paths, runtime: str, precision: str, name: str = "openclipart") -> dict:
    def compute() -> dict:
        model = OfflineEmbedder(runtime=runtime, precision=precision, verbose=True)
        report = LoadReport()
        start = time.perf_counter()
        shared, features = model.embed_images_and_features(paths, 32, report=report)
        return {"shared": shared, "features": features, "kept": np.asarray(report.loaded),
                "seconds": np.array(time.perf_counter() - start)}

    return cached(f"{name}_lite0_{runtime}_{precision}", compute)


def fits(r: dict) -> list[np.ndarray]:
    return [ConceptModel(embedding_model=None, random_state=s, verbose=False)
            .fit(image_embeddings=r["shared"], image_features=r["features"]).labels_ for s in SEEDS]


def with_noise(r: dict, scale: float = 0.01) -> dict:
    """`r`'s vectors moved by random noise of about `scale` relative size (cosine ~1 - scale^2/2)."""
    from concept.embedding import l2_normalize

    rng = np.random.default_rng(0)
    moved = {k: l2_normalize(r[k] + scale * rng.standard_normal(r[k].shape).astype(np.float32)
                             / np.sqrt(r[k].shape[1])) for k in ("shared", "features")}
    return {**r, **moved}


def agreement(a: list[np.ndarray], b: list[np.ndarray]) -> str:
    return " ".join(f"{normalized_mutual_info_score(x, y):.3f}/{adjusted_rand_score(x, y):.3f}" for x, y in zip(a, b))


def fashion_table() -> None:
    """int8 against OpenVINO float32 on Fashion-MNIST's test split (the same rows)."""
    from concept.datasets import fashion_mnist

    data = fashion_mnist("test")
    runs = {p: embed(data.images, "openvino", p, "fashion_test") for p in ("f32", "int8")}
    truth = np.asarray(data.labels)[runs["f32"]["kept"]]
    labels = {p: fits(r) for p, r in runs.items()}
    noisy = fits(with_noise(runs["f32"]))
    rows = []
    for p, r in runs.items():
        rows.append({"runtime": f"openvino {p}", "img/s (end to end)": f"{len(r['kept']) / float(r['seconds']):.1f}",
                     "cosine features min / mean": "{:.5f} / {:.5f}".format(
                         *(lambda c: (c.min(), c.mean()))(np.sum(r["features"] * runs["f32"]["features"], axis=1))),
                     "NMI vs classes (3 seeds)": " ".join(f"{normalized_mutual_info_score(truth, x):.3f}" for x in labels[p]),
                     "same concepts as float32: NMI / ARI": agreement(labels[p], labels["f32"]),
                     "concepts": " ".join(str(int(x.max()) + 1) for x in labels[p])})
    rows.append({"runtime": "float32 + noise of cosine 0.99995 (control)",
                 "same concepts as float32: NMI / ARI": agreement(noisy, labels["f32"])})
    publish("runtime_agreement_fashion", "Offline int8 against float32 on Fashion-MNIST",
            f"Fashion-MNIST test split, {len(truth):,} images, batch 32.", rows, list(rows[0]))


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fresh", action="store_true", help="embed again (drop this script's cached vectors)")
    ap.add_argument("--bf16", action="store_true", help="also OpenVINO bfloat16")
    args = ap.parse_args()
    if args.fresh:
        from _common import CACHE

        for name in ("openclipart", "fashion_test"):
            for f in CACHE.glob(f"{name}_lite0_*_*.npz"):
                f.unlink()
    data = openclipart()
    runtimes = RUNTIMES + ([("openvino", "bf16")] if args.bf16 else [])
    runs = {rp: embed(data.images, *rp) for rp in runtimes}
    base = runs[("torch", "f32")]
    labels = {rp: fits(r) for rp, r in runs.items()}
    truth = np.asarray(data.labels)[base["kept"]]
    rows = []
    for rp, r in runs.items():
        assert np.array_equal(r["kept"], base["kept"])
        cos_shared = np.sum(r["shared"] * base["shared"], axis=1)
        cos_feats = np.sum(r["features"] * base["features"], axis=1)
        rows.append({
            "runtime": f"{rp[0]} {rp[1]}",
            "img/s (end to end)": f"{len(r['kept']) / float(r['seconds']):.1f}",
            "cosine shared min / mean": f"{cos_shared.min():.5f} / {cos_shared.mean():.5f}",
            "cosine features min / mean": f"{cos_feats.min():.5f} / {cos_feats.mean():.5f}",
            "NMI vs folders (3 seeds)": " ".join(f"{normalized_mutual_info_score(truth, lab):.3f}"
                                                 for lab in labels[rp]),
            "same concepts as PyTorch: NMI / ARI": " ".join(
                f"{normalized_mutual_info_score(a, b):.3f}/{adjusted_rand_score(a, b):.3f}"
                for a, b in zip(labels[rp], labels[("torch", "f32")])),
            "concepts": " ".join(str(int(lab.max()) + 1) for lab in labels[rp]),
        })
    # How much the concepts move anyway: PyTorch's own vectors, clustered with the next seed.
    torch_labels = labels[("torch", "f32")]
    rows.append({
        "runtime": "torch f32, next seed (baseline)",
        "same concepts as PyTorch: NMI / ARI": " ".join(
            f"{normalized_mutual_info_score(a, b):.3f}/{adjusted_rand_score(a, b):.3f}"
            for a, b in zip(torch_labels[1:] + torch_labels[:1], torch_labels)),
    })
    rows.append({
        "runtime": "torch f32 + noise of cosine 0.99995, same seed (control)",
        "same concepts as PyTorch: NMI / ARI": agreement(fits(with_noise(base)), torch_labels),
    })
    cols = list(rows[0])
    publish("runtime_agreement", "Offline runtimes: agreement with PyTorch float32",
            f"OpenClipart subject subset, {len(base['kept']):,} images, batch 32.", rows, cols)
    fashion_table()


if __name__ == "__main__":
    main()
