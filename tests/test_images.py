"""Tests for concept.images: every input kind and PIL mode to RGB, failures reported per item."""

from __future__ import annotations

import gc
import logging
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, features

from concept._errors import ImageLoadError
from concept.images import (
    DEFAULT_MAX_PIXELS,
    LoadFailure,
    LoadReport,
    iter_image_batches,
    list_image_files,
    load_image,
)

skdata = pytest.importorskip("skimage.data")

OPENCLIPART = Path("/usr/share/openclipart/png")
RED, WHITE = (255, 0, 0), (255, 255, 255)


@pytest.fixture(scope="module")
def chelsea() -> Image.Image:
    """A real RGB photo, 451x300."""
    return Image.fromarray(skdata.chelsea())


@pytest.fixture(scope="module")
def clipart() -> list[Path]:
    """Three real RGBA PNGs from Debian's openclipart-png."""
    if not OPENCLIPART.is_dir():
        pytest.skip(f"{OPENCLIPART} is missing (install Debian package openclipart-png)")
    files = sorted(OPENCLIPART.glob("animals/*.png"))[:3]
    if len(files) < 3:
        pytest.skip(f"fewer than 3 PNGs in {OPENCLIPART / 'animals'}")
    return files


def _pixels(im: Image.Image) -> list[tuple[int, int, int]]:
    return [tuple(int(v) for v in p) for p in np.asarray(im).reshape(-1, 3)]


