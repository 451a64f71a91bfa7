"""The clustering core on one array against its passes as Ray tasks over Parquet shards.

Fashion-MNIST's 10,000 test images (the offline model's cached CNN features, 1,280-d), each
copied `--copies` times with a little noise to make a larger collection. The shards (1,024
rows each) are written first; then, each mode in its own process, so its peak RSS is its own:
- one array: the vectors loaded into memory, `concept.clustering.find_hierarchy`;
- Ray, W CPUs: a fresh local cluster (`ray.init(num_cpus=W)`), `find_hierarchy_on_shards`:
  every pass over the images is a Ray task or Ray Data stage over the shards; the driver holds
  the units and centres. Ray's workers are separate processes, not counted.
Quality: whether every image's finest concept is the same, the ARI against the one-array fit,
and the largest difference in confidence.

    python benchmarks/distributed_pieces.py --copies 1 4 --workers 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import CACHE, OUT, peak_rss_gib, publish  # noqa: E402

WORK = OUT / "distributed_pieces"
MIN_SIZE, SEED = 30, 0


def _vectors(copies: int) -> np.ndarray:
    with np.load(CACHE / "fashion_test_lite0.npz") as f:
        x = f["features"].astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    rng = np.random.default_rng(0)
    parts = [x] + [x + rng.normal(scale=0.02 / np.sqrt(x.shape[1]), size=x.shape).astype(np.float32)
                   for _ in range(copies - 1)]
    x = np.concatenate(parts)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def write_shards(copies: int) -> list[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from concept.distributed.embed import _vectors_column

    folder = WORK / f"x{copies}"
    folder.mkdir(parents=True, exist_ok=True)
    x = _vectors(copies)
    files = []
    for i, start in enumerate(range(0, len(x), 1024)):
        part = x[start:start + 1024]
        files.append(str(folder / f"shard-{i:06d}.parquet"))
        if not os.path.exists(files[-1]):
            pq.write_table(pa.table({"path": pa.array([f"{j}" for j in range(start, start + len(part))]),
                                     "ok": pa.array(np.ones(len(part), bool)),
                                     "error": pa.array([None] * len(part), pa.string()),
                                     "features": _vectors_column(part)}), files[-1])
    return files


def run(copies: int, mode: str) -> dict:
    from concept.clustering import find_hierarchy, one_blas_thread

    start = time.perf_counter()
    if mode == "one":
        x = _vectors(copies)
        load_s = time.perf_counter() - start
        with one_blas_thread():
            h = find_hierarchy(x, MIN_SIZE, random_state=SEED)
        row = {"mode": "one array", "load_s": load_s, "passes": ""}
    else:
        import ray

        from concept.distributed.pieces import ShardRows, find_hierarchy_on_shards

        ray.init(num_cpus=int(mode), include_dashboard=False, log_to_driver=False,
                 object_store_memory=1024 * 2**20)
        ray.data.DataContext.get_current().enable_progress_bars = False
        files = sorted(str(p) for p in (WORK / f"x{copies}").glob("shard-*.parquet"))
        start = time.perf_counter()
        rows = ShardRows(files, "features")
        h = find_hierarchy_on_shards(rows, MIN_SIZE, random_state=SEED)
        row = {"mode": f"Ray, {mode} CPUs", "load_s": 0.0, "passes": len(rows.log)}
        ray.shutdown()
    row.update(n=len(h.fine), units=h.n_units, concepts=len(h.centres), seconds=time.perf_counter() - start,
               peak_gib=peak_rss_gib())
    np.savez(WORK / f"{mode}-{copies}.npz", fine=h.fine, probabilities=h.probabilities)
    return row


def main() -> None:
    from sklearn.metrics import adjusted_rand_score

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--workers", type=int, nargs="+", default=[2])
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    if args.mode:
        print(json.dumps(run(args.copies[0], args.mode)))
        return
    rows = []
    for copies in args.copies:
        write_shards(copies)
        for mode in ["one", *map(str, args.workers)]:
            done = subprocess.run([sys.executable, __file__, "--copies", str(copies), "--mode", mode],
                                  capture_output=True, text=True, env=os.environ.copy())
            if done.returncode:
                sys.exit(f"{mode} failed:\n{done.stderr[-3000:]}")
            row = json.loads(done.stdout.strip().splitlines()[-1])
            with np.load(WORK / f"one-{copies}.npz") as ref, np.load(WORK / f"{mode}-{copies}.npz") as got:
                row["same fine"] = bool(np.array_equal(ref["fine"], got["fine"]))
                row["ARI vs one"] = round(float(adjusted_rand_score(ref["fine"], got["fine"])), 4)
                row["max |Δ conf|"] = f"{np.abs(ref['probabilities'] - got['probabilities']).max():.1e}"
            for key in ("seconds", "load_s", "peak_gib"):
                row[key] = round(row[key], 2)
            rows.append(row)
    publish("distributed_pieces", "The clustering core on one array vs as Ray tasks over shards",
            f"Fashion-MNIST test features (10,000 x 1,280) x copies with noise, shards of 1,024; "
            f"min_size {MIN_SIZE}, seed {SEED}. seconds: the core alone (Ray: from the first pass, "
            "cluster start excluded); peak_gib: the process's (the driver's) peak RSS, which for "
            "'one array' includes the vectors; passes: passes over the shards.",
            rows, ["n", "mode", "units", "concepts", "seconds", "peak_gib", "passes", "same fine",
                   "ARI vs one", "max |Δ conf|"])


if __name__ == "__main__":
    main()
