"""Captions per image: their sources (lists, file names, metadata), their checks, and the words
a concept gets from its members' captions."""

from __future__ import annotations

import io
import logging
import struct

import numpy as np
import pytest
from conftest import ColorEmbedder, blobs, solid
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from concept import ConceptError, ConceptModel
from concept.captions import (
    captions_from_filenames,
    captions_from_metadata,
    check_captions,
    filename_caption,
    metadata_caption,
)
from concept.words import caption_analyzer, distinctive_words, words_by_captions


# -- file names ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "caption"), [
    ("red_Playing-card02.png", "red playing card"),
    ("mapOfEurope.jpg", "map of europe"),
    ("house 3.png", "house"),
    ("IMG_1234_beach.jpg", "beach"),
    ("imgur.png", "imgur"),
    ("IMG_1234.JPG", None),
    ("DSC01234.jpg", None),
    ("DSCN0001.jpg", None),
    ("P1010001.JPG", None),
    ("PXL_20230101_123456789.jpg", None),
    ("20230101_123456.jpg", None),
    ("Screenshot 2023-01-01 at 10.00.00.png", None),
    ("WhatsApp Image 2023-01-01 at 10.00.00.jpeg", None),
    ("image (3).png", None),
    ("9f86d081884c7d65.png", None),
])
def test_file_names_give_their_words_and_camera_names_none(name, caption):
    assert filename_caption(f"/photos/{name}") == caption


def test_filenames_of_images_that_are_not_paths_are_none(tmp_path):
    assert captions_from_filenames([tmp_path / "cat.png", solid((1, 2, 3)), np.zeros((4, 4, 3))]) == \
        ["cat", None, None]


# -- metadata -----------------------------------------------------------------------------------
def _jpeg_with_iptc(path, title: str, keywords: list[str]) -> None:
    """A JPEG with an IPTC block (Photoshop APP13 resource 0x0404), as photo tools write it."""
    records = b"".join(b"\x1c\x02" + bytes([tag]) + struct.pack(">H", len(v)) + v
                       for tag, v in [(5, title.encode())] + [(25, k.encode()) for k in keywords])
    if len(records) % 2:
        records += b"\0"
    resource = b"8BIM" + struct.pack(">H", 0x0404) + b"\0\0" + struct.pack(">I", len(records)) + records
    payload = b"Photoshop 3.0\0" + resource
    buffer = io.BytesIO()
    solid((200, 30, 30)).save(buffer, "JPEG")
    data = buffer.getvalue()
    path.write_bytes(data[:2] + b"\xff\xed" + struct.pack(">H", len(payload) + 2) + payload + data[2:])


XMP = b"""<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/">
<dc:title><rdf:Alt><rdf:li xml:lang="x-default">Old map of Italy</rdf:li></rdf:Alt></dc:title>
<dc:subject><rdf:Bag><rdf:li>map</rdf:li><rdf:li>geography</rdf:li></rdf:Bag></dc:subject>
</rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end="w"?>"""


def test_metadata_from_png_text_xmp_iptc_and_exif(tmp_path):
    pytest.importorskip("defusedxml")  # Pillow's getxmp needs it
    info = PngInfo()
    info.add_text("Title", "Red playing card")
    info.add_itxt("Description", "the queen of hearts")
    solid((200, 0, 0)).save(tmp_path / "card.png", pnginfo=info)
    solid((0, 0, 200)).save(tmp_path / "map.jpg", xmp=XMP)
    _jpeg_with_iptc(tmp_path / "house.jpg", "Red house", ["house", "building"])
    exif = Image.Exif()
    exif[0x010E] = "A bicycle by the sea"
    solid((0, 200, 0)).save(tmp_path / "bike.jpg", exif=exif)
    solid((1, 1, 1)).save(tmp_path / "plain.png")

    assert metadata_caption(tmp_path / "card.png") == "Red playing card; the queen of hearts"
    assert metadata_caption(tmp_path / "map.jpg") == "Old map of Italy; map; geography"
    assert metadata_caption(tmp_path / "house.jpg") == "Red house; house; building"
    assert metadata_caption(tmp_path / "bike.jpg") == "A bicycle by the sea"
    assert metadata_caption(tmp_path / "plain.png") is None
    (tmp_path / "broken.png").write_bytes(b"not an image")
    assert captions_from_metadata([tmp_path / "broken.png", tmp_path / "missing.png", solid((0, 0, 0))]) == \
        [None, None, None]


def test_malformed_xmp_is_no_caption_not_an_error(tmp_path):
    solid((0, 0, 200)).save(tmp_path / "bad.jpg", xmp=b"<x:xmpmeta><unclosed>")
    assert metadata_caption(tmp_path / "bad.jpg") is None


