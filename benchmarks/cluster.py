"""The clustering core against EVoC and k-means, on the same vectors (issues 10 and 25).

Methods, each in a fresh process of its own per data set (benchmarks/_cluster_worker.py) that
loads the same saved vectors, compiles numba on a small random set first (not timed), then
times the fit of every seed and reads that fit's peak RSS (the loaded vectors included):
  - ours: ConceptModel(embedding_model=None, random_state=seed, verbose=False).fit(...), the
    whole fit (clustering, layers, concept embeddings, exemplars; no words without a backend);
    on the real sets image_embeddings=the shared vectors, image_features=the CNN features,
    which it clusters on;
  - EVoC 0.3.x with its defaults, evoc.EVoC(random_state=seed).fit_predict(x), on the
    clustering vectors (the features for the real sets), run by the python of a separate
    virtualenv, benchmarks/.venv-peers, that this script creates (`pip install "evoc<0.4"`;
    EVoC is never a requirement of the package);
  - scikit-learn KMeans with the true k (n_init=1, random_state=seed); not on the 1,000,000
    set (too slow there).

Data sets (`--only` names):
  mixture      200,000 x 384, 400 clusters, noise 1.5     (--quick: 20,000, 40 clusters)
  noisy        the same with noise 3.0                     (--quick: 20,000, 40 clusters)
  large        1,000,000 x 384, 2,000 clusters, noise 1.5  (--quick: 100,000, 200 clusters)
  nested       20 groups x 10 sub-clusters x 100 points (20,000), scored against both levels
  openclipart  OpenClipart subjects, offline model (cache: benchmarks/cache/openclipart_lite0.npz)
  fashion      Fashion-MNIST test 10,000, offline model (cache: benchmarks/cache/fashion_test_lite0.npz)
  stamps       Tux Paint stamps (Debian tuxpaint-stamps-default), 703 PNGs in 8 categories
  emoji        Twemoji (npm emoji-datasource-twitter 16.0.0), 1,870 base emoji in 9 categories
  icons        Oxygen icons 48x48 (Debian oxygen-icon-theme), 1,120 icons in 7 contexts
The last three are collections the clustering was never tuned on (issue 25):
benchmarks/image_collections.py installs them when missing (apt, npm pack into benchmarks/cache/)
and embeds each once with the offline model (cache: benchmarks/cache/<name>_lite0.npz).
Mixtures: K random unit centres in 384-d, sizes 100 + multinomial(n - 100 K, dirichlet(1, ..., 1)),
x = normalise(centre + noise * g / sqrt(384)) with g standard normal, float32, rows shuffled,
built in chunks straight into the .npy the workers read (the parent never holds the vectors).

    nice -n 10 python benchmarks/cluster.py                 # everything (the 1M set takes long)
    nice -n 10 python benchmarks/cluster.py --quick         # smoke run, scaled-down sizes
    nice -n 10 python benchmarks/cluster.py --only nested,openclipart --skip-evoc
    nice -n 10 python benchmarks/cluster.py --only stamps,emoji,icons --seeds 6

Workers run with OMP_WAIT_POLICY=PASSIVE unless told otherwise: EVoC and k-means run in
libgomp's thread pool, whose spinning threads, with other work on the same cores, made the same
EVoC fit take 1.5 s or 20-50 s from one run to the next; passive threads sleep instead. The
1-minute load average at each worker's start is in the note column. Peak RSS is VmHWM, reset
after the warm-up; getrusage's ru_maxrss (kept in the JSON) cannot be reset and, in a child
started by vfork+exec, starts from the parent's own peak.

Writes benchmarks/out/cluster.md (the table of every seed, then a summary per data set and
method: median NMI, the share in concepts, concepts, and the lowest pairwise ARI between the
seeds' `labels_` over seeds 0-2 and over all seeds) and benchmarks/out/cluster.json (every row,
every layer's size, warm-up times, both RSS readings, the summary).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from itertools import combinations
from pathlib import Path

import numpy as np
from _common import OUT, machine, publish, scores, table
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

HERE = Path(__file__).resolve().parent
WORKER = HERE / "_cluster_worker.py"
PEERS = HERE / ".venv-peers"
EVOC_SPEC = "evoc>=0.3,<0.4"
DIM = 384
CHUNK = 65_536
KMEANS_MAX = 1_000_000  # k-means is skipped from this size on
COLLECTIONS = ("stamps", "emoji", "icons")  # benchmarks/image_collections.py (issue 25)
NAMES = ("mixture", "noisy", "large", "nested", "openclipart", "fashion", *COLLECTIONS)
REAL = ("openclipart", "fashion", *COLLECTIONS)


# ---------------------------------------------------------------------------- data
def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.sqrt(np.einsum("ij,ij->i", x, x))[:, None], np.float32(1e-12))


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    return _normalise(rng.standard_normal((n, DIM)).astype(np.float32))


def mixture(path: Path, n: int, k: int, noise: float, seed: int) -> np.ndarray:
    """Write the mixture's vectors to `path` (.npy, chunk by chunk); return its labels."""
    rng = np.random.default_rng(seed)
    centres = _unit(rng, k)
    sizes = 100 + rng.multinomial(n - 100 * k, rng.dirichlet(np.ones(k)))
    labels = rng.permutation(np.repeat(np.arange(k), sizes))
    x = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, DIM))
    scale = np.float32(noise / np.sqrt(DIM))
    for start in range(0, n, CHUNK):
        part = labels[start:start + CHUNK]
        g = rng.standard_normal((len(part), DIM), dtype=np.float32)
        x[start:start + len(part)] = _normalise(centres[part] + scale * g)
    x.flush()
    del x
    return labels


