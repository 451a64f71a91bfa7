"""Ray stays optional: only concept.distributed imports it, and without it says how to install."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "concept"


def test_only_the_distributed_package_imports_ray():
    importers = []
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n == "ray" or n.startswith("ray.") for n in names):
                importers.append(path.relative_to(SRC).as_posix())
    assert importers and all(p.startswith("distributed/") for p in importers), importers


def test_without_ray_a_clear_error_names_the_extra():
    code = ("import sys; sys.modules['ray'] = None\n"
            "from concept.distributed import embed_to_parquet\n"
            "try:\n    embed_to_parquet(['a.png'], 'out')\n"
            "except Exception as exc:\n    print(type(exc).__name__, exc)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.startswith("ConceptError") and 'pip install "concept[ray]"' in out, out


def test_cli_without_ray_exits_with_the_hint(tmp_path):
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    code = ("import sys; sys.modules['ray'] = None\n"
            "from concept.cli import main\n"
            f"sys.exit(main(['embed', {str(tmp_path)!r}, '--store', {str(tmp_path / 's')!r}, '--ray']))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 2 and "concept[ray]" in done.stderr, done.stderr
