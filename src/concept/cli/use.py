"""The commands that use a saved model without changing it: `concept info`, `search`,
`assign`, `visualize`, `timeline` and `export`."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from concept.cli._output import (
    CLIError,
    _dates_file,
    _info_table,
    _layer,
    _load,
    _save_figure,
    _table_separator,
    _write_figure,
    _write_table,
    logger,
)


def cmd_info(args: argparse.Namespace) -> None:
    """Print the layers' sizes and the concept table of one layer; with --images the table of every image
    (printed tab-separated, or written to --out)."""
    if args.images:
        return _image_info(args)
    if args.out or args.exif:
        raise CLIError(f"{'--out' if args.out else '--exif'} applies to the table of images: add --images")
    model = _load(args)
    layer = _layer(model, args.layer)
    sizes = " / ".join(f"{k}" for k in model.layer_sizes_)
    print(f"Layers (finest first): {sizes} concepts; showing layer {layer}"
          f"{' (the default)' if layer == model.layer_ else ''}")
    print(_info_table(model, layer))


def _is_file(path: str) -> bool:
    try:
        return Path(path).is_file()
    except (OSError, ValueError):  # a name too long to be a file, an embedded NUL
        return False


def cmd_search(args: argparse.Namespace) -> None:
    """Print the concepts closest to a text or an image, with their similarity (for a text on a sigmoid-trained
    model, SigLIP: its match probability) and words."""
    from concept.images import IMAGE_EXTENSIONS

    query = args.query
    if not query.strip():
        raise CLIError("the query is empty: give a text to search for, or the path of an image file")
    kind = args.kind or "auto"
    if kind == "image" and not _is_file(query):
        raise CLIError(f"query image {query} does not exist")
    if kind == "auto" and Path(query).suffix.lower() in IMAGE_EXTENSIONS and not _is_file(query):
        raise CLIError(f"query image {query} does not exist (to search it as text, pass --text)")
    model = _load(args)
    if model.n_concepts_ == 0:
        logger.warning("The model has no concepts; nothing to search.")
    topics = model.topics
    for concept, similarity in model.find_concepts(query, top_n=args.top_n, kind=kind):
        print(f"{concept}\t{similarity:.4f}\t{', '.join(topics.get(concept, [])[:5])}")


def cmd_assign(args: argparse.Namespace) -> None:
    """Print each image's concept (and its membership with --probabilities)."""
    from concept.images import list_image_files

    paths: list[str] = []
    for item in args.images:
        if Path(item).is_dir():
            paths += [os.fspath(p) for p in list_image_files(item)]
        elif os.path.lexists(item):  # dangling links and FIFOs too: reported per image below
            paths.append(item)
        else:
            raise CLIError(f"image {item} does not exist")
    if not paths:
        raise CLIError(f"no image files in {', '.join(args.images)}")
    model = _load(args)
    labels, probs = model.transform(paths, return_probabilities=True, layer=_layer(model, args.layer))
    for i, (path, label) in enumerate(zip(paths, labels)):
        line = f"{path}\t{int(label)}"
        if args.probabilities:
            line += f"\t{float(probs[i].max()) if probs.shape[1] else 0.0:.4f}"
        print(line)


def cmd_visualize(args: argparse.Namespace) -> None:
    """Write the figure of the largest concepts."""
    model = _load(args)
    if model.n_concepts_ == 0:
        raise CLIError(f"the model in {args.model_dir} has no concepts to show")
    _save_figure(model, args.out, top_n=args.top_n)
    print(f"Figure of {min(args.top_n, model.n_concepts_)} concepts saved to {args.out}")


def cmd_export(args: argparse.Namespace) -> None:
    """Write a folder per concept and the CSV of every image's concept (concept.export)."""
    from concept.export import CSV_NAME, export_concepts

    model = _load(args)
    counts = export_concepts(model, args.out, copy=args.copy, layer=_layer(model, args.layer),
                             include_outliers=not args.no_outliers, dedupe=args.dedupe)
    done = counts.get("copied", counts.get("linked", 0))
    print(f"{done:,} images {'copied' if args.copy else 'linked'} into {counts['concepts']} concept folders "
          f"in {args.out}; every image's concept and confidence in {Path(args.out) / CSV_NAME}"
          + (f"; {counts['duplicates']:,} duplicates left out" if args.dedupe else "")
          + (f"; {counts['missing']:,} files missing" if counts["missing"] else ""))


def _image_info(args: argparse.Namespace) -> None:
    """`concept info --images`: `get_image_info()` (with each file's EXIF date under --exif), written to --out
    (.csv or .tsv) or printed tab-separated."""
    import sys

    if args.layer is not None:
        raise CLIError("--layer applies to the concept table; the table of images has every layer's concept")
    if args.out:
        _table_separator(args.out)  # a bad name is refused before the model is loaded
    model = _load(args)
    df = model.get_image_info("exif" if args.exif else None)
    if not args.out:
        df.to_csv(sys.stdout, sep="\t", index=False)
        return
    _write_table(df, args.out)
    print(f"Table of {len(df):,} images written to {args.out}")


def _bins(text: str) -> int | str:
    """--bins: a number of equal-width bins, or a pandas frequency ('MS', 'W', 'YS')."""
    return int(text) if text.strip().isdigit() else text.strip()


def cmd_timeline(args: argparse.Namespace) -> None:
    """Write the figure of the concepts over time and, beside it, its table as CSV."""
    out = Path(args.out)
    if out.suffix.lower() not in (".png", ".svg", ".pdf", ".jpg", ".jpeg"):
        raise CLIError(f"--out {args.out}: give an image file (.png, .svg, .pdf or .jpg); "
                       "the table goes beside it as .csv")
    model = _load(args)
    timestamps = _dates_file(model, args.dates) if args.dates else "exif"
    table = model.concepts_over_time(timestamps, bins=_bins(args.bins), mtime=args.mtime)
    counts = table.attrs["dates"]
    undated = counts["missing"] + counts["unreadable"]
    dated = sum(counts.values()) - undated
    if not dated:
        raise CLIError(f"none of the {undated:,} images has a date ({counts['missing']:,} none, "
                       f"{counts['unreadable']:,} unreadable): give --dates FILE, or --mtime for the files' times")
    csv = out.with_suffix(".csv")
    _write_table(table, csv)
    _write_figure(model.visualize_concepts_over_time(table, top_n=args.top_n, normalize=args.normalize), out)
    print(f"Figure of the concepts over time saved to {out}, its table to {csv}")
    sources = ", ".join(f"{n:,} {s}" for s, n in counts.items() if s not in ("missing", "unreadable"))
    print(f"{dated:,} images dated ({sources}); {undated:,} without a date ({counts['missing']:,} none, "
          f"{counts['unreadable']:,} unreadable), counted in the table under an empty Timestamp")