def _bilevel_png(width: int, height: int, idat: bytes) -> bytes:
    """A 1-bit grayscale PNG written by hand, so a huge one costs no memory to make."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat)
            + chunk(b"IEND", b""))


# ---------------------------------------------------------------- real images


def test_real_clipart_and_photos_load_as_rgb(clipart: list[Path], tmp_path: Path) -> None:
    photos = {"chelsea": skdata.chelsea(), "astronaut": skdata.astronaut(),
              "coffee": skdata.coffee()}
    paths = []
    for name, array in photos.items():
        Image.fromarray(array).save(tmp_path / f"{name}.png")
        paths.append(tmp_path / f"{name}.png")
    for path in [*clipart, *paths]:
        with Image.open(path) as original:
            size = original.size
        im = load_image(path)
        assert im.mode == "RGB" and im.size == size
    # Lossless round trip of the photos.
    assert np.array_equal(np.asarray(load_image(paths[0])), photos["chelsea"])
    # Clipart has transparent background: the corner composites to white.
    assert load_image(clipart[0]).getpixel((0, 0)) == WHITE


# ---------------------------------------------------------------- PIL modes


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBa", "CMYK",
                                  "YCbCr", "I", "F", "I;16", "I;16B", "HSV"])
def test_every_mode_becomes_rgb_of_the_same_size(chelsea: Image.Image, mode: str) -> None:
    gray = chelsea.convert("L")
    if mode in ("I;16", "I;16B"):
        values = np.asarray(gray).astype(np.uint16) * 257  # full 16-bit range
        dtype = "<u2" if mode == "I;16" else ">u2"
        im = Image.frombytes(mode, gray.size, values.astype(dtype).tobytes())
    elif mode == "F":
        im = Image.fromarray(np.asarray(gray).astype(np.float32) / 255.0)  # float in 0..1
    elif mode in ("I", "LA"):
        im = gray.convert(mode)
    elif mode in ("RGBa", "PA"):
        im = chelsea.convert("RGBA").convert(mode)
    else:
        im = chelsea.convert(mode)
    out = load_image(im)
    assert out.mode == "RGB" and out.size == chelsea.size
    got = np.asarray(out).astype(int)
    if mode in ("L", "LA", "I", "F", "I;16", "I;16B"):
        # Gray data keeps its values: no clipping to black/white, no overflow.
        assert np.abs(got[..., 0] - np.asarray(gray)).max() <= 1
    elif mode in ("RGB", "RGBA", "RGBa", "CMYK", "YCbCr", "HSV"):
        assert np.abs(got - np.asarray(chelsea)).mean() < 3
    assert out is not im


def test_float_image_above_one_is_clipped_to_0_255() -> None:
    im = Image.fromarray(np.array([[0.0, 128.0, 300.0, -5.0]], dtype=np.float32))
    assert [p[0] for p in _pixels(load_image(im))] == [0, 128, 255, 0]


def test_32bit_image_holding_16bit_values_is_scaled() -> None:
    im = Image.fromarray(np.array([[0, 32896, 65535]], dtype=np.int32))
    assert [p[0] for p in _pixels(load_image(im))] == [0, 128, 255]


def test_16bit_png_gradient_keeps_its_ordering(tmp_path: Path) -> None:
    ramp = np.tile(np.linspace(0, 65535, 512).astype(np.uint16), (4, 1))
    path = tmp_path / "ramp16.png"
    Image.frombytes("I;16", (512, 4), ramp.astype("<u2").tobytes()).save(path)
    row = np.asarray(load_image(path))[0, :, 0].astype(int)
    assert row[0] == 0 and row[-1] == 255
    assert np.all(np.diff(row) >= 0) and len(np.unique(row)) > 200


@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
def test_palette_transparency_becomes_white(tmp_path: Path, fmt: str) -> None:
    im = Image.new("P", (2, 1))
    im.putpalette([255, 0, 0, 0, 0, 0])
    im.putpixel((0, 0), 0)
    im.putpixel((1, 0), 1)
    im.info["transparency"] = 1
    assert _pixels(load_image(im)) == [RED, WHITE]
    path = tmp_path / f"p.{fmt.lower()}"
    im.save(path, transparency=1)  # tRNS chunk / GIF transparent index
    assert _pixels(load_image(path)) == [RED, WHITE]


@pytest.mark.parametrize("mode", ["RGBA", "LA", "RGBa"])
def test_alpha_is_composited_on_white(tmp_path: Path, mode: str) -> None:
    rgba = Image.new("RGBA", (2, 1))
    rgba.putpixel((0, 0), (255, 0, 0, 255))
    rgba.putpixel((1, 0), (0, 0, 0, 0))
    im = rgba.convert(mode)
    want = [RED if mode != "LA" else (76, 76, 76), WHITE]  # LA: red as gray
    assert _pixels(load_image(im)) == want
    if mode != "RGBa":  # PNG cannot store premultiplied alpha
        im.save(tmp_path / "a.png")
        assert _pixels(load_image(tmp_path / "a.png")) == want


def test_rgb_png_with_transparent_colour_key(tmp_path: Path) -> None:
    im = Image.new("RGB", (2, 1), RED)
    im.putpixel((1, 0), (0, 0, 0))
    im.save(tmp_path / "key.png", transparency=(0, 0, 0))
    assert _pixels(load_image(tmp_path / "key.png")) == [RED, WHITE]


# ---------------------------------------------------------------- orientation, frames, draft


def test_exif_orientation_6_is_applied(chelsea: Image.Image, tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    path = tmp_path / "rotated.jpg"
    chelsea.save(path, exif=exif, quality=95)
    out = load_image(path)
    assert out.size == (chelsea.height, chelsea.width)
    clockwise = np.rot90(np.asarray(chelsea), k=-1).astype(int)
    assert np.abs(np.asarray(out).astype(int) - clockwise).mean() < 5


FORMATS = ["GIF", "PNG", "TIFF"] + (["WEBP"] if features.check("webp") else [])


@pytest.mark.parametrize("fmt", FORMATS)
def test_animation_gives_its_first_frame(tmp_path: Path, fmt: str) -> None:
    frames = [Image.new("RGB", (8, 8), c) for c in (RED, (0, 255, 0), (0, 0, 255))]
    path = tmp_path / f"anim.{fmt.lower()}"
    extra = {"lossless": True} if fmt == "WEBP" else {}
    frames[0].save(path, format=fmt, save_all=True, append_images=frames[1:], duration=100,
                   **extra)
    with Image.open(path) as check:
        assert getattr(check, "n_frames", 1) == 3
    assert set(_pixels(load_image(path))) == {RED}


def test_jpeg_draft_decodes_smaller_but_not_below_draft_size(tmp_path: Path) -> None:
    path = tmp_path / "astronaut.jpg"
    Image.fromarray(skdata.astronaut()).save(path)  # 512x512
    assert load_image(path).size == (512, 512)
    small = load_image(path, draft_size=(100, 100))
    assert small.mode == "RGB" and 100 <= small.width < 512 and 100 <= small.height < 512
    png = tmp_path / "astronaut.png"
    Image.fromarray(skdata.astronaut()).save(png)
    # Other formats are box-reduced after decoding, to no less than twice the draft size.
    assert load_image(png, draft_size=(100, 100)).size == (256, 256)
    assert load_image(png, draft_size=(200, 200)).size == (512, 512)


def test_reduced_transparent_png_has_no_dark_fringes(tmp_path: Path) -> None:
    """Reducing RGBA must average premultiplied colours: transparent pixels are black here,
    and a naive average would darken the disc's edge before compositing on white."""
    yy, xx = np.mgrid[:800, :800]
    disc = (yy - 400) ** 2 + (xx - 400) ** 2 < 300 ** 2
    rgba = np.zeros((800, 800, 4), np.uint8)
    rgba[disc] = (255, 0, 0, 255)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "disc.png")
    reduced = np.asarray(load_image(tmp_path / "disc.png", draft_size=(100, 100)))
    assert reduced.shape == (200, 200, 3)
    assert reduced[..., 0].min() >= 250  # only red and white and their mixes, no black
    assert tuple(reduced[0, 0]) == (255, 255, 255) and tuple(reduced[100, 100]) == (255, 0, 0)