def nested(path: Path, seed: int, groups: int = 20, subs: int = 10, per: int = 100
           ) -> tuple[np.ndarray, np.ndarray]:
    """Write the nested set to `path`; return (group labels, sub-cluster labels)."""
    rng = np.random.default_rng(seed)
    g = _unit(rng, groups)
    group_of = np.repeat(np.arange(groups), subs)
    h = rng.standard_normal((groups * subs, DIM)).astype(np.float32)
    sub_centres = _normalise(g[group_of] + np.float32(0.6 / np.sqrt(DIM)) * h)
    fine = rng.permutation(np.repeat(np.arange(groups * subs), per))
    e = rng.standard_normal((len(fine), DIM)).astype(np.float32)
    np.save(path, _normalise(sub_centres[fine] + np.float32(0.25 / np.sqrt(DIM)) * e))
    return group_of[fine], fine


def materialise_real(name: str, folder: Path) -> None:
    """Save a real set's clustering features (x.npy), shared vectors and labels (run in a child
    process, so that the parent never loads the embedding backend)."""
    sys.path.insert(0, str(HERE))
    if name in COLLECTIONS:
        import image_collections

        data = image_collections.features(name)
    else:
        import quality

        data = quality.load_openclipart() if name == "openclipart" else quality.load_fashion()
    np.save(folder / "x.npy", np.ascontiguousarray(data["features"], dtype=np.float32))
    np.save(folder / "shared.npy", np.ascontiguousarray(data["shared"], dtype=np.float32))
    np.save(folder / "y.npy", np.asarray(data["y"]))
    (folder / "name.txt").write_text(f"{data['name']} ({len(data['y']):,}, offline features)")


def prepare(name: str, folder: Path, quick: bool, data_seed: int) -> dict:
    """Write data set `name` into `folder`; return its description and label levels."""
    folder.mkdir(parents=True, exist_ok=True)
    if name in ("mixture", "noisy", "large"):
        n, k = {"mixture": (200_000, 400), "noisy": (200_000, 400), "large": (1_000_000, 2_000)}[name]
        if quick:
            n, k = {"large": (100_000, 200)}.get(name, (20_000, 40))
        noise = 3.0 if name == "noisy" else 1.5
        y = mixture(folder / "x.npy", n, k, noise, data_seed)
        return {"name": name, "data": f"{name} {n:,} x {DIM}, {k:,} clusters, noise {noise}", "n": n,
                "levels": [("", y, k)]}
    if name == "nested":
        coarse, fine = nested(folder / "x.npy", data_seed)
        return {"name": name, "data": f"nested {len(fine):,} x {DIM}", "n": len(fine),
                "levels": [("vs 200 sub-clusters", fine, 200), ("vs 20 groups", coarse, 20)]}
    proc = subprocess.run([sys.executable, __file__, "--materialise", name, str(folder)],
                          check=False, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(_tail(proc.stderr))
    y = np.load(folder / "y.npy")
    return {"name": name, "data": (folder / "name.txt").read_text(), "n": len(y),
            "levels": [("", y, len(np.unique(y)))]}


# ---------------------------------------------------------------------------- peers
def _tail(text: str, lines: int = 3) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:]) or "no output"


