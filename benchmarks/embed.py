"""Images per second from image files: the reference Concept's embedding path against ours.

On the same files and model, in one process:
- reference: sequential PIL open in the main process, the model's own preprocessing, float32
  network, batches of 128 (for CLIP: sentence-transformers' `encode` on PIL images, i.e. CLIP's
  processor; for the offline model: `preprocess` one by one, then the PyTorch float32 network);
- ours: `embed_images` with its defaults (worker decode; on a GPU also bf16, large batches and
  JPEG decode on the GPU when torchvision can);
- ours, CPU decode (GPU only): the same with `gpu_decode=False`;
- model only (the ceiling): random uint8 pixels already in place (on the GPU), batches of ours;
- ours in int8 (offline model, CPU): `embedding_model="offline-int8"`, against the same reference;
- words (offline model): 4,000 vocabulary words by PyTorch's `encode` (the reference), by ours
  (OpenVINO) and by ours in int8, words/s and cosine to the reference.
The targets of issue 23 (2 CPU cores) are checked at the end of the table.
For each: images/s, speed-up over the reference, CPU utilisation (process + children CPU time /
wall / cores), GPU utilisation (NVML) and peak RSS; and the cosine agreement of ours with the
reference, image by image. One batch of each path runs first, untimed.

    python benchmarks/embed.py --model offline --images openclipart --limit 256
    python benchmarks/embed.py --model random:vit-b32 --images synthetic:4096 --device cuda

`--model` is "offline", a CLIP folder, or "random:vit-b32" / "random:tiny" (a randomly
initialised CLIP of that architecture, built in the cache folder; random weights do not change
throughput). `--images` is "openclipart", a folder, or "synthetic:N" (N 800x600 JPEGs of about
120 KB, written once to the cache folder). Results go to benchmarks/out/embed-*.json.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime as dt
import json
import multiprocessing
import os
import platform
import resource
import statistics
import sys
import threading
import time
import traceback
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REFERENCE_BATCH = 128


# --------------------------------------------------------------------------- images
def _synthetic_jpeg(job: tuple[int, str]) -> None:
    """One 800x600 JPEG of smooth multi-scale noise (photo-like spectrum), about 120 KB."""
    from PIL import Image

    seed, path = job
    w, h = 800, 600
    rng = np.random.default_rng(seed)
    acc = np.full((h, w, 3), 128, np.float32)
    for cells, amp in ((4, 90), (12, 45), (40, 22), (150, 9)):
        small = rng.standard_normal((max(2, cells * h // w), cells, 3), dtype=np.float32)
        for c in range(3):
            acc[..., c] += amp * np.asarray(Image.fromarray(small[..., c]).resize((w, h), Image.Resampling.BICUBIC))
    acc += rng.standard_normal((h, w, 3), dtype=np.float32) * 6
    tmp = f"{path}.tmp"
    Image.fromarray(np.clip(acc, 0, 255).astype(np.uint8)).save(tmp, format="JPEG", quality=90)
    os.replace(tmp, path)


def synthetic_images(n: int, cache: Path) -> list[str]:
    folder = cache / "synthetic-800x600"
    folder.mkdir(parents=True, exist_ok=True)
    paths = [str(folder / f"img_{i:06d}.jpg") for i in range(n)]
    todo = [(i, p) for i, p in enumerate(paths) if not os.path.exists(p)]
    if todo:
        start = time.perf_counter()
        with multiprocessing.get_context("fork").Pool(os.cpu_count()) as pool:
            pool.map(_synthetic_jpeg, todo, chunksize=8)
        size = sum(os.path.getsize(p) for p in paths[:64]) / min(n, 64) / 1000
        print(f"wrote {len(todo):,} synthetic JPEGs to {folder} in {time.perf_counter() - start:.1f} s "
              f"(about {size:.0f} KB each)", flush=True)
    return paths


def list_images(spec: str, cache: Path, limit: int | None) -> list[str]:
    if spec.startswith("synthetic:"):
        paths = synthetic_images(int(spec.partition(":")[2]), cache)
    elif spec == "openclipart":
        from concept.datasets import openclipart

        paths = [str(p) for p in openclipart().images]
    else:
        from concept.images import list_image_files

        paths = [str(p) for p in list_image_files(spec)]
    if limit and limit < len(paths):  # evenly spaced, so that every folder is represented
        paths = [paths[i] for i in np.linspace(0, len(paths) - 1, limit).astype(int)]
    return paths


# --------------------------------------------------------------------------- models
def random_clip(kind: str, cache: Path) -> Path:
    """A randomly initialised CLIP folder: "vit-b32" (transformers' CLIPConfig defaults are
    ViT-B/32: 224 px, patch 32, 12 layers of 768) or "tiny"; built once, then reused."""
    from concept.testing import write_random_clip

    folder = cache / f"clip-random-{kind}"
    if (folder / "done").exists():
        return folder
    try:
        write_random_clip(folder, kind)
    except ValueError as exc:  # an unknown architecture, refused before anything is written
        raise SystemExit(f"--model random:{kind}: {exc}") from exc
    _as_sentence_transformer(folder)
    (folder / "done").write_text("")
    return folder


def _as_sentence_transformer(folder: Path) -> None:
    """sentence-transformers 6 loads a transformers CLIP folder as it is; older versions need
    their CLIPModel module and a modules.json."""
    from sentence_transformers import SentenceTransformer

    try:
        if "image" in (getattr(SentenceTransformer(str(folder), device="cpu"), "modalities", None) or []):
            return
    except Exception:  # noqa: BLE001, S110 - an older version may not read it at all: write modules.json
        pass
    from sentence_transformers import models

    SentenceTransformer(modules=[models.CLIPModel(str(folder))]).save(str(folder))


# --------------------------------------------------------------------------- measurement
def _nvml_utilisation(device_index: int):
    """A function returning the GPU's utilisation in percent (NVML through ctypes), or None."""
    try:
        import torch

        if torch.cuda.is_available():
            with contextlib.suppress(Exception):  # needs pynvml; else the library directly
                torch.cuda.utilization(device_index)
                return lambda: float(torch.cuda.utilization(device_index))
        lib = ctypes.CDLL("libnvidia-ml.so.1")
        if lib.nvmlInit_v2() != 0:
            return None
        handle = ctypes.c_void_p()
        found = -1
        with contextlib.suppress(Exception):  # by PCI bus id: right even with CUDA_VISIBLE_DEVICES
            props = torch.cuda.get_device_properties(device_index)
            bus = f"{props.pci_domain_id:08x}:{props.pci_bus_id:02x}:{props.pci_device_id:02x}.0"
            found = lib.nvmlDeviceGetHandleByPciBusId_v2(bus.encode(), ctypes.byref(handle))
        if found != 0 and lib.nvmlDeviceGetHandleByIndex_v2(device_index, ctypes.byref(handle)) != 0:
            return None

        class Rates(ctypes.Structure):
            _fields_ = [("gpu", ctypes.c_uint), ("memory", ctypes.c_uint)]

        def read() -> float | None:
            rates = Rates()
            return float(rates.gpu) if lib.nvmlDeviceGetUtilizationRates(handle, ctypes.byref(rates)) == 0 else None

        return read if read() is not None else None
    except Exception:  # noqa: BLE001 - no driver, no GPU: reported as n/a
        return None


