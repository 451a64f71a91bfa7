"""Precision and recall of `concept.find_duplicates` on a collection with known copies (issue 27).

The collection: OpenClipart PNGs (files up to 400 kB, a seeded sample) and Fashion-MNIST test images (28 x 28
arrays), half each, plus copies of 10% of them: byte copies (files) or the same array again, lossless PNG
re-saves, JPEGs at quality 70, 50-90% resizes, crops of up to 10%, brightness +-10%, in turn. Copies are
written to a temporary folder (OpenClipart) or kept in memory (Fashion-MNIST). Embedded by the offline model
(its CNN features, as `find_duplicates` does for images).

Ours by default (pixels confirm the candidates, `concept.pixel_match`) and by cosine alone (`near=`), and
the peer fastdup (2.54, its own bundled model, in a separate virtualenv benchmarks/.venv-fastdup that this
script creates; skipped with a reason if it cannot be installed) on the same images, decoded as ours are
(alpha on white) and written as RGB PNGs, its groups being the connected components of its similarity pairs
at a threshold (0.96 is its default for components).

Scores, against the known copies and the originals with exactly the same decoded pixels as another (files that
OpenClipart holds twice, e.g. dog_on_leash_gerald_g._01.png and _02.png); OpenClipart's own near-identical
variants of one drawing and Fashion-MNIST's own look-alikes count as errors, so precision is a lower bound:
- exact recall: byte copies and re-saves in an exact group with their original; exact precision: dropped
  rows of exact groups that are copies of their group's kept image.
- near recall: altered copies in a group with their original; near precision: the same for near groups.

    python benchmarks/duplicates.py [N_ORIGINALS] [--no-peer]   # default 3000; writes benchmarks/out/duplicates.md
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import OUT, machine
from PIL import Image, ImageEnhance

from concept.datasets import fashion_mnist, openclipart
from concept.duplicates import _UnionFind, find_duplicates
from concept.embedding import OfflineEmbedder
from concept.images import load_image

KINDS = ("bytes", "resave", "jpeg", "resize", "crop", "brightness")
EXACT = {"bytes", "resave"}
HERE = Path(__file__).resolve().parent
FASTDUP_VENV = HERE / ".venv-fastdup"
FASTDUP_SPEC = "fastdup==2.54"
FASTDUP_RUN = """
import sys, fastdup
fd = fastdup.create(work_dir=sys.argv[2], input_dir=sys.argv[1])
fd.run(overwrite=True, threshold=0.8, nearest_neighbors_k=16, num_threads=int(sys.argv[4]), verbose=False)
fd.similarity()[["filename_from", "filename_to", "distance"]].to_csv(sys.argv[3], index=False)
"""


def _altered(im: Image.Image, kind: str, rng: np.random.Generator) -> Image.Image:
    w, h = im.size
    if kind == "resize":
        f = rng.uniform(0.5, 0.9)
        return im.resize((max(1, round(w * f)), max(1, round(h * f))), Image.LANCZOS)
    if kind == "crop":
        c = rng.uniform(0.02, 0.05)
        return im.crop((round(w * c), round(h * c), w - round(w * c), h - round(h * c)))
    return ImageEnhance.Brightness(im).enhance(rng.choice([0.9, 1.1]))


def _copy(item, kind: str, folder: Path, number: int, rng: np.random.Generator):
    """A copy of `item` (a path or an array) of the given kind: a path for files, an array or path for arrays."""
    if isinstance(item, Path):
        if kind == "bytes":
            return Path(shutil.copy(item, folder / f"{number}_bytes.png"))
        if kind == "resave":
            with Image.open(item) as im:
                im.save(folder / f"{number}_resave.png", optimize=True)
            return folder / f"{number}_resave.png"
        im = load_image(item)
    else:
        if kind in EXACT:
            return item.copy()
        im = Image.fromarray(item)
    if kind == "jpeg":
        out = folder / f"{number}_jpeg.jpg"
        im.save(out, quality=70)
        return out
    return np.asarray(_altered(im, kind, rng)) if not isinstance(item, Path) else _saved(
        _altered(im, kind, rng), folder / f"{number}_{kind}.png")


def _saved(im: Image.Image, out: Path) -> Path:
    im.save(out)
    return out


def same_pixel_origins(images: list, origin: np.ndarray) -> np.ndarray:
    """`origin` with originals that have exactly the same decoded pixels (full resolution, compared by a hash of
    the RGB bytes and size: OpenClipart holds some files twice) counted as one: such a pair is an exact duplicate
    by definition, not an error."""
    import hashlib

    first: dict[str, int] = {}
    same = {}
    for row in sorted(set(origin.tolist())):
        item = images[row]
        im = load_image(item) if isinstance(item, Path) else Image.fromarray(item).convert("RGB")
        key = hashlib.sha256(repr(im.size).encode() + im.tobytes()).hexdigest()
        same[row] = first.setdefault(key, row)
    return np.array([same[int(o)] for o in origin])


def build(n_originals: int, folder: Path, seed: int = 0):
    rng = np.random.default_rng(seed)
    clip = [p for p in openclipart().images if p.stat().st_size <= 400_000]
    clip = [clip[i] for i in sorted(rng.choice(len(clip), n_originals // 2, replace=False))]
    fashion = fashion_mnist("test").images
    fashion = [fashion[i] for i in sorted(rng.choice(len(fashion), n_originals - len(clip), replace=False))]
    images = [*clip, *fashion]
    origin = list(range(len(images)))
    kinds = [None] * len(images)
    for number, i in enumerate(sorted(rng.choice(len(images), len(images) // 10, replace=False))):
        kind = KINDS[number % len(KINDS)]
        images.append(_copy(images[i], kind, folder, number, rng))
        origin.append(int(i))
        kinds.append(kind)
    return images, np.array(origin), kinds, len(clip)


def fastdup_python() -> tuple[Path | None, str]:
    """The fastdup virtualenv's python (created on first use), or None and why."""
    python = FASTDUP_VENV / "bin" / "python"
    check = [str(python), "-c", "import fastdup; print(fastdup.__version__)"]
    if not (python.exists() and subprocess.run(check, capture_output=True).returncode == 0):
        print(f"creating {FASTDUP_VENV} and installing {FASTDUP_SPEC} ...", flush=True)
        for step in ([sys.executable, "-m", "venv", str(FASTDUP_VENV)],
                     [str(python), "-m", "pip", "install", "--quiet", FASTDUP_SPEC]):
            proc = subprocess.run(step, capture_output=True, text=True)
            if proc.returncode != 0:
                return None, f"{' '.join(step[1:4])} failed: {(proc.stderr or proc.stdout)[-300:]}"
    proc = subprocess.run(check, capture_output=True, text=True)
    return (python, proc.stdout.strip()) if proc.returncode == 0 else (None, f"import fastdup: {proc.stderr[-300:]}")


