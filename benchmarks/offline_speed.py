"""Images per second of the offline backend on this machine, end to end and network alone.

End to end: 320 OpenClipart PNGs from disk (decode, RGB conversion, resize, CNN, ConSE).
Network alone: the same batches already decoded and resized. One warm-up batch is excluded.

    python benchmarks/offline_speed.py
"""

from __future__ import annotations

import time

import numpy as np
import torch
from _common import publish

from concept.datasets import openclipart
from concept.embedding import OfflineEmbedder
from concept.images import load_image

N = 320


def main() -> None:
    paths = openclipart().images[:: max(1, 2263 // N)][:N]
    rows = []
    for variant in ("lite0", "lite1", "lite2"):
        model = OfflineEmbedder(variant, verbose=False)
        model.embed_images(paths[:32])  # warm-up: loads both networks and the class embeddings
        start = time.perf_counter()
        model.embed_images(paths, batch_size=32)
        end_to_end = N / (time.perf_counter() - start)
        pixels = np.stack([model.preprocess(load_image(p)) for p in paths])
        start = time.perf_counter()
        for i in range(0, N, 32):
            model.embed_pixels(pixels[i:i + 32])
        network = N / (time.perf_counter() - start)
        rows.append({"model": f"EfficientNet-{variant} ({model.image_size}px)",
                     "end to end img/s": f"{end_to_end:.1f}", "network alone img/s": f"{network:.1f}",
                     "torch threads": torch.get_num_threads()})
        print(rows[-1], flush=True)
    publish("offline_speed", "Offline backend speed",
            f"{N} OpenClipart PNGs, batch 32, float32 PyTorch eager on the CPU.", rows, list(rows[0]))


if __name__ == "__main__":
    main()
