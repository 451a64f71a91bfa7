"""The main job on a real collection: concepts in OpenClipart's subject folders.

Fits a ConceptModel on the 2,263 OpenClipart images of the 17 subject folders (Debian
`openclipart-png`), with the titles and keywords of their SVG twins (`openclipart-svg`) as
the candidate words and, for a random half of the images, each one's own SVG title as its
caption (the learned image-text map names the other half), saves the model, writes the
concept figure, the words' bar charts, the concept-similarity heatmap and a table of every
image (images.csv), and prints the frequency table with words and a few searches.

    python examples/openclipart_demo.py --out demo_output
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import normalized_mutual_info_score

from concept import ConceptModel
from concept.datasets import openclipart


def fit_summary(model: ConceptModel) -> str:
    """Concepts, outliers and unreadable files, each counted once.

    Outliers are fitted images in no concept (the table's -1 row); files that could not be read
    were never fitted (`fit_transform` gives them -1 too, which would count them as outliers).
    """
    n_outliers = int((model.labels_ < 0).sum())
    return (f"{model.n_concepts_} concepts, {n_outliers} outliers, "
            f"{len(model.failures_)} unreadable files (not fitted)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("demo_output"))
    parser.add_argument("--embedding-model", default="auto", help="'auto', 'offline', or a CLIP name/folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--captioned", type=float, default=0.5,
                        help="share of the images given their title as caption (0: none, as before)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")

    data = openclipart()
    print(f"OpenClipart: {len(data)} images in {len(data.label_names)} folders, {len(data.docs)} SVG titles/keywords")
    start = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    captioned = rng.random(len(data)) < args.captioned
    captions = [title if keep else None for title, keep in zip(data.captions, captioned)]
    print(f"Captions: the titles of {sum(c is not None for c in captions)} images; the others have none")
    model = ConceptModel(embedding_model=args.embedding_model, random_state=args.seed)
    labels = model.fit_transform(data.images, docs=data.docs, captions=captions if args.captioned else None)
    fit_seconds = time.perf_counter() - start

    args.out.mkdir(parents=True, exist_ok=True)
    model.save(args.out / "model")
    figure = model.visualize_concepts(top_n=12, columns=4)
    figure.savefig(args.out / "concepts.png", dpi=80, bbox_inches="tight")
    model.visualize_barchart(top_n=12, n_words=5).savefig(args.out / "barchart.png", dpi=80, bbox_inches="tight")
    model.visualize_heatmap().savefig(args.out / "heatmap.png", dpi=80, bbox_inches="tight")
    model.get_image_info().to_csv(args.out / "images.csv", index=False)

    print(f"\nFitted in {fit_seconds:.0f} s: {fit_summary(model)}")
    for failure in model.failures_:
        print(f"  skipped {failure.source}: {failure.reason[:100]}")
    print(f"NMI against the folders: {normalized_mutual_info_score(data.labels, labels):.3f}")
    if model.alignment_ is not None:
        v = model.alignment_.validation
        print(f"Learned image-text map: held-out titles rank {v['aligned_median_rank']:.0f} (median) through it, "
              f"{v['plain_median_rank']:.0f} in the plain shared space")
    print()
    info = model.get_concept_info()
    info["Words"] = info.Words.str.slice(0, 90)
    print(info.to_string(index=False))
    for query in ("car", "fruit", "music", "animal"):
        hits = ", ".join(f"{c} ({s:.2f}: {' '.join(model.topics[c][:3])})" for c, s in model.find_concepts(query, 3))
        print(f"\nsearch {query!r}: {hits}")
    print(f"\nWrote {args.out / 'model'}, the figures {args.out / 'concepts.png'}, barchart.png and heatmap.png, "
          f"and one row per image in {args.out / 'images.csv'}")


if __name__ == "__main__":
    main()
