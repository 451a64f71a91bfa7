"""The `concept` command: fit a model on a folder of images, then inspect, search and use it.

This package holds the argument parser and `main` (the console script `concept.cli:main`);
the commands live in modules by concern: `fit` (fit, embed), `ray` (their --ray paths),
`use` (info, search, assign, visualize, timeline, export), `explore` (explore, serve) and `edit`
(edit, update, evaluate), over what they share in `_output`. Imports run one way:
this module imports the command modules, they import `_output`, and `_output` imports none
of them.

Results go to stdout; progress bars (tqdm, from the library) and log messages go to stderr.
Expected errors (any `ConceptError`, a bad path) print one line and exit with status 2.
Heavy modules (the model, pandas, torch, ray) are imported by the commands that need them, so
that `concept --help` starts at once.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from concept._errors import ConceptError
from concept._version import __version__
from concept.cli._output import CLIError, logger
from concept.cli.clean import register as register_duplicates
from concept.cli.edit import _ids, _name, cmd_edit, cmd_evaluate, cmd_update
from concept.cli.explore import cmd_explore, cmd_serve
from concept.cli.fit import DEFAULT_SEED, DUPLICATES_FILE, _seed, cmd_embed, cmd_fit
from concept.cli.use import (
    cmd_assign,
    cmd_export,
    cmd_info,
    cmd_search,
    cmd_timeline,
    cmd_visualize,
)

__all__ = ["CLIError", "build_parser", "main"]

EPILOG = """\
examples:
  concept fit photos/ --out photos.model --figure concepts.png
  concept info photos.model
  concept info photos.model --images --out images.csv
  concept search photos.model "a dog on a beach" --top-n 3
  concept assign photos.model new/*.jpg --probabilities
  concept visualize photos.model --out concepts.png
  concept timeline photos.model --exif --bins MS --out timeline.png
  concept explore photos.model --out report.html
  concept edit photos.model --merge 1,4 --label 0=beach
  concept evaluate photos.model --truth folder
  concept update photos.model photos/
  concept serve photos.model --port 8000
  concept export photos.model --out photos-by-concept/
"""


def _date_options(p: argparse.ArgumentParser) -> None:
    """`explore` / `serve`: the page's time histogram (off by default: EXIF dates open every file)."""
    when = p.add_mutually_exclusive_group()
    when.add_argument("--exif", action="store_true", help="add a histogram of the images over time that filters "
                      "the map, dated by each file's EXIF DateTimeOriginal, else DateTime (off by default: it "
                      "opens every file)")
    when.add_argument("--dates", metavar="FILE", help="the same with the dates of a UTF-8 file of PATH<TAB>DATE "
                      "lines (images it leaves out count as undated)")
    p.add_argument("--mtime", action="store_true",
                   help="with --exif: an image without an EXIF date takes its file's modification time")


def build_parser() -> argparse.ArgumentParser:
    """The parser of `concept` and its commands (each sets `func`, the command to run)."""
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
    p.add_argument("--caption-model", metavar="SPEC",
                   help="caption every layer's exemplar images with a transformers image-to-text model "
                        "('hf:ORG/NAME' from the local Hugging Face cache, e.g. "
                        "hf:Salesforce/blip-image-captioning-base, or a folder written by save_pretrained): concept "
                        "words then come from the captions too, and each concept is named by the caption of its most "
                        "representative exemplar (captions are cached)")
    p.add_argument("--min-concept-size", type=int, default=30, metavar="N",
                   help="smallest number of images in a concept (default: %(default)s)")
    p.add_argument("--embedding-model", default="auto", metavar="SPEC",
                   help="'auto', 'offline', 'offline-lite1', a CLIP model name or a local folder, "
                        "'open_clip:ARCH/TAG' or 'hf:ORG/NAME' (CLIP, SigLIP; from the local cache) "
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
    p.add_argument("--find-duplicates", action="store_true",
                   help="find exact copies and near duplicates during the fit (as `concept duplicates`): no "
                        "exemplar or collage shows two images of one group, the summary is printed and "
                        f"MODEL_DIR/{DUPLICATES_FILE} lists every image's duplicate group (-1: none), kept flag, "
                        "uniqueness and typicality; `concept info --images` shows them too")

    p = add("embed", "Embed a folder of images into an on-disk store; rerun to resume or update.",
            "concept embed photos/ --store photos.store && concept fit photos/ --store photos.store --out m",
            cmd_embed)
    p.add_argument("images_dir", metavar="IMAGES_DIR", help="folder of images (searched recursively); with --ray also a URI such as s3://bucket/prefix")
    p.add_argument("--store", required=True, metavar="DIR", help="folder of the embedding store")
    p.add_argument("--embedding-model", default="auto", metavar="SPEC",
                   help="'auto', 'offline', a CLIP model name or a local folder, 'open_clip:ARCH/TAG' or "
                        "'hf:ORG/NAME' (default: %(default)s)")
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
    p.add_argument("--images", action="store_true",
                   help="the table of every image instead (file, concept in every layer, name, words, probability, "
                        "exemplar; duplicate group, kept, uniqueness and typicality when the model knows its "
                        "duplicates, e.g. fitted with --find-duplicates), printed tab-separated or written to --out")
    p.add_argument("--out", metavar="FILE", help="with --images: write the table to FILE (.csv or .tsv)")
    p.add_argument("--exif", action="store_true",
                   help="with --images: add each file's EXIF date (Date, and Date status: exif, missing or unreadable)")

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

    p = add("timeline", "Write a figure of the concepts over time (the images' dates: EXIF, or --dates), and its "
            "table as CSV beside it.", "concept timeline photos.model --exif --bins MS --out timeline.png",
            cmd_timeline)
    p.add_argument("model_dir", metavar="MODEL_DIR", help="folder written by `concept fit`")
    p.add_argument("--out", required=True, metavar="PNG", help="image file to write (.png, .svg, .pdf, .jpg); the "
                   "table goes beside it with the suffix .csv")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--exif", action="store_true",
                        help="date each image by its EXIF DateTimeOriginal, else DateTime (the default)")
    source.add_argument("--dates", metavar="FILE", help="a UTF-8 file of PATH<TAB>DATE lines instead (PATH as the "
                        "model lists its images; images it leaves out count as undated)")
    p.add_argument("--mtime", action="store_true",
                   help="with EXIF dates: an image without one takes its file's modification time (which copying "
                        "resets: off by default)")
    p.add_argument("--bins", default="10", metavar="N|FREQ",
                   help="N equal-width periods from the first date to the last, or a pandas frequency such as "
                        "D, W, MS (months), QS, YS (default: %(default)s)")
    p.add_argument("--top-n", type=int, default=8, metavar="N", help="concepts drawn (default: %(default)s)")
    p.add_argument("--normalize", action="store_true", help="draw each concept's share of the period's images")

    p = add("explore", "Write an interactive explorer (map, thumbnails, concept cards, word search) "
            "as an HTML file that works offline.",
            "concept explore photos.model --out report.html", cmd_explore)
    p.add_argument("model_dir", metavar="MODEL_DIR", help="folder written by `concept fit`")
    p.add_argument("--out", required=True, metavar="HTML",
                   help="HTML file to write; thumbnails go to the folder <name>_files beside it")
    p.add_argument("--title", metavar="TEXT", help="page title (default: from the file name)")
    _date_options(p)

    p = add("export", "Write one folder per concept (links to, or copies of, its images) and a CSV "
            "of every image's concept and confidence.",
            "concept export photos.model --out photos-by-concept/", cmd_export)
    p.add_argument("model_dir", metavar="MODEL_DIR", help="folder written by `concept fit`")
    p.add_argument("--out", required=True, metavar="DIR", help="new folder to write (must not exist, or be empty)")
    p.add_argument("--copy", action="store_true", help="copy the files at full resolution instead of linking them")
    p.add_argument("--layer", type=int, metavar="K", help="concepts of layer K (0 = finest; default: the model's default layer)")
    p.add_argument("--no-outliers", action="store_true", help="leave out the images in no concept")
    p.add_argument("--dedupe", action="store_true",
                   help="write one image of each group of exact or near duplicates (the kept one: most pixels, then "
                        "largest file); the CSV lists the others with status 'duplicate' (see `concept duplicates`)")

    p = add("serve", "Serve the explorer locally, with search by text or by uploaded image through the model.",
            "concept serve photos.model --port 8000", cmd_serve)
    p.add_argument("model_dir", metavar="MODEL_DIR", help="folder written by `concept fit`")
    p.add_argument("--host", default="127.0.0.1", metavar="ADDRESS",
                   help="address to listen on (default: %(default)s, this machine only)")
    p.add_argument("--port", type=int, default=8000, metavar="N", help="port (default: %(default)s; 0: any free port)")
    p.add_argument("--max-upload-mb", type=float, default=10, metavar="MB",
                   help="largest image upload accepted (default: %(default)s)")
    p.add_argument("--title", metavar="TEXT", help="page title (default: from the model folder's name)")
    _date_options(p)

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

    register_duplicates(add)  # concept duplicates (cli/clean.py)

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
