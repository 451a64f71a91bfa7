"""The `concept` command, run through `main(argv)` on a tiny image folder and a tiny random CLIP.

The CLIP has random weights, so which concept is which is arbitrary: the tests check behaviour
(exit codes, files written, output shape, errors reported in one line), not the concepts.
"""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from concept.cli import main

COLORS = {"red": (220, 20, 20), "green": (20, 200, 40), "blue": (30, 40, 230)}
WORDS = ["red", "green", "blue", "apple", "grass", "sky", "fire truck", "ocean"]


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory) -> Path:
    """3 colours x 15 solid-colour PNGs of varying sizes (one RGBA), and a corrupt 'bad.png'."""
    root = tmp_path_factory.mktemp("images")
    for name, rgb in COLORS.items():
        (root / name).mkdir()
        for i in range(15):
            Image.new("RGB", (24 + 3 * i, 40 - i), rgb).save(root / name / f"{name}_{i:02d}.png")
    Image.new("RGBA", (30, 30), (*COLORS["red"], 200)).save(root / "red" / "red_rgba.png")
    (root / "bad.png").write_bytes(b"this is not a png")
    return root


@pytest.fixture(scope="module")
def docs_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("docs") / "words.txt"
    path.write_text("\n".join(WORDS[:4]) + "\n\n  \n" + "\n".join(WORDS[4:]) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def fitted(image_dir, docs_file, tiny_clip, tmp_path_factory):
    """A model folder written by `concept fit`, and what the command printed."""
    out = tmp_path_factory.mktemp("fit") / "model"
    figure = out.parent / "fit.png"
    capture = pytest.MonkeyPatch()
    stdout, stderr = io.StringIO(), io.StringIO()
    capture.setattr(sys, "stdout", stdout)
    capture.setattr(sys, "stderr", stderr)
    try:
        code = main(["fit", str(image_dir), "--docs", str(docs_file), "--out", str(out),
                     "--embedding-model", str(tiny_clip), "--min-concept-size", "5",
                     "--n-words", "3", "--seed", "0", "--figure", str(figure), "--quiet"])
    finally:
        capture.undo()
    return {"code": code, "out": out, "figure": figure, "stdout": stdout.getvalue(),
            "stderr": stderr.getvalue()}


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("concept: error: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0]


def test_fit_saves_model_figure_and_reports_the_corrupt_file(fitted):
    assert fitted["code"] == 0, fitted["stderr"]
    assert (fitted["out"] / "concept.json").is_file()  # the model folder's manifest
    with Image.open(fitted["figure"]) as im:
        assert im.format == "PNG" and im.width > 100
    out = fitted["stdout"]
    assert "46 images" in out  # 45 + the RGBA one; bad.png failed
    # Each failure is reported once (logged as it happens); the summary says where the list is.
    failures = fitted["out"] / "failures.tsv"
    assert f"1 failed to load (listed in {failures})" in out
    assert failures.read_text().splitlines()[1].split("\t")[0].endswith("bad.png")
    assert (out + fitted["stderr"]).count("bad.png") == 1, fitted["stderr"]
    header = [line for line in out.splitlines() if line.lstrip().startswith("Concept")]
    assert header and header[0].split()[:3] == ["Concept", "Frequency", "Words"]
    assert "Traceback" not in fitted["stderr"]
    assert "%|" not in fitted["stderr"], fitted["stderr"]  # --quiet: no progress bars
    assert "INFO" not in fitted["stderr"]


def test_info_prints_the_table_with_outliers_last(fitted, capsys):
    code, out, err = run(capsys, "info", fitted["out"])
    assert code == 0, err
    lines = out.strip().splitlines()
    assert lines.pop(0).startswith("Layers (finest first): ")
    assert lines[0].split()[:3] == ["Concept", "Frequency", "Words"]
    rows = [line.split(None, 2) for line in lines[1:]]
    assert sum(int(r[1]) for r in rows) == 46
    concepts = [int(r[0]) for r in rows]
    from concept.persistence import load_model_state

    has_outliers = bool((load_model_state(fitted["out"], load_images=False).arrays["labels"] < 0).any())
    assert (-1 in concepts) == has_outliers and -1 not in concepts[:-1]  # the outliers' row, if any, is last
    assert ("(outliers)" in lines[-1]) == has_outliers
    words = {w.strip(" ,") for r in rows if int(r[0]) >= 0 for w in r[2].split(",")}
    assert words <= set(WORDS)  # words come from --docs only
    assert max(len(line) for line in lines) < 120  # the Words column is truncated


@pytest.mark.parametrize("query", ["a red apple", "IMAGE"])
def test_search_prints_top_n_lines_of_concept_and_similarity(fitted, image_dir, tiny_clip, capsys, query):
    if query == "IMAGE":
        query = image_dir / "green" / "green_03.png"
    code, out, err = run(capsys, "search", fitted["out"], query, "--top-n", "2", "--embedding-model", tiny_clip)
    assert code == 0, err
    lines = out.strip().splitlines()
    assert 1 <= len(lines) <= 2
    for line in lines:
        concept, similarity = line.split("\t")[:2]
        assert int(concept) >= 0 and -1.0 <= float(similarity) <= 1.0


def test_search_with_a_missing_query_image_is_an_error(fitted, capsys):
    code, out, err = run(capsys, "search", fitted["out"], "nowhere/cat.png")
    assert_one_line_error(code, err, "cat.png")


def test_search_text_or_image_is_said_explicitly(fitted, image_dir, tiny_clip, capsys):
    """Issue 11 items 1 and 24: --text searches a string as text whatever it spells, and a
    text too long to be a file name is searched, not an OSError."""
    from concept import ConceptModel

    image = image_dir / "green" / "green_03.png"
    model = ConceptModel.load(fitted["out"], embedding_model=str(tiny_clip))
    for flag, kind in (("--text", "text"), ("--image", "image")):
        code, out, err = run(capsys, "search", fitted["out"], image, flag, "--top-n", "2", "--embedding-model", tiny_clip)
        assert code == 0, err
        assert [int(line.split("\t")[0]) for line in out.strip().splitlines()] == \
            [c for c, _ in model.find_concepts(str(image), top_n=2, kind=kind)]
    code, out, err = run(capsys, "search", fitted["out"], "nowhere/cat.png", "--text", "--embedding-model", tiny_clip)
    assert code == 0 and out.strip(), err
    assert_one_line_error(*run(capsys, "search", fitted["out"], "nowhere/cat.png", "--image", "--embedding-model", tiny_clip)[::2], "cat.png")
    code, out, err = run(capsys, "search", fitted["out"], "a dog on a beach with a red ball " * 10, "--embedding-model", tiny_clip)
    assert code == 0 and out.strip(), err
    with pytest.raises(SystemExit):
        main(["search", str(fitted["out"]), "cat", "--text", "--image"])


def test_assign_prints_one_line_per_image(fitted, image_dir, tiny_clip, capsys):
    images = [image_dir / "red" / "red_00.png", image_dir / "blue" / "blue_14.png", image_dir / "bad.png"]
    code, out, err = run(capsys, "assign", fitted["out"], *images, "--probabilities", "--embedding-model", tiny_clip)
    assert code == 0, err
    lines = out.strip().splitlines()
    assert [line.split("\t")[0] for line in lines] == [str(p) for p in images]
    for line in lines:
        _, concept, probability = line.split("\t")
        assert int(concept) >= -1 and 0.0 <= float(probability) <= 1.0
    assert lines[2].split("\t")[1:] == ["-1", "0.0000"]  # bad.png cannot be read
    code, out, err = run(capsys, "assign", fitted["out"], images[0], "--embedding-model", tiny_clip)
    assert code == 0 and len(out.strip().split("\t")) == 2


def test_a_model_folder_naming_an_embedding_folder_needs_the_users_say_so(fitted, tiny_clip, capsys):
    # issue 11, item 5: `fit --embedding-model FOLDER` stored that path; it is not loaded on its own
    code, _, err = run(capsys, "search", fitted["out"], "a red apple")
    assert_one_line_error(code, err, f"--embedding-model {tiny_clip}", "say-so")


def test_visualize_writes_a_png(fitted, tmp_path, capsys):
    png = tmp_path / "concepts.png"
    code, out, err = run(capsys, "visualize", fitted["out"], "--out", png, "--top-n", "2")
    assert code == 0, err
    with Image.open(png) as im:
        assert im.format == "PNG"
    assert str(png) in out


def test_missing_images_dir_is_a_one_line_error(tmp_path, capsys):
    code, out, err = run(capsys, "fit", tmp_path / "nope", "--out", tmp_path / "m", "--quiet")
    assert_one_line_error(code, err, "does not exist")
    assert not (tmp_path / "m").exists()


def test_out_that_is_not_a_model_folder_is_refused_before_fitting(image_dir, tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("precious")
    code, out, err = run(capsys, "fit", image_dir, "--out", tmp_path, "--quiet")
    assert_one_line_error(code, err, "not a concept model folder")
    assert (tmp_path / "keep.txt").read_text() == "precious"


def test_docs_file_missing_or_empty_is_a_one_line_error(image_dir, tmp_path, capsys):
    code, out, err = run(capsys, "fit", image_dir, "--docs", tmp_path / "nope.txt", "--out", tmp_path / "m")
    assert_one_line_error(code, err, "nope.txt")
    (tmp_path / "blank.txt").write_text("\n  \n")
    code, out, err = run(capsys, "fit", image_dir, "--docs", tmp_path / "blank.txt", "--out", tmp_path / "m")
    assert_one_line_error(code, err, "no words")


def test_empty_images_dir_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code, out, err = run(capsys, "fit", tmp_path / "empty", "--out", tmp_path / "m", "--quiet")
    assert_one_line_error(code, err, "no image files")


def test_model_dir_that_is_not_a_model_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("hello")
    for argv in (["info", tmp_path], ["search", tmp_path, "cat"], ["visualize", tmp_path, "--out", tmp_path / "x.png"],
                 ["info", tmp_path / "missing"]):
        code, out, err = run(capsys, *argv)
        assert_one_line_error(code, err)
        assert out == ""


def test_too_few_images_is_a_one_line_error(image_dir, docs_file, tiny_clip, tmp_path, capsys):
    two = tmp_path / "two"
    two.mkdir()
    for i in range(2):
        Image.new("RGB", (20 + i, 20), COLORS["red"]).save(two / f"{i}.png")
    code, out, err = run(capsys, "fit", two, "--docs", docs_file, "--out", tmp_path / "m",
                         "--embedding-model", tiny_clip, "--min-concept-size", "30", "--quiet")
    assert_one_line_error(code, err, "at least 3")


def test_usage_errors_exit_2(capsys):
    for argv in ([], ["fit"], ["search", "m"], ["info", "m", "--top-n", "x"], ["nonsense"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
        assert "usage: concept" in capsys.readouterr().err


def test_help_mentions_every_subcommand_and_an_example(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for command in ("fit", "info", "search", "assign", "visualize"):
        assert command in out
        with pytest.raises(SystemExit) as sub:
            main([command, "--help"])
        assert sub.value.code == 0
        assert f"concept {command}" in capsys.readouterr().out  # usage line and example


def test_python_dash_m_concept_help():
    result = subprocess.run([sys.executable, "-m", "concept", "--help"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert "usage: concept" in result.stdout and "visualize" in result.stdout


def test_keyboard_interrupt_exits_130(monkeypatch, tmp_path, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("concept.model.ConceptModel.load", interrupted)
    code, out, err = run(capsys, "info", tmp_path)
    assert code == 130 and err.strip() == "concept: interrupted"


def test_embed_fills_a_store_once_and_fit_reuses_it(image_dir, tiny_clip, tmp_path, capsys):
    store = tmp_path / "store"
    code, out, _ = run(capsys, "embed", image_dir, "--store", store, "--embedding-model", tiny_clip, "--quiet")
    assert code == 0 and "46 newly embedded" in out and "1 failed" in out
    assert out.startswith("47 files in ") and ": 46 loaded, 1 failed to load (listed in " in out, out
    assert (store / "failures.tsv").read_text().count("bad.png") == 1
    code, out, _ = run(capsys, "embed", image_dir, "--store", store, "--embedding-model", tiny_clip, "--quiet")
    assert code == 0 and "0 newly embedded" in out  # an unchanged folder is never embedded twice
    code, out, _ = run(capsys, "fit", image_dir, "--store", store, "--out", tmp_path / "m",
                       "--embedding-model", tiny_clip, "--min-concept-size", "5", "--seed", "0", "--quiet")
    assert code == 0 and (tmp_path / "m" / "concept.json").is_file()


def test_embed_counts_only_its_own_rows_when_another_run_stored_some(image_dir, tiny_clip, tmp_path, capsys,
                                                                      monkeypatch):  # issue 11, item 7
    from concept.store import EmbeddingStore

    original, others = EmbeddingStore.embed, []

    def another_run_first(self, backend, paths, *args, **kwargs):
        # What a second `concept embed` sees: the first run fills the store while it waits.
        other = EmbeddingStore(self.folder, self.model_name)
        original(other, backend, paths[:10], batch_size=4)
        others.append(len(other))
        return original(self, backend, paths, *args, **kwargs)

    monkeypatch.setattr(EmbeddingStore, "embed", another_run_first)
    code, out, _ = run(capsys, "embed", image_dir, "--store", tmp_path / "store", "--embedding-model", tiny_clip,
                       "--quiet")
    assert code == 0 and 5 <= others[0] <= 10
    assert f"{46 - others[0]} newly embedded, 46 in" in out


def test_clip_weights_not_on_this_machine_are_a_one_line_error(image_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SENTENCE_TRANSFORMERS_HOME", str(tmp_path / "cache"))  # issue 11, item 13
    code, _, err = run(capsys, "fit", image_dir, "--out", tmp_path / "m", "--embedding-model", "clip-ViT-B-32")
    assert_one_line_error(code, err, "not on this machine", "'offline'")
    assert not (tmp_path / "m").exists()


def test_a_model_folder_with_invalid_content_is_a_one_line_error(fitted, tmp_path, capsys):
    import json
    import shutil

    model_dir = shutil.copytree(fitted["out"], tmp_path / "m")  # issue 11, item 9
    manifest = model_dir / "concept.json"
    doc = json.loads(manifest.read_text())
    doc["settings"]["min_concept_size"] = "abc"
    manifest.write_text(json.dumps(doc))
    code, _, err = run(capsys, "info", model_dir)
    assert_one_line_error(code, err, "min_concept_size", "not hold a valid fitted model")
    manifest.write_text(json.dumps(doc).replace('"abc"', "9" * 5000))
    code, _, err = run(capsys, "info", model_dir)
    assert_one_line_error(code, err, "concept.json")

HEAVY = ("torch", "pandas", "umap", "sklearn", "scipy", "transformers", "ray", "concept.model")


def imported_after(code: str) -> list[str]:
    """Which of HEAVY a fresh interpreter has imported after running `code`."""
    probe = f"{code}\nimport sys\nprint(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout.split("\n")[-2].split()


def test_help_imports_no_heavy_module():  # `concept --help` took 2.2-2.7 s importing torch
    assert imported_after("import concept.cli\nimport concept.__main__") == []
    code = "from concept.cli import main\ntry:\n    main(['fit', '--help'])\nexcept SystemExit:\n    pass"
    assert imported_after(code) == []


def test_cli_modules_import_one_way():
    """No import circle (issue 24): concept.cli imports its command modules, they import
    concept.cli._output (and fit the Ray commands, on demand), and nothing imports back:
    neither _output nor concept.distributed imports any module of concept.cli."""
    import ast

    src = Path(__file__).resolve().parents[1] / "src" / "concept"

    def cli_imports(path: Path) -> set[str]:
        """What `path` imports from concept.cli, absolute or relative, as dotted names."""
        package = ["concept", *path.parent.relative_to(src).parts]
        found = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                parts = package[:len(package) - node.level + 1] if node.level else []
                base = ".".join([*parts, *([node.module] if node.module else [])])
                names = [base, *(f"{base}.{a.name}" for a in node.names)]  # `from concept import cli`
            else:
                continue
            found |= {n for n in names if n == "concept.cli" or n.startswith("concept.cli.")}
        return found

    def within(names: set[str], modules: set[str]) -> bool:
        return all(any(n == m or n.startswith(m + ".") for m in modules) for n in names)

    allowed = {"_output": set(), "fit": {"concept.cli._output", "concept.cli.ray"}}
    modules = sorted((src / "cli").glob("*.py"))
    assert {p.stem for p in modules} >= {"__init__", "_output", "fit", "ray"}
    for path in modules:
        if path.stem != "__init__":
            assert within(cli_imports(path), allowed.get(path.stem, {"concept.cli._output"})), path.name
    assert not any(cli_imports(p) for p in (src / "distributed").rglob("*.py"))


def test_ray_refuses_captions_before_any_work(image_dir, tmp_path, capsys):
    """--captions has no Ray path yet: refused in one line for a folder and a URI alike."""
    for source in (image_dir, "s3://bucket/photos"):
        code, _, err = run(capsys, "fit", source, "--ray", "--captions", "filenames", "--out", tmp_path / "m")
        assert_one_line_error(code, err, "--captions", "--ray")
    assert not (tmp_path / "m").exists()


def test_info_does_not_import_torch(fitted):
    loaded = imported_after(f"from concept.cli import main\nassert main(['info', {str(fitted['out'])!r}]) == 0")
    assert "torch" not in loaded and "transformers" not in loaded and "umap" not in loaded


def test_fit_is_reproducible_by_default_and_says_so(image_dir, docs_file, tiny_clip, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--seed N random seed (default: 0)" in help_text and "not reproducible" in help_text
    code, _, err = run(capsys, "fit", image_dir, "--docs", docs_file, "--out", tmp_path / "m",
                         "--embedding-model", tiny_clip, "--min-concept-size", "5", "--quiet")
    assert code == 0, err
    from concept import ConceptModel

    assert ConceptModel.load(tmp_path / "m").random_state == 0


@pytest.mark.parametrize("seed", ["-1", str(2**40), "abc", "1.5"])
def test_an_invalid_seed_is_a_usage_error(seed, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["fit", str(tmp_path), "--out", str(tmp_path / "m"), "--seed", seed])
    assert exc.value.code == 2 and "--seed" in capsys.readouterr().err


@pytest.mark.parametrize("query", ["", "   ", "\t\n"])
def test_an_empty_search_query_is_refused(fitted, capsys, query):
    code, out, err = run(capsys, "search", fitted["out"], query)
    assert_one_line_error(code, err, "query is empty")
    assert out == ""


def test_assign_reports_a_dangling_link_and_a_fifo_per_image(fitted, image_dir, tiny_clip, tmp_path, capsys):
    import os

    (tmp_path / "dangling.png").symlink_to(tmp_path / "gone.png")
    os.mkfifo(tmp_path / "pipe.png")  # opening it would block `assign` forever
    good = image_dir / "red" / "red_00.png"
    code, out, err = run(capsys, "assign", fitted["out"], tmp_path / "dangling.png", tmp_path / "pipe.png", good,
                         "--embedding-model", tiny_clip)
    assert code == 0, err
    lines = [line.split("\t") for line in out.strip().splitlines()]
    assert [(Path(p).name, label) for p, label in lines[:2]] == [("dangling.png", "-1"), ("pipe.png", "-1")]
    assert int(lines[2][1]) >= 0
    assert "dangling symbolic link" in err and "not a regular file" in err


def test_fit_reports_a_dangling_link_in_the_folder(image_dir, docs_file, tiny_clip, tmp_path, capsys):
    import shutil

    folder = tmp_path / "images"
    shutil.copytree(image_dir / "red", folder / "red")
    shutil.copytree(image_dir / "blue", folder / "blue")
    (folder / "dangling.png").symlink_to(tmp_path / "gone.png")
    code, out, err = run(capsys, "fit", folder, "--docs", docs_file, "--out", tmp_path / "m",
                         "--embedding-model", tiny_clip, "--min-concept-size", "5", "--quiet")
    assert code == 0, err
    assert "1 failed to load" in out and "dangling.png" in out + err


def test_embed_reports_each_bad_file_once(image_dir, tiny_clip, tmp_path, capsys):
    code, out, err = run(capsys, "embed", image_dir, "--store", tmp_path / "store",
                         "--embedding-model", tiny_clip, "--quiet")
    assert code == 0
    assert (out + err).count("bad.png") == 1, out + err  # one warning; stdout gives the list's path
    assert "WARNING" not in out and len(out.strip().splitlines()) == 1


def test_info_and_assign_at_a_layer(fitted, image_dir, tiny_clip, capsys):
    """Issue 10: every layer can be listed and assigned at; a layer the model lacks is refused."""
    from concept import ConceptModel

    model = ConceptModel.load(fitted["out"], embedding_model=str(tiny_clip))
    finest = model.layer_sizes_[0]
    code, out, err = run(capsys, "info", fitted["out"], "--layer", "0")
    assert code == 0, err
    rows = [line.split(None, 2) for line in out.strip().splitlines()[2:]]
    assert len([r for r in rows if int(r[0]) >= 0]) == finest
    image = image_dir / "red" / "red_00.png"
    code, out, err = run(capsys, "assign", fitted["out"], image, "--layer", "0", "--embedding-model", tiny_clip)
    assert code == 0, err
    assert int(out.split("\t")[1]) == int(model.transform([str(image)], layer=0)[0])
    assert_one_line_error(*run(capsys, "info", fitted["out"], "--layer", str(len(model.layers_)))[::2], "--layer")


def test_export_links_every_image_into_its_concepts_folder_with_a_csv(fitted, tmp_path, capsys):
    import csv

    from concept import ConceptModel

    model = ConceptModel.load(fitted["out"], embedding_model=None)
    out = tmp_path / "by-concept"
    code, stdout, _ = run(capsys, "export", str(fitted["out"]), "--out", str(out), "--quiet")
    assert code == 0 and "concept folders" in stdout
    with open(out / "concepts.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["path"] for r in rows] == [str(Path(s).resolve()) for s in model.image_sources_]
    assert [int(r["concept"]) for r in rows] == model.labels_.tolist()
    for row in rows:
        c = int(row["concept"])
        folder = row["exported"].split("/")[0]
        assert folder == ("outliers" if c < 0 else folder) and (c < 0 or folder.startswith(f"{c:03d}_"))
        link = out / row["exported"]
        assert link.is_symlink() and link.resolve() == Path(row["path"]) and row["status"] == "linked"
        assert 0.0 <= float(row["confidence"]) <= 1.0
    assert len([p for p in out.iterdir() if p.is_dir()]) == model.n_concepts_ + int((model.labels_ < 0).any())


def test_export_copies_and_never_writes_over_a_folder(fitted, tmp_path, capsys):
    out = tmp_path / "copies"
    code, _, _ = run(capsys, "export", str(fitted["out"]), "--out", str(out), "--copy", "--quiet")
    assert code == 0
    files = [p for p in out.rglob("*.png")]
    assert files and not any(p.is_symlink() for p in files)
    code, _, err = run(capsys, "export", str(fitted["out"]), "--out", str(out), "--quiet")
    assert_one_line_error(code, err, "already exists")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".copies.")]  # nothing left behind
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    code, _, err = run(capsys, "export", str(fitted["out"]), "--out", str(mine), "--quiet")
    assert_one_line_error(code, err, "already exists")
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]


def test_export_names_are_sanitised_and_a_failed_export_leaves_nothing(fitted, tmp_path, monkeypatch):
    from concept import ConceptModel, export

    assert export.safe_name("../../etc/passwd") == "etc_passwd"
    assert export.safe_name("..") == "unnamed" and export.safe_name("CON") == "unnamed_CON"
    assert export.safe_name("a/b\\c:d*e?\x00f") == "a_b_c_d_e_f"
    assert len(export.safe_name("x" * 500)) == export.MAX_NAME
    model = ConceptModel.load(fitted["out"], embedding_model=None)
    model.custom_labels_ = {0: "../../../=evil, name"}
    out = tmp_path / "labelled"
    export.export_concepts(model, out)
    folders = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert folders[0].startswith("000_") and "/" not in folders[0] and ".." not in folders[0]
    assert all((out / f).resolve().parent == out.resolve() for f in folders)
    with open(out / "concepts.csv", encoding="utf-8") as f:
        rows = list(__import__("csv").DictReader(f))
    assert {r["label"] for r in rows if r["concept"] == "0"} == {"../../../=evil, name"}  # starts with '.', kept

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(export.os, "symlink", boom)
    with pytest.raises(OSError, match="disk full"):
        export.export_concepts(model, tmp_path / "failed")
    assert not (tmp_path / "failed").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".failed.")]


CAPTIONS = {"red": "fire truck", "green": "grass field", "blue": "ocean sky"}


@pytest.mark.parametrize("source", ["file", "filenames"])
def test_fit_with_captions_names_concepts_by_them(image_dir, tiny_clip, tmp_path, capsys, source):
    if source == "file":
        spec = tmp_path / "captions.tsv"
        lines = ["path\tcaption"] + [f"{name}/{name}_{i:02d}.png\t{CAPTIONS[name]}"
                                     for name in COLORS for i in range(0, 15, 2)]
        spec.write_text("\n".join(lines + ["elsewhere/x.png\tnot here"]) + "\n", encoding="utf-8")
        expected = {w for caption in CAPTIONS.values() for w in caption.split()}
    else:
        spec, expected = "filenames", set(COLORS) | {"rgba"}
    code, out, err = run(capsys, "fit", image_dir, "--captions", spec, "--out", tmp_path / "m",
                         "--embedding-model", tiny_clip, "--min-concept-size", "5", "--n-words", "3",
                         "--seed", "0", "--quiet")
    assert code == 0, err
    from concept import ConceptModel

    model = ConceptModel.load(tmp_path / "m", embedding_model=str(tiny_clip))
    assert model.n_concepts_ >= 1
    assert all(words[0] in expected for words in model.topics.values()), model.topics


def test_a_bad_captions_file_is_a_one_line_error(image_dir, tmp_path, capsys):
    bad = tmp_path / "bad.tsv"
    bad.write_text("red/red_00.png has no tab\n", encoding="utf-8")
    code, out, err = run(capsys, "fit", image_dir, "--captions", bad, "--out", tmp_path / "m", "--quiet")
    assert_one_line_error(code, err, "PATH<TAB>CAPTION", "line 1")
    code, out, err = run(capsys, "fit", image_dir, "--captions", tmp_path / "nope.tsv", "--out", tmp_path / "m")
    assert_one_line_error(code, err, "neither a file nor one of filenames, metadata")
    none = tmp_path / "none.tsv"
    none.write_text("other/x.png\tcat\n", encoding="utf-8")
    code, out, err = run(capsys, "fit", image_dir, "--captions", none, "--out", tmp_path / "m", "--quiet")
    assert_one_line_error(code, err, "no caption to any image")


def test_fit_with_seed_concepts_from_the_flag_or_a_file(image_dir, tiny_clip, tmp_path, capsys):
    from concept import ConceptModel

    seeds = tmp_path / "seeds.txt"
    seeds.write_text("fire truck, apple\n\n ocean,sky \n", encoding="utf-8")
    for spec in ("fire truck,apple; ocean , sky", seeds):
        code, out, err = run(capsys, "fit", image_dir, "--seed-concepts", spec, "--out", tmp_path / "m",
                             "--embedding-model", tiny_clip, "--min-concept-size", "5", "--seed", "0", "--quiet")
        assert code == 0, err
        model = ConceptModel.load(tmp_path / "m", embedding_model=str(tiny_clip))
        assert model.seed_concepts == [["fire truck", "apple"], ["ocean", "sky"]]
        assert model.seed_matches_ is not None and len(model.seed_matches_) == len(model.labels_)
    for bad in (";", " , ;"):
        code, out, err = run(capsys, "fit", image_dir, "--seed-concepts", bad, "--out", tmp_path / "m2", "--quiet")
        assert_one_line_error(code, err, "--seed-concepts", "no seed words")


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory) -> Path:
    """Twenty-two of scikit-image's bundled photos (128 px), an exact copy of the cat and a 75% copy of the coffee."""
    import shutil

    import numpy as np

    data = pytest.importorskip("skimage.data")
    root = tmp_path_factory.mktemp("photos")
    for name in ("astronaut", "brick", "camera", "cell", "chelsea", "checkerboard", "clock", "coffee", "coins",
                 "colorwheel", "grass", "gravel", "horse", "hubble_deep_field", "immunohistochemistry", "logo",
                 "microaneurysms", "moon", "page", "retina", "rocket", "text"):
        pixels = getattr(data, name)()
        image = Image.fromarray(pixels.astype(np.uint8) * 255 if pixels.dtype == bool else pixels).convert("RGB")
        image.thumbnail((128, 128))
        image.save(root / f"{name}.png")
    shutil.copy(root / "chelsea.png", root / "chelsea_copy.png")
    with Image.open(root / "coffee.png") as image:
        image.resize((image.width * 3 // 4, image.height * 3 // 4), Image.LANCZOS).save(root / "coffee_small.png")
    return root


def test_fit_find_duplicates_prints_them_and_writes_each_images_group(photo_dir, fitted, tmp_path, capsys):
    import csv

    from concept import ConceptModel
    from concept.duplicates import duplicate_groups

    code, out, err = run(capsys, "fit", photo_dir, "--out", tmp_path / "m", "--embedding-model", "offline",
                         "--min-concept-size", "3", "--find-duplicates", "--quiet")
    assert code == 0, err
    table = tmp_path / "m" / "duplicates.tsv"
    summary = [line for line in out.splitlines() if "near-duplicate groups" in line]
    assert len(summary) == 1 and summary[0].endswith(f"(each image's group in {table})"), out
    with open(table, encoding="utf-8", newline="") as f:
        rows = {Path(r["Image"]).name: r for r in csv.DictReader(f, dialect="excel-tab")}
    assert len(rows) == 24 and list(next(iter(rows.values()))) == [
        "Image", "Input", "Concept", "Duplicate group", "Kept", "Uniqueness", "Typicality"]
    group = {name: int(r["Duplicate group"]) for name, r in rows.items()}
    kept = {name: r["Kept"] == "True" for name, r in rows.items()}
    assert group["chelsea.png"] == group["chelsea_copy.png"] >= 0  # the exact copy
    assert group["coffee.png"] == group["coffee_small.png"] >= 0 != group["chelsea.png"]  # the resized one
    assert kept["chelsea.png"] and not kept["chelsea_copy.png"]  # the same pixels: the first file is kept
    assert kept["coffee.png"] and not kept["coffee_small.png"]  # the one with more pixels
    for g in set(group.values()) - {-1}:  # exactly one kept image per group, every image in none kept
        assert sum(kept[n] for n in group if group[n] == g) == 1
    assert all(kept[n] for n in group if group[n] < 0)
    assert all(0 <= float(r[c]) <= 1 for r in rows.values() for c in ("Uniqueness", "Typicality"))

    model = ConceptModel.load(tmp_path / "m")
    assert model.find_duplicates and model.__dict__["_duplicates"] is not None  # saved with the model
    assert summary[0].startswith(model.duplicates_.summary())
    names = [Path(p).name for p in model.image_sources_]
    assert [group[n] for n in names] == duplicate_groups(model.duplicates_).tolist()
    code, out, err = run(capsys, "info", tmp_path / "m", "--images", "--quiet")  # the same columns
    assert code == 0, err
    assert out.splitlines()[0].split("\t")[-4:] == ["Duplicate group", "Kept", "Uniqueness", "Typicality"]
    # Without the flag: no summary, no table, and the image table of `info --images` as before.
    assert not (fitted["out"] / "duplicates.tsv").exists() and "near-duplicate" not in fitted["stdout"]
    code, out, err = run(capsys, "info", fitted["out"], "--images", "--quiet")
    assert code == 0 and "Duplicate group" not in out.splitlines()[0], err


def test_fit_find_duplicates_is_in_the_help_and_refused_on_ray(image_dir, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--find-duplicates find exact copies and near duplicates during the fit" in help_text
    assert "duplicates.tsv" in help_text
    code, _, err = run(capsys, "fit", image_dir, "--out", tmp_path / "m", "--ray", "--find-duplicates")
    assert_one_line_error(code, err, "--find-duplicates does not work with --ray")
