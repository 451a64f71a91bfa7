"""Tests for concept.collage: whole images kept in shape, grid sizes, any mode, real images."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from concept._errors import ConceptError, ImageLoadError
from concept.collage import make_collage

RED, WHITE, GREY = (255, 0, 0), (255, 255, 255), (128, 128, 128)


def _box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) bounding box of the True pixels, x1/y1 exclusive."""
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def _red_mask(a: np.ndarray) -> np.ndarray:
    return (a[..., 0] > 200) & (a[..., 1] < 60) & (a[..., 2] < 60)


def test_wide_image_keeps_aspect_ratio_and_is_centred():
    out = make_collage([Image.new("RGB", (200, 50), RED)], tile=100, padding=0)
    assert out.size == (100, 100) and out.mode == "RGB"
    a = np.asarray(out)
    x0, y0, x1, y1 = _box(_red_mask(a))
    assert (x1 - x0, y1 - y0) == (100, 25)  # the whole image, 4:1, not cropped to a square
    assert abs((y0 + y1) / 2 - 50) <= 1  # vertically centred
    assert _red_mask(a).sum() == 100 * 25
    assert (a[:y0] == WHITE).all() and (a[y1:] == WHITE).all()  # letterboxed on white


def test_tall_image_keeps_aspect_ratio_and_is_centred():
    a = np.asarray(make_collage([Image.new("RGB", (50, 200), RED)], tile=100, padding=0))
    x0, y0, x1, y1 = _box(_red_mask(a))
    assert (x1 - x0, y1 - y0) == (25, 100)
    assert abs((x0 + x1) / 2 - 50) <= 1
    assert (a[:, :x0] == WHITE).all() and (a[:, x1:] == WHITE).all()


@pytest.mark.parametrize("n, cols, rows", [(1, 1, 1), (2, 2, 1), (8, 3, 3), (9, 3, 3), (10, 4, 3)])
def test_default_grid_size(n, cols, rows):
    out = make_collage([Image.new("RGB", (30, 20), RED)] * n, tile=50, padding=4)
    assert out.size == (cols * 50 + (cols + 1) * 4, rows * 50 + (rows + 1) * 4)


def test_explicit_columns_and_tile_positions():
    images = [Image.new("RGB", (10, 10), c) for c in (RED, (0, 255, 0), (0, 0, 255))]
    out = make_collage(images, tile=20, columns=2, padding=2, background=(0, 0, 0))
    assert out.size == (2 * 20 + 3 * 2, 2 * 20 + 3 * 2)
    assert out.getpixel((2 + 10, 2 + 10)) == RED  # row 0, col 0
    assert out.getpixel((2 + 22 + 10, 2 + 10)) == (0, 255, 0)  # row 0, col 1
    assert out.getpixel((2 + 10, 2 + 22 + 10)) == (0, 0, 255)  # row 1, col 0
    assert out.getpixel((2 + 22 + 10, 2 + 22 + 10)) == (0, 0, 0)  # empty cell: background
    one_row = make_collage(images, tile=20, columns=5, padding=0)
    assert one_row.size == (100, 20)


def test_tiny_image_is_scaled_up_sharply():
    a = np.asarray(make_collage([Image.new("L", (28, 28), 128)], tile=160, padding=0))
    grey = (a == GREY).all(axis=2)
    x0, y0, x1, y1 = _box(grey)
    assert (x1 - x0, y1 - y0) == (160, 160)  # fills the tile, not a 28 px dot
    assert grey.all()  # no blurred or ringing edge


def test_small_image_upscaled_keeps_its_pixels_crisp():
    checker = Image.fromarray((np.indices((4, 4)).sum(axis=0) % 2 * 255).astype(np.uint8))
    a = np.asarray(make_collage([checker], tile=40, padding=0))
    assert set(np.unique(a)) <= {0, 255}  # NEAREST: only the original values, no grey blur


def test_rgba_transparency_becomes_white():
    rgba = Image.new("RGBA", (40, 40), (0, 0, 0, 0))
    rgba.paste((255, 0, 0, 255), (10, 10, 30, 30))
    a = np.asarray(make_collage([rgba], tile=40, padding=0, background=(0, 0, 255)))
    assert (a[:5, :5] == WHITE).all()  # transparent corner: white, not black
    assert (a[20, 20] == RED).all()