# ---------------------------------------------------------------- bad files


@pytest.fixture()
def bad_files(tmp_path: Path, chelsea: Image.Image) -> dict[str, tuple[Path, str]]:
    """Each kind of unreadable file with a word its failure reason must contain."""
    chelsea.save(tmp_path / "good.png")
    chelsea.save(tmp_path / "good.jpg")
    png = (tmp_path / "good.png").read_bytes()
    jpg = (tmp_path / "good.jpg").read_bytes()
    corrupt = bytearray(png)
    corrupt[len(png) // 2: len(png) // 2 + 64] = bytes(64)
    files = {
        "missing": (tmp_path / "missing.png", None, "not found"),
        "empty": (tmp_path / "empty.png", b"", "empty"),
        "half_png": (tmp_path / "half.png", png[: len(png) // 2], "truncated"),
        "half_jpg": (tmp_path / "half.jpg", jpg[: len(jpg) // 2], "truncated"),
        "corrupt": (tmp_path / "corrupt.png", bytes(corrupt), "corrupt"),
        "text": (tmp_path / "notes.png", b"this is not a picture\n", "not an image"),
        "random": (tmp_path / "noise.jpg", np.random.default_rng(0).bytes(2000), "not an image"),
        "directory": (tmp_path / "folder.png", None, "directory"),
    }
    (tmp_path / "folder.png").mkdir()
    for path, data, _ in files.values():
        if data is not None:
            path.write_bytes(data)
    return {kind: (path, word) for kind, (path, _, word) in files.items()}


@pytest.mark.parametrize("kind", ["missing", "empty", "half_png", "half_jpg", "corrupt", "text",
                                  "random", "directory"])
def test_each_bad_file_is_one_failure_between_good_ones(
        bad_files: dict[str, tuple[Path, str]], kind: str, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    bad, word = bad_files[kind]
    items = [tmp_path / "good.png", str(bad), tmp_path / "good.jpg"]
    report = LoadReport()
    with caplog.at_level(logging.WARNING, logger="concept.images"):
        batches = list(iter_image_batches(items, batch_size=2, report=report))
    assert [idx for idx, _ in batches] == [[0], [2]]
    assert all(im.size == (451, 300) for _, ims in batches for im in ims)
    assert report.loaded == [0, 2]
    assert len(report.failures) == 1
    failure = report.failures[0]
    assert failure.index == 1 and failure.source == str(bad)
    assert word in failure.reason and "\n" not in failure.reason
    assert str(bad) in caplog.text and word in caplog.text

    with pytest.raises(ImageLoadError, match=word) as info:
        list(iter_image_batches(items, batch_size=2, strict=True))
    assert str(bad) in str(info.value)
    with pytest.raises(ImageLoadError, match=word) as info:
        load_image(bad)
    assert str(bad) in str(info.value)


def test_decompression_bomb_is_refused_before_decoding(tmp_path: Path) -> None:
    pil_limit = Image.MAX_IMAGE_PIXELS
    # 20000x20000 = 400M pixels, about 50 kB on disk.
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_bilevel_png(20000, 20000, zlib.compress(bytes(20000 * 2501), 9)))
    assert bomb.stat().st_size < 100_000
    with pytest.raises(ImageLoadError, match="decompression bomb"):
        load_image(bomb)
    # A smaller one whose pixel data is garbage: refusing it says "bomb", not "corrupt",
    # so the check ran on the header, before any decoding.
    small = tmp_path / "small_bomb.png"
    small.write_bytes(_bilevel_png(5000, 5000, b"garbage"))
    report = LoadReport()
    assert list(iter_image_batches([small], 1, report=report, max_pixels=1_000_000)) == []
    reason = report.failures[0].reason
    assert "decompression bomb" in reason and "25,000,000" in reason and "1,000,000" in reason
    with pytest.raises(ImageLoadError, match="corrupt"):
        load_image(small, max_pixels=None)
    # In-memory inputs obey max_pixels too.
    with pytest.raises(ImageLoadError, match="max_pixels"):
        load_image(np.zeros((100, 100), np.uint8), max_pixels=9_999)
    assert Image.MAX_IMAGE_PIXELS == pil_limit  # PIL's global setting untouched
    assert DEFAULT_MAX_PIXELS == 2 * 89_478_485


def test_no_file_handles_leak(bad_files: dict[str, tuple[Path, str]], tmp_path: Path) -> None:
    frames = [Image.new("RGB", (4, 4), c) for c in (RED, WHITE)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    items = [tmp_path / "good.png", tmp_path / "anim.gif"] + [p for p, _ in bad_files.values()]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in iter_image_batches(items, 3):
            pass
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]


# ---------------------------------------------------------------- arrays


@pytest.mark.parametrize("array, first_pixel", [
    (np.full((3, 2), 200, np.uint8), (200, 200, 200)),
    (np.full((3, 2, 1), 200, np.uint8), (200, 200, 200)),
    (np.full((3, 2, 3), (255, 0, 0), np.uint8), RED),
    (np.full((3, 2, 4), (255, 0, 0, 0), np.uint8), WHITE),
    (np.full((3, 2, 4), (255, 0, 0, 255), np.uint8), RED),
    (np.full((3, 2), 65535, np.uint16), WHITE),
    (np.full((3, 2), 32896, np.dtype(">u2")), (128, 128, 128)),
    (np.ones((3, 2), bool), WHITE),
    (np.full((3, 2), 0.5, np.float32), (128, 128, 128)),
    (np.full((3, 2, 3), (1.0, 0.0, 0.0), np.float64), RED),
    (np.asfortranarray(np.full((3, 2, 3), 7, np.uint8)), (7, 7, 7)),
])
def test_arrays_of_each_dtype_and_shape(array: np.ndarray, first_pixel: tuple) -> None:
    out = load_image(array)
    assert out.mode == "RGB" and out.size == (2, 3)
    assert out.getpixel((0, 0)) == first_pixel


@pytest.mark.parametrize("array", [
    np.zeros((2, 3, 5), np.uint8),
    np.zeros((4,), np.uint8),
    np.zeros((2, 2, 2, 3), np.uint8),
    np.zeros((0, 3), np.uint8),
    np.zeros((2, 3), np.int64),
    np.zeros((2, 3), np.complex64),
    np.full((2, 3), 2.0),
    np.full((2, 3), np.nan),
])
def test_unsupported_arrays_fail_clearly(array: np.ndarray) -> None:
    report = LoadReport()
    assert list(iter_image_batches([array], 1, report=report)) == []
    assert report.failures == [LoadFailure(0, f"<ndarray shape={array.shape} dtype={array.dtype}>",
                                           report.failures[0].reason)]
    assert report.failures[0].reason.startswith("unsupported array")


def test_unsupported_input_type_is_a_failure_not_a_crash() -> None:
    report = LoadReport()
    batches = list(iter_image_batches([None, np.zeros((2, 2), np.uint8)], 2, report=report))
    assert [idx for idx, _ in batches] == [[1]]
    assert "unsupported input type" in report.failures[0].reason


# ---------------------------------------------------------------- batching


def test_batches_pull_lazily_from_a_generator() -> None:
    pulled = 0

    def images():
        nonlocal pulled
        for i in range(10):
            pulled += 1
            yield np.full((4, 5), i * 20, np.uint8)

    batches = iter_image_batches(images(), batch_size=3)
    assert pulled == 0
    indices, first = next(batches)
    assert pulled == 3 and indices == [0, 1, 2] and len(first) == 3
    rest = list(batches)
    assert [idx for idx, _ in rest] == [[3, 4, 5], [6, 7, 8], [9]]
    assert rest[-1][1][0].getpixel((0, 0)) == (180, 180, 180)


def test_batches_where_nothing_loaded_are_skipped(tmp_path: Path) -> None:
    good = np.zeros((2, 2), np.uint8)
    items = [tmp_path / "a.png", tmp_path / "b.png", good, tmp_path / "c.png"]
    report = LoadReport()
    assert [idx for idx, _ in iter_image_batches(items, 2, report=report)] == [[2]]
    assert [f.index for f in report.failures] == [0, 1, 3]


def test_batch_arguments_are_checked_at_call_time(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="batch_size"):
        iter_image_batches([], 0)
    with pytest.raises(TypeError, match="load_image"):
        iter_image_batches(str(tmp_path / "a.png"), 4)


def test_report_summary_mentions_counts_and_truncates() -> None:
    report = LoadReport(loaded=list(range(2261)), failures=[
        LoadFailure(5, "a.png", "file not found"),
        LoadFailure(9, "b.jpg", "empty file (0 bytes)")])
    text = report.summary()
    assert text.startswith("2,261 images loaded, 2 failed")
    assert "a.png (file not found)" in text and "b.jpg" in text
    many = LoadReport(loaded=[0], failures=[LoadFailure(i, f"f{i}.png", "x") for i in range(12)])
    assert many.summary().startswith("1 image loaded, 12 failed")
    assert "f4.png" in many.summary() and "f5.png" not in many.summary()
    assert "7 more" in many.summary()
    assert LoadReport(loaded=[0, 1]).summary() == "2 images loaded, 0 failed"


# ---------------------------------------------------------------- listing files


def test_list_image_files_filters_and_sorts(tmp_path: Path) -> None:
    for name in ["b.JPG", "a.png", "sub/d.TIFF", "sub/c.webp", "sub/deeper/e.Gif", "notes.txt",
                 "f.jpeg.bak", ".hidden.png", ".cache/g.png", "z.bmp", "y.tif", "x.jpeg"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "folder.png").mkdir()
    found = [p.relative_to(tmp_path).as_posix() for p in list_image_files(tmp_path)]
    assert found == ["a.png", "b.JPG", "sub/c.webp", "sub/d.TIFF", "sub/deeper/e.Gif",
                     "x.jpeg", "y.tif", "z.bmp"]
    flat = [p.name for p in list_image_files(str(tmp_path), recursive=False)]
    assert flat == ["a.png", "b.JPG", "x.jpeg", "y.tif", "z.bmp"]


def test_list_image_files_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ImageLoadError, match="does not exist") as info:
        list_image_files(tmp_path / "nope")
    assert str(tmp_path / "nope") in str(info.value)
    (tmp_path / "file.png").write_bytes(b"")
    with pytest.raises(ImageLoadError, match="not a folder"):
        list_image_files(tmp_path / "file.png")


def test_dangling_links_and_fifos_are_listed_and_reported_never_opened(tmp_path: Path) -> None:
    import os
    import threading

    Image.new("RGB", (8, 8), RED).save(tmp_path / "good.png")
    (tmp_path / "dangling.png").symlink_to(tmp_path / "gone.png")
    os.mkfifo(tmp_path / "pipe.png")  # opening it would wait for a writer forever
    (tmp_path / "linked_folder.png").symlink_to(tmp_path, target_is_directory=True)
    assert [p.name for p in list_image_files(tmp_path)] == ["dangling.png", "good.png", "pipe.png"]

    report = LoadReport()
    done = threading.Event()

    def load() -> None:
        list(iter_image_batches(list_image_files(tmp_path), 4, report=report))
        done.set()

    threading.Thread(target=load, daemon=True).start()
    assert done.wait(30), "loading blocked on the FIFO"
    assert report.loaded == [1]
    reasons = {Path(f.source).name: f.reason for f in report.failures}
    assert "dangling symbolic link" in reasons["dangling.png"]
    assert "not a regular file (a FIFO)" in reasons["pipe.png"]
    with pytest.raises(ImageLoadError, match="dangling"):
        load_image(tmp_path / "dangling.png")


def test_folders_nested_deeper_than_the_recursion_limit(tmp_path: Path) -> None:
    import os
    import sys

    depth = sys.getrecursionlimit() + 100
    folder = str(tmp_path)
    for _ in range(depth):  # os.makedirs would itself recurse this deep
        folder = os.path.join(folder, "d")
        os.mkdir(folder)
    Image.new("RGB", (8, 8), RED).save(os.path.join(folder, "deep.png"))
    try:
        (found,) = list_image_files(tmp_path)
        assert found.name == "deep.png" and len(found.relative_to(tmp_path).parts) == depth + 1
        report = LoadReport()
        assert len(list(iter_image_batches([found], 1, report=report))) == 1
    finally:  # pytest's clean-up (shutil.rmtree) recurses, so remove the tree bottom-up here
        os.remove(os.path.join(folder, "deep.png"))
        while folder != str(tmp_path):
            os.rmdir(folder)
            folder = os.path.dirname(folder)


def test_a_pil_warning_names_the_file_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # An EXIF block whose first directory claims 3 entries but holds 2 bytes: PIL warns
    # "Corrupt EXIF data" from its own source line, which names no file.
    exif = b"Exif\x00\x00II*\x00" + struct.pack("<IH", 8, 3) + b"\x12\x01"
    path = tmp_path / "holiday.jpg"
    Image.new("RGB", (20, 10), RED).save(path, exif=exif)
    with warnings.catch_warnings(record=True) as escaped, caplog.at_level(logging.WARNING, "concept.images"):
        warnings.simplefilter("always")
        report = LoadReport()
        batches = list(iter_image_batches([path], 1, report=report))
    assert len(batches) == 1 and report.loaded == [0]  # the image itself is fine
    assert [str(w.message) for w in escaped] == []
    records = [r.getMessage() for r in caplog.records if "EXIF" in r.getMessage()]
    assert len(records) == 1 and str(path) in records[0] and "Corrupt EXIF data" in records[0], records


def test_memory_freed_by_a_large_decode_goes_back_to_the_system(tmp_path):
    """A decode worker that decoded one 100-megapixel PNG kept its memory resident for the rest
    of the run (glibc keeps large freed blocks); after a large decode it is handed back."""
    import subprocess
    import sys

    path = tmp_path / "large.png"
    Image.new("RGBA", (7000, 7000), (10, 20, 30, 40)).save(path, compress_level=1)  # 49 MP, 196 MB
    script = ("import sys\nfrom concept.images import load_image\n"
              "def rss():\n    for line in open('/proc/self/status'):\n"
              "        if line.startswith('VmRSS'):\n            return int(line.split()[1])\n"
              "start = rss()\nfor _ in range(2):\n    image = load_image(sys.argv[1], draft_size=(224, 224))\n"
              "print((rss() - start) / 1024)\n")
    out = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, check=True)
    assert float(out.stdout.split()[-1]) < 60