def evoc_python() -> tuple[Path | None, str]:
    """The peers' virtualenv's python with EVoC importable (created on first use), or a reason."""
    python = PEERS / "bin" / "python"
    check = [str(python), "-c", "import evoc, importlib.metadata as m; print(m.version('evoc'))"]
    if python.exists():
        proc = subprocess.run(check, check=False, capture_output=True, text=True)
        if proc.returncode == 0:
            return python, proc.stdout.strip()
    print(f"creating {PEERS} and installing {EVOC_SPEC} ...", flush=True)
    steps = [[sys.executable, "-m", "venv", str(PEERS)],
             [str(python), "-m", "pip", "install", "--quiet", EVOC_SPEC]]
    for step in steps:
        try:
            proc = subprocess.run(step, check=False, capture_output=True, text=True, timeout=1800)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return None, f"{' '.join(step[1:4])}: {exc}"
        if proc.returncode != 0:
            return None, f"{' '.join(step[1:4])} failed: {_tail(proc.stderr or proc.stdout)}"
    proc = subprocess.run(check, check=False, capture_output=True, text=True)
    if proc.returncode != 0:
        return None, f"import evoc failed: {_tail(proc.stderr)}"
    return python, proc.stdout.strip()


def run_worker(python: Path, method: str, data: Path, out: Path, seeds: list[int], k: int = 0,
               unseeded: bool = False, omp_wait: str = "passive") -> tuple[dict | None, str]:
    """One worker process; (its result with the layers of every seed, '') or (None, why)."""
    cmd = [str(python), str(WORKER), method, str(data), str(out), "--seeds", ",".join(map(str, seeds)),
           "--k", str(k)] + (["--unseeded"] if unseeded else [])
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    if omp_wait != "unset":
        env["OMP_WAIT_POLICY"] = omp_wait.upper()
    start = time.perf_counter()
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env)
    if proc.returncode != 0 or not (out / "result.json").exists():
        return None, f"failed (exit {proc.returncode}): {_tail(proc.stderr)}"
    result = json.loads((out / "result.json").read_text())
    result["process_s"] = time.perf_counter() - start
    for seed in seeds:
        result["seeds"][str(seed)]["layers"] = np.load(out / f"layers_{seed}.npy")
    shutil.rmtree(out, ignore_errors=True)
    return result, ""


