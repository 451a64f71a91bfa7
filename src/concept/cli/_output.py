"""What the `concept` commands share: their error, their logger, loading a saved model, and
the output they print or write (the concept table, the list of failed images, the figure).

Imports only the standard library and `concept`'s errors, and nothing of `concept.cli`: every
command module may import this one, and this one imports none of them.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from concept.images import LoadFailure
    from concept.model import ConceptModel

logger = logging.getLogger("concept")

WORDS_WIDTH = 80  # characters of the Words column shown in tables
FAILURES_FILE = "failures.tsv"  # written to the model or store folder: path <tab> reason per image


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
    """The model saved in MODEL_DIR, with --embedding-model if the command has one."""
    from concept.model import ConceptModel

    model = ConceptModel.load(args.model_dir, embedding_model=getattr(args, "embedding_model", None))
    model.verbose = not args.quiet  # read when the embedding model is first loaded
    return model


def _layer(model: ConceptModel, layer: int | None) -> int:
    """--layer checked against the model's layers (None: the default layer)."""
    if layer is None:
        return model.layer_
    if not 0 <= layer < len(model.layers_):
        raise CLIError(f"--layer {layer}: this model has layers 0..{len(model.layers_) - 1} "
                       f"({' / '.join(map(str, model.layer_sizes_))} concepts, finest first)")
    return layer


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
        from concept._atomic import atomic_file

        with atomic_file(path, "w", newline="", encoding="utf-8", errors="backslashreplace") as f:
            writer = csv.writer(f, dialect="excel-tab")
            writer.writerow(["path", "reason"])
            writer.writerows([failure.source, failure.reason] for failure in failures)
    except OSError as exc:
        logger.warning("Could not write the list of failed images to %s: %s", path, exc.strerror or exc)
        return f"{len(failures):,} failed to load"
    return f"{len(failures):,} failed to load (listed in {path})"


def _save_figure(model: ConceptModel, out: str, top_n: int) -> None:
    """The figure of the `top_n` largest concepts, written to `out`."""
    from concept._atomic import atomic_file

    fig = model.visualize_concepts(top_n=top_n)
    with atomic_file(out, "wb") as f:  # a killed run leaves the old figure, not half a new one
        fig.savefig(f, format=Path(out).suffix[1:].lower() or None, dpi=100, bbox_inches="tight")


def _no_images(folder: str) -> CLIError:
    """The error for IMAGES_DIR holding no image file."""
    from concept.images import IMAGE_EXTENSIONS

    return CLIError(f"no image files ({', '.join(sorted(IMAGE_EXTENSIONS))}) in {folder}")


def _figure_and_table(model: ConceptModel, figure: str | None) -> None:
    """The end of `concept fit` (with or without Ray): the figure if --figure asked for one,
    then the concept table."""
    if figure:
        if model.n_concepts_:
            _save_figure(model, figure, top_n=9)
            print(f"Figure saved to {figure}")
        else:
            logger.warning("No concept found, so no figure was written; try a lower --min-concept-size.")
    print()
    print(_info_table(model))


def _write_figure(fig, out: str | os.PathLike) -> None:
    """A matplotlib figure written to `out` atomically, in the format its suffix names."""
    from concept._atomic import atomic_file

    with atomic_file(out, "wb") as f:  # a killed run leaves the old figure, not half a new one
        fig.savefig(f, format=Path(out).suffix[1:].lower() or None, dpi=100, bbox_inches="tight")


#: Table formats `_write_table` writes, by suffix: comma- or tab-separated.
TABLE_SEPARATORS = {".csv": ",", ".tsv": "\t", ".tab": "\t", ".txt": "\t"}


def _write_table(df, out: str | os.PathLike) -> None:
    """A DataFrame written to `out` atomically: CSV for .csv, tab-separated for .tsv/.tab/.txt (UTF-8)."""
    from concept._atomic import atomic_file

    sep = _table_separator(out)
    with atomic_file(out, "w", newline="", encoding="utf-8") as f:
        df.to_csv(f, sep=sep, index=False)


def _table_separator(out: str | os.PathLike) -> str:
    """The separator of the table file `out`, by its suffix (a CLIError for any other)."""
    sep = TABLE_SEPARATORS.get(Path(out).suffix.lower())
    if sep is None:
        raise CLIError(f"{out}: the table is written as .csv or .tsv; give a file name ending in one of "
                       f"{', '.join(TABLE_SEPARATORS)}")
    return sep


def path_table(path: str, what: str) -> dict[str, str]:
    """The PATH<TAB>`what` lines of a UTF-8 file, by normalised path (--dates, --truth)."""
    table: dict[str, str] = {}
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            name, sep, value = line.rstrip("\n").partition("\t")
            if not sep:
                raise CLIError(f"{path}, line {number}: expected path<TAB>{what}")
            table[os.path.normpath(name)] = value
    return table


def _dates_file(model, path: str) -> list[str | None]:
    """One date text per fitted image from a UTF-8 file of PATH<TAB>DATE lines (None for images it leaves out)."""
    if model.image_sources_ is None:
        raise CLIError("the model does not know its images' files, so --dates cannot name them")
    table = path_table(path, "date")
    return [table.get(os.path.normpath(s)) for s in model.image_sources_]
