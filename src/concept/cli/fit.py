"""`concept fit` and `concept embed`: a folder of images to a model, or to an embedding store;
and the files and values their options name (--docs, --captions, --seed-concepts, --seed).

With --ray (or an IMAGES_DIR that is a URI) both hand over to `concept.cli.ray`, imported
only then: it is the one command module that needs the optional extra.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from concept.cli._output import (
    CLIError,
    _failed,
    _figure_and_table,
    _no_images,
    _write_table,
    logger,
)

#: `concept fit`'s seed when none is given: the CLI is reproducible by default (the Python
#: API's random_state stays None, as in scikit-learn). A fixed seed runs UMAP on one thread.
DEFAULT_SEED = 0
#: `concept fit --find-duplicates` writes each image's duplicate group, kept flag, uniqueness and typicality here,
#: in MODEL_DIR (the duplicates themselves are saved with the model).
DUPLICATES_FILE = "duplicates.tsv"
#: The get_image_info columns that file holds (Image name only when the model has names).
DUPLICATE_COLUMNS = ("Image", "Image name", "Input", "Concept", "Duplicate group", "Kept", "Uniqueness", "Typicality")


def _seed(text: str) -> int | None:
    """--seed: an integer in [0, 2**32 - 1], or "none" for a run that is not reproducible."""
    from concept._validation import MAX_SEED

    if text.strip().lower() == "none":
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer (or 'none')") from None
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"{value} is not in [0, {MAX_SEED}]")
    return value


def _read_docs(path: str) -> list[str]:
    """--docs: the candidate words, one word or phrase per line of a UTF-8 file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise CLIError(f"--docs {path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    docs = [line.strip() for line in text.splitlines() if line.strip()]
    if not docs:
        raise CLIError(f"--docs {path} holds no words; write one word or phrase per line")
    return docs


def _read_captions(spec: str, paths: list[Path], images_dir: str) -> list[str | None] | str:
    """--captions: "filenames" or "metadata" (read by the model), or a UTF-8 file of
    "PATH<TAB>CAPTION" lines (PATH relative to IMAGES_DIR or absolute; a first line
    "path<TAB>caption" is a header), giving one caption per image, None where none is listed."""
    from concept.captions import CAPTION_SOURCES

    if spec in CAPTION_SOURCES:
        return spec
    try:
        text = Path(spec).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CLIError(f"--captions {spec} is neither a file nor one of {', '.join(CAPTION_SOURCES)}") from None
    except UnicodeDecodeError as exc:
        raise CLIError(f"--captions {spec} is not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except OSError as exc:
        raise CLIError(f"--captions {spec} cannot be read: {exc.strerror or exc}") from exc
    index = {os.path.abspath(p): i for i, p in enumerate(paths)}
    captions: list[str | None] = [None] * len(paths)
    unknown = 0
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or number == 1 and line.strip().lower() == "path\tcaption":
            continue
        if "\t" not in line:
            raise CLIError(f"--captions {spec}, line {number}: expected PATH<TAB>CAPTION, got {line[:60]!r}")
        path, caption = line.split("\t", 1)
        row = index.get(os.path.abspath(os.path.join(images_dir, path.strip())))
        if row is None:
            unknown += 1
        else:
            captions[row] = caption.strip() or None
    if not any(captions):
        raise CLIError(f"--captions {spec} gives no caption to any image in {images_dir} "
                       f"({unknown} lines name other files; paths are relative to IMAGES_DIR)")
    if unknown:
        logger.warning("--captions %s: %d lines name no image in %s; they are ignored.", spec, unknown, images_dir)
    return captions


def _read_seed_concepts(spec: str) -> list[list[str]]:
    """--seed-concepts: "beach,sea;cat,kitten" (seeds split by ";", words by ","), or a UTF-8
    file with one seed per line, its words split by ","."""
    from concept.seeding import check_seed_concepts

    path = Path(spec)
    if path.is_file():
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as exc:
            raise CLIError(f"--seed-concepts {spec} is not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    else:
        lines = spec.split(";")
    seeds = [[w.strip() for w in line.split(",") if w.strip()] for line in lines if line.strip()]
    if not seeds or not all(seeds):
        raise CLIError(f"--seed-concepts {spec[:60]!r} holds no seed words: write 'beach,sea;cat,kitten' "
                       "or a file with one comma-separated seed per line")
    return check_seed_concepts(seeds)


def _duplicates_written(model, folder: str | os.PathLike) -> str:
    """--find-duplicates: the duplicates' summary line, and every image's Duplicate group (-1: none), Kept,
    Uniqueness and Typicality (`get_image_info`'s columns) written to FOLDER/duplicates.tsv."""
    df = model.get_image_info()
    df = df[[c for c in DUPLICATE_COLUMNS if c in df.columns]].round({"Uniqueness": 4, "Typicality": 4})
    path = Path(folder) / DUPLICATES_FILE
    try:
        _write_table(df, path)
    except OSError as exc:
        logger.warning("Could not write each image's duplicate group to %s: %s", path, exc.strerror or exc)
        return model.duplicates_.summary()
    return f"{model.duplicates_.summary()} (each image's group in {path})"


def _is_uri(images_dir: str) -> bool:
    """IMAGES_DIR names a bucket or another URI (s3://, gs://, file://): read on Ray only."""
    return "://" in images_dir


def _uri_needs_ray(images_dir: str) -> CLIError:
    return CLIError(f"IMAGES_DIR is a {images_dir.split('://')[0]}:// URI: images in a bucket are "
                    "read on Ray; add --ray")


def cmd_fit(args: argparse.Namespace) -> None:
    """Fit a model on IMAGES_DIR and save it (on Ray with --ray), then print its concepts."""
    from concept.images import list_image_files
    from concept.model import ConceptModel

    out = Path(args.out)  # refuse a folder save() would refuse, before minutes of fitting
    if out.exists() and not (out.is_dir() and (not any(out.iterdir()) or (out / "concept.json").is_file())):
        raise CLIError(f"--out {out} exists and is not a concept model folder; choose another path")
    uri = _is_uri(args.images_dir)  # a bucket or other URI: listed by concept.distributed
    if uri and not args.ray:
        raise _uri_needs_ray(args.images_dir)
    if args.ray and args.captions:
        raise CLIError("--captions does not work with --ray yet; fit without --ray to use captions")
    if args.ray and args.caption_model:
        raise CLIError("--caption-model does not work with --ray yet; fit without --ray to caption concepts")
    if args.ray and args.find_duplicates:
        raise CLIError("--find-duplicates does not work with --ray yet; fit without --ray, or run "
                       "`concept duplicates MODEL_DIR` on the model")
    paths = args.images_dir if uri else list_image_files(args.images_dir)
    if not paths:
        raise _no_images(args.images_dir)
    docs = _read_docs(args.docs) if args.docs else None
    seeds = _read_seed_concepts(args.seed_concepts) if args.seed_concepts else None
    if args.ray:  # the optional extra: concept.distributed is the only module importing ray
        from concept.cli.ray import ray_fit

        return ray_fit(args, paths, docs, seeds)
    captions = _read_captions(args.captions, paths, args.images_dir) if args.captions else None
    model = ConceptModel(min_concept_size=args.min_concept_size, embedding_model=args.embedding_model,
                         ctfidf=args.ctfidf, n_words=args.n_words, random_state=args.seed,
                         store=args.store, verbose=not args.quiet, n_concepts=args.n_concepts,
                         seed_concepts=seeds, caption_model=args.caption_model,
                         find_duplicates=args.find_duplicates)
    start = time.perf_counter()
    model.fit(paths, docs=docs, captions=captions)
    seconds = time.perf_counter() - start
    model.save(args.out)
    n_out = int((model.labels_ < 0).sum())
    print(f"{len(model.labels_):,} images from {args.images_dir} in {seconds:.1f} s: "
          f"{model.n_concepts_} concepts, {n_out:,} outliers, {_failed(model.failures_, args.out)}")
    print(f"Model saved to {args.out}")
    if args.find_duplicates:
        print(_duplicates_written(model, args.out))
    _figure_and_table(model, args.figure)


def cmd_embed(args: argparse.Namespace) -> None:
    """Embed a folder into an on-disk store (resumable; unchanged files are never redone)."""
    from concept.embedding import load_embedding_model
    from concept.images import LoadReport, list_image_files
    from concept.store import EmbeddingStore

    if _is_uri(args.images_dir):  # a bucket or other URI: listed by concept.distributed
        if not args.ray:
            raise _uri_needs_ray(args.images_dir)
        from concept.cli.ray import ray_embed

        return ray_embed(args, args.images_dir)
    paths = list_image_files(args.images_dir)
    if not paths:
        raise _no_images(args.images_dir)
    if args.ray:
        from concept.cli.ray import ray_embed

        return ray_embed(args, paths)
    backend = load_embedding_model(args.embedding_model, verbose=not args.quiet)
    store = EmbeddingStore(args.store, backend.name)
    report = LoadReport()
    start = time.perf_counter()
    store.embed(backend, paths, batch_size=args.batch_size, report=report, verbose=not args.quiet)
    # This run's own rows: another run on the same store may have added some while this one waited.
    print(f"{len(paths):,} files in {time.perf_counter() - start:.1f} s: {len(report.loaded):,} loaded, "
          f"{_failed(report.failures, args.store)}; "
          f"{store.newly_embedded:,} newly embedded, {len(store):,} in {args.store} for {backend.name}")
