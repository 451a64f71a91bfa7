"""Helpers shared by the benchmark scripts: cached embeddings, scores, machine line, tables."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import resource
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

CACHE = Path(__file__).parent / "cache"
OUT = Path(__file__).parent / "out"


def machine() -> str:
    """Date and machine, for RESULTS.md."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{_dt.date.today()} · {os.cpu_count()} cores · {mem:.0f} GiB · {cpu}"


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def reset_peak_rss() -> None:
    """Reset the kernel's peak-RSS counter of this process (Linux), so `vm_hwm_gib` measures one step."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def vm_hwm_gib() -> float:
    """Peak resident memory of this process since the last `reset_peak_rss` (VmHWM), GiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 2**20
    return float("nan")


def scores(labels_true: np.ndarray, labels_pred: np.ndarray) -> dict[str, float]:
    """NMI and ARI with outliers as their own label, and on non-outliers only."""
    keep = labels_pred >= 0
    out = {
        "nmi": normalized_mutual_info_score(labels_true, labels_pred),
        "ari": adjusted_rand_score(labels_true, labels_pred),
        "n_concepts": len(set(labels_pred[keep].tolist())),
        "outliers": float(1 - keep.mean()),
    }
    if keep.any():
        out["nmi_inliers"] = normalized_mutual_info_score(labels_true[keep], labels_pred[keep])
        out["ari_inliers"] = adjusted_rand_score(labels_true[keep], labels_pred[keep])
    return out


def cached(name: str, compute):
    """np.load the cache file `name`.npz, or compute a dict of arrays and store it."""
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"{name}.npz"
    if path.exists():
        with np.load(path) as f:
            return {k: f[k] for k in f.files}
    arrays = compute()
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
    return arrays


class Timer:
    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start


def table(rows: list[dict], columns: list[str]) -> str:
    """A GitHub-markdown table of `rows` (floats to 3 decimals)."""
    def fmt(v):
        return f"{v:.3f}" if isinstance(v, float) else str(v)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def publish(name: str, title: str, intro: str, rows: list[dict], columns: list[str]) -> str:
    """Print a results section (title with date and machine, intro, table) and write it to out/`name`.md."""
    text = f"## {title} ({machine()})\n\n{intro}\n\n" + table(rows, columns)
    OUT.mkdir(exist_ok=True)
    tmp = OUT / f".{name}.md.tmp"
    tmp.write_text(text + "\n")
    os.replace(tmp, OUT / f"{name}.md")
    print(text)
    return text
