"""Frames per second of the explorer while panning a 70,000-image map, in headless chromium.

The map is a two-layer synthetic layout (10 coarse concepts, the Fashion-MNIST classes, of 6 fine
concepts each) whose thumbnails are the 70,000 real Fashion-MNIST images; the page is the static
report `concept explore` writes. Chromium is Debian's (/usr/bin/chromium) run headless with
--disable-gpu, so WebGL is SwiftShader: everything is drawn by the CPU.

For each mode and zoom the page pans the camera on every animation frame for a few seconds and
counts the frames regl-scatterplot drew; apart from that it times the overlays alone (names and
thumbnails: `conceptExplorer.redraw()`) and the WebGL points alone (`scatterplot.redraw()` + one
frame), which says what limits the frame rate.

    python benchmarks/explorer_fps.py [--n 70000] [--seconds 4]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _common import OUT, publish

from concept.datasets import fashion_mnist
from concept.explorer import write_report
from concept.testing import LayeredMapModel

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run"]


PAN = """async ({ zoom, ms, mode }) => {
  const ex = window.conceptExplorer, sp = ex.scatterplot;
  ex.setMode(mode);
  await sp.zoomToOrigin();
  await ex.zoom(zoom);
  const [tx, ty] = sp.get("camera").target, dist = sp.get("cameraDistance");
  const pan = (t) => sp.zoomToLocation([tx + 0.25 * dist * Math.sin(t * 2.5), ty + 0.1 * dist * Math.cos(t * 2.5)], dist);
  const run = (length) => new Promise((done) => {
    let draws = 0; const count = () => { draws++; };
    sp.subscribe("draw", count);
    const t0 = performance.now(), o0 = ex.overlayFrames();
    const step = (now) => {
      pan((now - t0) / 1000);
      if (now - t0 < length) requestAnimationFrame(step);
      else { sp.unsubscribe("draw", count); done({ draws, overlays: ex.overlayFrames() - o0, seconds: (now - t0) / 1000 }); }
    };
    requestAnimationFrame(step);
  });
  await run(1500);  // warm up: sprite sheets load, shaders compile
  const result = await run(ms);
  // The two parts of a frame, timed alone.
  let t = performance.now();
  for (let i = 0; i < 20; i++) ex.redraw();
  result.overlay_ms = (performance.now() - t) / 20;
  result.labels = ex.visibleLabels().length;
  result.thumbs = ex.visibleThumbnails().length;
  ex.setMode("points"); ex.redraw();
  const frame = () => new Promise((r) => requestAnimationFrame(() => r()));
  await frame();
  t = performance.now();
  for (let i = 0; i < 10; i++) { sp.redraw(); await new Promise((r) => sp.subscribe("draw", r, 1)); }
  result.points_ms = (performance.now() - t) / 10;
  ex.setMode(mode);  // back, for the screenshot
  ex.redraw();
  return result;
}"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=70_000)
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    data = fashion_mnist("all")
    images, classes = data.images[:args.n], data.labels[:args.n]
    # Coarse concepts: the classes, 6 fine concepts each; a looser layout than the tests' maps.
    model = LayeredMapModel(classes=np.asarray(classes), per=6, spread=20.0, scatter=4.0, tightness=1.0,
                            noise=15.0, outliers=0.03, n_exemplars=9)
    folder = OUT / "explorer_fps"
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    report = write_report(model, folder / "map.html", images=images, verbose=False)
    written = time.perf_counter() - t0
    size_mb = report.stat().st_size / 2**20
    rows = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 850})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.set_default_timeout(180_000)
        t0 = time.perf_counter()
        page.goto(report.as_uri())
        page.wait_for_function("document.body.dataset.ready === '1'")
        loaded = time.perf_counter() - t0
        for mode, zoom in [("points", 1), ("points", 6), ("images", 1), ("images", 6), ("images", 20)]:
            r = page.evaluate(PAN, {"zoom": zoom, "ms": int(args.seconds * 1000), "mode": mode})
            rows.append({"mode": mode, "zoom": f"{zoom}x", "frames/s": f"{r['draws'] / r['seconds']:.1f}",
                         "overlays/s": f"{r['overlays'] / r['seconds']:.1f}",
                         "overlay ms": f"{r['overlay_ms']:.1f}", "points ms": f"{r['points_ms']:.1f}",
                         "names": r["labels"], "thumbnails": r["thumbs"]})
            page.screenshot(path=str(folder / f"{mode}_{zoom}x.png"))
        browser.close()
    assert not errors, errors
    intro = (f"`python benchmarks/explorer_fps.py --n {args.n}`: a {args.n:,}-image map (synthetic two-layer "
             f"layout, Fashion-MNIST thumbnails in {int(np.ceil(args.n / 256))} sprite sheets), report "
             f"{size_mb:.1f} MB written in {written:.0f} s and loaded in {loaded:.1f} s; headless Debian "
             "chromium with --disable-gpu (SwiftShader WebGL, all on the CPU), 1400x850 viewport, "
             f"panning {args.seconds:.0f} s per row. frames/s: frames regl-scatterplot drew while the camera "
             "moved every animation frame; overlay ms: one redraw of the names and thumbnails alone; "
             "points ms: one WebGL frame of the points alone.")
    publish("explorer_fps", "Explorer: frames per second while panning", intro, rows,
            ["mode", "zoom", "frames/s", "overlays/s", "overlay ms", "points ms", "names", "thumbnails"])


if __name__ == "__main__":
    main()