# -- checks ---------------------------------------------------------------------------------------
def test_caption_lists_are_checked_one_per_image():
    assert check_captions(None, None, 3) is None
    assert check_captions(["a cat", None, "  ", float("nan")], None, 4) == ["a cat", None, None, None]
    with pytest.raises(ConceptError, match="Got 2 captions for 3 images"):
        check_captions(["a", "b"], None, 3)
    with pytest.raises(ConceptError, match=r"captions\[1\] is a int"):
        check_captions(["a", 5], None, 2)
    with pytest.raises(ConceptError, match="one of"):
        check_captions("titles", None, 2)
    with pytest.raises(ConceptError, match="file paths"):
        check_captions("filenames", [solid((0, 0, 0))], 1)
    with pytest.raises(ConceptError, match="list of texts"):
        check_captions(7, None, 1)


def test_fit_checks_captions_before_embedding():
    x, _ = blobs(n_per=20)
    model = ConceptModel(min_concept_size=5, embedding_model=ColorEmbedder(), verbose=False)
    with pytest.raises(ConceptError, match="captions"):
        model.fit(image_embeddings=x, captions=["one"])


# -- words from captions ---------------------------------------------------------------------------
def test_caption_ctfidf_ranks_the_concepts_own_words_first():
    analyzer = caption_analyzer()
    labels = np.array([0, 0, 0, 1, 1, 1, -1])
    captions = ["a red playing card", "card game", None, "house on a hill", "old house", "the house", "card"]
    words = words_by_captions(labels, np.array([0, 1]), [analyzer(c) if c else None for c in captions], 3)
    assert words[0][0][0] == "card" and words[1][0][0] == "house"
    assert all(w not in {"a", "the", "on"} for ws in words for w, _ in ws)  # stop words


def test_a_word_near_every_concept_is_down_weighted():
    # "envelope" is the most similar word to both concepts, but equally so: it says nothing.
    concepts = np.array([[1.0, 0.0], [0.0, 1.0]])
    words = np.array([[0.9, 0.9], [0.8, -0.2], [-0.2, 0.8]])
    plain = distinctive_words(concepts, words, ["envelope", "card", "house"], 1, weight=0.0)
    assert [w[0][0] for w in plain] == ["envelope", "envelope"]
    distinct = distinctive_words(concepts, words, ["envelope", "card", "house"], 1, weight=1.0)
    assert [w[0][0] for w in distinct] == ["card", "house"]


def _three_blobs_with_captions(every: int):
    """Three blobs of 60; every `every`-th image has a caption naming its blob, the rest None."""
    x, y = blobs(n_per=60)
    names = ["apple fruit", "racing car", "violin music"]
    captions = [names[label] if i % every == 0 else None for i, label in enumerate(y)]
    return x, y, captions


def test_fit_with_captions_and_none_entries_names_concepts_by_their_captions(caplog):
    x, y, captions = _three_blobs_with_captions(every=9)  # 20 captions: too few for a learned map
    model = ConceptModel(min_concept_size=10, embedding_model=ColorEmbedder(), random_state=0, verbose=False)
    with caplog.at_level(logging.INFO, logger="concept"):
        model.fit(image_embeddings=x, docs=["red", "green", "blue"], captions=captions)
    assert model.alignment_ is None and "No learned image-text map" in caplog.text
    for c, words in model.topics.items():
        truth = {"apple": 0, "racing": 1, "violin": 2}
        first = words[0]
        assert first in truth and np.all(y[model.labels_ == c] == truth[first])
        assert {"red", "green", "blue"} & set(words)  # the vocabulary fills the rest
    for layer in model.layer_topics_:  # every layer has caption words
        assert all(ws and ws[0][0] in {"apple", "fruit", "racing", "car", "violin", "music"}
                   for ws in layer.values())
    info = model.get_concept_info()
    assert info[info.Concept >= 0].Words.str.match("apple|racing|violin").all()


def test_fit_with_captions_from_filenames_and_metadata(tmp_path):
    colours = {"red": (230, 10, 10), "green": (10, 230, 10), "blue": (10, 10, 230)}
    paths = []
    for name, rgb in colours.items():
        for i in range(12):
            shade = tuple(max(0, min(255, v + 3 * i)) for v in rgb)
            info = PngInfo()
            info.add_text("Title", f"{name} square")
            path = tmp_path / (f"{name}_square_{i:02d}.png" if i % 2 else f"IMG_{1000 + i}.png")
            solid(shade).save(path, pnginfo=info)
            paths.append(path)
    for source in ("filenames", "metadata"):
        model = ConceptModel(min_concept_size=5, embedding_model=ColorEmbedder(), random_state=0, verbose=False)
        model.fit(paths, docs=["thing"], captions=source)
        named = {model.topics[c][0] for c in range(model.n_concepts_)}
        assert named <= {"red", "green", "blue", "square"} and len(named & set(colours)) >= 2, (source, model.topics)


