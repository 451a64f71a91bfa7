"""Which offline model and which space cluster real categories best?

Embeds the OpenClipart subject subset (2,263 images, 17 folders) with EfficientNet-Lite0/1/2,
keeps both the pooled CNN features and the class probabilities, and scores (NMI against the
folders) k-means with the true k and the reference UMAP+HDBSCAN pipeline on:
  - ConSE vectors (the shared image-text space) with top_k = 1, 5, 10, 1000,
  - the CNN's pooled 1280-d features.
Also reports each variant's end-to-end images/s on this machine.

    python benchmarks/embedding_space.py
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
from _common import Timer, cached, publish, scores
from sklearn.cluster import KMeans

from concept.datasets import openclipart
from concept.embedding import OfflineEmbedder, l2_normalize
from concept.embedding.base import BaseEmbedder
from concept.images import LoadReport

warnings.filterwarnings("ignore")
logging.basicConfig(level=logging.ERROR)


def embed_variant(variant: str, paths) -> dict:
    model = OfflineEmbedder(variant, verbose=True)

    def compute():
        feats, probs = [], []

        def both(px):
            f, p = model.forward(px)
            feats.append(f)
            probs.append(p)
            return f

        report = LoadReport()
        with Timer() as t:
            BaseEmbedder._map_images(model, paths, both, 32, report=report)
        return {"features": np.concatenate(feats), "probs": np.concatenate(probs),
                "kept": np.asarray(report.loaded), "seconds": np.array(t.seconds)}

    return model, cached(f"openclipart_{variant}", compute)


def reference_pipeline(x: np.ndarray, seed: int = 0) -> np.ndarray:
    import hdbscan
    import umap

    reduced = umap.UMAP(n_neighbors=15, n_components=5, min_dist=0.0, metric="cosine",
                        random_state=seed).fit_transform(x)
    return hdbscan.HDBSCAN(min_cluster_size=30, cluster_selection_method="eom").fit_predict(reduced)


def main() -> None:
    data = openclipart()
    y = data.labels
    k = len(data.label_names)
    rows = []
    for variant in ("lite0", "lite1", "lite2"):
        model, arrays = embed_variant(variant, data.images)
        y = data.labels[arrays["kept"]]  # one OpenClipart file is a decompression bomb
        speed = len(data.labels) / float(arrays["seconds"])
        spaces = {"pooled CNN features (1280-d)": l2_normalize(arrays["features"])}
        for top_k in (1, 5, 10, 1000):
            model.top_k = top_k
            spaces[f"ConSE top_k={top_k} (384-d)"] = l2_normalize(model.conse(arrays["probs"]))
        for space, x in spaces.items():
            km = KMeans(k, n_init=10, random_state=0).fit_predict(x)
            ref = reference_pipeline(x)
            s = scores(y, ref)
            rows.append({"model": variant, "img/s": f"{speed:.1f}", "space": space,
                         "k-means NMI (true k)": scores(y, km)["nmi"],
                         "UMAP+HDBSCAN NMI": s["nmi"], "concepts": s["n_concepts"],
                         "outliers": s["outliers"]})
            print(rows[-1], flush=True)
    cols = ["model", "img/s", "space", "k-means NMI (true k)", "UMAP+HDBSCAN NMI", "concepts", "outliers"]
    publish("embedding_space", "Offline embedding space",
            f"OpenClipart subject subset, {len(y)} images, {k} folders.", rows, cols)


if __name__ == "__main__":
    main()
