"""The `concept` command: fit a model on a folder of images, then inspect, search and use it.

Results go to stdout; progress bars (tqdm, from the library) and log messages go to stderr.
Expected errors (any `ConceptError`, a bad path) print one line and exit with status 2.
Heavy modules (the model, pandas, torch) are imported by the commands that need them, so that
`concept --help` starts at once.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from concept import ConceptError, __version__

if TYPE_CHECKING:
    from concept.images import LoadFailure
    from concept.model import ConceptModel

logger = logging.getLogger("concept")

WORDS_WIDTH = 80  # characters of the Words column shown in tables
#: `concept fit`'s seed when none is given: the CLI is reproducible by default (the Python
#: API's random_state stays None, as in scikit-learn). A fixed seed runs UMAP on one thread.
DEFAULT_SEED = 0
FAILURES_FILE = "failures.tsv"  # written to the model or store folder: path <tab> reason per image

EPILOG = """\
examples:
  concept fit photos/ --out photos.model --figure concepts.png
  concept info photos.model
  concept search photos.model "a dog on a beach" --top-n 3
  concept assign photos.model new/*.jpg --probabilities
  concept visualize photos.model --out concepts.png
  concept explore photos.model --out report.html
  concept edit photos.model --merge 1,4 --label 0=beach
  concept evaluate photos.model --truth folder
  concept update photos.model photos/
  concept serve photos.model --port 8000
  concept export photos.model --out photos-by-concept/
"""


class CLIError(Exception):
    """A user error found by the CLI itself (reported like a ConceptError)."""


def _info_table(model: ConceptModel, layer: int | None = None) -> str:
    """The frequency table with words (outliers last), the Words column cut to WORDS_WIDTH."""
    df = model.get_concept_info(layer)
    if df.empty:
        return "(no images)"
    cut = [w if len(w) <= WORDS_WIDTH else w[: WORDS_WIDTH - 1].rstrip(", ") + "…" for w in df.Words]
    width = max(len(w) for w in cut)
    # Left-align the words (pandas right-aligns strings) by padding the values and the header.
    df["Words"] = [w.ljust(width) for w in cut]
    table = df.rename(columns={"Words": "Words".ljust(width)}).to_string(index=False)
    return "\n".join(line.rstrip() for line in table.splitlines())


def _load(args: argparse.Namespace) -> ConceptModel:
    from concept.model import ConceptModel

    model = ConceptModel.load(args.model_dir, embedding_model=getattr(args, "embedding_model", None))
    model.verbose = not args.quiet  # read when the embedding model is first loaded
    return model


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


def _failed(failures: list[LoadFailure], folder: str | os.PathLike) -> str:
    """"N failed to load (listed in FOLDER/failures.tsv)", writing that list; "0 failed to load"
    when none did. Each failure was already logged once as it happened."""
    import csv

    path = Path(folder) / FAILURES_FILE
    try:
        if not failures:
            path.unlink(missing_ok=True)  # a list left by an earlier run would mislead
            return "0 failed to load"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="", encoding="utf-8", errors="backslashreplace") as f:
            writer = csv.writer(f, dialect="excel-tab")
            writer.writerow(["path", "reason"])
            writer.writerows([failure.source, failure.reason] for failure in failures)
    except OSError as exc:
        logger.warning("Could not write the list of failed images to %s: %s", path, exc.strerror or exc)
        return f"{len(failures):,} failed to load"
    return f"{len(failures):,} failed to load (listed in {path})"


def _save_figure(model: ConceptModel, out: str, top_n: int) -> None:
    fig = model.visualize_concepts(top_n=top_n)
    fig.savefig(out, dpi=100, bbox_inches="tight")


def _no_images(folder: str) -> CLIError:
    from concept.images import IMAGE_EXTENSIONS

    return CLIError(f"no image files ({', '.join(sorted(IMAGE_EXTENSIONS))}) in {folder}")


def cmd_fit(args: argparse.Namespace) -> None:
    from concept.images import list_image_files
    from concept.model import ConceptModel

    out = Path(args.out)  # refuse a folder save() would refuse, before minutes of fitting
    if out.exists() and not (out.is_dir() and (not any(out.iterdir()) or (out / "concept.json").is_file())):
        raise CLIError(f"--out {out} exists and is not a concept model folder; choose another path")
    if "://" in args.images_dir:  # a bucket or other URI: listed by concept.distributed
        if not args.ray:
            raise CLIError(f"IMAGES_DIR is a {args.images_dir.split('://')[0]}:// URI: images in a bucket are "
                           "read on Ray; add --ray")
        if args.captions:
            raise CLIError("--captions does not work with --ray yet; fit without --ray to use captions")
        from concept.distributed.cli import ray_fit

        return ray_fit(args, args.images_dir, _read_docs(args.docs) if args.docs else None)
    paths = list_image_files(args.images_dir)
    if not paths:
        raise _no_images(args.images_dir)
    docs = _read_docs(args.docs) if args.docs else None
    captions = _read_captions(args.captions, paths, args.images_dir) if args.captions else None
    seeds = _read_seed_concepts(args.seed_concepts) if args.seed_concepts else None
    if args.ray:  # the optional extra: concept.distributed is the only module importing ray
        if captions is not None:
            raise CLIError("--captions does not work with --ray yet; fit without --ray to use captions")
        if seeds is not None:
            raise CLIError("--seed-concepts does not work with --ray yet; fit without --ray to use seeds")
        from concept.distributed.cli import ray_fit

        return ray_fit(args, paths, docs)
    model = ConceptModel(min_concept_size=args.min_concept_size, embedding_model=args.embedding_model,
                         ctfidf=args.ctfidf, n_words=args.n_words, random_state=args.seed,
                         store=args.store, verbose=not args.quiet, n_concepts=args.n_concepts,
                         seed_concepts=seeds)
    start = time.perf_counter()
    model.fit(paths, docs=docs, captions=captions)
    seconds = time.perf_counter() - start
    model.save(args.out)
    n_out = int((model.labels_ < 0).sum())
    print(f"{len(model.labels_):,} images from {args.images_dir} in {seconds:.1f} s: "
          f"{model.n_concepts_} concepts, {n_out:,} outliers, {_failed(model.failures_, args.out)}")
    print(f"Model saved to {args.out}")
    if args.figure:
        if model.n_concepts_:
            _save_figure(model, args.figure, top_n=9)
            print(f"Figure saved to {args.figure}")
        else:
            logger.warning("No concept found, so no figure was written; try a lower --min-concept-size.")
    print()
    print(_info_table(model))


def cmd_embed(args: argparse.Namespace) -> None:
    """Embed a folder into an on-disk store (resumable; unchanged files are never redone)."""
    from concept.embedding import load_embedding_model
    from concept.images import LoadReport, list_image_files
    from concept.store import EmbeddingStore

    if "://" in args.images_dir:  # a bucket or other URI: listed by concept.distributed
        if not args.ray:
            raise CLIError(f"IMAGES_DIR is a {args.images_dir.split('://')[0]}:// URI: images in a bucket are "
                           "read on Ray; add --ray")
        from concept.distributed.cli import ray_embed

        return ray_embed(args, args.images_dir)
    paths = list_image_files(args.images_dir)
    if not paths:
        raise _no_images(args.images_dir)
    if args.ray:
        from concept.distributed.cli import ray_embed

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


def cmd_info(args: argparse.Namespace) -> None:
    model = _load(args)
    layer = _layer(model, args.layer)
    sizes = " / ".join(f"{k}" for k in model.layer_sizes_)
    print(f"Layers (finest first): {sizes} concepts; showing layer {layer}"
          f"{' (the default)' if layer == model.layer_ else ''}")
    print(_info_table(model, layer))


def _layer(model: ConceptModel, layer: int | None) -> int:
    """--layer checked against the model's layers (None: the default layer)."""
    if layer is None:
        return model.layer_
    if not 0 <= layer < len(model.layers_):
        raise CLIError(f"--layer {layer}: this model has layers 0..{len(model.layers_) - 1} "
                       f"({' / '.join(map(str, model.layer_sizes_))} concepts, finest first)")
    return layer


def _is_file(path: str) -> bool:
    try:
        return Path(path).is_file()
    except (OSError, ValueError):  # a name too long to be a file, an embedded NUL
        return False


def cmd_search(args: argparse.Namespace) -> None:
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
    model = _load(args)
    if model.n_concepts_ == 0:
        raise CLIError(f"the model in {args.model_dir} has no concepts to show")
    _save_figure(model, args.out, top_n=args.top_n)
    print(f"Figure of {min(args.top_n, model.n_concepts_)} concepts saved to {args.out}")


def cmd_explore(args: argparse.Namespace) -> None:
    from concept.explorer import write_report
    from concept.explorer.data import ensure_saved_map

    if Path(args.out).suffix.lower() not in (".html", ".htm"):
        raise CLIError(f"--out {args.out} must be an .html file")
    model = _load(args)
    ensure_saved_map(model, args.model_dir)  # the first explore computes the map and saves it
    path = write_report(model, args.out, title=args.title, verbose=not args.quiet)
    files = path.parent / f"{path.stem}_files"
    print(f"Explorer of {len(model.labels_):,} images and {model.n_concepts_} concepts written to {path} "
          f"(thumbnails in {files}); open it in a browser, no network needed")


def cmd_serve(args: argparse.Namespace) -> None:
    from concept.explorer import make_server

    if not 0 <= args.port <= 65535:
        raise CLIError(f"--port {args.port} is not a port number (0-65535)")
    if args.max_upload_mb <= 0:
        raise CLIError(f"--max-upload-mb must be positive, got {args.max_upload_mb}")
    model = _load(args)
    server = make_server(args.model_dir, host=args.host, port=args.port, model=model, title=args.title,
                         max_upload_bytes=int(args.max_upload_mb * 1024 * 1024))
    if not server.loopback:
        logger.warning("Listening on %s: anyone who can reach this address can search the model and "
                       "read the model folder's files.", args.host)
    print(f"Serving the explorer of {args.model_dir} at {server.url} (Ctrl+C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("Stopped.")
    finally:
        server.server_close()


def cmd_export(args: argparse.Namespace) -> None:
    from concept.export import CSV_NAME, export_concepts

    model = _load(args)
    counts = export_concepts(model, args.out, copy=args.copy, layer=_layer(model, args.layer),
                             include_outliers=not args.no_outliers)
    done = counts.get("copied", counts.get("linked", 0))
    print(f"{done:,} images {'copied' if args.copy else 'linked'} into {counts['concepts']} concept folders "
          f"in {args.out}; every image's concept and confidence in {Path(args.out) / CSV_NAME}"
          + (f"; {counts['missing']:,} files missing" if counts["missing"] else ""))


def _ids(text: str) -> list[int]:
    """'1,4,7' -> [1, 4, 7] (argparse type of --merge and --delete)."""
    try:
        ids = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of concept ids") from None
    if not ids:
        raise argparse.ArgumentTypeError("give at least one concept id")
    return ids


def _name(text: str) -> tuple[int, str]:
    """'3=beach' -> (3, 'beach') (argparse type of --label)."""
    key, sep, name = text.partition("=")
    if not sep or not key.strip().isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} must be ID=NAME, e.g. 3=beach")
    return int(key), name


def cmd_edit(args: argparse.Namespace) -> None:
    """Shape the concepts of a saved model (editing.py), in a fixed order, then save it."""
    if not (args.merge or args.delete or args.reduce or args.reduce_outliers or args.label):
        raise CLIError("nothing to do: give --merge, --delete, --reduce, --reduce-outliers or --label")
    model = _load(args)
    steps = []
    for group in args.merge or []:
        steps.append(("merge", model.merge_concepts([group])))
    if args.delete:
        steps.append(("delete", model.delete_concepts(sorted({c for g in args.delete for c in g}),
                                                      to=args.delete_to)))
    if args.reduce:
        steps.append(("reduce", model.reduce_concepts(args.reduce)))
    if args.reduce_outliers:
        before = int((model.labels_ < 0).sum())
        joined = model.update_concepts(model.reduce_outliers(args.reduce_outliers, threshold=args.threshold))
        print(f"{joined:,} of {before:,} outliers joined a concept")
    if args.label:
        model.set_concept_labels(dict(args.label))
    for what, mapping in steps:
        moved = {o: n for o, n in mapping.items() if o != n}
        print(f"{what}: " + (", ".join(f"{o}->{n}" for o, n in moved.items()) if moved else "no id changed"))
    out = args.out or args.model_dir
    model.save(out)
    print(f"Model saved to {out}")
    print()
    print(_info_table(model))


def _truth(model: ConceptModel, spec: str) -> list[str]:
    """True labels of the fitted images: their folder names ('folder') or a TSV file of
    path <tab> label."""
    sources = model.image_sources_
    if sources is None:
        raise CLIError("the model does not know its images' files, so it has no labels to compare with")
    if spec == "folder":
        return [Path(s).parent.name for s in sources]
    table: dict[str, str] = {}
    for number, line in enumerate(Path(spec).read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            path, sep, label = line.rstrip("\n").partition("\t")
            if not sep:
                raise CLIError(f"{spec}, line {number}: expected path<TAB>label")
            table[os.path.normpath(path)] = label
    missing = [s for s in sources if os.path.normpath(s) not in table]
    if missing:
        raise CLIError(f"{spec} has no label for {len(missing):,} of the model's images, e.g. {missing[0]}")
    return [table[os.path.normpath(s)] for s in sources]


def cmd_evaluate(args: argparse.Namespace) -> None:
    from concept.editing import evaluate

    model = _load(args)
    truth = _truth(model, args.truth) if args.truth else None
    scores = evaluate(model, truth, seeds=args.seeds or ())
    for key, value in scores.items():
        print(f"{key}\t{value:.4f}" if isinstance(value, float) else f"{key}\t{value}")


def cmd_update(args: argparse.Namespace) -> None:
    """Add a folder's new images to a saved model without refitting (partial_fit), then save."""
    from concept.images import list_image_files

    paths = list_image_files(args.images_dir)
    if not paths:
        raise _no_images(args.images_dir)
    model = _load(args)
    if args.store:
        model.store = args.store
    n_before, k_before = len(model.labels_), model.n_concepts_
    model.partial_fit(paths)
    added = model.labels_[n_before:]
    out = args.out or args.model_dir
    model.save(out)
    print(f"{len(added):,} new images: {int(((added >= 0) & (added < k_before)).sum()):,} in existing concepts, "
          f"{model.n_concepts_ - k_before} new concepts ({int((added >= k_before).sum()):,} images), "
          f"{int((added < 0).sum()):,} outliers")
    print(f"Model saved to {out}")
    print()
    print(_info_table(model))


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="concept", formatter_class=fmt, epilog=EPILOG,
        description="Concept modeling: find concepts (clusters described by exemplar images and "
                    "words) in a folder of images.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--quiet", action="store_true", help="no progress bars or info messages")

    def add(name: str, help: str, example: str, func) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help, formatter_class=fmt, parents=[common],
                           epilog=f"example:\n  {example}")
        p.set_defaults(func=func)
        return p

    p = add("fit", "Find concepts in a folder of images and save the model.",
            "concept fit photos/ --docs words.txt --out photos.model --figure concepts.png", cmd_fit)
    p.add_argument("images_dir", metavar="IMAGES_DIR", help="folder of images (searched recursively); with --ray also a URI such as s3://bucket/prefix")
    p.add_argument("--out", required=True, metavar="MODEL_DIR", help="folder to save the model to")
    p.add_argument("--docs", metavar="FILE", help="UTF-8 text file of candidate words, one word or "
                   "phrase per line (default: the bundled English nouns)")
    p.add_argument("--captions", metavar="FILE|filenames|metadata",
                   help="a caption per image: a UTF-8 file of PATH<TAB>CAPTION lines (PATH relative to "
                        "IMAGES_DIR), 'filenames' (words of the file names) or 'metadata' (XMP/IPTC/EXIF/PNG "
                        "text in the files); concept words then come from the captions, and with enough of "
                        "them a learned image-text map names the uncaptioned images too")
    p.add_argument("--min-concept-size", type=int, default=30, metavar="N",
                   help="smallest number of images in a concept (default: %(default)s)")
    p.add_argument("--embedding-model", default="auto", metavar="SPEC",
                   help="'auto', 'offline', 'offline-lite1', a CLIP model name or a local folder "
                        "(default: %(default)s)")
    p.add_argument("--ctfidf", action="store_true", help="choose words by c-TF-IDF instead of similarity")
    p.add_argument("--n-words", type=int, default=10, metavar="N", help="words per concept (default: %(default)s)")
    p.add_argument("--seed", type=_seed, default=DEFAULT_SEED, metavar="N",
                   help="random seed (default: %(default)s): the same images, settings and seed give "
                        "the same concepts; 'none' for an unseeded run, which is not reproducible "
                        "(UMAP then uses every core)")
    p.add_argument("--figure", metavar="PNG", help="also write a figure of the largest concepts")
    p.add_argument("--store", metavar="DIR", help="embedding store to reuse and fill (see `concept embed`)")

    p.add_argument("--n-concepts", type=int, metavar="N", help="merge the concepts found down to exactly N")
    p.add_argument("--seed-concepts", metavar="SEEDS|FILE",
                   help="concepts you expect, to steer the clustering towards: 'beach,sea;cat,kitten' "
                        "(';' between seeds, ',' between words) or a UTF-8 file with one comma-separated "
                        "seed per line; images matching a seed are pulled together and its words lead")

    p = add("embed", "Embed a folder of images into an on-disk store; rerun to resume or update.",
            "concept embed photos/ --store photos.store && concept fit photos/ --store photos.store --out m",
            cmd_embed)
    p.add_argument("images_dir", metavar="IMAGES_DIR", help="folder of images (searched recursively); with --ray also a URI such as s3://bucket/prefix")
    p.add_argument("--store", required=True, metavar="DIR", help="folder of the embedding store")
    p.add_argument("--embedding-model", default="auto", metavar="SPEC",
                   help="'auto', 'offline', a CLIP model name or a local folder (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=32, metavar="N", help="images per batch (default: %(default)s)")

    for name in ("fit", "embed"):  # the Ray path (pip install "concept[ray]")
        p = sub.choices[name]
        p.add_argument("--ray", nargs="?", const="auto", metavar="ADDRESS",
                       help="run on a Ray cluster: ADDRESS (e.g. ray://head:10001), 'local' for a new "
                            "local cluster, or 'auto' (the default when --ray is given alone): the "
                            "running cluster if any, else a local one. --store is then a folder of "
                            "Parquet shards (resumable)")
        p.add_argument("--workers", type=int, default=2, metavar="N",
                       help="with --ray: embedding actors (default: %(default)s)")
        p.add_argument("--gpus-per-worker", type=float, default=0, metavar="G",
                       help="with --ray: GPUs per embedding actor, e.g. 1 for CLIP (default: %(default)s)")
        p.add_argument("--cpus-per-worker", type=float, default=1, metavar="C",
                       help="with --ray: CPUs per embedding actor; a GPU actor decodes images in "
                            "C - 1 processes (default: %(default)s)")
    p = sub.choices["fit"]
    p.add_argument("--labels", metavar="DIR", help="with --ray: folder for every image's concept as "
                   "Parquet (default: MODEL_DIR.labels; --store defaults to MODEL_DIR.shards)")
    p.add_argument("--max-images", type=int, default=200_000, metavar="N",
                   help="with --ray: fit on a seeded sample of at most N images, then label every "
                        "image (default: %(default)s)")

    p = add("info", "Show each concept's size and words (outliers last).", "concept info photos.model", cmd_info)
    p.add_argument("model_dir", metavar="MODEL_DIR", help="folder written by `concept fit`")
    p.add_argument("--layer", type=int, metavar="K", help="show layer K (0 = finest; default: the model's default layer)")

    p = add("search", "Find the concepts closest to a text or an image.",
            'concept search photos.model "birthday cake" --top-n 3', cmd_search)
    p.add_argument("model_dir", metavar="MODEL_DIR", help="folder written by `concept fit`")
    p.add_argument("query", metavar="QUERY", help="text, or the path of an image file (an existing "
                   "file is read as an image unless --text is given)")
    kind = p.add_mutually_exclusive_group()
    kind.add_argument("--text", dest="kind", action="store_const", const="text",
                      help="search QUERY as text, even if it names a file")
    kind.add_argument("--image", dest="kind", action="store_const", const="image",
                      help="QUERY is the path of an image file")
    p.add_argument("--top-n", type=int, default=5, metavar="N", help="concepts shown (default: %(default)s)")

    p = add("assign", "Assign images to the model's concepts (-1: outlier or unreadable).",
            "concept assign photos.model new/*.jpg --probabilities", cmd_assign)
    p.add_argument("model_dir", metavar="MODEL_DIR", help="folder written by `concept fit`")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files or folders of images")
    p.add_argument("--probabilities", action="store_true", help="also print the concept's membership (0-1)")
    p.add_argument("--layer", type=int, metavar="K", help="assign at layer K (0 = finest; default: the model's default layer)")

    p = add("visualize", "Write a figure of the largest concepts' collages and words.",
            "concept visualize photos.model --out concepts.png --top-n 6", cmd_visualize)
    p.add_argument("model_dir", metavar="MODEL_DIR", help="folder written by `concept fit`")
    p.add_argument("--out", required=True, metavar="PNG", help="image file to write")
    p.add_argument("--top-n", type=int, default=9, metavar="N", help="concepts shown (default: %(default)s)")

    p = add("explore", "Write an interactive explorer (map, thumbnails, concept cards, word search) "
            "as an HTML file that works offline.",
            "concept explore photos.model --out report.html", cmd_explore)
    p.add_argument("model_dir", metavar="MODEL_DIR", help="folder written by `concept fit`")
    p.add_argument("--out", required=True, metavar="HTML",
                   help="HTML file to write; thumbnails go to the folder <name>_files beside it")
    p.add_argument("--title", metavar="TEXT", help="page title (default: from the file name)")

    p = add("export", "Write one folder per concept (links to, or copies of, its images) and a CSV "
            "of every image's concept and confidence.",
            "concept export photos.model --out photos-by-concept/", cmd_export)
    p.add_argument("model_dir", metavar="MODEL_DIR", help="folder written by `concept fit`")
    p.add_argument("--out", required=True, metavar="DIR", help="new folder to write (must not exist, or be empty)")
    p.add_argument("--copy", action="store_true", help="copy the files at full resolution instead of linking them")
    p.add_argument("--layer", type=int, metavar="K", help="concepts of layer K (0 = finest; default: the model's default layer)")
    p.add_argument("--no-outliers", action="store_true", help="leave out the images in no concept")

    p = add("serve", "Serve the explorer locally, with search by text or by uploaded image through the model.",
            "concept serve photos.model --port 8000", cmd_serve)
    p.add_argument("model_dir", metavar="MODEL_DIR", help="folder written by `concept fit`")
    p.add_argument("--host", default="127.0.0.1", metavar="ADDRESS",
                   help="address to listen on (default: %(default)s, this machine only)")
    p.add_argument("--port", type=int, default=8000, metavar="N", help="port (default: %(default)s; 0: any free port)")
    p.add_argument("--max-upload-mb", type=float, default=10, metavar="MB",
                   help="largest image upload accepted (default: %(default)s)")
    p.add_argument("--title", metavar="TEXT", help="page title (default: from the model folder's name)")

    p = add("edit", "Shape a model's concepts: merge, delete, reduce to N, give outliers a concept, name "
            "them; applied in that order (ids as after the step before), then saved.",
            "concept edit photos.model --merge 1,4 --reduce 10 --label 0=beach", cmd_edit)
    p.add_argument("model_dir", metavar="MODEL_DIR", help="folder written by `concept fit`")
    p.add_argument("--merge", type=_ids, action="append", metavar="IDS",
                   help="merge these concepts into one (e.g. 1,4; repeat for more groups)")
    p.add_argument("--delete", type=_ids, action="append", metavar="IDS", help="delete these concepts")
    p.add_argument("--delete-to", choices=("outliers", "nearest"), default="outliers",
                   help="where the deleted concepts' images go (default: %(default)s)")
    p.add_argument("--reduce", type=int, metavar="N", help="merge along the hierarchy down to exactly N concepts")
    p.add_argument("--reduce-outliers", choices=("embeddings", "neighbours"), metavar="STRATEGY",
                   help="give outliers a concept: 'embeddings' (nearest concept centre) or 'neighbours' (vote)")
    p.add_argument("--threshold", type=float, default=0.0, metavar="T",
                   help="least similarity (embeddings) or vote share (neighbours) for --reduce-outliers")
    p.add_argument("--label", type=_name, action="append", metavar="ID=NAME", help="name a concept (repeatable)")
    p.add_argument("--out", metavar="MODEL_DIR", help="save to this folder instead of MODEL_DIR")

    p = add("evaluate", "Score the concepts: against true labels (NMI, ARI) and without (silhouette, "
            "seed stability).", "concept evaluate photos.model --truth folder --seeds 1 2", cmd_evaluate)
    p.add_argument("model_dir", metavar="MODEL_DIR", help="folder written by `concept fit`")
    p.add_argument("--truth", metavar="folder|FILE",
                   help="true labels: 'folder' (each image's folder name) or a file of path<TAB>label lines")
    p.add_argument("--seeds", type=int, nargs="+", metavar="N",
                   help="refit the clustering with these seeds and report the agreement (ARI)")

    p = add("update", "Add the new images of a folder to a model without refitting: they join the existing "
            "concepts, and enough images that fit none become new concepts (new ids); existing ids stay.",
            "concept update photos.model photos/ --store photos.store", cmd_update)
    p.add_argument("model_dir", metavar="MODEL_DIR", help="folder written by `concept fit`")
    p.add_argument("images_dir", metavar="IMAGES_DIR", help="folder of images; files already in the model are skipped")
    p.add_argument("--store", metavar="DIR", help="embedding store to reuse and fill (see `concept embed`)")
    p.add_argument("--out", metavar="MODEL_DIR", help="save to this folder instead of MODEL_DIR")

    for name in ("search", "assign", "serve", "edit", "evaluate", "update"):
        sub.choices[name].add_argument(
            "--embedding-model", metavar="SPEC",
            help="embedding model to use instead of the one saved with the model")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the `concept` command with `argv` (default: sys.argv[1:]); return the exit status."""
    args = build_parser().parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)  # the stderr of this call (tests capture it)
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    quiet = args.quiet
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    try:
        args.func(args)
        return 0
    except BrokenPipeError:  # e.g. `concept info m | head -3`: stop quietly
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 -- so the interpreter's final flush does not fail
        return 141
    except (ConceptError, CLIError, OSError) as exc:
        message = str(exc)
        if isinstance(exc, OSError) and exc.filename:
            message = f"{exc.strerror or exc}: {exc.filename}"
        print("concept: error: " + " ".join(message.split()), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("concept: interrupted", file=sys.stderr)
        return 130
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
