"""The README's explorer screenshots (docs/images/explorer*.png) from the demo collection.

Fits the demo's model (2,262 OpenClipart images, the offline model's cached vectors from
benchmarks/cache/openclipart_lite0.npz, the SVG titles and keywords as words), writes the report
and photographs it in headless Debian chromium: the names on the map with a hierarchy node open,
and image mode zoomed in.

    python scripts/explorer_screenshot.py [--out docs/images] [--work /tmp/explorer-shot]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from concept import ConceptModel
from concept.datasets import openclipart
from concept.embedding.offline import OfflineEmbedder
from concept.explorer import write_report

CACHE = Path(__file__).resolve().parents[1] / "benchmarks" / "cache" / "openclipart_lite0.npz"
CHROMIUM = "/usr/bin/chromium"


def l2(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True).clip(1e-12)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/images"))
    parser.add_argument("--work", type=Path, default=Path("/tmp/explorer-shot"))
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    data = openclipart()
    arrays = np.load(CACHE)
    kept = arrays["kept"]
    embedder = OfflineEmbedder("lite0", verbose=False)
    model = ConceptModel(embedding_model=embedder, random_state=0, verbose=False)
    model.fit([data.images[i] for i in kept], docs=data.docs,
              image_embeddings=l2(embedder.conse(arrays["probs"])), image_features=l2(arrays["features"]))
    model.map_2d()
    report = write_report(model, args.work / "report.html", title="concept explorer: OpenClipart", verbose=False)
    args.out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1400, "height": 850})
        page.goto(report.as_uri())
        page.wait_for_function("document.body.dataset.ready === '1'")
        page.wait_for_timeout(500)
        roots = page.locator("#tree > .node > .row")
        if roots.count():
            roots.first.click()
            page.wait_for_timeout(2000)
        page.screenshot(path=str(args.out / "explorer.png"))
        page.click("#reset")
        page.wait_for_timeout(1500)
        page.evaluate("window.conceptExplorer.setMode('images')")
        page.evaluate("window.conceptExplorer.zoom(3)")
        page.wait_for_timeout(4000)
        page.evaluate("window.conceptExplorer.redraw()")
        page.screenshot(path=str(args.out / "explorer_images.png"))
        print("names drawn:", page.evaluate("window.conceptExplorer.visibleLabels()"))
        browser.close()
    from PIL import Image

    for name in ("explorer.png", "explorer_images.png"):  # 256 colours: a third of the bytes
        path = args.out / name
        with Image.open(path) as shot:
            image = shot.convert("RGB")
        image.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(path, optimize=True)
    print(f"{model.n_concepts_} concepts in {len(model.layers_)} layers ({model.layer_sizes_}); "
          f"screenshots in {args.out}")


if __name__ == "__main__":
    main()
