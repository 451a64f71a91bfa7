"""Build ``src/concept/data/imagenet_hypernyms.tsv`` (run by a developer; the output is committed).

The offline model's classes are WordNet synsets; the describing stage lifts a concept's class mass
to a common hypernym ("dog" over 30 dog breeds; `concept.hypernyms`). This script writes the part
of WordNet 3.0's noun hierarchy above the 1,000 ImageNet-1k classes: every class and every synset
on a path from one up to ``entity.n.01``, one line each::

    wnid <TAB> hypernym wnids (space-separated; empty for entity) <TAB> lemmas (", "-separated)

Hypernyms are ``data.noun``'s ``@`` (hypernym) and ``@i`` (instance hypernym) pointers; a synset
can have several (dog: canine and domestic animal), so the table is a DAG, not a tree. Lines are
sorted by wnid. The classes are read from the committed ``imagenet_classes.tsv``.

Usage (needs ``apt-get install wordnet-base``; nothing at run time needs WordNet)::

    python scripts/build_hypernyms.py [--wordnet-dir /usr/share/wordnet]
"""

from __future__ import annotations

import argparse
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT_DIR = REPO / "src" / "concept" / "data"
ENTITY = "n00001740"


def read_hierarchy(data_noun: Path) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """{wnid: hypernym wnids} and {wnid: lemmas} of every noun synset of a WordNet ``data.noun``."""
    parents: dict[str, list[str]] = {}
    lemmas: dict[str, list[str]] = {}
    with data_noun.open(encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("  "):  # licence header
                continue
            fields = line.partition(" | ")[0].split()
            wnid = "n" + fields[0]
            w_cnt = int(fields[3], 16)
            lemmas[wnid] = [fields[4 + 2 * i].replace("_", " ") for i in range(w_cnt)]
            p = 4 + 2 * w_cnt
            p_cnt = int(fields[p])
            pointers = [fields[p + 1 + 4 * i: p + 5 + 4 * i] for i in range(p_cnt)]
            parents[wnid] = ["n" + offset for symbol, offset, pos, _ in pointers
                             if symbol in ("@", "@i") and pos == "n"]
    return parents, lemmas


def rows(classes: list[str], parents: dict[str, list[str]], lemmas: dict[str, list[str]]) -> list[str]:
    """The table's lines for the classes and all their ancestors."""
    keep: set[str] = set()
    stack = list(classes)
    while stack:
        wnid = stack.pop()
        if wnid in keep:
            continue
        if wnid not in parents:
            raise SystemExit(f"{wnid} is not in data.noun")
        keep.add(wnid)
        stack.extend(parents[wnid])
    roots = [w for w in keep if not parents[w]]
    if roots != [ENTITY]:
        raise SystemExit(f"expected entity.n.01 as the only root, got {roots}")
    return [f"{w}\t{' '.join(parents[w])}\t{', '.join(lemmas[w])}" for w in sorted(keep)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wordnet-dir", type=Path, default=Path("/usr/share/wordnet"))
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    args = parser.parse_args(argv)
    table = (args.out / "imagenet_classes.tsv").read_text(encoding="utf-8").splitlines()[1:]
    classes = [line.split("\t")[1] for line in table if line]
    if len(classes) != 1000:
        raise SystemExit(f"expected 1000 classes in imagenet_classes.tsv, got {len(classes)}")
    parents, lemmas = read_hierarchy(args.wordnet_dir / "data.noun")
    lines = rows(classes, parents, lemmas)
    path = args.out / "imagenet_hypernyms.tsv"
    path.write_text("wnid\thypernyms\tlemmas\n" + "\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {path}: {len(lines)} synsets")


if __name__ == "__main__":
    main()
