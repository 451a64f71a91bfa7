"""The README's figures of concepts over time and per group (docs/images/openclipart_over_time.png,
docs/images/openclipart_per_group.png) from the demo collection.

Fits the demo's model (the 2,262 readable OpenClipart images of the 17 subject folders, the
offline model's cached vectors from benchmarks/cache/openclipart_lite0.npz, the SVG titles and
keywords as words, a seeded half of the titles as captions, seed 0), then:
- over time: OpenClipart's PNGs carry no EXIF, but each SVG twin has a `<dc:date>`; those (as
  written, read by `given_dates`) are the `timestamps`, binned by month;
- per group: the category folder of each image is its group.

    python scripts/openclipart_time_groups.py [--out docs/images]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from concept import ConceptModel
from concept.datasets import openclipart
from concept.embedding.offline import OfflineEmbedder

CACHE = Path(__file__).resolve().parents[1] / "benchmarks" / "cache" / "openclipart_lite0.npz"


def l2(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True).clip(1e-12)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/images"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    data = openclipart()
    arrays = np.load(CACHE)
    kept = arrays["kept"]
    captioned = np.random.default_rng(args.seed).random(len(data)) < 0.5  # as the demo draws them
    captions = [title if keep else None for title, keep in zip(data.captions, captioned)]
    embedder = OfflineEmbedder("lite0", verbose=False)
    model = ConceptModel(embedding_model=embedder, random_state=args.seed, verbose=False)
    model.fit([data.images[i] for i in kept], docs=data.docs, captions=[captions[i] for i in kept],
              image_embeddings=l2(embedder.conse(arrays["probs"])), image_features=l2(arrays["features"]))
    args.out.mkdir(parents=True, exist_ok=True)

    dates = [data.dates[i] for i in kept]  # one per fitted image
    over_time = model.concepts_over_time(timestamps=dates, bins="MS")
    fig = model.visualize_concepts_over_time(over_time, top_n=6)
    fig.savefig(args.out / "openclipart_over_time.png", dpi=80, bbox_inches="tight")

    folders = [data.label_names[data.labels[i]] for i in kept]
    per_group = model.concepts_per_group(folders)
    fig = model.visualize_concepts_per_group(per_group, top_n=14)
    fig.savefig(args.out / "openclipart_per_group.png", dpi=80, bbox_inches="tight")

    counts = over_time.attrs["dates"]
    print(f"{model.n_concepts_} concepts; dates: {counts}")
    monthly = over_time[over_time.Timestamp.notna()].groupby("Timestamp").Frequency.sum()
    print(monthly[monthly > 0].to_string())
    top = per_group[per_group.Concept >= 0].sort_values("Score", ascending=False).head(8)
    print(top[["Group", "Concept", "Frequency", "Share in group", "Expected", "Score", "Name"]].to_string(index=False))
    print(f"figures in {args.out}")


if __name__ == "__main__":
    main()
