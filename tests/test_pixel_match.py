"""The pixel check that confirms near duplicates (concept.pixel_match): each kind of copy of a photo is the same
picture, and images that only look alike (two cards of one deck, two moon phases, one balloon in two colours,
other photos) are not."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from concept.duplicates import _decoded
from concept.images import load_image
from concept.pixel_match import pair_measures, same_picture

OPENCLIPART = Path("/usr/share/openclipart/png")


def _looks(images: list) -> tuple[np.ndarray, np.ndarray]:
    found = [_decoded(image) for image in images]
    return np.stack([f[1] for f in found]), np.array([f[0][0] for f in found])


def _jpeg(im: Image.Image, quality: int = 70) -> Image.Image:
    buffer = io.BytesIO()
    im.save(buffer, format="JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def _copies(im: Image.Image) -> dict[str, Image.Image]:
    w, h = im.size
    return {
        "jpeg q70": _jpeg(im),
        "resize 50%": im.resize((w // 2, h // 2), Image.LANCZOS),
        "resize 85%": im.resize((round(w * 0.85), round(h * 0.85)), Image.LANCZOS),
        "crop 4% a side": im.crop((round(w * 0.04), round(h * 0.04), w - round(w * 0.04), h - round(h * 0.04))),
        "crop 8% left and top only": im.crop((round(w * 0.08), round(h * 0.08), w, h)),
        "brighter 10%": ImageEnhance.Brightness(im).enhance(1.1),
        "darker 10%": ImageEnhance.Brightness(im).enhance(0.9),
        "resized, then a JPEG": _jpeg(im.resize((round(w * 0.7), round(h * 0.7)), Image.LANCZOS), 80),
    }


def test_every_kind_of_copy_of_a_photo_is_the_same_picture(sample_photos):
    for name, photo in sample_photos.items():
        copies = _copies(photo.convert("RGB"))
        looks, sizes = _looks([photo, *copies.values()])
        pairs = np.array([(0, row) for row in range(1, len(looks))])
        same = same_picture(looks, sizes, pairs)
        assert same.all(), (name, [kind for kind, ok in zip(copies, same) if not ok])
        # Either order: the copy first.
        assert same_picture(looks, sizes, pairs[:, ::-1]).all()


def test_other_photos_are_not_the_same_picture(sample_photos):
    looks, sizes = _looks(list(sample_photos.values()))
    pairs = np.array([(0, 1), (0, 2), (1, 2)])
    assert not same_picture(looks, sizes, pairs).any()
    measures = pair_measures(looks, sizes, pairs)  # correlation, residual, local residual per pair
    assert measures.shape == (3, 3) and (measures[0] < 0.98).any()


@pytest.mark.parametrize("first, second", [
    ("food/apple_bitten_dan_gerhard_01.png", "food/apple_with_worm_dan_gerh_01.png"),  # a worm added
    ("recreation/games/cards/white/white_h_q.png", "recreation/games/cards/white/white_h_k.png"),
    ("recreation/games/cards/bordered/bordered_c_9.png", "recreation/games/cards/bordered/bordered_c_10.png"),
    ("geography/astronomy/02_waxingcrescent_openc_01.png", "geography/astronomy/08_waningcrescent_openc_01.png"),
    ("recreation/party/balloon-blue-aj.png", "recreation/party/balloon-red-aj.png"),
    ("food/fruit/lemon_slice_ganson.png", "food/fruit/lime_slice_ganson.png"),
])
def test_look_alikes_are_not_the_same_picture(first, second):
    a, b = OPENCLIPART / first, OPENCLIPART / second
    if not (a.is_file() and b.is_file()):
        pytest.skip("Debian package openclipart-png is not installed")
    looks, sizes = _looks([a, b])
    assert not same_picture(looks, sizes, np.array([(0, 1)]))[0]
    # ... while a JPEG of either is the same picture as it.
    looks, sizes = _looks([a, _jpeg(load_image(a), 85)])
    assert same_picture(looks, sizes, np.array([(0, 1)]))[0]


def test_no_pairs_and_small_images():
    looks = np.zeros((2, 64, 64, 3), np.uint8)
    assert same_picture(looks, np.array([[28, 28], [28, 28]]), np.empty((0, 2), np.int64)).shape == (0,)
    rng = np.random.default_rng(0)
    tiny = rng.integers(0, 255, (9, 9, 3), dtype=np.uint8)  # compared at its own 9 pixels
    looks, sizes = _looks([tiny, tiny.copy()])
    assert same_picture(looks, sizes, np.array([(0, 1)]))[0]
