"""The commands that change a saved model or measure it: `concept edit`, `concept update`
and `concept evaluate`."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

from concept.cli._output import CLIError, _info_table, _load, _no_images, path_table

if TYPE_CHECKING:
    from concept.model import ConceptModel


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
    table = path_table(spec, "label")
    missing = [s for s in sources if os.path.normpath(s) not in table]
    if missing:
        raise CLIError(f"{spec} has no label for {len(missing):,} of the model's images, e.g. {missing[0]}")
    return [table[os.path.normpath(s)] for s in sources]


def cmd_evaluate(args: argparse.Namespace) -> None:
    """Print the scores of `concept.editing.evaluate` (against --truth, and --seeds' agreement)."""
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
