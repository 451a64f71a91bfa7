"""Build the word lists bundled in ``src/concept/data/`` (run by a developer; output is committed).

Writes three files from Debian's ``wordnet-base`` (WordNet 3.0) and the ImageNet-1k class order
shipped in the ``timm`` wheel:

- ``wordnet_nouns.txt``: every WordNet noun lemma, most common first.
- ``imagenet_classes.tsv``: the 1,000 ImageNet-1k classes in model output order.
- ``LICENSE.wordnet``: the WordNet 3.0 licence, verbatim, and the source of the class order.

Usage::

    python scripts/build_data.py [--wordnet-dir /usr/share/wordnet]
                                 [--synsets path/to/imagenet_synsets.txt]

Without ``--synsets`` the script runs ``pip download --no-deps timm==1.0.31`` into a temporary
folder and reads ``timm/data/_info/imagenet_synsets.txt`` out of the wheel (timm is not installed).

Frequency: the brief asked for ``index.sense``; Debian's ``wordnet-base`` does not ship it, but it
ships ``cntlist.rev`` (``sense_key sense_number tag_cnt``), the file WordNet's ``index.sense``
tag counts are taken from. It lists only senses with a non-zero count, so summing over it is the
same as summing ``index.sense``'s ``tag_cnt``. Sense keys are built per synset from ``data.noun``
(``lemma%1:lex_filenum:lex_id::``), so a capitalised lemma (``Mercury``, the planet) and its
lower-case twin (``mercury``, the element) each get the counts of their own senses.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import zipfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT_DIR = REPO / "src" / "concept" / "data"
TIMM_VERSION = "1.0.31"
TIMM_MEMBER = "timm/data/_info/imagenet_synsets.txt"
COPYRIGHT = Path("/usr/share/doc/wordnet-base/copyright")

# Syntactic markers WordNet appends to some adjective lemmas; nouns should have none.
_MARKER = re.compile(r"\((?:a|p|ip)\)$")


@dataclass(frozen=True)
class Synset:
    """One noun synset of ``data.noun``."""

    offset: int
    lex_filenum: int
    words: tuple[tuple[str, int], ...]  # (lemma as written, lex_id)
    gloss: str


def _clean(word: str) -> str:
    return _MARKER.sub("", word).replace("_", " ")


def read_data_noun(path: Path) -> list[Synset]:
    """Parse every synset line of a WordNet ``data.noun`` file."""
    synsets = []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("  "):  # licence header
                continue
            data, _, gloss = line.partition(" | ")
            fields = data.split()
            offset, lex_filenum, w_cnt = int(fields[0]), int(fields[1]), int(fields[3], 16)
            words = tuple(
                (fields[4 + 2 * i], int(fields[5 + 2 * i], 16)) for i in range(w_cnt)
            )
            gloss = " ".join(gloss.split())  # no tabs or newlines in the TSV
            synsets.append(Synset(offset, lex_filenum, words, gloss))
    return synsets


def read_noun_counts(path: Path) -> dict[str, int]:
    """Tag counts of noun senses (``%1``) from ``cntlist.rev``, keyed by sense key."""
    counts: dict[str, int] = {}
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            key, _, count = line.split()
            if "%1:" in key:
                counts[key] = counts.get(key, 0) + int(count)
    return counts


def ranked_nouns(synsets: list[Synset], counts: dict[str, int]) -> list[str]:
    """Every distinct noun lemma, by summed tag count, ties alphabetical (case-insensitive)."""
    total: dict[str, int] = defaultdict(int)
    for s in synsets:
        for word, lex_id in s.words:
            bare = _MARKER.sub("", word)
            key = f"{bare.lower()}%1:{s.lex_filenum:02d}:{lex_id:02d}::"
            total[_clean(word)] += counts.get(key, 0)
    return sorted(total, key=lambda w: (-total[w], w.casefold(), w))


def read_timm_synsets(path: Path | None) -> list[str]:
    """The 1,000 ImageNet-1k wnids in class-index order, from a file or the timm wheel."""
    if path is not None:
        text = path.read_text(encoding="utf-8")
    else:
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                 f"timm=={TIMM_VERSION}", "-d", tmp],
                check=True,
            )
            (wheel,) = Path(tmp).glob("timm-*.whl")
            with zipfile.ZipFile(wheel) as zf:
                text = zf.read(TIMM_MEMBER).decode("utf-8")
    wnids = text.split()
    if len(wnids) != 1000 or len(set(wnids)) != 1000:
        raise SystemExit(f"expected 1000 unique wnids, got {len(wnids)} ({len(set(wnids))} unique)")
    if not all(re.fullmatch(r"n\d{8}", w) for w in wnids):
        raise SystemExit("malformed wnid in the synset list")
    return wnids


def imagenet_rows(wnids: list[str], synsets: list[Synset]) -> list[str]:
    """TSV rows ``index, wnid, lemmas, gloss`` for each wnid, looked up in ``data.noun``."""
    by_offset = {s.offset: s for s in synsets}
    missing = [w for w in wnids if int(w[1:]) not in by_offset]
    if missing:
        raise SystemExit(f"{len(missing)} wnids not in data.noun, e.g. {missing[:5]}")
    rows = []
    for i, wnid in enumerate(wnids):
        s = by_offset[int(wnid[1:])]
        lemmas = ", ".join(_clean(w) for w, _ in s.words)
        rows.append(f"{i}\t{wnid}\t{lemmas}\t{s.gloss}")
    return rows


def licence_text(copyright_path: Path) -> str:
    """The WordNet 3.0 licence from the Debian copyright file, plus the wnid-order source."""
    lines = copyright_path.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("License: WordNet3.0"))
    body = []
    for line in lines[start + 1:]:
        if not line.startswith(" "):  # next stanza
            break
        body.append("" if line.strip() == "." else line[1:])
    return (
        "wordnet_nouns.txt and the lemmas and glosses of imagenet_classes.tsv are derived from\n"
        "WordNet 3.0 (Debian package wordnet-base), distributed under this licence:\n\n"
        + "\n".join(body).rstrip()
        + "\n\n"
        f"The order of the ImageNet-1k wnids in imagenet_classes.tsv comes from "
        f"{TIMM_MEMBER} in timm {TIMM_VERSION} (https://github.com/huggingface/pytorch-image-models), "
        "Apache-2.0.\n"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wordnet-dir", type=Path, default=Path("/usr/share/wordnet"))
    parser.add_argument("--synsets", type=Path, default=None,
                        help="path to timm's imagenet_synsets.txt (default: download the wheel)")
    parser.add_argument("--copyright", type=Path, default=COPYRIGHT)
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    args = parser.parse_args(argv)

    synsets = read_data_noun(args.wordnet_dir / "data.noun")
    counts = read_noun_counts(args.wordnet_dir / "cntlist.rev")
    nouns = ranked_nouns(synsets, counts)
    rows = imagenet_rows(read_timm_synsets(args.synsets), synsets)

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "wordnet_nouns.txt").write_text("\n".join(nouns) + "\n", encoding="utf-8")
    (args.out / "imagenet_classes.tsv").write_text(
        "index\twnid\tlemmas\tgloss\n" + "\n".join(rows) + "\n", encoding="utf-8"
    )
    (args.out / "LICENSE.wordnet").write_text(licence_text(args.copyright), encoding="utf-8")

    single = sum(" " not in n for n in nouns)
    print(f"{len(nouns)} nouns ({single} single words), {len(rows)} ImageNet classes -> {args.out}")


if __name__ == "__main__":
    main()
