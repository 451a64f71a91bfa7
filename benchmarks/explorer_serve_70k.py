"""Serve mode at 70,000 images (issue 14): fit a synthetic 70,000 x 384 model (60 concepts),
serve it, open it in headless Debian chromium and time the page load, the names drawn, and a
rename and a merge from the page (each saves the model folder and reloads the page).

    python benchmarks/explorer_serve_70k.py

Prints one line per step; no console errors are expected. Needs Debian's chromium and
Playwright's Python package (`scripts/install.sh --dev`); downloads nothing.
"""
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from playwright.sync_api import sync_playwright

from concept import ConceptModel
from concept.explorer import make_server


def main(tmp: str) -> None:
    rng = np.random.default_rng(0)
    c = rng.normal(size=(60, 384)).astype(np.float32)
    x = c[rng.integers(0, 60, 70_000)] + 1.2 * rng.normal(size=(70_000, 384)).astype(np.float32) / np.sqrt(384) * 8
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    t = time.perf_counter()
    m = ConceptModel(embedding_model=None, random_state=0, verbose=False).fit(image_embeddings=x, docs=[f"word{i}" for i in range(200)])
    print(f"fit {time.perf_counter()-t:.1f}s concepts {m.n_concepts_} layers {m.layer_sizes_}", flush=True)
    folder = Path(tmp) / "big.model"
    m.save(folder)
    t = time.perf_counter(); server = make_server(folder, port=0, model=m, prepare_thumbnails=False)
    print(f"server (map) {time.perf_counter()-t:.1f}s page {len(server.app.page)/1e6:.1f} MB", flush=True)
    th = threading.Thread(target=server.serve_forever, daemon=True); th.start()
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=["--no-sandbox", "--disable-gpu"])
        page = b.new_page(viewport={"width": 1400, "height": 850}); errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        page.set_default_timeout(120_000)
        t = time.perf_counter(); page.goto(server.url); page.wait_for_function("document.body.dataset.ready === '1'")
        print(f"page ready {time.perf_counter()-t:.1f}s points", page.evaluate("window.conceptExplorer.scatterplot.get('points').length"),
              "labels", len(page.evaluate("window.conceptExplorer.visibleLabels()")), flush=True)
        page.evaluate("window.conceptExplorer.zoom(4)")
        print("labels zoomed", len(page.evaluate("window.conceptExplorer.visibleLabels()")))
        t = time.perf_counter()
        with page.expect_navigation():
            page.evaluate("window.conceptExplorer.rename(2, 'renamed at 70k')")
        page.wait_for_function("document.body.dataset.ready === '1'")
        print(f"rename + save + reload {time.perf_counter()-t:.1f}s; card:", "renamed at 70k" in page.locator(".concept-card").nth(2).inner_text())
        k = m.n_concepts_
        t = time.perf_counter()
        with page.expect_navigation():
            page.evaluate("window.conceptExplorer.merge([0, 1])")
        page.wait_for_function("document.body.dataset.ready === '1'")
        print(f"merge + save + reload {time.perf_counter()-t:.1f}s; cards {page.locator('.concept-card').count()} (was {k})")
        print("saved:", ConceptModel.load(folder).custom_labels_, ConceptModel.load(folder).n_concepts_, "errors", errors[:3])
        b.close()
    server.shutdown()


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as folder:
        main(folder)