# -- OpenClipart titles -------------------------------------------------------------------------
SVG = """<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"
 xmlns:cc="http://web.resource.org/cc/" xmlns:dc="http://purl.org/dc/elements/1.1/"
 xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><metadata><rdf:RDF><cc:Work rdf:about="">
 {title}<dc:publisher><cc:Agent><dc:title>Open Clip Art Library</dc:title></cc:Agent></dc:publisher>
 <dc:creator><cc:Agent><dc:title>Some Author</dc:title></cc:Agent></dc:creator></cc:Work></rdf:RDF></metadata>
 <path d="M0 0"/></svg>"""


def test_openclipart_titles_are_the_works_own_not_its_publishers(tmp_path):
    from concept.datasets import svg_title

    (tmp_path / "a.svg").write_text(SVG.format(title="<dc:title> Red playing card </dc:title>"))
    (tmp_path / "b.svg").write_text(SVG.format(title=""))
    (tmp_path / "c.svg").write_text("<svg><metadata>unclosed")
    bomb = '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;">]><svg>&b;</svg>'
    (tmp_path / "d.svg").write_text(bomb)
    assert svg_title(tmp_path / "a.svg") == "Red playing card"
    assert svg_title(tmp_path / "b.svg") is None  # not the publisher's or creator's title
    assert svg_title(tmp_path / "c.svg") is None
    assert svg_title(tmp_path / "d.svg") is None  # entities are refused (defusedxml)
    assert svg_title(tmp_path / "missing.svg") is None


# -- caption terms kept through edits and save/load ---------------------------------------------
def test_edits_before_and_after_save_load_describe_with_caption_words(tmp_path):
    x, _y, captions = _three_blobs_with_captions(every=9)
    model = ConceptModel(min_concept_size=10, embedding_model=ColorEmbedder(), random_state=0, verbose=False)
    model.fit(image_embeddings=x, docs=["red", "green", "blue"], captions=captions)
    caption_words = {"apple", "fruit", "racing", "car", "violin", "music"}
    model.save(tmp_path / "m")
    loaded = ConceptModel.load(tmp_path / "m", embedding_model=ColorEmbedder())
    assert loaded.topics_ == model.topics_
    for m in (model, loaded):
        m.merge_concepts([[0, 1]])
        merged = m.topics[0]
        # both merged concepts' caption terms lead, then the vocabulary
        assert set(merged[:4]) <= caption_words and len(set(merged[:4])) == 4, merged
        assert {"red", "green", "blue"} & set(merged)
    assert loaded.topics_ == model.topics_
    assert loaded.word_center_ is not None and np.array_equal(loaded.word_center_, model.word_center_)
    model.save(tmp_path / "merged")
    again = ConceptModel.load(tmp_path / "merged", embedding_model=ColorEmbedder())
    again.delete_concepts([1], to="nearest")
    model.delete_concepts([1], to="nearest")
    assert again.topics_ == model.topics_ and set(again.topics[0][:2]) <= caption_words


def test_partial_fit_after_captions_keeps_caption_words():
    x, _y, captions = _three_blobs_with_captions(every=3)  # 60 captions: enough for a learned map
    model = ConceptModel(min_concept_size=10, embedding_model=ColorEmbedder(), random_state=0, verbose=False)
    model.fit(image_embeddings=x[::2], docs=["red", "green", "blue"], captions=captions[::2])
    model.partial_fit(image_embeddings=x[1::2])
    assert len(model._caption_docs) == len(model.labels_) == len(x)
    assert all(ws and ws[0][0] in {"apple", "fruit", "racing", "car", "violin", "music"}
               for ws in model.topics_.values())


def test_saved_caption_terms_are_checked(tmp_path):
    import json

    import safetensors.numpy

    from concept._errors import ModelFileError
    from concept.model_folder import check_fitted_state
    from concept.persistence import ModelState

    x, _y, captions = _three_blobs_with_captions(every=9)
    model = ConceptModel(min_concept_size=10, embedding_model=ColorEmbedder(), random_state=0, verbose=False)
    path = model.fit(image_embeddings=x, docs=["red"], captions=captions).save(tmp_path / "m")
    doc = json.loads((path / "concept.json").read_text())
    arrays = dict(safetensors.numpy.load_file(str(path / "arrays.safetensors")))
    check_fitted_state(ModelState(doc["settings"], arrays, doc["texts"], {}), path)
    n = len(x)
    for name, value, message in [
        ("caption_term_indices", np.array([0, 10_000]), "caption_term_indptr"),
        ("caption_term_indptr", np.zeros(n, np.int64), "caption_term_indptr"),
        ("captioned", np.full(n, 2, np.uint8), "captioned"),
        ("caption_term_indices", np.full(len(arrays["caption_term_indices"]), 10_000), "caption_term_indices"),
    ]:
        bad = dict(arrays, **{name: value})
        with pytest.raises(ModelFileError, match=message):
            check_fitted_state(ModelState(doc["settings"], bad, doc["texts"], {}), path)
    without = {k: v for k, v in arrays.items() if k != "captioned"}
    with pytest.raises(ModelFileError, match="together"):
        check_fitted_state(ModelState(doc["settings"], without, doc["texts"], {}), path)
