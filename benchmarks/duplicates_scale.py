"""The near-duplicate pass at scale against the fit it follows (issue 27: "1,000,000 vectors: the
near-duplicate pass adds <= 20% to the fit's time").

In ONE process, on the SAME vectors: cluster.py's large set (1,000,000 x 384 unit vectors around
2,000 random centres, noise 1.5: `cluster.mixture`, seed 0), of which SHARE (2%) of the rows are
then overwritten by near copies of as many other rows (the row plus Gaussian noise of norm
0.14-0.33, at unit length: cosine 0.94-0.99 with it). Timed, each after a warm-up on a small set
that compiles numba's kernels (not timed), with its own peak RSS (VmHWM, reset before each):
  - the fit: ConceptModel(embedding_model=None, random_state=0).fit(image_embeddings=x), as
    benchmarks/cluster.py's `ours` (clustering, layers, concept embeddings, exemplars);
  - find_duplicates(embeddings=x, exact=False): neighbours (concept.clustering.blocks above
    5,000 rows), the calibrated threshold, the near groups and uniqueness; its neighbour search
    alone is timed too.
Scores, against the planted pairs: recall (pairs in one near group), precision (planted pairs over
all pairs of rows sharing a near group). The mixture's own rows come no closer than cosine ~0.5,
so every other grouped pair is an error. Isotropic noise is the hard case for blocks: a copy's
offset points anywhere, and the rows of a block are no more alike than those of the next.

    python benchmarks/duplicates_scale.py               # 1,000,000 rows, a few minutes on 2 cores
    python benchmarks/duplicates_scale.py --n 100000    # 200 centres, a quick run
Writes benchmarks/out/duplicates_scale.md.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from _common import publish, reset_peak_rss, vm_hwm_gib
from cluster import DIM, mixture

from concept import ConceptModel
from concept.clustering import blocks
from concept.duplicates import find_duplicates

warnings.filterwarnings("ignore")
logging.basicConfig(level=logging.ERROR)
SHARE = 0.02
TARGET = 0.20


def planted(n: int, clusters: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The mixture with SHARE of its rows replaced by near copies of others: vectors, originals, copies."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "x.npy"
        mixture(path, n, clusters, 1.5, seed)
        x = np.load(path)
    rng = np.random.default_rng(seed + 1)
    m = int(n * SHARE)
    rows = rng.choice(n, 2 * m, replace=False)
    originals, copies = rows[:m], rows[m:]
    noise = rng.uniform(0.14, 0.33, m).astype(np.float32)[:, None] / np.float32(np.sqrt(DIM))
    y = x[originals] + noise * rng.standard_normal((m, DIM), dtype=np.float32)
    x[copies] = y / np.linalg.norm(y, axis=1, keepdims=True)
    return x, originals, copies


def warm_up() -> None:
    """Compile numba's kernels (the fit's and the blocks') on a small random set."""
    rng = np.random.default_rng(9)
    centres = rng.standard_normal((30, DIM)).astype(np.float32)
    x = centres[rng.integers(0, 30, 8_000)] + rng.standard_normal((8_000, DIM), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    ConceptModel(embedding_model=None, random_state=0, verbose=False).fit(image_embeddings=x)
    find_duplicates(embeddings=x, exact=False)


def scores(groups: list[list[int]], n: int, originals: np.ndarray, copies: np.ndarray) -> tuple[float, float]:
    """Recall and precision of the planted pairs among the near groups."""
    label = np.full(n, -1, np.int64)
    for g, rows in enumerate(groups):
        label[rows] = g
    found = int(np.sum((label[originals] >= 0) & (label[originals] == label[copies])))
    pairs = sum(len(g) * (len(g) - 1) // 2 for g in groups)
    return found / max(1, len(originals)), found / pairs if pairs else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--clusters", type=int, default=None, help="default: 2,000 a million rows")
    args = parser.parse_args()
    n = args.n
    clusters = args.clusters or max(2, round(2_000 * n / 1_000_000))

    start = time.perf_counter()
    x, originals, copies = planted(n, clusters)
    print(f"data: {n:,} x {DIM}, {clusters:,} centres, {len(copies):,} planted copies "
          f"({time.perf_counter() - start:.0f} s)", flush=True)
    warm_up()

    reset_peak_rss()
    start = time.perf_counter()
    model = ConceptModel(embedding_model=None, random_state=0, verbose=False).fit(image_embeddings=x)
    fit_s, fit_gib = time.perf_counter() - start, vm_hwm_gib()
    concepts = len(set(model.labels_.tolist()) - {-1})
    del model
    print(f"fit: {fit_s:.1f} s, {concepts:,} concepts, peak {fit_gib:.2f} GiB", flush=True)

    searched = []
    search = blocks.nearest_rows

    def timed_search(*a, **kw):
        begin = time.perf_counter()
        out = search(*a, **kw)
        searched.append(time.perf_counter() - begin)
        return out

    blocks.nearest_rows = timed_search
    reset_peak_rss()
    start = time.perf_counter()
    found = find_duplicates(embeddings=x, exact=False)
    dup_s, dup_gib = time.perf_counter() - start, vm_hwm_gib()
    blocks.nearest_rows = search
    recall, precision = scores(found.near, n, originals, copies)
    cos = np.einsum("ij,ij->i", x[originals], x[copies])
    row = {"n": f"{n:,}", "centres": f"{clusters:,}", "planted pairs": f"{len(copies):,}",
           "pair cosines": f"{cos.min():.3f}-{cos.max():.3f}", "fit s": fit_s, "duplicates s": dup_s,
           "of which neighbours s": sum(searched), "duplicates / fit": dup_s / fit_s, "target": f"<= {TARGET}",
           "threshold": found.near_threshold, "near groups": f"{len(found.near):,}",
           "recall": recall, "precision": precision, "fit GiB": fit_gib, "duplicates GiB": dup_gib}
    print(row, flush=True)
    cols = list(row)
    publish("duplicates_scale", "Near duplicates at scale: find_duplicates against the fit",
            f"Same process, same vectors: cluster.py's large set ({n:,} x {DIM}, {clusters:,} centres, noise 1.5) "
            f"with {SHARE:.0%} of its rows replaced by near copies of others. 'fit s': ConceptModel(embedding_model="
            "None).fit(image_embeddings=x); 'duplicates s': find_duplicates(embeddings=x, exact=False), whose "
            f"neighbours come from concept.clustering.blocks ({blocks.PARTITIONS} partitions into blocks of about "
            f"{blocks.BLOCK} rows, {blocks.PROBES} blocks a row, scored in {blocks.SEARCH_DIM} dimensions, "
            "rescored exactly). Recall: planted pairs in one near group; precision: planted pairs over all "
            "pairs sharing a group. Numba compiled beforehand (not timed); peak RSS per step (VmHWM).",
            [row], cols)


if __name__ == "__main__":
    main()
