"""One clustering method on one saved data set, in a process of its own (used by cluster.py).

    python _cluster_worker.py METHOD DATA_DIR OUT_DIR --seeds 0,1,2 [--k K] [--unseeded]

METHOD is `ours` (ConceptModel, needs the package), `evoc` (run by the peers' virtualenv's
python, needs only numpy and evoc) or `kmeans` (scikit-learn). DATA_DIR holds x.npy, the
vectors to cluster, and for the real sets shared.npy (ConceptModel's image embeddings; it
clusters on x.npy as its image features). For each seed the worker writes OUT_DIR/layers_<seed>.npy
(int32, one row per layer, finest first; `labels_` is row `layer`) and, at the end,
OUT_DIR/result.json with the fit seconds and the peak RSS of each seed.

Numba compiles on first use: a warm-up fit on a small random set comes first and is not timed.
The peak RSS of each fit includes the loaded vectors; it is reset (/proc/self/clear_refs) after
the warm-up and between seeds and read from /proc/self/status (VmHWM). getrusage's ru_maxrss is
recorded too; it cannot be reset and, after a vfork+exec, may start from the parent's peak.
Only numpy and the standard library are imported at module level, so any python can run it.
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import time
import warnings
from pathlib import Path

import numpy as np

warnings.filterwarnings("ignore")


def reset_peak_rss() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _status_gib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 2**20
    return float("nan")


def vm_hwm_gib() -> float:
    """Peak resident memory since the last reset_peak_rss()."""
    return _status_gib("VmHWM")


def ru_maxrss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def warm_set(n: int, dim: int, seed: int = 9) -> np.ndarray:
    """A small unit-norm mixture (30 centres) to compile numba's kernels on."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((30, dim)).astype(np.float32)
    x = centres[rng.integers(0, 30, n)] + rng.standard_normal((n, dim), dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def fit_ours(x: np.ndarray, shared: np.ndarray | None, seed: int) -> tuple[list[np.ndarray], int]:
    import logging

    from concept import ConceptModel

    logging.getLogger("concept").setLevel(logging.ERROR)
    model = ConceptModel(embedding_model=None, random_state=seed, verbose=False)
    if shared is None:
        model.fit(image_embeddings=x)
    else:
        model.fit(image_embeddings=shared, image_features=x)
    return [np.asarray(layer) for layer in model.layers_], int(model.layer_)


def fit_evoc(x: np.ndarray, seed: int | None) -> tuple[list[np.ndarray], int]:
    import evoc

    model = evoc.EVoC(random_state=seed)
    labels = np.asarray(model.fit_predict(x))
    layers = [np.asarray(layer) for layer in model.cluster_layers_]
    # fit_predict's labels_ is the layer of highest persistence (or the only one).
    index = next((i for i, layer in enumerate(layers) if np.array_equal(layer, labels)), -1)
    if index < 0:  # not one of the layers: keep it as an extra one
        layers.append(labels)
        index = len(layers) - 1
    return layers, index


def fit_kmeans(x: np.ndarray, k: int, seed: int) -> tuple[list[np.ndarray], int]:
    from sklearn.cluster import KMeans

    return [KMeans(n_clusters=k, n_init=1, random_state=seed).fit_predict(x)], 0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("method", choices=["ours", "evoc", "kmeans"])
    parser.add_argument("data", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--k", type=int, default=0, help="k-means' number of clusters")
    parser.add_argument("--unseeded", action="store_true",
                        help="EVoC with random_state=None (its parallel, non-reproducible path)")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)

    x = np.load(args.data / "x.npy")
    shared = np.load(args.data / "shared.npy") if (args.data / "shared.npy").exists() else None

    def run(seed: int, xs: np.ndarray, sh: np.ndarray | None):
        if args.method == "ours":
            return fit_ours(xs, sh, seed)
        if args.method == "evoc":
            return fit_evoc(xs, None if args.unseeded else seed)
        return fit_kmeans(xs, min(args.k, len(xs)), seed)

    start = time.perf_counter()
    if args.method != "kmeans":
        wx = warm_set(12_000, x.shape[1])  # above the small-data paths, so every kernel compiles
        ws = warm_set(12_000, shared.shape[1], seed=10) if shared is not None else None
        run(0, wx, ws)
        del wx, ws
    warm_up = time.perf_counter() - start

    result = {"method": args.method, "n": len(x), "dim": int(x.shape[1]), "warm_up_s": warm_up,
              "ru_maxrss_before_gib": ru_maxrss_gib(), "seeds": {}}
    for seed in seeds:
        gc.collect()
        reset_peak_rss()
        before = _status_gib("VmRSS")
        start = time.perf_counter()
        layers, index = run(seed, x, shared)
        seconds = time.perf_counter() - start
        result["seeds"][str(seed)] = {"seconds": seconds, "peak_rss_gib": vm_hwm_gib(), "rss_before_gib": before,
                                      "ru_maxrss_gib": ru_maxrss_gib(), "layer": index,
                                      "n_layers": len(layers)}
        np.save(args.out / f"layers_{seed}.npy", np.stack(layers).astype(np.int32))
        del layers
        print(f"{args.method} seed {seed}: {seconds:.1f} s", flush=True)
    tmp = args.out / "result.json.tmp"
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(args.out / "result.json")


if __name__ == "__main__":
    main()