def _children_rss() -> int:
    """Resident bytes of this process's children (worker processes), summed."""
    pids: set[str] = set()
    try:
        for task in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{task}/children") as f:
                pids.update(f.read().split())
    except OSError:
        return 0
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            pass
    return total


def _self_rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class Monitor:
    """Wall time, CPU time of this process and its reaped children, sampled RSS and GPU use."""

    def __init__(self, gpu_reader=None, interval: float = 0.1) -> None:
        self.gpu_reader, self.interval = gpu_reader, interval

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.rss = max(self.rss, _self_rss())
                self.children = max(self.children, _children_rss())
            except OSError:
                pass
            if self.gpu_reader is not None:
                value = self.gpu_reader()
                if value is not None:
                    self.gpu.append(value)

    def __enter__(self):
        self.rss, self.children, self.gpu = _self_rss(), 0, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._cpu0 = self._cpu()
        self._start = time.perf_counter()
        self._thread.start()
        return self

    @staticmethod
    def _cpu() -> float:
        own = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self._start
        self.cpu_seconds = self._cpu() - self._cpu0
        self._stop.set()
        self._thread.join()


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _sync(device: str) -> None:
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


# --------------------------------------------------------------------------- the paths
def reference_clip(folder: str, device: str):
    """sentence-transformers' CLIP in float32 with CLIP's PIL image processor, as the reference."""
    import transformers

    from concept.embedding.base import load_sentence_transformer

    model = load_sentence_transformer(folder, device, verbose=False)
    processor = getattr(model[0], "processor", None)
    current = getattr(processor, "image_processor", None)
    pil = getattr(transformers, "CLIPImageProcessorPil", None)  # transformers 5: PIL backend
    if pil is None and type(current).__name__.endswith("Fast"):
        pil = transformers.CLIPImageProcessor  # transformers 4: the slow one is PIL/numpy
    if pil is not None and current is not None and type(current) is not pil:
        processor.image_processor = pil.from_pretrained(folder)
    note = type(getattr(processor, "image_processor", None)).__name__

    def run(paths: list[str]) -> np.ndarray:
        from PIL import Image

        out = []
        for start in range(0, len(paths), REFERENCE_BATCH):
            images = []
            for p in paths[start:start + REFERENCE_BATCH]:
                im = Image.open(p)
                im.load()
                images.append(im)
            out.append(model.encode(images, batch_size=REFERENCE_BATCH, convert_to_numpy=True,
                                    show_progress_bar=False))
        return _unit(np.concatenate(out))

    return run, f"sentence-transformers encode, {note}, fp32"


