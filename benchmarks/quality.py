"""How well do concepts match real labels? Ours against the reference configuration.

On two labeled sets, embedded once with the offline model (EfficientNet-Lite0; cached in
benchmarks/cache/):
  - OpenClipart subject subset (2,263 images in 17 folders; one file is a decompression
    bomb and is skipped), from the cache that benchmarks/embedding_space.py writes,
  - Fashion-MNIST's test split (10,000 28x28 images, 10 classes; benchmarks/fit.py uses all
    70,000, which benchmarks/embed_fashion.py embeds in about 15 minutes on 2 cores),
it scores, over seeds 0, 1, 2 (mean ± std; a crash is caught and counted, never fatal):
  - reference: UMAP(15 neighbours, 5-D, min_dist 0, cosine) fit then transform, then
    hdbscan.HDBSCAN(min_cluster_size=30, 'eom'), as the reference package did; on the shared
    (ConSE) vectors, which is what the reference would see, and on the CNN features,
  - k-means with the true number of labels, on both spaces,
  - ConceptModel's defaults (clustering on the CNN features, words skipped).

    python benchmarks/quality.py            # the table above -> benchmarks/out/quality.md
    python benchmarks/quality.py --grid     # n_neighbors x selection method for our defaults
    python benchmarks/quality.py --embed    # only build the embedding caches
"""

from __future__ import annotations

import argparse
import logging
import traceback
import warnings

import numpy as np
from _common import Timer, cached, publish, scores

from concept.datasets import fashion_mnist, openclipart
from concept.embedding import OfflineEmbedder, l2_normalize
from concept.images import LoadReport

warnings.filterwarnings("ignore")
logging.basicConfig(level=logging.ERROR)
logging.getLogger("concept").setLevel(logging.ERROR)

SEEDS = (0, 1, 2)
MIN_CLUSTER_SIZE = 30


# ---------------------------------------------------------------------------- data
def load_openclipart() -> dict:
    """Labels, shared (ConSE top-10) vectors and CNN features of the OpenClipart subset."""
    data = openclipart()
    def missing():
        raise FileNotFoundError("benchmarks/cache/openclipart_lite0.npz is missing: "
                                "run benchmarks/embedding_space.py first")

    arrays = cached("openclipart_lite0", missing)
    shared = l2_normalize(OfflineEmbedder("lite0", verbose=False).conse(arrays["probs"]))
    return {"name": "OpenClipart subjects", "y": data.labels[arrays["kept"]], "k": len(data.label_names),
            "shared": shared, "features": l2_normalize(arrays["features"])}


def load_fashion() -> dict:
    """Labels, shared vectors and CNN features of Fashion-MNIST's test split (cached)."""
    data = fashion_mnist("test")

    def compute():
        report = LoadReport()
        with Timer() as t:
            shared, feats = OfflineEmbedder("lite0", verbose=True).embed_images_and_features(
                data.images, 64, report=report)
        print(f"embedded {len(shared)} images in {t.seconds:.0f} s", flush=True)
        return {"shared": shared, "features": feats, "kept": np.asarray(report.loaded),
                "seconds": np.array(t.seconds)}

    arrays = cached("fashion_test_lite0", compute)
    return {"name": "Fashion-MNIST test", "y": data.labels[arrays["kept"]], "k": len(data.label_names),
            "shared": l2_normalize(arrays["shared"]), "features": l2_normalize(arrays["features"])}


# ---------------------------------------------------------------------------- methods
def reference(x: np.ndarray, seed: int) -> np.ndarray:
    """The reference package's clustering: UMAP fit, then transform, then hdbscan 'eom'."""
    import hdbscan
    import umap

    reducer = umap.UMAP(n_neighbors=15, n_components=5, min_dist=0.0, metric="cosine", random_state=seed)
    reducer.fit(x)
    reduced = reducer.transform(x)
    return hdbscan.HDBSCAN(min_cluster_size=MIN_CLUSTER_SIZE,
                           cluster_selection_method="eom").fit_predict(reduced)


def kmeans(k: int):
    from sklearn.cluster import KMeans

    return lambda x, seed: KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(x)


def ours(data: dict, cluster_space: str = "auto", n_neighbors: int | None = None,
         selection: str | None = None):
    """ConceptModel fitted on the shared vectors (+ features); defaults unless a grid point."""
    from concept import ConceptModel

    def run(_x, seed):
        kwargs = {}
        if n_neighbors is not None:
            import fast_hdbscan
            import umap

            kwargs["umap_model"] = umap.UMAP(n_neighbors=n_neighbors, n_components=5, min_dist=0.0,
                                             metric="cosine", random_state=seed)
            kwargs["hdbscan_model"] = fast_hdbscan.HDBSCAN(min_cluster_size=MIN_CLUSTER_SIZE,
                                                           cluster_selection_method=selection)
        model = ConceptModel(random_state=seed, embedding_model=None, verbose=False,
                             cluster_space=cluster_space, **kwargs)
        model.fit(image_embeddings=data["shared"], image_features=data["features"])
        return model.labels_

    return run


# ---------------------------------------------------------------------------- scoring
def _ms(values: list[float], digits: int = 3) -> str:
    if not values:
        return "–"
    return f"{np.mean(values):.{digits}f} ± {np.std(values):.{digits}f}"


