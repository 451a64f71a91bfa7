"""`concept duplicates`: the exact copies, near duplicates and uniqueness of a folder or a model's images
(`concept.duplicates`), as a table and a one-line summary."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from concept.cli._output import (
    CLIError,
    _no_images,
    _table_separator,
    _write_table,
    logger,
)


def _is_model_folder(path: Path) -> bool:
    return path.is_dir() and (path / "concept.json").is_file()


def cmd_duplicates(args: argparse.Namespace) -> None:
    """Find the duplicates of IMAGES_DIR (embedded by the offline model) or of MODEL_DIR (its vectors and files);
    write the table of groups to --out (or print it) and print a summary."""
    import sys

    from concept.duplicates import find_duplicates

    if args.out:
        _table_separator(args.out)  # a bad name is refused before minutes of work
    if args.near is not None and not 0.0 < args.near <= 1.0:
        raise CLIError(f"--near {args.near}: give a cosine in (0, 1], e.g. 0.95")
    source = Path(args.path)
    start = time.perf_counter()
    if args.ray is not None:  # a folder of Parquet shards: pixels read by Ray tasks, vectors grouped here
        files = sorted(source.glob("shard-*.parquet")) if source.is_dir() else []
        if not files:
            raise CLIError(f"{args.path} holds no Parquet shards (shard-*.parquet): write them with "
                           f"`concept embed IMAGES_DIR --store {args.path} --ray`")
        from concept.distributed import connect, find_duplicates_on_ray

        connect(args.ray, log_to_driver=not args.quiet)
        found = find_duplicates_on_ray(files, near=args.near)
    elif _is_model_folder(source):
        from concept.model import ConceptModel

        model = ConceptModel.load(source)
        if model.image_sources_ is None:
            logger.warning("%s does not know its images' files: only near duplicates (no exact copies, no paths).",
                           source)
        found = find_duplicates(model=model, near=args.near, verbose=not args.quiet)
    elif source.is_dir():
        from concept.images import list_image_files

        paths = list_image_files(source)
        if not paths:
            raise _no_images(args.path)
        found = find_duplicates(paths, near=args.near, verbose=not args.quiet)
        if found.failed:
            shown = ", ".join(str(paths[i]) for i in found.failed[:5])
            logger.warning("%d images could not be loaded and are in no group: %s%s", len(found.failed), shown,
                           " ..." if len(found.failed) > 5 else "")
    else:
        raise CLIError(f"{args.path} is neither a folder of images nor a model folder written by `concept fit`")
    table = found.table()
    if found.uniqueness is not None and len(table):
        table["uniqueness"] = found.uniqueness[table["row"].to_numpy()].round(4)
    if args.out:
        _write_table(table, args.out)
    else:
        table.to_csv(sys.stdout, sep="\t", index=False)
    print(f"{found.summary()} ({time.perf_counter() - start:.1f} s)" + (f"; table in {args.out}" if args.out else ""),
          file=sys.stdout if args.out else sys.stderr)


def register(add) -> None:
    """Add `concept duplicates` through the parser's `add(name, help, example, func)`."""
    p = add("duplicates", "Find exact copies and near duplicates in a folder of images or a model's images: a table "
            "of groups (the kept image of each first, each image's uniqueness) and a summary.",
            "concept duplicates photos/ --out duplicates.csv --near 0.95", cmd_duplicates)
    p.add_argument("path", metavar="IMAGES_DIR|MODEL_DIR",
                   help="a folder of images (embedded by the bundled offline model), or a model folder written by "
                        "`concept fit` (its vectors and image files are used)")
    p.add_argument("--out", metavar="FILE", help="write the table (.csv or .tsv) to FILE instead of printing it")
    p.add_argument("--near", type=float, metavar="COSINE",
                   help="decide near duplicates by this cosine alone (default: their pixels decide, "
                        "concept.pixel_match; a calibrated cosine where pixels cannot be read)")
    p.add_argument("--ray", nargs="?", const="auto", metavar="ADDRESS",
                   help="the path is a folder of Parquet shards (`concept embed DIR --store SHARDS --ray`): "
                        "every image is decoded again in Ray tasks, the vectors are grouped here. ADDRESS as "
                        "for `concept fit --ray` (default: auto)")
