"""benchmarks/image_collections.py: installing with stand-in apt-get and npm, safe unpacking, labels."""

from __future__ import annotations

import importlib.util
import io
import os
import sys
import tarfile
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "image_collections.py"


@pytest.fixture(scope="module")
def bc():
    path = list(sys.path)  # the script puts benchmarks/ first, for its _common
    spec = importlib.util.spec_from_file_location("benchmark_collections_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path[:] = path
    return module


def _tarball(path: Path, names: list[str]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name in names:
            info = tarfile.TarInfo(name)
            info.size = 2
            tar.addfile(info, io.BytesIO(b"{}"))
    return path


@pytest.mark.parametrize("bad", ["../evil.txt", "/etc/evil.txt", "package/../../evil.txt"])
def test_safe_extract_refuses_escaping_members(bc, tmp_path, bad):
    tarball = _tarball(tmp_path / "t.tgz", ["package/ok.json", bad])
    dest = tmp_path / "out"
    with pytest.raises(RuntimeError, match="unsafe member"):
        bc.safe_extract(tarball, dest)
    assert not (tmp_path / "evil.txt").exists() and not list(dest.rglob("*.json"))


def _fake(folder: Path, name: str, body: str) -> None:
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(f"#!/bin/sh\n{body}\n")
    (folder / name).chmod(0o755)


def test_apt_install_updates_only_when_the_package_is_unknown(bc, tmp_path, monkeypatch):
    log, probe, known = tmp_path / "calls.log", tmp_path / "installed", tmp_path / "updated"
    _fake(tmp_path / "bin", "apt-get", f'echo "apt-get $*" >> {log}\n'
          f'case "$*" in *update*) touch {known};; *install*) [ -e {known} ] || '
          f'{{ echo "E: Unable to locate package x" >&2; exit 100; }}; touch {probe};; esac')
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    bc.apt_install("x", probe)
    calls = log.read_text().splitlines()
    assert [c.split()[1] for c in calls] == ["install", "update", "install"]
    assert all("DPkg::Lock::Timeout=600" in c for c in calls)
    bc.apt_install("x", probe)  # present: nothing more runs
    assert len(log.read_text().splitlines()) == 3


def test_npm_package_packs_into_the_cache_and_unpacks_once(bc, tmp_path, monkeypatch):
    source = _tarball(tmp_path / "src.tgz", ["package/package.json", "package/img/a.png", "package/big/b.png"])
    _fake(tmp_path / "bin", "npm", f'echo "npm $*" >> {tmp_path / "npm.log"}; cp {source} "$PWD/pkg-1.0.0.tgz"')
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(bc, "CACHE", tmp_path / "cache")
    root = bc.npm_package("pkg", "1.0.0", keep=lambda n: not n.startswith("package/big/"))
    assert root == tmp_path / "cache" / "pkg-1.0.0" / "package"
    assert (root / "img" / "a.png").exists() and not (root / "big").exists()
    assert not (tmp_path / "cache" / "pkg-1.0.0.tgz").exists()
    bc.npm_package("pkg", "1.0.0")
    assert (tmp_path / "npm.log").read_text().splitlines() == ["npm pack pkg@1.0.0 --silent"]


def test_labels_drop_small_classes_and_captions_are_the_english_line(bc, tmp_path):
    items = [("big", Path(f"b{i}.png"), f"b{i}") for i in range(25)] + [("small", Path("s.png"), "s")]
    data = bc._labeled(items)
    assert data.label_names == ["big"] and len(data) == 25 and set(data.labels) == {0}
    txt = tmp_path / "koala.txt"
    txt.write_text("\u201cA koala.\u201d\nach.utf8=Marac.\nfr.utf8=Un koala.\n", encoding="utf-8")
    assert bc._stamp_caption(txt) == "A koala."
    assert bc._stamp_caption(tmp_path / "missing.txt") is None
