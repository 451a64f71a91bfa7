"""The on-disk embedding store: resumes after SIGKILL, recomputes only what changed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ColorEmbedder
from PIL import Image

from concept import ConceptModel, EmbeddingError
from concept.images import LoadReport
from concept.store import EmbeddingStore

TESTS = Path(__file__).parent


def make_pngs(folder: Path, n: int = 60) -> list[Path]:
    """`n` small PNGs of distinct noisy colours."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        base = rng.integers(0, 256, size=3)
        pixels = np.clip(base + rng.normal(0, 20, size=(20, 28, 3)), 0, 255).astype(np.uint8)
        path = folder / f"img_{i:03d}.png"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


def counting(backend):
    """The backend, counting the images its network sees in `backend.seen`."""
    backend.seen = 0
    network = backend.embed_pixels

    def embed_pixels(pixels):
        backend.seen += len(pixels)
        return network(pixels)

    backend.embed_pixels = embed_pixels
    return backend


def index_lines(store: EmbeddingStore) -> list[bytes]:
    try:
        return (store.path / "index.jsonl").read_bytes().split(b"\n")[:-1]
    except FileNotFoundError:
        return []


def _children(pid: int) -> list[int]:
    """Child processes of `pid` (Linux; empty elsewhere)."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return found


# Embeds the PNGs into the store, slowly, and hangs before the end: only SIGKILL ends it.
KILLED_RUN = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {tests!r})
    from conftest import ColorEmbedder
    from concept.store import EmbeddingStore

    backend = ColorEmbedder()
    network = backend.embed_pixels
    calls = 0

    def slow(pixels):
        global calls
        calls += 1
        if calls > 8:
            time.sleep(3600)
        time.sleep(0.1)
        return network(pixels)

    backend.embed_pixels = slow
    paths = open({listing!r}).read().split("\\n")
    EmbeddingStore({store!r}, "colors").embed(backend, paths, batch_size=4, flush_every=4)
""")


def test_a_killed_run_resumes_and_ends_identical_to_an_uninterrupted_one(tmp_path):
    paths = make_pngs(tmp_path / "images")
    listing = tmp_path / "paths.txt"
    listing.write_text("\n".join(map(str, paths)))
    store = EmbeddingStore(tmp_path / "store", "colors")
    script = KILLED_RUN.format(tests=str(TESTS), listing=str(listing), store=str(store.folder))
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while len(index_lines(store)) < 12:
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "the embedding subprocess made no progress"
            time.sleep(0.01)
        workers = _children(proc.pid)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers), "decode workers outlived the run"
    done = len(store)
    assert 12 <= done < len(paths)  # killed midway

    backend = counting(ColorEmbedder())
    report = LoadReport()
    resumed, feats = store.embed(backend, paths, batch_size=4, report=report)
    assert backend.seen == len(paths) - done  # finished rows were not recomputed
    assert feats is None and report.loaded == list(range(len(paths))) and not report.failures

    fresh = EmbeddingStore(tmp_path / "fresh", "colors").embed(ColorEmbedder(), paths, batch_size=4)[0]
    np.testing.assert_array_equal(resumed, fresh)
    np.testing.assert_array_equal(resumed, ColorEmbedder().embed_images(paths, batch_size=4))

    again = counting(ColorEmbedder())
    np.testing.assert_array_equal(store.embed(again, paths)[0], fresh)
    assert again.seen == 0  # an unchanged collection is never embedded twice


