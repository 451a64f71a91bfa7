"""Embed Fashion-MNIST with the offline model once, in resumable chunks, for the benchmarks.

Writes benchmarks/cache/fashion_{split}_lite0.npz with `shared` (384-d ConSE), `features`
(1280-d pooled CNN) and `kept`. Each 5,000-image chunk is saved as it finishes, so a killed run
resumes where it stopped. The 60,000 training images take about 15 minutes on 2 cores
(OpenVINO runtime; 45 minutes in PyTorch eager).

    python benchmarks/embed_fashion.py train
"""

from __future__ import annotations

import os
import sys

import numpy as np
from _common import CACHE

from concept.datasets import fashion_mnist
from concept.embedding import OfflineEmbedder

CHUNK = 5000


def main(split: str) -> None:
    data = fashion_mnist(split)
    model = OfflineEmbedder(verbose=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    parts = []
    for start in range(0, len(data), CHUNK):
        part = CACHE / f"fashion_{split}_lite0.part{start // CHUNK:03d}.npz"
        if not part.exists():
            shared, features = model.embed_images_and_features(data.images[start:start + CHUNK], 64)
            tmp = part.with_suffix(".tmp.npz")
            np.savez(tmp, shared=shared, features=features)
            os.replace(tmp, part)
        parts.append(part)
    loaded = [np.load(p) for p in parts]
    out = CACHE / f"fashion_{split}_lite0.npz"
    tmp = out.with_suffix(".tmp.npz")
    np.savez(tmp, shared=np.concatenate([f["shared"] for f in loaded]),
             features=np.concatenate([f["features"] for f in loaded]),
             kept=np.arange(len(data)))
    os.replace(tmp, out)
    for p in parts:
        p.unlink()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "train")
