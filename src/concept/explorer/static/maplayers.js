/* concept explorer: what to draw over the map, as pure functions (no DOM, no WebGL).
 *
 * placeLabels: concept names without overlaps. Candidates come in priority order (the caller
 *   sorts them: the layer the zoom opened first, then coarser ones, each by size); a label is
 *   kept when its box, measured in screen pixels, is inside the view and meets no kept box.
 * pickThumbnails: which images to draw as thumbnails, at most one per thumbnail-sized square,
 *   so that none overlaps another: points come in priority order (exemplars first), each takes
 *   its place unless a kept thumbnail is nearer than one thumbnail side (Chebyshev distance).
 * affineFrom: the map's data -> screen transform from three points' known screen positions. */
(function () {
  "use strict";

  const EDGE = 1e-6;  // px: how far past the view's edge a kept box may reach (rounding only)

  function overlaps(a, b) {
    return a[0] < b[2] && b[0] < a[2] && a[1] < b[3] && b[1] < a[3];
  }

  /* candidates: [{key, x, y, w, h, ...}] (x, y: centre in px; w, h: box in px), best first.
   * Returns the kept candidates, in the same order. Boxes get `pad` px of air on each side. */
  function placeLabels(candidates, width, height, pad) {
    pad = pad === undefined ? 3 : pad;
    const kept = [], boxes = [];
    for (const c of candidates) {
      const box = [c.x - c.w / 2 - pad, c.y - c.h / 2 - pad, c.x + c.w / 2 + pad, c.y + c.h / 2 + pad];
      // A box the caller clamped to an edge may cross it by a rounding error (13.8 / 2 + 3 - 3 -
      // 13.8 / 2 < 0): that is inside the view.
      if (box[0] < -EDGE || box[1] < -EDGE || box[2] > width + EDGE || box[3] > height + EDGE) continue;
      let free = true;
      for (const b of boxes) if (overlaps(box, b)) { free = false; break; }
      if (!free) continue;
      boxes.push(box);
      kept.push(c);
    }
    return kept;
  }

  /* order: point indices, best first; project(i) -> [x, y] in px (or null); side: thumbnail side
   * in px; eligible(i) -> bool. Returns [{index, x, y}] of at most `limit` thumbnails. */
  function pickThumbnails(order, project, width, height, side, eligible, limit) {
    const cols = Math.max(1, Math.ceil(width / side)), rows = Math.max(1, Math.ceil(height / side));
    const cells = new Map();  // cell -> [x, y] of its kept thumbnail (one per cell at most)
    const kept = [];
    const half = side / 2;
    for (let n = 0; n < order.length && kept.length < limit && cells.size < cols * rows; n++) {
      const i = order[n];
      if (eligible && !eligible(i)) continue;
      const p = project(i);
      if (!p) continue;
      const x = p[0], y = p[1];
      if (x < -half || y < -half || x > width + half || y > height + half) continue;
      const cx = Math.floor(x / side), cy = Math.floor(y / side);
      let free = true;
      for (let dx = -1; dx <= 1 && free; dx++) {
        for (let dy = -1; dy <= 1; dy++) {
          const other = cells.get((cy + dy) * 1e6 + (cx + dx));
          if (other && Math.abs(other[0] - x) < side && Math.abs(other[1] - y) < side) { free = false; break; }
        }
      }
      if (!free) continue;
      cells.set(cy * 1e6 + cx, [x, y]);
      kept.push({ index: i, x, y });
    }
    return kept;
  }

  /* The affine map [x, y] -> [a*x + b*y + c, d*x + e*y + f] through three point pairs, or null
   * when the three data points are (nearly) on one line. */
  function affineFrom(data, screen) {
    const [[x0, y0], [x1, y1], [x2, y2]] = data;
    const det = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0);
    if (!(Math.abs(det) > 1e-9)) return null;
    const solve = (v0, v1, v2) => {
      const a = ((v1 - v0) * (y2 - y0) - (v2 - v0) * (y1 - y0)) / det;
      const b = ((x1 - x0) * (v2 - v0) - (x2 - x0) * (v1 - v0)) / det;
      return [a, b, v0 - a * x0 - b * y0];
    };
    const X = solve(screen[0][0], screen[1][0], screen[2][0]);
    const Y = solve(screen[0][1], screen[1][1], screen[2][1]);
    return (x, y) => [X[0] * x + X[1] * y + X[2], Y[0] * x + Y[1] * y + Y[2]];
  }

  window.conceptMapLayers = { placeLabels, pickThumbnails, affineFrom };
})();
