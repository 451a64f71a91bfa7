"""examples/: the demo's own logic, on a small fit (the demo itself runs for minutes)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
from conftest import ColorEmbedder, solid

from concept import ConceptModel

DEMO = Path(__file__).resolve().parents[1] / "examples" / "openclipart_demo.py"


def load_demo():
    spec = importlib.util.spec_from_file_location("openclipart_demo", DEMO)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_demo_counts_outliers_as_its_table_does_and_unreadable_files_apart():
    images = [solid(c) for c in ((250, 0, 0), (0, 250, 0), (0, 0, 250)) for _ in range(12)]
    images.append(np.zeros((4, 4, 7), np.uint8))  # unreadable: not an image shape
    model = ConceptModel(min_concept_size=5, embedding_model=ColorEmbedder(), random_state=0, verbose=False)
    labels = model.fit_transform(images, docs=["red", "green", "blue"])
    assert labels[-1] == -1 and len(model.failures_) == 1
    table = model.get_concept_info()
    in_table = int(table.Frequency[table.Concept < 0].sum())
    summary = load_demo().fit_summary(model)
    assert f"{in_table} outliers" in summary, summary
    assert "1 unreadable file" in summary