def reference_offline(device: str):
    """The offline model's PyTorch float32 network, images opened and resized one by one."""
    from concept.embedding import OfflineEmbedder
    from concept.images import load_image

    model = OfflineEmbedder(runtime="torch", device=device, verbose=False)

    def run(paths: list[str]) -> np.ndarray:
        out = []
        for start in range(0, len(paths), REFERENCE_BATCH):
            pixels = np.stack([model.preprocess(load_image(p)) for p in paths[start:start + REFERENCE_BATCH]])
            out.append(model.embed_pixels(pixels))
        return _unit(np.concatenate(out))

    return run, "load_image + preprocess in the main process, PyTorch fp32"


def ours_model(spec: str, device: str):
    from concept.embedding import load_embedding_model

    return load_embedding_model(spec, device=device, verbose=False)


def describe(model) -> str:
    parts = [type(model).__name__]
    for attr in ("runtime_", "dtype_", "precision"):
        value = getattr(model, attr, None)
        if value is not None:
            parts.append(f"{attr.rstrip('_')}={value}")
            break
    from concept.embedding.pipeline import resolve_num_workers

    parts.append(f"workers={resolve_num_workers(model.num_workers, gpu=model._on_cuda())}")
    return ", ".join(parts)


# --------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="offline", help="offline | CLIP folder | random:vit-b32 | random:tiny")
    ap.add_argument("--images", default="openclipart", help="openclipart | DIR | synthetic:N")
    ap.add_argument("--limit", type=int, default=None, help="use N images, evenly spaced over the set")
    ap.add_argument("--batch-size", type=int, default=None,
                    help="ours: images per batch (default: the backend's, grown on a GPU)")
    ap.add_argument("--device", default=None, help="cpu | cuda (default: cuda when available)")
    ap.add_argument("--paths", default="reference,ours,model-only,ours-cpu-decode,ours-int8,words",
                    help="comma-separated subset, in this order of running")
    ap.add_argument("--repeat", type=int, default=1, help="timed runs of the fast paths (median kept)")
    ap.add_argument("--reference-limit", type=int, default=None, help="reference path on the first N only")
    ap.add_argument("--cache", type=Path, default=HERE / "cache")
    ap.add_argument("--out", type=Path, default=None, help="JSON file (default benchmarks/out/embed-*.json)")
    ap.add_argument("--prepare", action="store_true", help="only build the model folder and images")
    args = ap.parse_args(argv)

    paths = list_images(args.images, args.cache, args.limit)  # first: it forks, torch not yet busy
    model_spec = args.model
    if model_spec.startswith("random:"):
        model_spec = str(random_clip(model_spec.partition(":")[2], args.cache))
    if args.prepare:
        print(f"prepared {model_spec} and {len(paths):,} images", flush=True)
        return 0

    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    cuda = device.startswith("cuda")
    gpu_reader = _nvml_utilisation(torch.cuda.current_device()) if cuda else None
    wanted = [p.strip() for p in args.paths.split(",") if p.strip()]
    ours = ours_model(model_spec, device)
    batch = args.batch_size or 32  # embed_images' default; a GPU backend grows it
    effective = max(batch, getattr(ours, "gpu_batch_size", None) or 0) if cuda else batch
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out_path = args.out or HERE / "out" / f"embed-{stamp}.json"
    result = {
        "date": stamp, "machine": {"cores": _cores(), "cpu": platform.processor() or platform.machine(),
                                   "python": sys.version.split()[0], "torch": torch.__version__},
        "device": torch.cuda.get_device_name() if cuda else "cpu", "model": args.model, "images": args.images,
        "n_images": len(paths), "batch_ours": effective, "batch_reference": REFERENCE_BATCH, "rows": [],
    }
    try:
        import torchvision

        result["machine"]["torchvision"] = torchvision.__version__
    except Exception:  # noqa: BLE001 - optional
        result["machine"]["torchvision"] = None
    print(f"# embed benchmark: {len(paths):,} images ({args.images}), model {args.model}, device "
          f"{result['device']}, {_cores()} cores", flush=True)
    vectors: dict[str, np.ndarray] = {}
    rows = result["rows"]

    def record(name: str, n: int, runs: list[Monitor], note: str, **extra) -> None:
        m = sorted(runs, key=lambda r: r.seconds)[len(runs) // 2]  # the median run
        row = {"path": name, "images": n, "seconds": round(m.seconds, 3),
               "images_per_s": round(n / m.seconds, 1),
               "images_per_s_all": [round(n / r.seconds, 1) for r in runs],
               "cpu_util": round(m.cpu_seconds / m.seconds / _cores(), 3),
               "gpu_util": round(statistics.fmean(m.gpu), 1) if m.gpu else None,
               "peak_rss_gib": round(m.rss / 2**30, 2), "children_rss_gib": round(m.children / 2**30, 2),
               "note": note, **extra}
        if cuda:
            row["gpu_peak_mem_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        rows.append(row)
        print(json.dumps(row), flush=True)
        write()

    def write() -> None:
        refs = {r["path"]: r for r in rows if r["path"] in ("reference", "words-reference")}
        for r in rows:  # words against words, images against images
            ref = refs.get("words-reference" if r["path"].startswith("words") else "reference")
            if ref is not None:
                r["speedup"] = round(r["images_per_s"] / ref["images_per_s"], 1)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(result, indent=1) + "\n")

    def timed(fn, repeat: int) -> list[Monitor]:
        runs = []
        for _ in range(repeat):
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            with Monitor(gpu_reader) as m:
                fn()
                _sync(device)
            runs.append(m)
        return runs

    def reference() -> None:
        run, note = reference_offline(device) if args.model == "offline" else reference_clip(model_spec, device)
        ref_paths = paths[:args.reference_limit] if args.reference_limit else paths
        run(paths[:REFERENCE_BATCH])  # warm-up
        holder = {}
        runs = timed(lambda: holder.__setitem__("v", run(ref_paths)), 1)
        vectors["reference"] = holder["v"]
        record("reference", len(ref_paths), runs, note)

    def ours_path(name: str) -> None:
        from concept.images import LoadReport

        def once() -> None:
            report = LoadReport()
            vectors[name] = ours.embed_images(paths, batch_size=batch, report=report)
            vectors[name + ":loaded"] = np.asarray(report.loaded)

        ours.gpu_decode = False if name == "ours-cpu-decode" else None
        try:
            ours.embed_images(paths[:effective])  # warm-up: loads the networks, starts nothing lasting
            runs = timed(once, args.repeat)
            decoder = "GPU JPEG decode" if cuda and ours._device_decoder(ours.preprocess_fn) else "CPU decode"
        finally:
            ours.gpu_decode = None
        extra = {}
        if "reference" in vectors:
            ref, loaded = vectors["reference"], vectors[name + ":loaded"]
            keep = loaded < len(ref)
            cos = np.sum(vectors[name][keep] * ref[loaded[keep]], axis=1)
            extra = {"cosine_vs_reference_min": round(float(cos.min()), 5),
                     "cosine_vs_reference_mean": round(float(cos.mean()), 5)}
        record(name, len(paths), runs, f"{describe(ours)}, batch {effective}, {decoder}", **extra)

    def model_only() -> None:
        size = ours.image_size
        host = np.random.default_rng(0).integers(0, 256, (effective, size, size, 3), dtype=np.uint8)
        pixels = torch.from_numpy(host).to(device) if cuda else host
        n_batches = max(1, len(paths) // effective)
        ours.embed_pixels(pixels)  # warm-up

        def loop() -> None:
            for _ in range(n_batches):
                ours.embed_pixels(pixels)

        runs = timed(loop, args.repeat)
        record("model-only", n_batches * effective, runs,
               f"{describe(ours)}, batch {effective}, random pixels {'on the GPU' if cuda else 'in memory'}")

    def int8_path() -> None:
        nonlocal ours
        if args.model != "offline" or cuda:
            return
        default, ours = ours, ours_model("offline-int8", device)
        try:
            ours.embed_images(paths[:effective])  # builds the int8 network once (cached), untimed
            ours_path("ours-int8")
        finally:
            ours = default

    def words() -> None:
        """Words per second: PyTorch's encode (the reference), ours (OpenVINO), ours in int8."""
        if args.model != "offline":
            return
        from concept.embedding import OfflineEmbedder
        from concept.vocabulary import load_vocabulary

        texts = load_vocabulary(20000)[::5][:4000]
        ref = None
        for name, model in [("words-reference", OfflineEmbedder(runtime="torch", verbose=False)),
                            ("words", ours_model("offline", device)),
                            ("words-int8", ours_model("offline-int8", device))]:
            model.embed_texts(texts[:300])  # loads (and converts) the network, untimed
            holder = {}
            runs = timed(lambda: holder.__setitem__("v", model.embed_texts(texts)), args.repeat)
            extra = {}
            if ref is None:
                ref = holder["v"]
            else:
                cos = np.sum(holder["v"] * ref, axis=1)
                extra = {"cosine_vs_reference_min": round(float(cos.min()), 5),
                         "cosine_vs_reference_mean": round(float(cos.mean()), 5)}
            record(name, len(texts), runs, f"{len(texts):,} vocabulary words, runtime="
                   f"{getattr(model, 'runtime_', '?')}, precision={model.precision} (rate: words/s)", **extra)

    steps = {"reference": reference, "ours": lambda: ours_path("ours"), "model-only": model_only,
             "ours-cpu-decode": lambda: ours_path("ours-cpu-decode") if cuda else None,
             "ours-int8": int8_path, "words": words}
    for name in wanted:
        if name not in steps:
            raise SystemExit(f"unknown path {name!r}; choose from {', '.join(steps)}")
    for name in wanted:
        try:
            steps[name]()
        except Exception as exc:  # noqa: BLE001 - report it and go on with the other paths
            traceback.print_exc()
            result.setdefault("errors", {})[name] = f"{type(exc).__name__}: {exc}"
            write()

    print()
    print(markdown(result))
    print(f"\nJSON: {out_path}")
    return 1 if result.get("errors") else 0


#: Issue 23's targets on 2 CPU cores: images/s end to end by image set, CPU use, agreement.
TARGETS = {"synthetic": 120.0, "openclipart": 45.0}


def targets(result: dict) -> str:
    """One line per target: the figure, the target, met or not."""
    rows = {r["path"]: r for r in result["rows"]}
    out = []
    ours = rows.get("ours")
    goal = TARGETS.get(str(result["images"]).split(":")[0])
    if ours and goal and result["device"] == "cpu":
        out.append(f"ours {ours['images_per_s']:.0f} images/s (target >= {goal:.0f}): "
                   f"{'met' if ours['images_per_s'] >= goal else 'NOT met'}")
        out.append(f"ours CPU use {ours['cpu_util']:.0%} (target >= 90%): {'met' if ours['cpu_util'] >= 0.9 else 'NOT met'}")
        if "cosine_vs_reference_mean" in ours:
            c = ours["cosine_vs_reference_mean"]
            out.append(f"ours mean cosine to the reference {c:.4f} (target >= 0.995): {'met' if c >= 0.995 else 'NOT met'}")
    if "words" in rows:
        w = rows["words"]["images_per_s"]
        out.append(f"words {w:,.0f}/s in OpenVINO (target >= 2,000): {'met' if w >= 2000 else 'NOT met'}")
    if "words-int8" in rows:
        w = rows["words-int8"]["images_per_s"]
        out.append(f"words in int8 {w:,.0f}/s (target >= 2,000): {'met' if w >= 2000 else 'NOT met'}")
    return "\n".join(out)


def markdown(result: dict) -> str:
    """The rows as a GitHub-markdown table."""
    cols = ["path", "images", "seconds", "images/s", "speed-up", "CPU util", "GPU util", "peak RSS GiB (main + workers)",
            "cosine vs ref (min / mean)", "how"]
    machine = result["machine"]
    title = (f"{result['n_images']:,} images ({result['images']}), model {result['model']}, {result['device']}, "
             f"{machine['cores']} cores, torch {machine['torch']}, torchvision {machine['torchvision']}")
    lines = [title, "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in result["rows"]:
        cos = (f"{r['cosine_vs_reference_min']:.4f} / {r['cosine_vs_reference_mean']:.4f}"
               if "cosine_vs_reference_min" in r else "")
        gpu = f"{r['gpu_util']:.0f}%" if r.get("gpu_util") is not None else "n/a"
        speed = f"{r['speedup']:.1f}x" if "speedup" in r else ""
        lines.append(f"| {r['path']} | {r['images']:,} | {r['seconds']:.2f} | {r['images_per_s']:,.0f} | {speed} | "
                     f"{100 * r['cpu_util']:.0f}% | {gpu} | {r['peak_rss_gib']:.2f} + {r['children_rss_gib']:.2f} | "
                     f"{cos} | {r['note']} |")
    for name, error in result.get("errors", {}).items():
        lines.append(f"| {name} | failed: {error} |")
    lines += ["", targets(result)]
    ceiling = next((r for r in result["rows"] if r["path"] == "model-only"), None)
    ours = next((r for r in result["rows"] if r["path"] == "ours"), None)
    if ceiling and ours:
        lines.append(f"\nours reaches {ours['images_per_s'] / ceiling['images_per_s']:.0%} of the model-only "
                     f"ceiling ({ceiling['images_per_s']:,.0f} images/s).")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
