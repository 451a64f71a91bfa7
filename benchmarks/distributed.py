"""One process against Ray Data on this machine: images/s, fit and assign time, driver memory,
and whether the results are the same.

The same N OpenClipart PNGs (a seeded sample over every category) are embedded and fitted:
- one process: `embed_images_and_features` with its defaults (decode workers), then
  `ConceptModel.fit` on those vectors;
- Ray, W workers: a fresh local cluster of W CPUs (`ray.init(num_cpus=W)`; W above the cores
  simulates more workers than the machine has), `embed_to_parquet` with W actors, then
  `concept.distributed.fit` (driver) and the assignment of every image (actors).
Each mode runs in its own process, so the driver's peak RSS (VmHWM) is its own; Ray's workers
are separate processes and not counted in it. Seconds are wall-clock, including Ray's start of
its actors (each loads the model once). Quality: the largest absolute difference of the
embeddings and features from the one-process run, and whether the fitted labels and the
assigned labels are identical.

    python benchmarks/distributed.py --n 1024 --workers 1 2 4
    python benchmarks/distributed.py --plan-memory 1000000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import OUT, publish  # noqa: E402

OPENCLIPART = Path("/usr/share/openclipart/png")
WORK = OUT / "distributed"


def _paths(n: int) -> list[str]:
    from concept.images import list_image_files

    files = sorted(str(p) for p in list_image_files(OPENCLIPART))
    rng = np.random.default_rng(0)
    return sorted(rng.choice(files, min(n, len(files)), replace=False).tolist())


def _words() -> list[str]:
    from concept.vocabulary import load_vocabulary

    return load_vocabulary(2000)


def _peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def run_local(n: int) -> dict:
    from concept import ConceptModel
    from concept.embedding import load_embedding_model

    paths = _paths(n)
    backend = load_embedding_model("offline", verbose=False)
    backend.embed_images_and_features(paths[:32], 32)  # warm: OpenVINO compile, first batch
    start = time.perf_counter()
    x, f = backend.embed_images_and_features(paths, 32)
    embed_s = time.perf_counter() - start
    model = ConceptModel(min_concept_size=10, embedding_model=backend, random_state=0, verbose=False)
    start = time.perf_counter()
    model.fit(paths, docs=_words(), image_embeddings=x, image_features=f)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    assigned = model.transform(image_embeddings=x, image_features=f)
    assign_s = time.perf_counter() - start
    np.savez(WORK / "local.npz", x=x, f=f, labels=model.labels_, assigned=assigned)
    return {"mode": "one process", "embed_s": embed_s, "fit_s": fit_s, "assign_s": assign_s,
            "concepts": model.n_concepts_, "peak_gib": _peak_gib()}


def run_ray(n: int, workers: int) -> dict:
    import ray

    from concept import ConceptModel
    from concept.distributed import embed_to_parquet, fit, read_embeddings

    paths = _paths(n)
    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False,
             object_store_memory=300 * 2**20)
    ray.data.DataContext.get_current().enable_progress_bars = False
    folder = WORK / f"ray{workers}"
    for old in list(folder.glob("*/*.parquet")) + list(folder.glob("*.parquet")):
        old.unlink()
    start = time.perf_counter()
    shards = embed_to_parquet(paths, folder / "shards", "offline", shard_size=128, concurrency=workers)
    embed_s = time.perf_counter() - start
    # Actors at work: the images over the shard seconds per worker (no actor start, no driver).
    busy = sum(float(s["seconds"]) for s in shards.stats) / workers
    start = time.perf_counter()
    again = embed_to_parquet(paths, folder / "shards", "offline", shard_size=128, concurrency=workers)
    rerun_s = time.perf_counter() - start
    model = ConceptModel(min_concept_size=10, embedding_model="offline", random_state=0, verbose=False)
    result = fit(model, shards, folder / "labels", docs=_words(), max_images=None, concurrency=workers)
    import pandas as pd

    labels = pd.concat([pd.read_parquet(folder / "labels" / s.name) for s in shards.shards])
    data = read_embeddings(shards)
    np.savez(WORK / f"ray{workers}.npz", x=data.embeddings, f=data.features, labels=model.labels_,
             assigned=labels.label.to_numpy())
    ray.shutdown()
    return {"mode": f"Ray, {workers} worker{'s' if workers > 1 else ''}", "embed_s": embed_s,
            "actor img/s": f"{len(paths) / busy:.1f}", "rerun_s": rerun_s, "reused": again.reused, "read_s": result.seconds["read"],
            "fit_s": result.seconds["fit"], "assign_s": result.seconds["assign"],
            "concepts": model.n_concepts_, "peak_gib": _peak_gib()}


def plan_memory(n: int) -> None:
    """The driver's memory for the plan of `n` synthetic paths (tracemalloc): the listing, a
    whole plan (`plan_shards`, every path copied into its shard) and the plan as
    `embed_to_parquet` makes it, a shard at a time (`_iter_shards`)."""
    import tracemalloc

    from concept.distributed.embed import _iter_shards, plan_shards

    tracemalloc.start()
    paths = [f"/data/photos/2024/collection-{i // 10000:04d}/IMG_{i:08d}_holiday_trip.jpg" for i in range(n)]
    listing = tracemalloc.get_traced_memory()[0]
    shards = plan_shards(paths, "offline", 1024)
    whole = tracemalloc.get_traced_memory()[0] - listing
    del shards
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    for _ in _iter_shards(paths, "offline", 1024, None):
        pass
    streamed = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    publish("distributed_plan", f"The driver's memory for the plan of {n:,} paths",
            f"Synthetic paths of {len(paths[0])} characters (the files do not exist: one stat each).",
            [{"listing MB": listing / 1e6, "whole plan MB": whole / 1e6, "a shard at a time, peak MB": streamed / 1e6,
              "listing B/path": listing / n, "whole plan B/path": whole / n}],
            ["listing MB", "whole plan MB", "a shard at a time, peak MB", "listing B/path", "whole plan B/path"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1024, help="images (default: %(default)s)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--plan-memory", type=int, metavar="N",
                        help="only measure the driver's memory for planning N synthetic paths")
    parser.add_argument("--mode", help=argparse.SUPPRESS)  # one run, in a child process
    args = parser.parse_args()
    if args.plan_memory:
        return plan_memory(args.plan_memory)
    WORK.mkdir(parents=True, exist_ok=True)
    if args.mode:
        if args.mode == "warm":  # the candidate words' embeddings, cached on disk for every mode
            from concept import ConceptModel

            ConceptModel(embedding_model="offline", verbose=False)._embed_words(_words())
            row = {}
        else:
            row = run_local(args.n) if args.mode == "local" else run_ray(args.n, int(args.mode))
        print(json.dumps(row))
        return
    rows = []
    for mode in ["warm", "local", *map(str, args.workers)]:
        done = subprocess.run([sys.executable, __file__, "--n", str(args.n), "--mode", mode],
                              capture_output=True, text=True, env=os.environ.copy())
        if done.returncode:
            sys.exit(f"{mode} failed:\n{done.stderr[-3000:]}")
        row = json.loads(done.stdout.strip().splitlines()[-1])
        if row:
            rows.append(row)
    with np.load(WORK / "local.npz") as ref:
        ref = dict(ref)
    for row, mode in zip(rows, ["local", *map(str, args.workers)]):
        with np.load(WORK / ("local.npz" if mode == "local" else f"ray{mode}.npz")) as got:
            row["max |Δ emb|"] = f"{np.abs(got['x'] - ref['x']).max():.1e}"
            row["max |Δ feat|"] = f"{np.abs(got['f'] - ref['f']).max():.1e}"
            row["same labels_"] = bool(np.array_equal(got["labels"], ref["labels"]))
            row["same assigned"] = bool(np.array_equal(got["assigned"], ref["assigned"]))
        row["img/s"] = f"{args.n / row['embed_s']:.1f}"
        for key in ("embed_s", "rerun_s", "read_s", "fit_s", "assign_s", "peak_gib"):
            if key in row:
                row[key] = round(row[key], 2)
    publish("distributed", f"One process vs Ray Data, {args.n} OpenClipart PNGs",
            "Embedding with the offline model (Lite0 + features), then fit (min_concept_size 10, "
            "seed 0, 2,000 candidate words) and assignment of every image. Ray: a fresh local "
            "cluster of W CPUs per row; embed_s includes starting the actors (each loads the "
            "model); actor img/s: images over the actors' busy seconds per worker (no start-up); rerun_s is the same call again (every shard reused). peak_gib: the "
            "driver's peak RSS only.",
            rows, ["mode", "embed_s", "img/s", "actor img/s", "rerun_s", "fit_s", "assign_s", "peak_gib", "concepts",
                   "max |Δ emb|", "max |Δ feat|", "same labels_", "same assigned"])


if __name__ == "__main__":
    main()