def fastdup_pairs(images: list, folder: Path) -> tuple[list | None, float, str]:
    """fastdup's similarity pairs (row, row, similarity) over the images, its seconds, and its version or why not."""
    python, version = fastdup_python()
    if python is None:
        return None, 0.0, version
    inputs = folder / "fastdup_in"
    inputs.mkdir()
    for row, item in enumerate(images):
        (load_image(item) if isinstance(item, Path) else Image.fromarray(item).convert("RGB")).save(
            inputs / f"{row:05d}.png")
    start = time.perf_counter()
    out = folder / "fastdup.csv"
    proc = subprocess.run([str(python), "-c", FASTDUP_RUN, str(inputs), str(folder / "fastdup_work"), str(out),
                           str(os.cpu_count() or 1)], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        return None, seconds, f"fastdup failed: {(proc.stderr or proc.stdout)[-300:]}"
    import pandas as pd

    table = pd.read_csv(out)
    row = lambda name: int(Path(name).stem)  # noqa: E731
    return [(row(a), row(b), float(s)) for a, b, s in zip(table.filename_from, table.filename_to, table.distance)], \
        seconds, f"fastdup {version}"


def components(pairs: list, n: int, threshold: float, skip: set[int]) -> list[list[int]]:
    """Connected components of the pairs at or above `threshold`, rows in `skip` left out, each led by its first row."""
    uf = _UnionFind(n)
    for a, b, s in pairs:
        if s >= threshold and a not in skip and b not in skip:
            uf.union(a, b)
    return uf.groups()


def score(groups: list[list[int]], origin: np.ndarray, kinds: list, wanted: set[str]) -> tuple[float, float, int]:
    """Recall of the copies of the `wanted` kinds, precision of the dropped rows, rows dropped."""
    member = {r: gi for gi, g in enumerate(groups) for r in g}
    copies = [r for r, k in enumerate(kinds) if k in wanted]
    found = sum(member.get(r, -1) == member.get(int(origin[r]), -2) for r in copies)
    dropped = [(g[0], r) for g in groups for r in g[1:]]
    right = sum(origin[a] == origin[b] for a, b in dropped)
    return found / max(1, len(copies)), right / max(1, len(dropped)), len(dropped)


def main(n_originals: int = 3000, peer: bool = True) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        images, origin, kinds, n_clip = build(n_originals, Path(tmp))
        planted_origin = origin
        origin = same_pixel_origins(images, origin)
        n_same = int((origin[:n_originals] != planted_origin[:n_originals]).sum())
        start = time.perf_counter()
        embedder = OfflineEmbedder(verbose=False)
        _, features = embedder.embed_images_and_features(images, 32)
        embed_s = time.perf_counter() - start
        start = time.perf_counter()
        found = find_duplicates(images, embeddings=features)
        find_s = time.perf_counter() - start
        rows = []
        near_kinds = set(KINDS) - EXACT
        er, ep, ed = score(found.exact, origin, kinds, EXACT)
        nr, np_, nd = score(found.near, origin, kinds, near_kinds)
        rows.append(("ours: pixels confirm (default)", "-", er, ep, ed, nr, np_, nd, find_s))
        for near in (0.94, 0.97):
            start = time.perf_counter()
            other = find_duplicates(images, embeddings=features, near=near)
            seconds = time.perf_counter() - start
            er, ep, ed = score(other.exact, origin, kinds, EXACT)
            nr, np_, nd = score(other.near, origin, kinds, near_kinds)
            rows.append((f"ours: cosine alone, near={near}", f"{near:.2f}", er, ep, ed, nr, np_, nd, seconds))
        peer_note = "fastdup not run (--no-peer)."
        if peer:
            pairs, peer_s, peer_note = fastdup_pairs(images, Path(tmp))
            if pairs is not None:
                copies = {r for g in found.exact for r in g[1:]}  # scored on the same rows as ours
                for threshold in (0.96, 0.99):
                    groups = components(pairs, len(images), threshold, copies)
                    nr, np_, nd = score(groups, origin, kinds, near_kinds)
                    rows.append((f"{peer_note}, components >= {threshold}", f"{threshold:.2f}", None, None, None,
                                 nr, np_, nd, peer_s))
                peer_note = (f"{peer_note}: its own model and search, {peer_s:.0f} s for all (ours: embedding "
                             f"{embed_s:.0f} s + the rest); its exact recall is not scored.")
    n = len(images)
    lines = ["# Duplicates (benchmarks/duplicates.py)\n", f"{machine()}\n",
             (f"{n:,} images: {n_clip:,} OpenClipart PNGs + {n_originals - n_clip:,} Fashion-MNIST images + "
              f"{n - n_originals:,} copies (bytes/re-save exact; JPEG q70, 50-90% resize, <=10% crop, "
              f"brightness +-10% near); {n_same} originals have the very pixels of another original (files "
              f"OpenClipart holds twice) and count as its copies. Ours: the offline model's CNN features, embedded "
              f"in {embed_s:.0f} s. "
              f"{peer_note}\n"),
             ("| method | cosine | exact recall | exact precision | exact dropped | near recall | near precision "
              "| near dropped | seconds (ours: pixels + search) |"), "|---|---|---|---|---|---|---|---|---|"]
    for name, t, er, ep, ed, nr, np_, nd, s in rows:
        exact = "| - | - | - " if er is None else f"| {er:.3f} | {ep:.3f} | {ed} "
        lines.append(f"| {name} | {t} {exact}| {nr:.3f} | {np_:.3f} | {nd} | {s:.1f} |")
    by_kind = []
    groups = found.exact + found.near  # an exact group's kept image may also lead a near group
    for kind in KINDS:
        rs = [r for r, k in enumerate(kinds) if k == kind]
        hit = sum(any(r in g and int(origin[r]) in g for g in groups) for r in rs)
        by_kind.append(f"{kind} {hit}/{len(rs)}")
    lines.append(f"\nDefault run, copies found by kind: {', '.join(by_kind)}.")
    for name, part in (("OpenClipart", lambda r: origin[r] < n_clip), ("Fashion-MNIST", lambda r: origin[r] >= n_clip)):
        groups = [g for g in found.near if part(g[0])]
        nr, np_, nd = score(groups, origin, [k if k and part(r) else None for r, k in enumerate(kinds)], near_kinds)
        lines.append(f"{name}: near recall {nr:.3f}, near precision {np_:.3f} ({nd} dropped).")
    text = "\n".join(lines) + "\n"
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "duplicates.md").write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    main(int(args[0]) if args else 3000, peer="--no-peer" not in sys.argv)