def test_changed_files_and_another_model_are_recomputed(tmp_path):
    paths = make_pngs(tmp_path / "images", 20)
    store = EmbeddingStore(tmp_path / "store", "colors")
    first = store.embed(counting(ColorEmbedder()), paths, batch_size=8)[0]

    st = os.stat(paths[3])
    os.utime(paths[3], ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    backend = counting(ColorEmbedder())
    np.testing.assert_array_equal(store.embed(backend, paths)[0], first)
    assert backend.seen == 1  # only the touched file

    Image.new("RGB", (10, 10), (255, 0, 0)).save(paths[5])  # new content
    backend = counting(ColorEmbedder())
    changed = store.embed(backend, paths)[0]
    assert backend.seen == 1 and not np.allclose(changed[5], first[5])
    np.testing.assert_array_equal(np.delete(changed, 5, axis=0), np.delete(first, 5, axis=0))

    other = counting(ColorEmbedder())
    EmbeddingStore(tmp_path / "store", "colors-v2").embed(other, paths)
    assert other.seen == len(paths)  # another model name never reuses these rows
    assert len(store) == 22 and len(EmbeddingStore(tmp_path / "store", "colors-v2")) == 20


def test_unreadable_files_are_reported_every_time_and_never_stored(tmp_path):
    paths = make_pngs(tmp_path / "images", 6)
    (tmp_path / "bad.png").write_bytes(b"not a png")
    inputs = [paths[0], tmp_path / "bad.png", *paths[1:3], tmp_path / "missing.png", paths[3],
              paths[0], *paths[4:]]
    store = EmbeddingStore(tmp_path / "store", "colors")
    for expected_seen in (6, 0):
        backend, report = counting(ColorEmbedder()), LoadReport()
        vectors, _ = store.embed(backend, inputs, batch_size=2, report=report)
        assert backend.seen == expected_seen  # the duplicate of paths[0] is embedded once
        assert [f.index for f in report.failures] == [1, 4]
        assert report.failures[1].reason == "file not found"
        assert report.loaded == [0, 2, 3, 5, 6, 7, 8]
        np.testing.assert_array_equal(vectors[0], vectors[4])
    assert len(store) == 6


def test_a_torn_index_line_and_a_half_written_row_are_tolerated(tmp_path):
    paths = make_pngs(tmp_path / "images", 10)
    store = EmbeddingStore(tmp_path / "store", "colors")
    expected = store.embed(ColorEmbedder(), paths[:6], batch_size=3, flush_every=3)[0]
    index = store.path / "index.jsonl"
    lines = index.read_bytes().split(b"\n")[:-1]
    # A crash while writing the second flush's index: its last line cut in half, and a row
    # appended past the indexed ones, half written.
    index.write_bytes(b"\n".join(lines[:5]) + b"\n" + lines[5][: len(lines[5]) // 2])
    with open(store.path / "vectors.f32", "ab") as f:
        f.write(b"\x00" * 13)
    assert len(store) == 5

    backend = counting(ColorEmbedder())
    vectors = store.embed(backend, paths, batch_size=3)[0]
    assert backend.seen == 5  # paths[5] (its line was torn) and the 4 new ones
    np.testing.assert_array_equal(vectors[:6], expected)
    np.testing.assert_array_equal(vectors, ColorEmbedder().embed_images(paths, batch_size=3))
    for line in index.read_bytes().split(b"\n")[:-1]:
        json.loads(line)  # the torn line was cut, not glued to the next one
    assert len(store) == 10


def test_features_are_stored_with_the_vectors(tmp_path):
    paths = make_pngs(tmp_path / "images", 8)

    class WithFeatures(type(ColorEmbedder())):
        def embed_images_and_features(self, images, batch_size=32, *, strict=False, report=None):
            raw = self._map_images(images, self.embed_pixels, batch_size, strict=strict, report=report)
            return raw / np.linalg.norm(raw, axis=1, keepdims=True), raw[:, :3].copy()

    backend = counting(WithFeatures(verbose=False))
    shared, feats = EmbeddingStore(tmp_path / "s", "f").embed(backend, paths, batch_size=4)
    again = counting(WithFeatures(verbose=False))
    shared2, feats2 = EmbeddingStore(tmp_path / "s", "f").embed(again, paths[::-1])
    assert feats.shape == (8, 3) and again.seen == 0
    np.testing.assert_array_equal(shared2, shared[::-1])
    np.testing.assert_array_equal(feats2, feats[::-1])
    np.testing.assert_array_equal(feats, backend.embed_images_and_features(paths)[1])


def test_fitting_twice_with_the_same_store_embeds_once(tmp_path):
    paths = []
    for i in range(45):
        color = [(255, 0, 0), (0, 0, 255), (0, 255, 0)][i % 3]
        path = tmp_path / "images" / f"{i}.png"
        path.parent.mkdir(exist_ok=True)
        Image.new("RGB", (24, 16), color).save(path)
        paths.append(path)
    backend = counting(ColorEmbedder())
    docs = ["red", "green", "blue", "piano", "river"]
    labels = []
    for _ in range(2):
        model = ConceptModel(min_concept_size=5, embedding_model=backend, random_state=0, verbose=False,
                             store=tmp_path / "store")
        labels.append(model.fit_transform(paths, docs=docs))
    assert backend.seen == len(paths)
    np.testing.assert_array_equal(labels[0], labels[1])
    assert model.transform(paths[:6]).tolist() == labels[0][:6].tolist() and backend.seen == len(paths)


def test_bad_arguments():
    with pytest.raises(Exception, match="model name"):
        EmbeddingStore("x", "")
    with pytest.raises(TypeError, match="file paths"):
        EmbeddingStore("x", "m").embed(ColorEmbedder(), [np.zeros((4, 4, 3), np.uint8)])


# -- issue 11, item 6: a damaged store never returns another image's row ------------------------

def test_a_data_file_cut_short_never_gives_another_images_row(tmp_path):
    paths = make_pngs(tmp_path / "images", 14)
    store = EmbeddingStore(tmp_path / "store", "colors")
    store.embed(ColorEmbedder(), paths[:10], batch_size=5)
    with open(store.path / "vectors.f32", "r+b") as f:  # a crash or a full disk: rows 4.. lost
        f.truncate(4 * 8 * 4 + 5)
    store.embed(ColorEmbedder(), paths[10:], batch_size=4)  # appended where rows 4..7 were
    backend = counting(ColorEmbedder())
    vectors = store.embed(backend, paths, batch_size=4)[0]
    np.testing.assert_array_equal(vectors, ColorEmbedder().embed_images(paths, batch_size=4))
    assert backend.seen == 6  # paths[4:10] were lost with the data, so embedded again
    rows = [json.loads(line)["row"] for line in index_lines(store)]
    assert len(rows) == len(set(rows)) == 14  # no line was left pointing past the data


def test_rows_that_fail_their_checksum_are_embedded_again(tmp_path, caplog):
    paths = make_pngs(tmp_path / "images", 6)
    store = EmbeddingStore(tmp_path / "store", "colors")
    expected = store.embed(ColorEmbedder(), paths, batch_size=3)[0]
    with open(store.path / "vectors.f32", "r+b") as f:  # garbage in row 2 (bit rot, a bad copy)
        f.seek(2 * 8 * 4 + 4)
        f.write(b"\x7f\x00\x12\x34")
    backend = counting(ColorEmbedder())
    with caplog.at_level("WARNING", logger="concept.store"):
        vectors = store.embed(backend, paths, batch_size=3)[0]
    np.testing.assert_array_equal(vectors, expected)
    assert backend.seen == 1 and "fail their checksum" in caplog.text
    again = counting(ColorEmbedder())
    np.testing.assert_array_equal(store.embed(again, paths)[0], expected)
    assert again.seen == 0  # the new row (a later index line) is used from now on


def test_a_format_1_store_is_read_and_upgraded_by_its_next_write(tmp_path):
    paths = make_pngs(tmp_path / "images", 5)
    store = EmbeddingStore(tmp_path / "store", "colors")
    expected = store.embed(ColorEmbedder(), paths, batch_size=4)[0]
    old_lines = []
    for line in index_lines(store):
        entry = json.loads(line)
        del entry["crc"]
        old_lines.append(json.dumps(entry) + "\n")
    (store.path / "index.jsonl").write_text("".join(old_lines[:4]))
    meta = json.loads((store.path / "meta.json").read_text())
    (store.path / "meta.json").write_text(json.dumps({**meta, "format": 1}))
    backend = counting(ColorEmbedder())
    np.testing.assert_array_equal(store.embed(backend, paths[:4])[0], expected[:4])
    assert backend.seen == 0  # read as it is
    np.testing.assert_array_equal(store.embed(backend, paths)[0], expected)
    assert backend.seen == 1 and json.loads((store.path / "meta.json").read_text())["format"] == 2
    assert all("crc" in json.loads(line) for line in index_lines(store))


@pytest.mark.parametrize("meta", [{"dim": 0}, {"dim": "8"}, {"dim": 10**30}, {"feature_dim": -1}])
def test_a_damaged_meta_json_is_a_clear_error(tmp_path, meta):  # issue 11, item 9
    paths = make_pngs(tmp_path / "images", 3)
    store = EmbeddingStore(tmp_path / "store", "colors")
    store.embed(ColorEmbedder(), paths)
    old = json.loads((store.path / "meta.json").read_text())
    (store.path / "meta.json").write_text(json.dumps({**old, **meta}))
    with pytest.raises(EmbeddingError, match="damaged meta.json"):
        store.embed(ColorEmbedder(), paths)
    with pytest.raises(EmbeddingError, match="damaged meta.json"):
        len(store)


def test_a_wrong_dim_in_meta_json_is_refused_before_any_data_is_cut(tmp_path):  # item 9
    paths = make_pngs(tmp_path / "images", 3)
    store = EmbeddingStore(tmp_path / "store", "colors")
    store.embed(ColorEmbedder(), paths)
    size = (store.path / "vectors.f32").stat().st_size
    old = json.loads((store.path / "meta.json").read_text())
    (store.path / "meta.json").write_text(json.dumps({**old, "dim": 7}))
    with pytest.raises(EmbeddingError, match="8-d rows.*7-d rows"):
        store.embed(ColorEmbedder(), paths + make_pngs(tmp_path / "more", 1))
    assert (store.path / "vectors.f32").stat().st_size == size


# -- issue 11, item 7: a run that waits for another says so, and counts only its own rows -------

def test_a_run_waiting_for_the_lock_says_so_and_counts_only_its_own_rows(tmp_path, caplog):
    paths = make_pngs(tmp_path / "images", 12)
    slow = ColorEmbedder()
    network = slow.embed_pixels

    def embed_pixels(pixels):
        time.sleep(0.2)
        return network(pixels)

    slow.embed_pixels = embed_pixels
    first = EmbeddingStore(tmp_path / "store", "colors")
    thread = threading.Thread(target=first.embed, args=(slow, paths[:8]), kwargs={"batch_size": 2})
    thread.start()
    lock = first.path / ".lock"
    deadline = time.monotonic() + 30
    while not (lock.exists() and lock.read_bytes()):  # the first run holds the lock
        assert time.monotonic() < deadline
        time.sleep(0.01)
    second = EmbeddingStore(tmp_path / "store", "colors")
    with caplog.at_level("WARNING", logger="concept.store"):
        second.embed(ColorEmbedder(), paths, batch_size=4)
    thread.join()
    assert "Waiting for the lock" in caplog.text and str(lock) in caplog.text
    assert f"process {os.getpid()}" in caplog.text  # who holds it
    assert first.newly_embedded == 8 and second.newly_embedded == 4 and len(second) == 12
