"""Precision and recall of `concept.find_duplicates` on a collection with known copies (issue 27).

The collection: OpenClipart PNGs (files up to 400 kB, a seeded sample) and Fashion-MNIST test images (28 x 28
arrays), half each, plus copies of 10% of them: byte copies (files) or the same array again, lossless PNG
re-saves, JPEGs at quality 70, 50-90% resizes, crops of up to 10%, brightness +-10%, in turn. Copies are
written to a temporary folder (OpenClipart) or kept in memory (Fashion-MNIST). Embedded by the offline model
(its CNN features, as `find_duplicates` does for images).

Scores, against the known copies only (OpenClipart's own variants of one drawing and Fashion-MNIST's own
look-alikes count as errors, so precision is a lower bound; the exact groups' "errors" were all files that
OpenClipart holds twice with the same pixels, e.g. dog_on_leash_gerald_g._01.png and _02.png):
- exact recall: byte copies and re-saves in an exact group with their original; exact precision: dropped
  rows of exact groups that are copies of their group's kept image.
- near recall: altered copies in a group with their original; near precision: the same for near groups.

    python benchmarks/duplicates.py [N_ORIGINALS]      # default 3000; writes benchmarks/out/duplicates.md
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import OUT, machine
from PIL import Image, ImageEnhance

from concept.datasets import fashion_mnist, openclipart
from concept.duplicates import find_duplicates
from concept.embedding import OfflineEmbedder
from concept.images import load_image

KINDS = ("bytes", "resave", "jpeg", "resize", "crop", "brightness")
EXACT = {"bytes", "resave"}


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


def score(groups: list[list[int]], origin: np.ndarray, kinds: list, wanted: set[str]) -> tuple[float, float, int]:
    """Recall of the copies of the `wanted` kinds, precision of the dropped rows, rows dropped."""
    member = {r: gi for gi, g in enumerate(groups) for r in g}
    copies = [r for r, k in enumerate(kinds) if k in wanted]
    found = sum(member.get(r, -1) == member.get(int(origin[r]), -2) for r in copies)
    dropped = [(g[0], r) for g in groups for r in g[1:]]
    right = sum(origin[a] == origin[b] for a, b in dropped)
    return found / max(1, len(copies)), right / max(1, len(dropped)), len(dropped)


def main(n_originals: int = 3000) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        images, origin, kinds, n_clip = build(n_originals, Path(tmp))
        start = time.perf_counter()
        embedder = OfflineEmbedder(verbose=False)
        _, features = embedder.embed_images_and_features(images, 32)
        embed_s = time.perf_counter() - start
        start = time.perf_counter()
        found = find_duplicates(images, embeddings=features)
        find_s = time.perf_counter() - start
        rows = []
        er, ep, ed = score(found.exact, origin, kinds, EXACT)
        nr, np_, nd = score(found.near, origin, kinds, set(KINDS) - EXACT)
        rows.append(("calibrated", found.near_threshold, er, ep, ed, nr, np_, nd, find_s))
        for near in (0.95, 0.97):
            start = time.perf_counter()
            other = find_duplicates(images, embeddings=features, near=near)
            seconds = time.perf_counter() - start
            er, ep, ed = score(other.exact, origin, kinds, EXACT)
            nr, np_, nd = score(other.near, origin, kinds, set(KINDS) - EXACT)
            rows.append((f"near={near}", near, er, ep, ed, nr, np_, nd, seconds))
    n = len(images)
    lines = ["# Duplicates (benchmarks/duplicates.py)\n", f"{machine()}\n",
             (f"{n:,} images: {n_clip:,} OpenClipart PNGs + {n_originals - n_clip:,} Fashion-MNIST images + "
              f"{n - n_originals:,} copies (bytes/re-save exact; JPEG q70, 50-90% resize, <=10% crop, "
              f"brightness +-10% near). Offline model's CNN features, embedded in {embed_s:.0f} s.\n"),
             ("| threshold | cosine | exact recall | exact precision | exact dropped | near recall | near precision "
              "| near dropped | seconds (pixels + search) |"), "|---|---|---|---|---|---|---|---|---|"]
    for name, t, er, ep, ed, nr, np_, nd, s in rows:
        lines.append(f"| {name} | {t:.3f} | {er:.3f} | {ep:.3f} | {ed} | {nr:.3f} | {np_:.3f} | {nd} | {s:.1f} |")
    by_kind = []
    groups = found.exact + found.near  # an exact group's kept image may also lead a near group
    for kind in KINDS:
        rs = [r for r, k in enumerate(kinds) if k == kind]
        hit = sum(any(r in g and int(origin[r]) in g for g in groups) for r in rs)
        by_kind.append(f"{kind} {hit}/{len(rs)}")
    lines.append(f"\nCalibrated run, copies found by kind: {', '.join(by_kind)}.")
    for name, part in (("OpenClipart", lambda r: origin[r] < n_clip), ("Fashion-MNIST", lambda r: origin[r] >= n_clip)):
        groups = [g for g in found.near if part(g[0])]
        nr, np_, nd = score(groups, origin, [k if k and part(r) else None for r, k in enumerate(kinds)],
                            set(KINDS) - EXACT)
        lines.append(f"{name}: near recall {nr:.3f}, near precision {np_:.3f} ({nd} dropped).")
    text = "\n".join(lines) + "\n"
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "duplicates.md").write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3000)
