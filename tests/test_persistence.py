"""Tests of the model-folder format: exact round trips, atomic saves, clear errors on damage."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from concept import ModelFileError
from concept.persistence import (
    FORMAT_NAME,
    FORMAT_VERSION,
    ModelState,
    load_model_state,
    save_model_state,
)

DTYPES = [np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32,
          np.uint64, np.float16, np.float32, np.float64]


def _state(seed: int = 0) -> ModelState:
    rng = np.random.default_rng(seed)
    arrays = {f"a_{np.dtype(t).name}": (rng.normal(size=(3, 4)) * 50).astype(t) for t in DTYPES}
    arrays.update({
        "empty_2d": np.zeros((0, 512), np.float32),
        "empty_3d": np.zeros((2, 0, 3), np.int64),
        "empty_bool": np.zeros(0, bool),
        "scalar": np.array(seed + 0.5),
        "mask": rng.random(17) > 0.5,
        "transposed": np.arange(12, dtype=np.int32).reshape(3, 4).T,  # not C-contiguous
        "big_endian": np.arange(5, dtype=">f8"),
    })
    pixels = rng.integers(0, 256, size=(30, 40, 3), dtype=np.uint8)
    images = {"collage_0": Image.fromarray(pixels), "small.grey-1": Image.fromarray(pixels[..., 0]),
              "alpha": Image.fromarray(rng.integers(0, 256, size=(8, 9, 4), dtype=np.uint8))}
    settings = {"seed": seed, "min_size": 5, "ratio": 0.25, "verbose": False, "model": None,
                "nested": {"list": [1, 2.5, "x", None, [True]]}}
    texts = {"topics": {"0": ["dog", "café", "狗", "🐕"], "-1": []},
             "image_paths": ["/photos/été/1.jpg", "C:\\x\\ü.png"]}
    return ModelState(settings=settings, arrays=arrays, texts=texts, images=images)


def _assert_same(loaded: ModelState, state: ModelState) -> None:
    assert loaded.settings == state.settings
    assert loaded.texts == state.texts
    assert list(loaded.arrays) == list(state.arrays)
    for name, array in state.arrays.items():
        got = loaded.arrays[name]
        assert got.dtype == array.dtype.newbyteorder("="), name
        assert got.shape == array.shape, name
        np.testing.assert_array_equal(got, array, err_msg=name)
    assert set(loaded.images) == set(state.images)
    for name, image in state.images.items():
        assert loaded.images[name].mode == image.mode
        np.testing.assert_array_equal(np.asarray(loaded.images[name]), np.asarray(image))


def _siblings(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir() if p.name != path.name)


def test_round_trip_all_dtypes_shapes_texts_and_images(tmp_path):
    state = _state()
    path = save_model_state(state, tmp_path / "model")
    assert path == tmp_path / "model"
    _assert_same(load_model_state(path), state)
    doc = json.loads((path / "concept.json").read_text(encoding="utf-8"))
    assert doc["format"] == FORMAT_NAME and doc["format_version"] == FORMAT_VERSION
    assert "concept_version" in doc


def test_folder_holds_only_json_safetensors_and_png(tmp_path):
    path = save_model_state(_state(), tmp_path / "model")
    files = {p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()}
    assert files == {"concept.json", "arrays.safetensors",
                     "images/collage_0.png", "images/small.grey-1.png", "images/alpha.png"}
    assert _siblings(path) == []


def test_empty_state_and_load_without_images(tmp_path):
    path = save_model_state(ModelState(), tmp_path / "empty")
    assert load_model_state(path) == ModelState()
    path = save_model_state(_state(), tmp_path / "model")
    (path / "images" / "alpha.png").unlink()  # not even looked at
    assert load_model_state(path, load_images=False).images == {}


def test_overwrite_replaces_model_and_leaves_no_siblings(tmp_path):
    path = tmp_path / "model"
    save_model_state(_state(0), path)
    new = _state(1)
    del new.images["alpha"]
    save_model_state(new, path)
    _assert_same(load_model_state(path), new)
    assert not (path / "images" / "alpha.png").exists()
    assert _siblings(path) == []


def test_overwrite_false_refuses_existing_model(tmp_path):
    path = save_model_state(_state(0), tmp_path / "model")
    with pytest.raises(ModelFileError, match="already exists.*overwrite=True"):
        save_model_state(_state(1), path, overwrite=False)
    _assert_same(load_model_state(path), _state(0))


def test_refuses_to_replace_a_folder_that_is_not_a_model(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "holiday.jpg").write_bytes(b"precious")
    with pytest.raises(ModelFileError, match="not a concept model folder"):
        save_model_state(_state(), photos)
    assert (photos / "holiday.jpg").read_bytes() == b"precious"
    assert _siblings(photos) == []
    a_file = tmp_path / "notes.txt"
    a_file.write_text("keep me")
    with pytest.raises(ModelFileError, match="not a concept model folder"):
        save_model_state(_state(), a_file)
    assert a_file.read_text() == "keep me"


def test_saves_into_an_empty_folder_and_creates_parents(tmp_path):
    (tmp_path / "empty").mkdir()
    save_model_state(_state(), tmp_path / "empty")
    save_model_state(_state(), tmp_path / "a" / "b" / "model")
    _assert_same(load_model_state(tmp_path / "a" / "b" / "model"), _state())


@pytest.mark.skipif(os.name != "posix", reason="POSIX modes")
@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_the_folder_follows_the_umask(tmp_path, umask):  # issue 11, items 2 and 8
    old = os.umask(umask)
    try:
        path = save_model_state(_state(), tmp_path / "model")
        save_model_state(_state(1), path)  # replacing keeps following it
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o777 & ~umask
    assert (path / "images").stat().st_mode & 0o777 == 0o777 & ~umask
    assert (path / "concept.json").stat().st_mode & 0o777 == 0o666 & ~umask


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_temporary_folders_of_killed_saves_are_removed(tmp_path):  # issue 11, item 8
    from concept.persistence import STALE_TMP_SECONDS, _host_tag

    path = save_model_state(_state(0), tmp_path / "model")
    host = _host_tag()
    dead = tmp_path / f".model.tmp-{host}-{_dead_pid()}-0a0b0c0d"  # its writer was killed
    live = tmp_path / f".model.tmp-{host}-{os.getpid()}-1a1b1c1d"  # a save running now
    legacy_old = tmp_path / ".model.tmp-k3j4h5g6"  # older concept (mkdtemp), long idle
    legacy_new = tmp_path / ".model.tmp-q9w8e7r6"  # ... but possibly still being written
    foreign = tmp_path / ".model.tmp-0123abcd-1-2a2b2c2d"  # another host: only by age
    other_model = tmp_path / f".other.tmp-{host}-{_dead_pid()}-3a3b3c3d"
    for folder in (dead, live, legacy_old, legacy_new, foreign, other_model):
        folder.mkdir()
        (folder / "arrays.safetensors").write_bytes(b"partial")
    long_ago = time.time() - STALE_TMP_SECONDS - 60
    for folder in (legacy_old,):
        os.utime(folder / "arrays.safetensors", (long_ago, long_ago))
        os.utime(folder, (long_ago, long_ago))
    save_model_state(_state(1), path)
    assert _siblings(path) == sorted(p.name for p in (live, legacy_new, foreign, other_model))
    _assert_same(load_model_state(path), _state(1))


@pytest.mark.skipif(os.name != "posix", reason="symlinks")
def test_saving_through_a_symlink_writes_into_its_target(tmp_path):  # issue 11, item 8
    target = save_model_state(_state(0), tmp_path / "real" / "model")
    link = tmp_path / "link"
    link.symlink_to(target, target_is_directory=True)
    assert save_model_state(_state(1), link) == target
    assert link.is_symlink() and link.resolve() == target
    _assert_same(load_model_state(link), _state(1))
    assert _siblings(link) == ["real"] and _siblings(target) == []


def _fail_on_call(monkeypatch, owner, name: str, n: int) -> None:
    """Make `owner.name` raise OSError on its n-th call (a simulated crash or full disk)."""
    original, calls = getattr(owner, name), []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == n:
            raise OSError("simulated crash")
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, failing)


def test_failure_while_writing_images_keeps_old_model(tmp_path, monkeypatch):
    path = save_model_state(_state(0), tmp_path / "model")
    _fail_on_call(monkeypatch, Image.Image, "save", 2)
    with pytest.raises(OSError, match="simulated crash"):
        save_model_state(_state(1), path)
    _assert_same(load_model_state(path), _state(0))
    assert _siblings(path) == []


def test_failure_between_the_two_renames_puts_old_model_back(tmp_path, monkeypatch):
    path = save_model_state(_state(0), tmp_path / "model")
    _fail_on_call(monkeypatch, os, "rename", 2)  # 1: model -> .old, 2: tmp -> model
    with pytest.raises(OSError, match="simulated crash"):
        save_model_state(_state(1), path)
    monkeypatch.undo()
    _assert_same(load_model_state(path), _state(0))
    assert _siblings(path) == []


def test_crash_between_the_two_renames_loads_old_model(tmp_path, caplog):
    path = save_model_state(_state(0), tmp_path / "model")
    path.rename(tmp_path / ".model.old-xyz")  # the process died before tmp -> model
    with caplog.at_level(logging.WARNING, logger="concept.persistence"):
        _assert_same(load_model_state(path), _state(0))
    assert "interrupted" in caplog.text
    save_model_state(_state(1), path)  # saving again repairs and removes the leftover
    _assert_same(load_model_state(path), _state(1))
    assert _siblings(path) == []


def test_missing_path_or_not_a_folder(tmp_path):
    with pytest.raises(ModelFileError, match="does not exist"):
        load_model_state(tmp_path / "nothing")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ModelFileError, match="not a folder"):
        load_model_state(tmp_path / "file")
    (tmp_path / "photos").mkdir()
    with pytest.raises(ModelFileError, match="concept.json is missing"):
        load_model_state(tmp_path / "photos")


def _edit_manifest(path: Path, **changes) -> None:
    doc = json.loads((path / "concept.json").read_text(encoding="utf-8"))
    doc.update(changes)
    (path / "concept.json").write_text(json.dumps(doc), encoding="utf-8")


@pytest.mark.parametrize(("changes", "message"), [
    ({"format_version": FORMAT_VERSION + 1},
     rf"newer concept \(format {FORMAT_VERSION + 1}.*upgrade concept"),
    ({"format_version": 0}, "unknown format_version 0"),
    ({"format_version": "1"}, "unknown format_version '1'"),
    ({"format": "something-else"}, "not a 'concept-model' file"),
    ({"settings": None}, "'settings' is missing"),
    ({"images": ["../../etc/passwd.png"]}, "invalid image file"),
])
def test_bad_manifest_fields(tmp_path, changes, message):
    path = save_model_state(_state(), tmp_path / "model")
    _edit_manifest(path, **changes)
    with pytest.raises(ModelFileError, match=message):
        load_model_state(path)


def test_invalid_json(tmp_path):
    path = save_model_state(_state(), tmp_path / "model")
    (path / "concept.json").write_text('{"format": "concept-model", ', encoding="utf-8")
    with pytest.raises(ModelFileError, match="concept.json is not valid JSON"):
        load_model_state(path)


@pytest.mark.parametrize("text", ['{"format": "concept-model", "x": ' + "9" * 5000 + "}",
                                  "[" * 100_000 + "]" * 100_000], ids=["huge-integer", "deep-nesting"])
def test_huge_integers_and_deep_nesting_are_a_clear_error(tmp_path, text):  # issue 11, item 9
    path = save_model_state(_state(), tmp_path / "model")
    (path / "concept.json").write_text(text)
    with pytest.raises(ModelFileError, match="concept.json.*save the model again"):
        load_model_state(path)


@pytest.mark.parametrize("name", ["arrays.safetensors", "images/collage_0.png"])
def test_missing_file(tmp_path, name):
    path = save_model_state(_state(), tmp_path / "model")
    (path / name).unlink()
    with pytest.raises(ModelFileError, match=f"{Path(name).name} is missing"):
        load_model_state(path)


@pytest.mark.parametrize("name", ["arrays.safetensors", "images/collage_0.png"])
def test_flipped_byte_is_reported_with_the_file_name(tmp_path, name):
    path = save_model_state(_state(), tmp_path / "model")
    data = bytearray((path / name).read_bytes())
    data[len(data) // 2] ^= 0x01
    (path / name).write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match=f"{Path(name).name} is damaged.*checksum"):
        load_model_state(path)


@pytest.mark.parametrize(("name", "message"), [
    ("arrays.safetensors", "arrays.safetensors is damaged"),
    ("images/alpha.png", "alpha.png is not a readable PNG"),
])
def test_corrupt_file_with_matching_checksum(tmp_path, name, message):
    """A file that is garbage yet matches its checksum (e.g. written so by another tool)."""
    path = save_model_state(_state(), tmp_path / "model")
    garbage = b"\x00garbage" * 3
    (path / name).write_bytes(garbage)
    doc = json.loads((path / "concept.json").read_text(encoding="utf-8"))
    _edit_manifest(path, checksums={**doc["checksums"], name: hashlib.sha256(garbage).hexdigest()})
    with pytest.raises(ModelFileError, match=message):
        load_model_state(path)


@pytest.mark.parametrize("name", ["../evil", "a/b", "", ".", "..", "sp ace", "x\\y", 3])
def test_bad_image_name_is_rejected_before_writing(tmp_path, name):
    with pytest.raises(ValueError, match="image names"):
        save_model_state(ModelState(images={name: Image.new("RGB", (2, 2))}), tmp_path / "model")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("state", "message"), [
    (ModelState(settings={"n": np.int64(3)}), r"settings\['n'\]: int64 is not JSON-serialisable"),
    (ModelState(texts={"topics": {0: ["dog"]}}),
     r"texts\['topics'\]\[0\]: dictionary keys must be str"),
    (ModelState(texts={"paths": [Path("a")]}), r"texts\['paths'\]\[0\]: \w*Path is not JSON"),
    (ModelState(arrays={"o": np.array(["a", "b"], dtype=object)}),
     r"arrays\['o'\]: object cannot be stored"),
    (ModelState(arrays={"c": np.zeros(2, np.complex64)}),
     r"arrays\['c'\]: complex64 cannot be stored"),
    (ModelState(arrays={"l": [1, 2]}), r"arrays\['l'\]: list cannot be stored"),
])
def test_unstorable_values_name_the_key(tmp_path, state, message):
    with pytest.raises(TypeError, match=message):
        save_model_state(state, tmp_path / "model")
    assert list(tmp_path.iterdir()) == []
