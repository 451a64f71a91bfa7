"""The README's duplicate-group figure: a playing card and an apple from OpenClipart (Debian
`openclipart-png`), altered copies of each (JPEG at quality 70, a 70% resize, a 6% crop of two edges,
10% brighter) and their look-alikes (other queens and kings of the deck, the apple with a worm), run
through `find_duplicates` as a user would; each group found is drawn as a row, its kept image first,
then the images in no group.

    python scripts/duplicate_group_figure.py [OUT.png]     # default docs/images/duplicate_group.png
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw, ImageEnhance

from concept import find_duplicates
from concept.images import load_image

ROOT = Path("/usr/share/openclipart/png")
ORIGINALS = ["recreation/games/cards/white/white_h_q.png", "food/apple_bitten_dan_gerhard_01.png"]
LOOK_ALIKES = ["recreation/games/cards/white/white_h_k.png", "recreation/games/cards/white/white_d_q.png",
               "food/apple_with_worm_dan_gerh_01.png"]
CELL, LABEL = 150, 34


def copies(original: Path, folder: Path) -> list[tuple[Path, str]]:
    im = load_image(original)
    w, h = im.size
    made = [(im, "JPEG q70", "jpg"), (im.resize((w * 7 // 10, h * 7 // 10), Image.LANCZOS), "70% resize", "png"),
            (im.crop((round(w * 0.06), round(h * 0.06), w, h)), "6% crop", "png"),
            (ImageEnhance.Brightness(im).enhance(1.1), "10% brighter", "png")]
    out = []
    for i, (copy, kind, ext) in enumerate(made):
        path = folder / f"{original.stem}_copy{i}.{ext}"
        copy.save(path, **({"quality": 70} if ext == "jpg" else {}))
        out.append((path, kind))
    return out


def main(out: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        items = []
        for name in ORIGINALS:
            items.append((ROOT / name, "original"))
            items += copies(ROOT / name, Path(tmp))
        items += [(ROOT / name, "look-alike") for name in LOOK_ALIKES]
        paths = [p for p, _ in items]
        found = find_duplicates(paths)
        print(found.summary())
        rows = [(f"group {g}", group) for g, group in enumerate(found.exact + found.near)]
        grouped = {r for _, group in rows for r in group}
        rows.append(("in no group", [r for r in range(len(paths)) if r not in grouped]))
        width = CELL * max(len(group) for _, group in rows) + 110
        sheet = Image.new("RGB", (width, (CELL + LABEL) * len(rows)), "white")
        draw = ImageDraw.Draw(sheet)
        for y, (title, group) in enumerate(rows):
            top = y * (CELL + LABEL)
            draw.text((8, top + CELL // 2), title, fill="black")
            for x, row in enumerate(group):
                thumb = load_image(paths[row])
                thumb.thumbnail((CELL - 10, CELL - 10))
                left = 110 + x * CELL
                sheet.paste(thumb, (left + (CELL - thumb.width) // 2, top + (CELL - thumb.height) // 2))
                kept = "kept" if title != "in no group" and x == 0 else ("copy" if title != "in no group" else "")
                label = ", ".join(s for s in (kept, items[row][1]) if s)
                draw.text((left + 4, top + CELL + 4), label, fill="black")
                draw.text((left + 4, top + CELL + 18), paths[row].name[:24], fill="grey")
        out.parent.mkdir(parents=True, exist_ok=True)
        sheet.save(out)
        print(f"wrote {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "docs/images/duplicate_group.png")
