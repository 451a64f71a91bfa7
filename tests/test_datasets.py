"""The labeled collections from Debian packages: OpenClipart by folder, Fashion-MNIST from idx files."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
from PIL import Image

from concept import ConceptError
from concept.datasets import FASHION_MNIST_ROOT, OPENCLIPART_ROOT, fashion_mnist, openclipart

SVG = """<svg xmlns="http://www.w3.org/2000/svg" xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"
 xmlns:cc="http://web.resource.org/cc/" xmlns:dc="http://purl.org/dc/elements/1.1/">
 <metadata><rdf:RDF><cc:Work rdf:about="">
  <dc:title>{title}</dc:title>
  <dc:date>{date}</dc:date>
  <dc:subject><rdf:Bag><rdf:li>{k1}</rdf:li><rdf:li>{k2}</rdf:li></rdf:Bag></dc:subject>
  <dc:publisher><cc:Agent><dc:title>Open Clip Art Library</dc:title><dc:date>1999-01-01</dc:date></cc:Agent></dc:publisher>
 </cc:Work></rdf:RDF></metadata>
</svg>"""


def _clipart_root(tmp_path):
    """animals/{cat,dog}.png, food/apple.png (+ a symlinked duplicate), their SVG twins."""
    root = tmp_path / "openclipart"
    works = {"animals/cat": ("Sleepy cat", "cat", "pet", "2005/05/30"), "animals/dog": ("Dog", "dog", "pet", ""),
             "food/fruit/apple": ("Red apple", "apple", "fruit", "Fco. Andrade")}
    for name, (title, k1, k2, date) in works.items():
        png, svg = root / "png" / f"{name}.png", root / "svg" / f"{name}.svg"
        png.parent.mkdir(parents=True, exist_ok=True)
        svg.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8), (200, 0, 0)).save(png)
        svg.write_text(SVG.format(title=title, k1=k1, k2=k2, date=date), encoding="utf-8")
    (root / "png" / "food" / "same_apple.png").symlink_to(root / "png" / "food" / "fruit" / "apple.png")
    return root


def test_openclipart_labels_images_by_folder_with_their_svg_texts(tmp_path):
    data = openclipart(("animals", "food"), root=_clipart_root(tmp_path))
    assert [p.name for p in data.images] == ["cat.png", "dog.png", "apple.png"]  # no symlink twin
    assert data.labels.tolist() == [0, 0, 1] and data.label_names == ["animals", "food"]
    assert data.captions == ["Sleepy cat", "Dog", "Red apple"]
    # Titles and keywords, lower-cased, each once, never the publisher's name.
    assert data.docs == ["sleepy cat", "cat", "pet", "dog", "red apple", "apple", "fruit"]
    assert len(data) == 3


def test_openclipart_dates_are_the_works_own_as_written(tmp_path):
    from concept.over_time import given_dates

    data = openclipart(("animals", "food"), root=_clipart_root(tmp_path))
    assert data.dates == ["2005/05/30", None, "Fco. Andrade"]  # never the publisher's 1999-01-01
    assert given_dates(data.dates).counts() == {"given": 1, "missing": 1, "unreadable": 1}


@pytest.mark.skipif(not (OPENCLIPART_ROOT / "svg").is_dir(), reason="Debian package openclipart-svg is not installed")
def test_the_installed_openclipart_has_dates_for_some_images():
    from concept.over_time import given_dates

    data = openclipart()
    dates = given_dates(data.dates)
    counts = dates.counts()
    assert counts["given"] > 300 and counts["missing"] > 1500  # most works carry no date
    years = dates.values[dates.dated].astype("datetime64[Y]").astype(int) + 1970
    assert years.min() >= 2004 and years.max() <= 2007  # uploaded when the library was young


def test_openclipart_missing_is_a_clear_error(tmp_path):
    with pytest.raises(ConceptError, match="apt-get install openclipart-png"):
        openclipart(root=tmp_path / "nothing")


def _write_idx(path, array: np.ndarray) -> None:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + b"".join(struct.pack(">I", n) for n in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_fashion_mnist_reads_idx_files_by_split(tmp_path):
    rng = np.random.default_rng(0)
    train, test = rng.integers(0, 256, (5, 28, 28)), rng.integers(0, 256, (3, 28, 28))
    for prefix, images, labels in (("train", train, [0, 1, 2, 3, 9]), ("t10k", test, [9, 8, 7])):
        _write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", images)
        _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", np.array(labels))
    data = fashion_mnist("all", root=tmp_path)
    assert len(data) == 8 and data.labels.tolist() == [0, 1, 2, 3, 9, 9, 8, 7]
    np.testing.assert_array_equal(np.stack(data.images), np.concatenate([train, test]))
    assert data.images[0].dtype == np.uint8 and data.label_names[9] == "Ankle boot"
    assert "ankle boot" in data.docs
    assert fashion_mnist("test", root=tmp_path).labels.tolist() == [9, 8, 7]
    with pytest.raises(ConceptError, match="split must be"):
        fashion_mnist("validation", root=tmp_path)
    with pytest.raises(ConceptError, match="apt-get install dataset-fashion-mnist"):
        fashion_mnist(root=tmp_path / "nothing")


@pytest.mark.skipif(not FASHION_MNIST_ROOT.is_dir(), reason="Debian package dataset-fashion-mnist is not installed")
def test_the_installed_fashion_mnist_test_split():
    data = fashion_mnist("test")
    assert len(data) == 10_000 and data.images[0].shape == (28, 28)
    assert np.bincount(data.labels).tolist() == [1000] * 10  # balanced classes
