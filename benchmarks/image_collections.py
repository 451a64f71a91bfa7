"""Labeled image collections the clustering was never tuned on (issue 25), built from registries.

Each collection installs what it needs when it is missing (nothing is committed; npm tarballs
and what they unpack go to benchmarks/cache/, which git ignores) and comes back as a
`concept.datasets.LabeledImages` (paths, int labels, label names, captions):

  stamps  Debian `tuxpaint-stamps-default` (/usr/share/tuxpaint/stamps/): Tux Paint's PNG
          stamps labeled by top-level category folder; captions from each stamp's .txt (its
          English line, e.g. "A koala."). SVG-only stamps and the pre-mirrored `*_mirror.png` /
          `*_flip.png` twins are left out; categories with fewer than 20 images are dropped.
  emoji   npm `emoji-datasource-twitter` (pinned; the smallest pack of apple/google/twitter):
          the 64 px Twemoji PNG of every base emoji, labeled by emoji.json's `category`; the
          'Component' category, skin-tone variants (only the base image is used) and emoji
          obsoleted by another (near-duplicate images) are left out; captions: the emoji's name.
  icons   Debian `oxygen-icon-theme` (/usr/share/icons/oxygen/base/48x48/): KDE's Oxygen icons
          labeled by context folder (actions, apps, devices, mimetypes, places, status, ...);
          symlinks skipped (they alias another icon), contexts with fewer than 20 icons dropped.

`features(name)` embeds a collection once with the offline model, as benchmarks/quality.py's
`load_fashion` does, cached as benchmarks/cache/<name>_lite0.npz.

    python benchmarks/image_collections.py                 # all three: fetch, embed, print summaries
    python benchmarks/image_collections.py stamps emoji    # some of them

(Not `collections.py`: in benchmarks/, which is first on the path of every script run there, that
name would shadow the standard library's `collections` in any interpreter that has not imported it
at start-up, such as the EVoC virtualenv's python that runs benchmarks/_cluster_worker.py.)
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path, PurePosixPath

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CACHE, Timer, cached

from concept.datasets import LabeledImages

MIN_CLASS = 20

STAMPS_PACKAGE = "tuxpaint-stamps-default"
STAMPS_ROOT = Path("/usr/share/tuxpaint/stamps")
EMOJI_PACKAGE, EMOJI_VERSION, EMOJI_SET = "emoji-datasource-twitter", "16.0.0", "twitter"
ICONS_PACKAGE = "oxygen-icon-theme"
ICONS_ROOT = Path("/usr/share/icons/oxygen/base")
ICONS_SIZE = "48x48"

TITLES = {"stamps": "Tux Paint stamps", "emoji": "Twemoji (emoji-datasource)", "icons": "Oxygen icons 48x48"}


# ---------------------------------------------------------------------------- installing
def apt_install(package: str, probe: Path) -> None:
    """`apt-get install` `package` unless `probe` exists; `apt-get update` only if apt cannot find it."""
    if probe.exists():
        return
    cmd = ["apt-get", "install", "-y", "-qq", "--no-install-recommends",
           "-o", "DPkg::Lock::Timeout=600", package]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    print(f"installing Debian package {package} ...", flush=True)
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env)
    if proc.returncode != 0 and ("Unable to locate package" in proc.stderr
                                 or "has no installation candidate" in proc.stderr):
        subprocess.run(["apt-get", "update", "-qq", "-o", "DPkg::Lock::Timeout=600"],
                       check=False, capture_output=True, text=True, env=env)
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env)
    if proc.returncode != 0 or not probe.exists():
        raise RuntimeError(f"apt-get install {package} failed (exit {proc.returncode}): "
                           f"{(proc.stderr or proc.stdout).strip()[-500:]}")


def safe_extract(tarball: Path, dest: Path, keep=lambda name: True) -> None:
    """Extract the regular files and folders of `tarball` whose names pass `keep` into `dest`.

    Refuses the whole archive if any member has an absolute path or a '..' part; links,
    devices and other special members are skipped.
    """
    with tarfile.open(tarball, "r:*") as tar:
        members = tar.getmembers()
        for member in members:
            parts = PurePosixPath(member.name).parts
            if member.name.startswith(("/", "\\")) or os.path.isabs(member.name) or ".." in parts:
                raise RuntimeError(f"{tarball.name}: refusing unsafe member {member.name!r}")
        chosen = [m for m in members if (m.isfile() or m.isdir()) and keep(m.name)]
        kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        tar.extractall(dest, members=chosen, **kwargs)


def npm_package(package: str, version: str, keep=lambda name: True) -> Path:
    """`npm pack package@version` into benchmarks/cache/ and unpack it (once); its `package/` folder."""
    dest = CACHE / f"{package}-{version}"
    if (dest / "package" / "package.json").exists():
        return dest / "package"
    CACHE.mkdir(parents=True, exist_ok=True)
    print(f"fetching npm package {package}@{version} ...", flush=True)
    proc = subprocess.run(["npm", "pack", f"{package}@{version}", "--silent"], cwd=CACHE,
                          check=False, capture_output=True, text=True)
    tarball = CACHE / f"{package}-{version}.tgz"
    if proc.returncode != 0 or not tarball.exists():
        raise RuntimeError(f"npm pack {package}@{version} failed (exit {proc.returncode}): "
                           f"{(proc.stderr or proc.stdout).strip()[-500:]}")
    tmp = Path(tempfile.mkdtemp(prefix=f".{package}-", dir=CACHE))
    try:
        safe_extract(tarball, tmp, keep)
        shutil.rmtree(dest, ignore_errors=True)
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    tarball.unlink()
    return dest / "package"


# ---------------------------------------------------------------------------- collections
def _labeled(items: list[tuple[str, Path, str | None]]) -> LabeledImages:
    """(class, path, caption) triples -> LabeledImages, classes under MIN_CLASS dropped, sorted."""
    counts: dict[str, int] = {}
    for cls, _, _ in items:
        counts[cls] = counts.get(cls, 0) + 1
    names = sorted(c for c, n in counts.items() if n >= MIN_CLASS)
    index = {c: i for i, c in enumerate(names)}
    kept = sorted((i for i in items if i[0] in index), key=lambda i: (index[i[0]], str(i[1])))
    return LabeledImages([p for _, p, _ in kept], np.array([index[c] for c, _, _ in kept], dtype=int),
                         names, captions=[cap for _, _, cap in kept])


_LOCALE_LINE = re.compile(r"^[a-z]{2,3}(_[A-Za-z]{2,4})?(@\w+)?\.utf-?8=", re.IGNORECASE)


def _stamp_caption(txt: Path) -> str | None:
    """The English description of a stamp: the first line of its .txt that names no locale."""
    try:
        lines = txt.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    for line in lines:
        line = line.strip()
        if line and not _LOCALE_LINE.match(line):
            return line.strip("\"“”'") or None
    return None


def stamps() -> LabeledImages:
    """Tux Paint's PNG stamps, labeled by top-level category (see the module's docstring)."""
    apt_install(STAMPS_PACKAGE, STAMPS_ROOT)
    items = []
    for path in sorted(STAMPS_ROOT.rglob("*.png")):
        if path.is_symlink() or not path.is_file() or path.stem.endswith(("_mirror", "_flip")):
            continue
        category = path.relative_to(STAMPS_ROOT).parts[0]
        items.append((category, path, _stamp_caption(path.with_suffix(".txt"))))
    return _labeled(items)


def emoji() -> LabeledImages:
    """Twemoji's 64 px base emoji, labeled by category (see the module's docstring)."""
    size_dir = f"package/img/{EMOJI_SET}/64/"
    root = npm_package(EMOJI_PACKAGE, EMOJI_VERSION,
                       keep=lambda name: name.startswith(size_dir) or "/" not in name.removeprefix("package/"))
    items = []
    for e in json.loads((root / "emoji.json").read_text(encoding="utf-8")):
        if e["category"] == "Component" or e.get("obsoleted_by") or not e.get(f"has_img_{EMOJI_SET}"):
            continue
        path = root / "img" / EMOJI_SET / "64" / e["image"]
        if path.is_file():
            items.append((e["category"], path, (e.get("name") or e["short_name"]).lower()))
    return _labeled(items)


def icons() -> LabeledImages:
    """Oxygen's 48x48 icons, labeled by context folder (see the module's docstring)."""
    base = ICONS_ROOT / ICONS_SIZE
    apt_install(ICONS_PACKAGE, base)
    items = []
    for path in sorted(base.rglob("*.png")):
        if path.is_symlink() or not path.is_file():
            continue
        caption = path.stem.replace("-", " ").replace("_", " ")
        items.append((path.relative_to(base).parts[0], path, caption))
    return _labeled(items)


COLLECTIONS = {"stamps": stamps, "emoji": emoji, "icons": icons}


def load(name: str) -> LabeledImages:
    if name not in COLLECTIONS:
        raise ValueError(f"unknown collection {name!r}; choose from {', '.join(COLLECTIONS)}")
    return COLLECTIONS[name]()


def summary(name: str, data: LabeledImages) -> str:
    """One line: n, number of classes, class sizes."""
    sizes = np.bincount(data.labels, minlength=len(data.label_names))
    classes = ", ".join(f"{c} {s}" for c, s in zip(data.label_names, sizes))
    with_caption = sum(c is not None for c in data.captions)
    return (f"{name}: {len(data):,} images, {len(data.label_names)} classes ({classes}); "
            f"{with_caption:,} with captions")


def _digest(paths: list) -> str:
    return hashlib.sha1("\n".join(map(str, paths)).encode()).hexdigest()


# ---------------------------------------------------------------------------- embedding
def features(name: str) -> dict:
    """Labels, shared vectors and CNN features of collection `name`, embedded once (cached).

    The same dict as benchmarks/quality.py's `load_fashion`: name, y, k, shared, features.
    A cache made from another list of images (a new package version) is made again.
    """
    from concept.embedding import OfflineEmbedder, l2_normalize
    from concept.images import LoadReport

    data = load(name)
    digest = _digest(data.images)

    def compute():
        report = LoadReport()
        with Timer() as t:
            shared, feats = OfflineEmbedder("lite0", verbose=True).embed_images_and_features(
                data.images, 64, report=report)
        print(f"embedded {len(shared)} {name} images in {t.seconds:.0f} s; {report.summary()}", flush=True)
        return {"shared": shared, "features": feats, "kept": np.asarray(report.loaded, dtype=int),
                "seconds": np.array(t.seconds), "digest": np.array(digest)}

    arrays = cached(f"{name}_lite0", compute)
    if str(arrays.get("digest")) != digest:
        print(f"{name}: the cached embedding is of other images; embedding again", flush=True)
        (CACHE / f"{name}_lite0.npz").unlink()
        arrays = cached(f"{name}_lite0", compute)
    return {"name": TITLES[name], "y": data.labels[arrays["kept"]], "k": len(data.label_names),
            "shared": l2_normalize(arrays["shared"]), "features": l2_normalize(arrays["features"])}


def main(argv: list[str]) -> None:
    names = argv or list(COLLECTIONS)
    for name in names:
        if name not in COLLECTIONS:
            raise SystemExit(f"unknown collection {name!r}; choose from {', '.join(COLLECTIONS)}")
    lines = []
    for name in names:
        data = load(name)
        lines.append(summary(name, data))
        print(lines[-1], flush=True)
        emb = features(name)
        print(f"{name}: {len(emb['y']):,} embedded (features {emb['features'].shape[1]}-d)", flush=True)
    print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1:])