def test_palette_and_other_modes():
    p = Image.new("RGB", (30, 30), RED).convert("P")
    la = Image.new("LA", (30, 30), (0, 0))
    one = Image.new("1", (30, 30), 1)
    out = make_collage([p, la, one], tile=30, padding=0)
    a = np.asarray(out)
    assert out.mode == "RGB" and out.size == (60, 60)
    assert (a[15, 15] == RED).all()
    assert (a[15, 45] == WHITE).all() and (a[45, 15] == WHITE).all()


def test_real_openclipart_pngs(clipart_paths):
    images = [Image.open(p) for p in clipart_paths[:9]]
    out = make_collage(images, tile=64)
    assert out.size == (3 * 64 + 4 * 4, 3 * 64 + 4 * 4)
    a = np.asarray(out)
    assert (a < 200).any(axis=2).mean() > 0.05  # drawings are on it, not a blank page


def test_photos_and_paths(sample_photos, tmp_path):
    path = tmp_path / "cat.jpg"
    sample_photos["chelsea"].save(path)
    out = make_collage([*sample_photos.values(), path], tile=48, padding=1)
    assert out.size == (2 * 48 + 3, 2 * 48 + 3)
    assert np.asarray(out).std() > 20


def test_bad_arguments_raise():
    img = Image.new("RGB", (10, 10))
    with pytest.raises(ConceptError, match="at least one image"):
        make_collage([])
    with pytest.raises(ConceptError, match="tile"):
        make_collage([img], tile=4)
    with pytest.raises(ConceptError, match="columns"):
        make_collage([img], columns=0)
    with pytest.raises(ConceptError, match="padding"):
        make_collage([img], padding=-1)
    with pytest.raises(ImageLoadError):
        make_collage([img, "/nonexistent/x.png"])


def _peak_mb_above_start(code: str, png: str) -> float:
    """Peak resident memory (MB) a fresh interpreter gains running `code` with `png` as PATH.

    Read from VmHWM (this process's own high-water mark): ru_maxrss starts at the forking
    parent's size on Linux, and pytest's process holds the test image."""
    import subprocess
    import sys

    script = ("import sys\nPATH = sys.argv[1]\nfrom concept.collage import exemplar_collage\n"
              "from concept.images import load_image\nimport numpy, PIL.PngImagePlugin\n"
              "def hwm():\n    for line in open('/proc/self/status'):\n"
              "        if line.startswith('VmHWM'):\n            return int(line.split()[1])\n"
              "start = hwm()\n" + code + "\nprint((hwm() - start) / 1024)\n")
    out = subprocess.run([sys.executable, "-c", script, png], capture_output=True, text=True, check=True)
    return float(out.stdout.split()[-1])


@pytest.fixture(scope="module")
def huge_png(tmp_path_factory) -> str:
    """An 8,000 x 8,000 RGBA PNG (256 MB decoded), like OpenClipart's largest (10,562 x 16,000)."""
    from PIL import ImageDraw

    im = Image.new("RGBA", (8000, 8000), (255, 255, 255, 0))
    ImageDraw.Draw(im).ellipse((1000, 1000, 7000, 7000), fill=(200, 30, 30, 255))
    path = tmp_path_factory.mktemp("huge") / "huge.png"
    im.save(path, compress_level=1)
    return str(path)


def test_exemplar_collage_holds_one_full_size_image_at_a_time(huge_png):
    """Collages of a fit held every exemplar decoded at full size, then converted and composited
    (several full-size copies each): 6 GiB peak for the 2,262-image demo. Now each exemplar is
    decoded, reduced in strips and scaled to its tile before the next: at most about one
    decoded image (256 MB here) is held, whatever the number of exemplars."""
    gained = _peak_mb_above_start("c = exemplar_collage([PATH, PATH, PATH])\nassert c.size == (332, 332)", huge_png)
    assert gained < 256 * 1.4, gained


def test_a_huge_png_is_reduced_without_a_second_full_size_copy(huge_png):
    """Reducing an RGBA image in one call premultiplies it into a second full-size image."""
    gained = _peak_mb_above_start("im = load_image(PATH, draft_size=(224, 224))\nassert im.size == (471, 471)", huge_png)
    assert gained < 256 * 1.4, gained