def source_state() -> str:
    """The commit, and a digest of the package's sources as they are on disk (the working tree
    may hold changes, and may change while a long run goes on)."""
    import hashlib

    src = HERE.parent / "src" / "concept"
    digest = hashlib.sha1()
    for path in sorted(src.rglob("*.py")):
        digest.update(path.relative_to(src).as_posix().encode() + b"\0" + path.read_bytes())
    try:
        commit = subprocess.run(["git", "-C", str(HERE.parent), "describe", "--always", "--dirty"],
                                check=False, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        commit = "unknown"
    return f"{commit or 'unknown'}, sources {digest.hexdigest()[:10]}"


# ---------------------------------------------------------------------------- scoring
def _seed_ari(partitions: list[np.ndarray]) -> float | None:
    pairs = list(combinations(partitions, 2))
    return float(np.mean([adjusted_rand_score(a, b) for a, b in pairs])) if pairs else None


def rows_for(ds: dict, method: str, result: dict | None, note: str, seeds: list[int]) -> list[dict]:
    """Table rows of one method on one data set: one per seed and label level."""
    base = {"data": ds["data"], "method": method}
    if result is None:
        return [dict(base, seed="–", note=note)]
    runs = result["seeds"]
    stability = _seed_ari([runs[str(s)]["layers"][runs[str(s)]["layer"]] for s in seeds])
    rows = []
    for seed in seeds:
        run = runs[str(seed)]
        layers, index = run["layers"], run["layer"]
        labels = layers[index]
        sizes = [len(np.unique(layer[layer >= 0])) for layer in layers]
        for level, y, _k in ds["levels"]:
            s = scores(y, labels)
            best = [normalized_mutual_info_score(y, layer) for layer in layers]
            b = int(np.argmax(best))
            rows.append(dict(base, data=f"{ds['data']} {level}".strip(), seed=seed,
                             seconds=run["seconds"], NMI=s["nmi"], ARI=s["ari"],
                             concepts=s["n_concepts"], **{"in concepts": 1.0 - s["outliers"]},
                             layers=len(layers), **{"layer sizes": "/".join(map(str, sizes))},
                             **{"labels_ layer": index, "best layer NMI": f"{best[b]:.3f} (L{b})"},
                             **{"peak RSS GiB": run["peak_rss_gib"], "RSS before GiB": run["rss_before_gib"]},
                             **({"seed ARI": stability} if stability is not None else {}),
                             note=note, _sizes=sizes, _best_nmi=best,
                             _ru_maxrss_gib=run["ru_maxrss_gib"], _warm_up_s=result["warm_up_s"]))
    return rows


def _min_seed_ari(partitions: list[np.ndarray]) -> float | None:
    pairs = list(combinations(partitions, 2))
    return float(min(adjusted_rand_score(a, b) for a, b in pairs)) if pairs else None


def summary_for(ds: dict, method: str, result: dict | None, seeds: list[int]) -> list[dict]:
    """One summary row per label level: medians over the seeds and the lowest pairwise seed ARI
    (over seeds 0-2, the issue's target, and over every seed run)."""
    if result is None:
        return []
    runs = result["seeds"]
    labels = {s: runs[str(s)]["layers"][runs[str(s)]["layer"]] for s in seeds}
    first = [labels[s] for s in (0, 1, 2) if s in labels]
    rows = []
    for level, y, _k in ds["levels"]:
        per_seed = [scores(y, labels[s]) for s in seeds]
        concepts = [r["n_concepts"] for r in per_seed]
        rows.append({"data": f"{ds['data']} {level}".strip(), "method": method, "seeds": len(seeds),
                     "NMI median": float(np.median([r["nmi"] for r in per_seed])),
                     "NMI min": float(np.min([r["nmi"] for r in per_seed])),
                     "ARI median": float(np.median([r["ari"] for r in per_seed])),
                     "in concepts": float(np.median([1.0 - r["outliers"] for r in per_seed])),
                     "concepts": f"{int(np.median(concepts))} ({min(concepts)}-{max(concepts)})",
                     "lowest seed ARI 0-2": _min_seed_ari(first) if len(first) == 3 else "–",
                     "lowest seed ARI all": _min_seed_ari(list(labels.values())) if len(seeds) > 1 else "–",
                     "seconds": float(np.median([runs[str(s)]["seconds"] for s in seeds]))})
    return rows


def check_targets(summary: list[dict], evoc_label: str) -> None:
    """Mark on ours's summary rows the issue's targets: median NMI >= k-means (true k) and >=
    EVoC's, >= 90% of images in concepts, lowest seed-pair ARI over seeds 0-2 >= 0.85."""
    for row in summary:
        if row["method"] != "ours":
            continue
        peers = {r["method"]: r["NMI median"] for r in summary if r["data"] == row["data"]}
        marks = []
        kmeans = [v for m, v in peers.items() if m.startswith("KMeans")]
        if kmeans:
            marks.append(("NMI>=KMeans", row["NMI median"] >= max(kmeans)))
        if f"{evoc_label} defaults" in peers:
            marks.append(("NMI>=EVoC", row["NMI median"] >= peers[f"{evoc_label} defaults"]))
        marks.append(("in>=90%", row["in concepts"] >= 0.90))
        if isinstance(row["lowest seed ARI 0-2"], float):
            marks.append(("ARI0-2>=0.85", row["lowest seed ARI 0-2"] >= 0.85))
        row["targets"] = ", ".join(f"{name} {'yes' if ok else 'NO'}" for name, ok in marks)


SUMMARY_COLS = ["data", "method", "seeds", "NMI median", "NMI min", "ARI median", "in concepts", "concepts",
                "lowest seed ARI 0-2", "lowest seed ARI all", "seconds", "targets"]


# ---------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help=f"comma-separated data sets of {', '.join(NAMES)}")
    parser.add_argument("--seeds", type=int, help="seeds 0..N-1 (default 1 on synthetic sets, 3 on real)")
    parser.add_argument("--skip-evoc", action="store_true")
    parser.add_argument("--evoc-unseeded", action="store_true",
                        help="also run EVoC with random_state=None (its faster, non-reproducible path)")
    parser.add_argument("--quick", action="store_true", help="scaled-down sizes, for a smoke run")
    parser.add_argument("--data-seed", type=int, default=0, help="seed of the synthetic sets")
    parser.add_argument("--omp-wait-policy", choices=["passive", "active", "unset"], default="passive",
                        help="OMP_WAIT_POLICY of every worker (default passive: with the cores shared, "
                             "libgomp's spinning threads made EVoC's and k-means' times vary tenfold)")
    parser.add_argument("--materialise", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.materialise:
        return materialise_real(args.materialise[0], Path(args.materialise[1]))
    names = [n.strip() for n in (args.only or ",".join(NAMES)).split(",") if n.strip()]
    if unknown := [n for n in names if n not in NAMES]:
        parser.error(f"unknown data set(s) {', '.join(unknown)}; choose from {', '.join(NAMES)}")

    started = time.perf_counter()
    sources = source_state()
    print(f"concept at {sources}", flush=True)
    try:
        evoc, evoc_version = (None, "skipped (--skip-evoc)") if args.skip_evoc else evoc_python()
    except Exception as exc:  # noqa: BLE001 - without EVoC the rest still runs
        evoc, evoc_version = None, f"{type(exc).__name__}: {exc}"
    if evoc is None and not args.skip_evoc:
        print(f"EVoC unavailable: {evoc_version}", flush=True)
    evoc_label = f"EVoC {evoc_version}" if evoc is not None else "EVoC"

    rows: list[dict] = []
    summary: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="concept-cluster-") as tmp:
        for name in names:
            folder = Path(tmp) / name
            try:
                ds = prepare(name, folder, args.quick, args.data_seed)
            except Exception as exc:  # noqa: BLE001 - a missing cache skips one set, not the run
                print(f"{name}: skipped, {type(exc).__name__}: {exc}", flush=True)
                rows.append({"data": name, "method": "–", "note": f"skipped: {exc}"})
                continue
            seeds = list(range(args.seeds or (3 if name in REAL else 1)))
            print(f"== {ds['data']}, seeds {seeds}", flush=True)
            runs = [("ours", sys.executable, "ours", {})]
            if evoc is not None:
                runs.append((f"{evoc_label} defaults", evoc, "evoc", {}))
                if args.evoc_unseeded:
                    runs.append((f"{evoc_label} defaults, random_state=None", evoc, "evoc", {"unseeded": True}))
            if ds["n"] < KMEANS_MAX:
                runs += [(f"KMeans k={kk}", sys.executable, "kmeans", {"k": kk})
                         for kk in dict.fromkeys(level[2] for level in ds["levels"])]
            group = []
            for label, python, method, extra in runs:
                load = os.getloadavg()[0]
                result, note = run_worker(python, method, folder, folder / f"out-{method}", seeds,
                                          omp_wait=args.omp_wait_policy, **extra)
                if result is not None:
                    note = "; ".join(([f"warm-up {result['warm_up_s']:.0f} s"] if method != "kmeans" else [])
                                     + [f"load {load:.1f}"])
                print(f"   {label}: " + (", ".join(f"{result['seeds'][str(s)]['seconds']:.1f} s" for s in seeds)
                                         if result else note), flush=True)
                group += rows_for(ds, label, result, note, seeds)
                summary += summary_for(ds, label, result, seeds)
            if evoc is None and not args.skip_evoc:
                group.append({"data": ds["data"], "method": "EVoC", "note": f"unavailable: {evoc_version}"})
            if ds["n"] >= KMEANS_MAX:
                group.append({"data": ds["data"], "method": "KMeans", "note": "skipped: too slow at this size"})
            evoc_s = {(r["data"], r["seed"]): r["seconds"] for r in group
                      if r["method"] == f"{evoc_label} defaults" and "seconds" in r}
            for r in group:
                if r["method"] == "ours" and (r["data"], r["seed"]) in evoc_s:
                    r["time vs EVoC"] = f"{r['seconds'] / evoc_s[(r['data'], r['seed'])]:.2f}x"
            rows += group
            shutil.rmtree(folder, ignore_errors=True)
    total = time.perf_counter() - started
    sources_after = source_state()
    if sources_after.split("sources ")[-1] != sources.split("sources ")[-1]:
        print(f"WARNING: the package's sources changed during the run ({sources} -> {sources_after}); "
              "rows of ours may come from different code", flush=True)
        sources = f"{sources} -> {sources_after} (CHANGED DURING THE RUN)"

    cols = ["data", "method", "seed", "seconds", "time vs EVoC", "NMI", "ARI", "concepts", "in concepts",
            "layers", "layer sizes", "labels_ layer", "best layer NMI", "peak RSS GiB", "RSS before GiB", "seed ARI", "note"]
    intro = (f"`python benchmarks/cluster.py{''.join(' ' + a for a in sys.argv[1:])}`"
             f"{' (scaled-down sizes)' if args.quick else ''}, {total / 60:.1f} min in all. "
             "Every method runs in a fresh process on the same saved vectors (the CNN features on the "
             "real sets); numba is compiled on a small set first and not timed. 'seconds': the fit alone "
             "(ours: the whole ConceptModel.fit, without words). 'time vs EVoC': ours / EVoC, same set and "
             "seed. NMI and ARI of `labels_` with outliers as one label; 'in concepts': the share of images "
             "not outliers; 'layer sizes': concepts per layer, finest first (L0); 'best layer NMI': the best "
             "of every layer, and which. 'peak RSS GiB': the fit's own peak, the loaded vectors included; "
             "'RSS before GiB': the process just before the fit (interpreter, libraries, vectors). "
             "'seed ARI': mean pairwise ARI of `labels_` over the seeds. EVoC's `labels_` is its layer of "
             f"highest persistence. Workers ran with OMP_WAIT_POLICY={args.omp_wait_policy}; 'load': the "
             f"1-minute load average when the worker started ({os.cpu_count()} cores here). concept at {sources}.")
    text = publish("cluster", "Clustering core vs EVoC and k-means (issues 10 and 25)", intro, rows, cols)
    check_targets(summary, evoc_label)
    summary_text = ("### Per data set and method\n\nOver the seeds run: median and lowest NMI, median ARI, "
                    "median share of images in concepts, median (range) of concepts, median fit seconds; "
                    "'lowest seed ARI': the lowest ARI between the `labels_` of two seeds, over seeds 0-2 "
                    "and over all the seeds. 'targets' (issue 25, ours only): median NMI >= KMeans(true k)'s "
                    "and >= EVoC's, >= 90% in concepts, lowest seed ARI over seeds 0-2 >= 0.85.\n\n"
                    + table(summary, SUMMARY_COLS))
    print("\n" + summary_text)
    tmp_md = OUT / ".cluster.md.tmp"
    tmp_md.write_text(text + "\n\n" + summary_text + "\n")
    os.replace(tmp_md, OUT / "cluster.md")
    public = [{k: v for k, v in r.items() if not k.startswith("_")} | {k[1:]: v for k, v in r.items()
              if k.startswith("_")} for r in rows]
    OUT.mkdir(exist_ok=True)
    tmp_json = OUT / ".cluster.json.tmp"
    tmp_json.write_text(json.dumps({"machine": machine(), "args": {k: v for k, v in vars(args).items()
                                                                  if k != "materialise"},
                                    "evoc": evoc_version, "sources": sources, "total_s": total, "rows": public,
                                    "summary": summary},
                                   indent=1, default=float))
    os.replace(tmp_json, OUT / "cluster.json")


if __name__ == "__main__":
    main()
