"""Does the faster CPU runtime change the embeddings, or the concepts found from them?

Embeds the OpenClipart subject subset with the offline model three ways: PyTorch eager float32
(the reference network), OpenVINO float32 (the default on CPUs) and OpenVINO bfloat16 (opt-in,
`"offline-bf16"`). Against PyTorch it reports, image by image, the cosine of the shared-space
vectors and of the CNN features, then fits `ConceptModel` (defaults, seeds 0-2) on each and
compares the concepts: NMI against the folders, and NMI/ARI between each runtime's labels and
PyTorch's labels for the same seed (1.0 = the same partition), next to PyTorch's labels
against its own labels of the next seed (how much the concepts move with the seed alone).
Embeddings are cached in benchmarks/cache/ per runtime.

    python benchmarks/runtime_agreement.py
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
RUNTIMES = [("torch", "f32"), ("openvino", "f32"), ("openvino", "bf16")]
SEEDS = (0, 1, 2)


def embed(paths, runtime: str, precision: str) -> dict:
    def compute() -> dict:
        model = OfflineEmbedder(runtime=runtime, precision=precision, verbose=True)
        report = LoadReport()
        start = time.perf_counter()
        shared, features = model.embed_images_and_features(paths, 32, report=report)
        return {"shared": shared, "features": features, "kept": np.asarray(report.loaded),
                "seconds": np.array(time.perf_counter() - start)}

    return cached(f"openclipart_lite0_{runtime}_{precision}", compute)


def main() -> None:
    data = openclipart()
    runs = {rp: embed(data.images, *rp) for rp in RUNTIMES}
    base = runs[("torch", "f32")]
    labels = {rp: [ConceptModel(embedding_model=None, random_state=s, verbose=False)
                   .fit(image_embeddings=r["shared"], image_features=r["features"]).labels_ for s in SEEDS]
              for rp, r in runs.items()}
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
    cols = list(rows[0])
    publish("runtime_agreement", "Offline runtimes: agreement with PyTorch float32",
            f"OpenClipart subject subset, {len(base['kept']):,} images, batch 32.", rows, cols)


if __name__ == "__main__":
    main()