def evaluate(data: dict, method: str, space: str, fn, x: np.ndarray) -> dict:
    """Run `fn(x, seed)` for every seed; mean ± std of the scores, crashes counted."""
    runs, crashes = [], []
    for seed in SEEDS:
        try:
            with Timer() as t:
                labels = np.asarray(fn(x, seed))
            s = scores(data["y"], labels)
            s.setdefault("nmi_inliers", float("nan"))
            s.setdefault("ari_inliers", float("nan"))
            s["seconds"] = t.seconds
            runs.append(s)
        except Exception as exc:  # noqa: BLE001 - a crash is a result, not the end of the run
            crashes.append(f"seed {seed}: {type(exc).__name__}: {exc}")
            traceback.print_exc()
    row = {"dataset": data["name"], "method": method, "space": space,
           "crashes": f"{len(crashes)}/{len(SEEDS)}"}

    def get(key: str) -> list:
        return [r[key] for r in runs]

    row.update({"NMI": _ms(get("nmi")), "ARI": _ms(get("ari")),
                "NMI w/o outliers": _ms(get("nmi_inliers")), "ARI w/o outliers": _ms(get("ari_inliers")),
                "concepts": (_ms(get("n_concepts"), 1) + " (" + ", ".join(str(n) for n in get("n_concepts")) + ")")
                if runs else "–",
                "outlier share": _ms(get("outliers")), "seconds": _ms(get("seconds"), 1)})
    print(row, *crashes, sep="\n  ", flush=True)
    return row


COLUMNS = ["dataset", "method", "space", "NMI", "ARI", "NMI w/o outliers", "ARI w/o outliers",
           "concepts", "outlier share", "seconds", "crashes"]
SHARED = "shared ConSE (384-d)"
FEATURES = "CNN features (1280-d)"


def defaults() -> str:
    """ConceptModel's default reducer and clusterer settings, as they are in src/ now."""
    from concept.clustering import default_clusterer, default_reducer

    umap_params = default_reducer(10_000, 0).get_params()
    hdb = default_clusterer(MIN_CLUSTER_SIZE, 1000).get_params()
    cap = ", concepts at most half the points" if hdb.get("max_cluster_size", float("inf")) == 500 else ""
    return (f"UMAP n_neighbors={umap_params['n_neighbors']}, n_epochs={umap_params['n_epochs']}, "
            f"{hdb.get('cluster_selection_method')}{cap}")


def default_rows(data: dict) -> list[dict]:
    rows = []
    for space, x in ((SHARED, data["shared"]), (FEATURES, data["features"])):
        rows.append(evaluate(data, "reference (UMAP fit+transform, hdbscan eom)", space, reference, x))
    for space, x in ((SHARED, data["shared"]), (FEATURES, data["features"])):
        rows.append(evaluate(data, f"k-means (true k={data['k']})", space, kmeans(data["k"]), x))
    rows.append(evaluate(data, f"ConceptModel defaults ({defaults()})", FEATURES, ours(data), None))
    rows.append(evaluate(data, "ConceptModel(cluster_space='embeddings')", SHARED,
                         ours(data, cluster_space="embeddings"), None))
    return rows


def grid_rows(data: dict) -> list[dict]:
    rows = []
    for n_neighbors in (15, 30):
        for selection in ("eom", "leaf"):
            method = f"ConceptModel, UMAP n_neighbors={n_neighbors}, fast_hdbscan {selection}, mcs={MIN_CLUSTER_SIZE}"
            rows.append(evaluate(data, method, FEATURES, ours(data, n_neighbors=n_neighbors,
                                                               selection=selection), None))
    return rows


def warm_up() -> None:
    """Compile numba kernels (UMAP, hdbscan, fast_hdbscan) once, so `seconds` times only fits."""
    x = l2_normalize(np.random.default_rng(0).normal(size=(300, 16)).astype(np.float32))
    data = {"shared": x, "features": x}
    reference(x, 0)
    ours(data)(x, 0)
    ours(data, n_neighbors=15, selection="leaf")(x, 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--grid", action="store_true", help="try UMAP n_neighbors x HDBSCAN selection")
    parser.add_argument("--embed", action="store_true", help="only build the embedding caches")
    args = parser.parse_args()
    datasets = [load_openclipart(), load_fashion()]
    if args.embed:
        return
    warm_up()
    rows = []
    for data in datasets:
        rows += grid_rows(data) if args.grid else default_rows(data)
    sizes = ", ".join(f"{d['name']}: {len(d['y'])} images, {d['k']} labels" for d in datasets)
    title = "Concept quality: n_neighbors x cluster selection (ours)" if args.grid else \
        "Concept quality against labels: ours vs the reference configuration"
    intro = (f"{sizes} (Fashion-MNIST's test split only). Offline model EfficientNet-Lite0; "
             f"mean ± std over seeds {', '.join(map(str, SEEDS))}; concepts lists each seed; "
             "'w/o outliers' scores only the points not labeled -1; seconds are per fit.")
    publish("quality_grid" if args.grid else "quality", title, intro, rows, COLUMNS)


if __name__ == "__main__":
    main()
