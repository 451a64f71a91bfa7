/* concept explorer: the map (regl-scatterplot), concept cards, members, search and upload.
 * Reads its data from <script id="concept-data">; in served mode it also calls the local API
 * (/api/search, /api/search-image). Model text is only ever inserted with textContent. */
(function () {
  "use strict";

  const DATA = JSON.parse(document.getElementById("concept-data").textContent);
  const P = DATA.points;
  const N = P.x.length;
  const K = DATA.concepts.length;
  const SERVED = DATA.mode === "served";
  const MEMBERS_PAGE = 120;
  const $ = (id) => document.getElementById(id);

  // ------------------------------------------------------------------ indices
  const members = Array.from({ length: K }, () => []);
  const outliers = [];
  for (let i = 0; i < N; i++) (P.concept[i] >= 0 ? members[P.concept[i]] : outliers).push(i);
  const byProbability = (a, b) => P.probability[b] - P.probability[a] || a - b;
  members.forEach((m) => m.sort(byProbability));
  // DATA.duplicates (when the model's duplicates are known): each image's group (-1: none) and the
  // copies that could be dropped; a badge on their thumbnails and a "Duplicates" filter show them.
  const DUP = DATA.duplicates && Array.isArray(DATA.duplicates.group) && DATA.duplicates.group.length === N
    ? DATA.duplicates : null;
  const dupCopies = new Set(DUP && Array.isArray(DUP.copies) ? DUP.copies : []);
  const inDuplicateGroups = [];
  if (DUP) for (let i = 0; i < N; i++) if (DUP.group[i] >= 0) inDuplicateGroups.push(i);
  // A click on a badge shows its group side by side: each group's images, the kept one first.
  const dupGroups = new Map();  // group -> indices
  for (const i of inDuplicateGroups) {
    if (!dupGroups.has(DUP.group[i])) dupGroups.set(DUP.group[i], []);
    dupGroups.get(DUP.group[i]).push(i);
  }
  for (const list of dupGroups.values()) list.sort((a, b) => dupCopies.has(a) - dupCopies.has(b) || a - b);
  // DATA.uniqueness (with the duplicates): how unlike its nearest images each image is, 0-1 (null:
  // unknown); a concept's members can be listed most unusual first instead of most typical first.
  const U = Array.isArray(DATA.uniqueness) && DATA.uniqueness.length === N
    ? DATA.uniqueness.map((v) => (typeof v === "number" && Number.isFinite(v) ? v : null)) : null;
  const uniquenessOf = (i) => (U && U[i] !== null ? U[i] : -1);
  const byUniqueness = (a, b) => uniquenessOf(b) - uniquenessOf(a) || byProbability(a, b);
  let memberOrder = "typical";  // or "unusual" (by uniqueness): how concept panels list their members

  // ------------------------------------------------------------------ layers (finest first)
  // The default layer is DATA.concepts / P.concept (what the cards show); the others come
  // with their own labels per point. parent: the concept of the next coarser layer.
  const D = DATA.default_layer || 0;
  const LAYERS = (DATA.layers && DATA.layers.length ? DATA.layers : [{}]).map((layer, li) => ({
    concepts: li === D ? DATA.concepts : layer.concepts,
    labels: li === D ? P.concept : layer.labels,
  }));
  const NL = LAYERS.length;
  const layerMembers = new Map();  // "layer:concept" -> indices, most typical first
  function membersOf(li, c) {
    if (li === D) return c >= 0 ? members[c] : outliers;
    const key = `${li}:${c}`;
    if (!layerMembers.has(key)) {
      const labels = LAYERS[li].labels, out = [];
      for (let i = 0; i < N; i++) if (labels[i] === c) out.push(i);
      layerMembers.set(key, out.sort(byProbability));
    }
    return layerMembers.get(key);
  }
  const childrenOf = (li, c) => (li > 0 ? LAYERS[li - 1].concepts.filter((x) => x.parent === c) : []);
  function ancestors(li, c) {  // [[layer, concept], ...] from the coarsest down to (li, c)
    const path = [[li, c]];
    for (let l = li, k = c; l + 1 < NL && LAYERS[l].concepts[k].parent >= 0; l++) {
      k = LAYERS[l].concepts[k].parent;
      path.unshift([l + 1, k]);
    }
    return path;
  }
  // How far each layer's images sit from their concept's label, typically (data units): a
  // layer's names show once its concepts are big enough on screen to be told apart.
  const layerRadius = LAYERS.map((layer) => {
    const sums = new Float64Array(layer.concepts.length), counts = new Float64Array(layer.concepts.length);
    const ax = layer.concepts.map((c) => (c.anchor >= 0 ? P.x[c.anchor] : 0));
    const ay = layer.concepts.map((c) => (c.anchor >= 0 ? P.y[c.anchor] : 0));
    for (let i = 0; i < N; i++) {
      const c = layer.labels[i];
      if (c < 0) continue;
      sums[c] += (P.x[i] - ax[c]) ** 2 + (P.y[i] - ay[c]) ** 2;
      counts[c] += 1;
    }
    const radii = [];
    for (let c = 0; c < sums.length; c++) if (counts[c]) radii.push(Math.sqrt(sums[c] / counts[c]));
    radii.sort((a, b) => a - b);
    return radii.length ? Math.max(radii[Math.floor(radii.length / 2)], 1e-4) : 1;
  });
  const nodeColor = (li, c) => {
    const a = LAYERS[li].concepts[c].anchor;
    return a >= 0 ? conceptColor(P.concept[a]) : DATA.outliers.color;
  };
  const labelOf = (li, c) => (c >= 0 ? LAYERS[li].concepts[c].label || `concept ${c}` : "outliers");
  const layerName = (li) => (NL === 1 ? "" : li === 0 ? "finest layer" : li === NL - 1 ? "coarsest layer" : `layer ${li}`);

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v;
      else if (k === "style") Object.assign(node.style, v);
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else if (v !== null && v !== undefined && v !== false) node.setAttribute(k, v);
    }
    for (const c of children) if (c !== null && c !== undefined) node.append(c);
    return node;
  }
  const fmt = (n) => n.toLocaleString("en-US");
  const imageName = (i) => (DATA.names ? DATA.names[i] : `image ${i}`);
  const imagePath = (i) => (DATA.sources ? (DATA.sources.prefix ? `${DATA.sources.prefix}/` : "") + DATA.sources.rel[i] : DATA.names ? DATA.names[i] : "");
  function fullImageUrl(i) {  // the image file itself: through the server, or its file:// URL
    if (!DATA.sources) return null;
    if (SERVED) return `/api/image/${i}`;
    if (!DATA.sources.url) return null;
    return DATA.sources.url + DATA.sources.rel[i].split("/").map(encodeURIComponent).join("/");
  }
  const conceptColor = (c) => (c >= 0 ? DATA.concepts[c].color : DATA.outliers.color);
  const conceptName = (c) => (c >= 0 ? `Concept ${c}` : "Outliers");
  const wordsOf = (c, n) => (c >= 0 ? DATA.concepts[c].words.slice(0, n).join(", ") : "not in any concept");

  // ------------------------------------------------------------------ thumbnails
  // A tile shows a sprite sheet as its background; until the sheet has loaded it is marked
  // "loading" (an animated shimmer, aria-busy) so that a grey tile does not look like the image.
  const sheets = new Map();  // url -> {done, waiting: Set of tiles}
  function markLoading(node, url) {
    let sheet = sheets.get(url);
    if (!sheet) {
      sheet = { done: false, waiting: new Set() };
      sheets.set(url, sheet);
      const probe = new Image();
      probe.onload = probe.onerror = () => {
        sheet.done = true;
        for (const t of sheet.waiting) { t.classList.remove("loading"); t.removeAttribute("aria-busy"); }
        sheet.waiting.clear();
      };
      probe.src = url;
    }
    if (sheet.done) return;
    node.classList.add("loading");
    node.setAttribute("aria-busy", "true");
    sheet.waiting.add(node);
  }

  function thumb(i, size) {
    size = size || 64;
    const t = DATA.thumbs;
    const node = el("div", { class: "thumb", "data-index": i, title: DATA.names ? DATA.names[i] : `image ${i}` });
    node.style.width = node.style.height = `${size}px`;
    if (t && t.sheets) {
      const perSheet = t.per_row * t.per_row;
      const k = Math.floor(i / perSheet), j = i % perSheet;
      node.style.backgroundImage = `url("${t.sheets[k]}")`;
      markLoading(node, t.sheets[k]);
      node.style.backgroundSize = `${t.per_row * size}px auto`;
      node.style.backgroundPosition = `${-(j % t.per_row) * size}px ${-Math.floor(j / t.per_row) * size}px`;
    } else {
      node.classList.add("placeholder");
      node.style.backgroundColor = conceptColor(P.concept[i]);
      node.textContent = `#${i}`;
    }
    if (DUP && DUP.group[i] >= 0) {
      const copy = dupCopies.has(i);
      node.append(el("button", { class: "badge dup", type: "button", title: (copy ? `A copy in duplicate group ${DUP.group[i]}`
        : `The kept image of duplicate group ${DUP.group[i]}`) + ": click to see the group side by side",
      onclick: (e) => { e.stopPropagation(); showDuplicateGroup(i); } }, copy ? "copy" : "dup"));
    }
    return node;
  }

  // ------------------------------------------------------------------ the map
  const mapBox = $("map");
  const canvas = $("map-canvas");
  const tooltip = $("tooltip");
  const size0 = mapBox.getBoundingClientRect();
  const pointSize = N <= 1000 ? 7 : N <= 5000 ? 5 : N <= 20000 ? 4 : 2.5;
  const scatterplot = createScatterplot({
    canvas,
    width: Math.max(1, size0.width),
    height: Math.max(1, size0.height),
    pointSize,
    pointSizeSelected: 1,
    pointOutlineWidth: 2,
    backgroundColor: "#ffffff",
    pointColorHover: "#111111",
    pointColorActive: "#111111",
    opacityInactiveMax: 0.18,
    opacityInactiveScale: 0.5,
    lassoColor: "#1f77b4",
    deselectOnDblClick: false,
  });
  const colorIndex = Int32Array.from(P.concept, (c) => (c >= 0 ? c : K));
  scatterplot.set({
    colorBy: "valueA",
    pointColor: DATA.concepts.map((c) => c.color).concat([DATA.outliers.color]),
  });
  new ResizeObserver(() => {
    const r = mapBox.getBoundingClientRect();
    if (r.width > 0 && r.height > 0) scatterplot.set({ width: r.width, height: r.height });
    scheduleOverlays();
  }).observe(mapBox);

  // ------------------------------------------------------------------ over the map: names and images
  const ML = window.conceptMapLayers;
  const labelBox = $("labels");
  const thumbCanvas = $("thumb-canvas");
  const LABEL_OPEN_PX = 38;  // a layer's names show once its typical concept is this wide on screen
  const LABEL_MAX_CHARS = 40;
  const LABEL_PAD = 3;  // px of air around a name
  const MAX_THUMBS = 1500;
  const ALL_IMAGES_ZOOM = 2.5;  // zoomed in this far, every image may show, not only exemplars
  let mode = "points";
  let filterNode = null;  // [layer, concept] the map is filtered to, or null
  // The period chosen on the time histogram: [first bin, last bin] or null; which images are in
  // it (mask and list), and how many of each layer's concepts.
  let timeRange = null, timeMask = null, timeIndices = null, timeCounts = null;
  const inTime = (indices) => (timeMask ? indices.filter((i) => timeMask[i]) : indices);
  let drawnLabels = [];
  let drawnThumbs = [];
  const measureCtx = document.createElement("canvas").getContext("2d");
  const widths = new Map();
  const fontPx = (li, context) => (context ? 13 + 2 * Math.min(li, 4) : 12 + Math.min(li, 3));
  function textWidth(text, px, weight) {
    const key = `${px}|${weight}|${text}`;
    if (!widths.has(key)) {
      measureCtx.font = `${weight} ${px}px system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif`;
      widths.set(key, measureCtx.measureText(text).width);
    }
    return widths.get(key);
  }
  const shortLabel = (text) => (text.length > LABEL_MAX_CHARS ? `${text.slice(0, LABEL_MAX_CHARS - 1)}…` : text);

  // data -> screen px from three reference points (the camera is an affine map); null when the
  // map is one line, and each point's own position is asked for instead.
  const refs = (() => {
    if (N < 3) return null;
    let i0 = 0, i1 = 0;
    for (let i = 1; i < N; i++) { if (P.x[i] < P.x[i0]) i0 = i; if (P.x[i] > P.x[i1]) i1 = i; }
    let i2 = 0, best = -1;
    for (let i = 0; i < N; i++) {
      const area = Math.abs((P.x[i1] - P.x[i0]) * (P.y[i] - P.y[i0]) - (P.x[i] - P.x[i0]) * (P.y[i1] - P.y[i0]));
      if (area > best) { best = area; i2 = i; }
    }
    return [i0, i1, i2];
  })();
  // point(i): image i's screen px; affine: the map's six numbers (x' = a x + b y + c, y' = d x +
  // e y + f), to project many images without an array each; toData: screen px -> data.
  function projector() {
    const data = refs && refs.map((i) => [P.x[i], P.y[i]]), screen = refs && refs.map((i) => scatterplot.getScreenPosition(i));
    const f = refs && ML.affineFrom(data, screen);
    if (f) {
      const o = f(0, 0), u = f(1, 0), v = f(0, 1);
      return { point: (i) => f(P.x[i], P.y[i]), toData: ML.affineFrom(screen, data),
        affine: [u[0] - o[0], v[0] - o[0], o[0], u[1] - o[1], v[1] - o[1], o[1]],
        pxPerUnit: Math.max(Math.abs(u[0] - o[0]), Math.abs(v[1] - o[1])) };
    }
    const r = mapBox.getBoundingClientRect();
    return { point: (i) => scatterplot.getScreenPosition(i), toData: null, affine: null,
      pxPerUnit: Math.min(r.width, r.height) / 2 / scatterplot.get("cameraDistance") };
  }

  // The images in view, found through a grid over the map (each cell's images listed once), so
  // that a frame visits only the cells the view covers; at most VIEW_SAMPLE of them, evenly
  // spread (every k-th in cell order), when more are in view. They say where a concept whose
  // anchor image is out of view can be named.
  const VIEW_SAMPLE = 6000;
  const grid = (() => {
    let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
    for (let i = 0; i < N; i++) {
      x0 = Math.min(x0, P.x[i]); x1 = Math.max(x1, P.x[i]); y0 = Math.min(y0, P.y[i]); y1 = Math.max(y1, P.y[i]);
    }
    if (!N) x0 = x1 = y0 = y1 = 0;
    const G = Math.max(1, Math.min(256, Math.round(Math.sqrt(N / 16))));  // ~16 images a cell on average
    const sx = G / Math.max(x1 - x0, 1e-9), sy = G / Math.max(y1 - y0, 1e-9);
    const col = (x) => Math.min(G - 1, Math.max(0, Math.floor((x - x0) * sx))) || 0;
    const row = (y) => Math.min(G - 1, Math.max(0, Math.floor((y - y0) * sy))) || 0;
    const start = new Int32Array(G * G + 1), items = new Int32Array(N);
    const cellOf = new Int32Array(N);
    for (let i = 0; i < N; i++) { cellOf[i] = row(P.y[i]) * G + col(P.x[i]); start[cellOf[i] + 1]++; }
    for (let c = 0; c < G * G; c++) start[c + 1] += start[c];
    const next = start.slice(0, G * G);
    for (let i = 0; i < N; i++) items[next[cellOf[i]]++] = i;
    return { G, col, row, start, items };
  })();
  const sample = { n: 0, index: new Int32Array(VIEW_SAMPLE), x: new Float32Array(VIEW_SAMPLE), y: new Float32Array(VIEW_SAMPLE) };
  function sampleInView(proj, width, height) {
    const { G, start, items } = grid;
    let c0 = 0, c1 = G - 1, r0 = 0, r1 = G - 1;
    if (proj.toData) {  // the cells under the view's corners, and those between
      const corners = [[0, 0], [width, 0], [0, height], [width, height]].map(([x, y]) => proj.toData(x, y));
      c0 = grid.col(Math.min(...corners.map((p) => p[0]))); c1 = grid.col(Math.max(...corners.map((p) => p[0])));
      r0 = grid.row(Math.min(...corners.map((p) => p[1]))); r1 = grid.row(Math.max(...corners.map((p) => p[1])));
    }
    let total = 0;  // a row of cells is one run of `items`
    for (let r = r0; r <= r1; r++) total += start[r * G + c1 + 1] - start[r * G + c0];
    const step = Math.max(1, Math.ceil(total / VIEW_SAMPLE));  // so at most VIEW_SAMPLE are visited
    const m = proj.affine;  // no array per image
    let n = 0, carry = 0;
    for (let r = r0; r <= r1; r++) {
      const end = start[r * G + c1 + 1];
      let j = start[r * G + c0] + carry;
      for (; j < end; j += step) {
        const i = items[j];
        if (filteredSet && !filteredSet.has(i)) continue;
        let x, y;
        if (m) { x = m[0] * P.x[i] + m[1] * P.y[i] + m[2]; y = m[3] * P.x[i] + m[4] * P.y[i] + m[5]; }
        else [x, y] = proj.point(i);
        if (!(x >= 0 && y >= 0 && x <= width && y <= height)) continue;
        sample.index[n] = i; sample.x[n] = x; sample.y[n] = y; n++;
      }
      carry = j - end;
    }
    sample.n = n;
  }
  // Per layer and concept: how many sampled images are in view, and the one nearest their centroid.
  const inView = LAYERS.map((layer) => {
    const k = (layer.concepts || []).length;
    return { count: new Float64Array(k), sx: new Float64Array(k), sy: new Float64Array(k),
      best: new Int32Array(k), bestD: new Float64Array(k) };
  });
  function tallyInView(li) {
    const labels = LAYERS[li].labels, t = inView[li], n = sample.n;
    t.count.fill(0); t.sx.fill(0); t.sy.fill(0); t.bestD.fill(Infinity);
    for (let s = 0; s < n; s++) {
      const c = labels[sample.index[s]];
      if (c < 0) continue;
      t.count[c]++; t.sx[c] += sample.x[s]; t.sy[c] += sample.y[s];
    }
    for (let s = 0; s < n; s++) {
      const c = labels[sample.index[s]];
      if (c < 0) continue;
      const d = (sample.x[s] - t.sx[c] / t.count[c]) ** 2 + (sample.y[s] - t.sy[c] / t.count[c]) ** 2;
      if (d < t.bestD[c]) { t.bestD[c] = d; t.best[c] = s; }
    }
    return t;
  }

  function inFilter(li, c) {  // is concept (li, c) inside the concept the map is filtered to?
    if (!filterNode) return true;
    const [fl, fc] = filterNode;
    if (li > fl) return false;
    let k = c;
    for (let l = li; l < fl; l++) { k = LAYERS[l].concepts[k].parent; if (k < 0) return false; }
    return k === fc;
  }

  const labelNodes = new Map();  // "layer:concept" -> element
  function labelNode(li, c) {
    const key = `${li}:${c}`;
    let node = labelNodes.get(key);
    if (!node) {
      node = el("div", { class: "map-label", "data-layer": li, "data-concept": c, title: labelOf(li, c) },
        shortLabel(labelOf(li, c)));
      node.addEventListener("click", () => openNode(li, c, true));
      labelBox.append(node);
      labelNodes.set(key, node);
    }
    return node;
  }

  const bySize = LAYERS.map((layer) => layer.concepts.slice().sort((a, b) => b.size - a.size || a.id - b.id));
  function updateLabels(proj, width, height) {
    // The finest layer whose concepts are wide enough on screen leads; coarser ones add context.
    let active = NL - 1;
    for (let li = 0; li < NL; li++) if (layerRadius[li] * proj.pxPerUnit * 2 >= LABEL_OPEN_PX) { active = li; break; }
    // A concept is named when images of it are in view: on its anchor image if that is in view
    // (where it sits zoomed out), else on its image in view nearest their centroid; names go in
    // the order of how many of their images are in view (then size), nudged inside the view.
    sampleInView(proj, width, height);
    const candidates = [];
    for (let li = active; li < NL; li++) {
      if (filterNode && li > filterNode[0]) continue;
      const context = li > active;
      const weight = context ? 700 : 600;
      const px = fontPx(li - active, context);
      const tally = tallyInView(li), named = [];
      for (const info of bySize[li]) {
        if (info.anchor < 0 || !info.size || !inFilter(li, info.id)) continue;
        if (timeCounts && !timeCounts[li][info.id]) continue;  // none of its images in the chosen period
        let [x, y] = scatterplot.getScreenPosition(info.anchor);
        if (!(x >= 0 && y >= 0 && x <= width && y <= height)) {
          if (!tally.count[info.id]) continue;
          const s = tally.best[info.id];
          x = sample.x[s]; y = sample.y[s];
        }
        const text = shortLabel(labelOf(li, info.id));
        const w = textWidth(text, px, weight), h = px * 1.15;
        x = Math.min(Math.max(x, w / 2 + LABEL_PAD), width - w / 2 - LABEL_PAD);
        y = Math.min(Math.max(y, h / 2 + LABEL_PAD), height - h / 2 - LABEL_PAD);
        named.push({ layer: li, concept: info.id, text, context, px, weight, x, y, w, h, seen: tally.count[info.id] });
      }
      named.sort((a, b) => b.seen - a.seen);  // stable: equal counts keep the size order
      candidates.push(...named);
    }
    const kept = ML.placeLabels(candidates, width, height, LABEL_PAD);
    const shown = new Set();
    for (const c of kept) {
      const node = labelNode(c.layer, c.concept);
      node.classList.toggle("context", c.context);
      node.style.fontSize = `${c.px}px`;
      node.style.transform = `translate(${(c.x - c.w / 2).toFixed(1)}px, ${(c.y - c.h / 2).toFixed(1)}px)`;
      node.hidden = false;
      shown.add(node);
    }
    for (const node of labelNodes.values()) if (!shown.has(node)) node.hidden = true;
    drawnLabels = kept;
  }

  // Image mode: exemplars first (coarsest layer's, then finer), then every image by confidence.
  let thumbOrder = null, isExemplar = null;
  function buildThumbOrder() {
    const seen = new Uint8Array(N), order = [];
    isExemplar = new Uint8Array(N);
    for (let li = NL - 1; li >= 0; li--) {
      const lists = LAYERS[li].concepts.slice().sort((a, b) => b.size - a.size).map((c) => c.exemplars || []);
      const depth = Math.max(0, ...lists.map((l) => l.length));
      for (let k = 0; k < depth; k++) {
        for (const list of lists) {
          const i = list[k];
          if (i === undefined || seen[i]) continue;
          seen[i] = 1; isExemplar[i] = 1; order.push(i);
        }
      }
    }
    const rest = [];
    for (let i = 0; i < N; i++) if (!seen[i]) rest.push(i);
    rest.sort(byProbability);
    thumbOrder = Int32Array.from(order.concat(rest));
  }
  const sheetImages = new Map();  // url -> Image, loaded on first use
  function sheetImage(url) {
    let img = sheetImages.get(url);
    if (!img) {
      img = new Image();
      img.onload = scheduleOverlays;
      img.onerror = () => { img.failed = true; };
      img.src = url;
      sheetImages.set(url, img);
    }
    return img.complete && img.naturalWidth ? img : null;
  }
  let filteredSet = null;
  function updateThumbs(proj, width, height) {
    const dpr = window.devicePixelRatio || 1;
    if (thumbCanvas.width !== Math.round(width * dpr) || thumbCanvas.height !== Math.round(height * dpr)) {
      thumbCanvas.width = Math.round(width * dpr);
      thumbCanvas.height = Math.round(height * dpr);
    }
    const ctx = thumbCanvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, width, height);
    drawnThumbs = [];
    if (mode !== "images" || !DATA.thumbs) return;
    if (!thumbOrder) buildThumbOrder();
    const zoom = 1 / scatterplot.get("cameraDistance");
    const side = Math.round(Math.min(120, Math.max(36, 36 * Math.sqrt(zoom))));
    const all = zoom >= ALL_IMAGES_ZOOM;
    const eligible = (i) => (all || isExemplar[i]) && (!filteredSet || filteredSet.has(i));
    const picked = ML.pickThumbnails(thumbOrder, proj.point, width, height, side, eligible, MAX_THUMBS);
    const t = DATA.thumbs, perSheet = t.per_row * t.per_row, s = side - 4;
    for (const p of picked) {
      const k = Math.floor(p.index / perSheet), j = p.index % perSheet;
      const img = sheetImage(t.sheets[k]);
      const x = p.x - s / 2, y = p.y - s / 2;
      ctx.fillStyle = conceptColor(P.concept[p.index]);
      ctx.fillRect(x - 2, y - 2, s + 4, s + 4);
      if (img) {
        ctx.drawImage(img, (j % t.per_row) * t.tile, Math.floor(j / t.per_row) * t.tile, t.tile, t.tile, x, y, s, s);
        drawnThumbs.push(p.index);
      } else {
        ctx.fillStyle = "#eef0f2";
        ctx.fillRect(x, y, s, s);
      }
    }
  }

  let overlayFrame = 0;
  let overlayFrames = 0;  // how many times the overlays were drawn (the benchmark counts them)
  function drawOverlays() {
    overlayFrame = 0;
    const r = mapBox.getBoundingClientRect();
    if (!window.conceptExplorer || !window.conceptExplorer.ready || !r.width || !r.height) return;
    const proj = projector();
    updateThumbs(proj, r.width, r.height);
    updateLabels(proj, r.width, r.height);
    overlayFrames++;
  }
  function scheduleOverlays() {
    if (!overlayFrame) overlayFrame = requestAnimationFrame(drawOverlays);
  }
  scatterplot.subscribe("view", scheduleOverlays);

  let mouse = null;
  canvas.addEventListener("mousemove", (e) => {
    const r = mapBox.getBoundingClientRect();
    mouse = [e.clientX - r.left, e.clientY - r.top];
  });
  canvas.addEventListener("mouseleave", () => { mouse = null; });

  function showTooltip(i) {
    const c = P.concept[i];
    tooltip.replaceChildren(
      DATA.thumbs ? thumb(i, 96) : null,
      el("div", { class: "text" },
        el("div", { class: "name" }, DATA.names ? DATA.names[i] : `image ${i}`),
        el("div", {}, el("span", { class: "swatch", style: { background: conceptColor(c) } }), " ",
          conceptName(c), c >= 0 ? ` (${Math.round(P.probability[i] * 100)}%)` : ""),
        el("div", { class: "words" }, wordsOf(c, 5)),
        TD ? el("div", { class: "note date" }, dateText(i)) : null));
    const pos = mouse || screenPosition(i, false);
    const r = mapBox.getBoundingClientRect();
    tooltip.hidden = false;
    const w = tooltip.offsetWidth, h = tooltip.offsetHeight;
    const x = pos[0] + 14 + w > r.width ? pos[0] - 14 - w : pos[0] + 14;
    const y = Math.min(Math.max(4, pos[1] - h / 2), r.height - h - 4);
    tooltip.style.left = `${Math.max(4, x)}px`;
    tooltip.style.top = `${y}px`;
    tooltip.dataset.index = i;
  }
  scatterplot.subscribe("pointOver", showTooltip);
  scatterplot.subscribe("pointOut", () => { tooltip.hidden = true; });

  // Clicks and lasso selections on the map come as "select" events; ours are sent silently.
  // The mouse-up that ends a lasso is also a click, which regl-scatterplot turns into a
  // one-point selection of the point under it: that click must not replace the lasso's points.
  let lassoPoints = null, lassoAt = -Infinity;
  scatterplot.subscribe("select", ({ points }) => {
    if (points.length === 1 && lassoPoints && performance.now() - lassoAt < 600) {
      scatterplot.select(lassoPoints, { preventEvent: true });
      return;
    }
    if (points.length === 1) openConcept(P.concept[points[0]]);
    else if (points.length > 1) {
      lassoPoints = points.slice();
      lassoAt = performance.now();
      openSelection(points);
    }
  });
  scatterplot.subscribe("deselect", () => closeMembers(false));

  function screenPosition(i, page) {
    const [x, y] = scatterplot.getScreenPosition(i);
    if (!page) return [x, y];
    const r = canvas.getBoundingClientRect();
    return [r.left + x, r.top + y];
  }
  function highlight(indices) {
    // a copy: the library keeps the array it is given and drops the filtered-out points from it
    if (indices && indices.length) scatterplot.select(indices.slice(), { preventEvent: true });
    else scatterplot.deselect({ preventEvent: true });
  }

  // ------------------------------------------------------------------ cards
  const cards = new Map();
  function card(c) {
    const info = c >= 0 ? DATA.concepts[c] : null;
    const size = c >= 0 ? info.size : DATA.outliers.size;
    const collage = info && info.collage
      ? el("img", { src: info.collage, alt: `collage of concept ${c}`, loading: "lazy" })
      : el("div", { class: "no-collage" }, c >= 0 ? "no collage" : "images in no concept");
    const node = el("div", { class: c >= 0 ? "card concept-card" : "card outlier-card", "data-concept": c,
      tabindex: 0, role: "button", style: { "--color": conceptColor(c) }, onclick: () => openConcept(c) },
      collage,
      el("div", { class: "head" }, el("span", {}, conceptName(c)), el("span", { class: "size" }, `${fmt(size)} images`)),
      info && info.label !== wordsOf(c, 3) ? el("div", { class: "label-text" }, info.label) : null,  // a custom label
      el("div", { class: "words" }, wordsOf(c, 8)));
    node.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); openConcept(c); } });
    cards.set(c, node);
    return node;
  }
  $("cards").replaceChildren(...DATA.concepts.map((info) => card(info.id)));
  if (!K) $("cards").append(el("p", { class: "note" }, "No concept was found: every image is an outlier."));
  if (DATA.outliers.size) $("outliers").append(card(-1));
  else { $("outliers-title").hidden = true; }
  const nFailed = (DATA.failures || []).length;
  $("stats").textContent = `${fmt(DATA.n_images)} images · ${fmt(K)} concepts · ${fmt(DATA.outliers.size)} outliers`
    + (nFailed ? ` · ${fmt(nFailed)} unreadable` : "");
  if (nFailed) {
    $("outliers-title").hidden = false;
    const node = el("div", { class: "card failure-card", tabindex: 0, role: "button", style: { "--color": "#b42318" },
      onclick: () => failuresPanel() },
      el("div", { class: "no-collage" }, "files that could not be read"),
      el("div", { class: "head" }, el("span", {}, "Unreadable files"), el("span", { class: "size" }, `${fmt(nFailed)} files`)),
      el("div", { class: "words" }, "left out of the model"));
    $("outliers").append(node);
  }

  // ------------------------------------------------------------------ members panel
  const panel = $("members");
  let openC = null;

  function memberGrid(indices, withUniqueness) {
    const grid = el("div", { class: "grid" });
    const add = (from) => {
      for (const i of indices.slice(from, from + MEMBERS_PAGE)) {
        const t = thumb(i, 64);
        t.classList.add("member");
        if (withUniqueness && U && U[i] !== null) {
          t.append(el("span", { class: "badge uniqueness", title: "uniqueness: how unlike its nearest images (0-1)" }, U[i].toFixed(2)));
        }
        t.addEventListener("mouseenter", () => scatterplot.hover(i, { showReticleOnce: true, preventEvent: true }));
        t.addEventListener("click", () => { scatterplot.zoomToPoints([i], { padding: 0.3, transition: true }); });
        grid.append(t);
      }
    };
    add(0);
    let count = Math.min(indices.length, MEMBERS_PAGE);
    const frag = [grid];
    if (indices.length > count) {
      const more = el("button", { class: "button more", type: "button" });
      const label = () => { more.textContent = `Show more (${fmt(count)} of ${fmt(indices.length)} shown)`; };
      label();
      more.addEventListener("click", () => {
        add(count);
        count = Math.min(indices.length, count + MEMBERS_PAGE);
        if (count >= indices.length) more.remove(); else label();
      });
      frag.push(more);
    }
    return frag;
  }

  // A concept of any layer: where it sits in the hierarchy, its collage (or exemplars), its
  // sub-concepts, actions on its images and its members, most typical first.
  function conceptPanel(li, c) {
    const all = membersOf(li, c), indices = inTime(all);
    const info = c >= 0 ? LAYERS[li].concepts[c] : null;
    const title = li === D ? conceptName(c) : `${labelOf(li, c)} (${layerName(li)})`;
    const crumbs = NL > 1 && c >= 0 && li < NL - 1 ? el("div", { class: "crumbs" }, ...ancestors(li, c).flatMap(([l, k], n, all) => {
      const text = `${labelOf(l, k)}`;
      const part = n === all.length - 1 ? el("strong", {}, text)
        : el("a", { "data-layer": l, "data-concept": k, onclick: () => openNode(l, k, true) }, text);
      return n ? [" › ", part] : [part];
    })) : null;
    let picture = null;
    if (info && info.collage) picture = el("img", { class: "collage", src: info.collage, alt: `collage of concept ${c}`, style: { width: "100%", borderRadius: "4px" } });
    else if (info && info.exemplars && info.exemplars.length) {
      picture = el("div", { class: "grid exemplars" }, ...info.exemplars.map((i) => thumb(i, 64)));
    }
    const subs = c >= 0 ? childrenOf(li, c).sort((a, b) => b.size - a.size) : [];
    return el("div", { class: "panel", "data-concept": li === D ? c : `${li}:${c}`, "data-layer": li },
      el("h3", {}, el("span", { class: "swatch", style: { background: c >= 0 ? nodeColor(li, c) : DATA.outliers.color } }), title,
        el("span", { class: "size" }, timeRange ? ` · ${fmt(indices.length)} of ${fmt(all.length)} images in ${periodText()}`
          : ` · ${fmt(indices.length)} images`),
        el("button", { class: "close", type: "button", title: "Close", onclick: () => closeMembers(true) }, "×")),
      crumbs,
      el("div", { class: "words" }, c >= 0 ? (info.words || []).join(", ") : "Images that belong to no concept."),
      picture,
      li === D && c >= 0 && DATA.model_files
        ? el("div", { class: "note" }, el("a", { href: `${DATA.model_files}images/concept_${c}.png`, target: "_blank" }, "full-size collage"))
        : null,
      subs.length ? el("div", { class: "note" }, `Sub-concepts (${layerName(li - 1)}):`) : null,
      subs.length ? el("div", { class: "sub" }, ...subs.map((x) => el("div", { class: "result sub-concept", "data-layer": li - 1, "data-concept": x.id,
        onclick: () => openNode(li - 1, x.id, true) },
        el("span", { class: "swatch", style: { background: nodeColor(li - 1, x.id), marginTop: "3px" } }),
        el("span", {}, labelOf(li - 1, x.id)), el("span", { class: "score" }, `${fmt(x.size)} images`)))) : null,
      actions(indices, c >= 0 ? labelOf(li, c) : "outliers"),
      SERVED && li === D && c >= 0 ? editRow(c) : null,
      ...memberList(indices, c >= 0 ? "Members, most typical first:" : "Members:"));
  }
  // A concept's members under a heading; with uniqueness known, a choice of order: most typical first
  // (by confidence, as without it) or most unusual first (by uniqueness). The choice stays for other concepts.
  function memberList(indices, heading) {
    if (!U) return [el("div", { class: "note" }, heading), ...memberGrid(indices)];
    const list = el("div", { class: "member-list" });
    const fill = () => list.replaceChildren(...(memberOrder === "unusual"
      ? memberGrid(indices.slice().sort(byUniqueness), true) : memberGrid(indices)));
    const choice = el("select", { class: "member-sort", "aria-label": "Order of the members",
      onchange: () => { memberOrder = choice.value; fill(); } },
    el("option", { value: "typical" }, "most typical first"),
    el("option", { value: "unusual" }, "most unusual first (uniqueness)"));
    choice.value = memberOrder;
    fill();
    return [el("div", { class: "note members-head" }, "Members, ", choice), list];
  }

  // ------------------------------------------------------------------ edits (served mode)
  // Rename and merge go through the server, which calls the model's own set_concept_labels /
  // merge_concepts and saves the model folder; the page is then loaded again from it.
  async function editModel(body) {
    const response = await fetch("/api/edit", { method: "POST", body: JSON.stringify(body),
      headers: { "Content-Type": "application/json" } });
    const answer = await response.json();
    if (!response.ok) throw new Error(answer.error || response.statusText);
    location.reload();
    return answer;
  }
  function editRow(c) {
    const name = el("input", { type: "text", class: "edit-name", value: (DATA.custom_labels || {})[c] || "",
      placeholder: labelOf(D, c), maxlength: "120", "aria-label": `name of concept ${c}` });
    const others = el("input", { type: "text", class: "edit-merge", placeholder: "ids, e.g. 3,5",
      "aria-label": `concepts to merge into concept ${c}` });
    const error = el("div", { class: "error edit-error" });
    const run = (body) => editModel(body).catch((err) => { error.textContent = String(err.message || err); });
    return el("div", { class: "edit" },
      name, el("button", { type: "button", class: "rename", onclick: () => run({ rename: { concept: c, name: name.value } }) }, "Rename"),
      others, el("button", { type: "button", class: "merge", onclick: () => run({ merge: [c, ...others.value.split(",")
        .map((t) => t.trim()).filter((t) => t).map(Number)] }) }, "Merge"),
      error);
  }

  let panelRebuild = null;  // makes the open panel again (after the period changed)
  function showPanel(node, rebuild) {
    panelRebuild = rebuild || null;
    panel.replaceChildren(node);
    panel.hidden = false;
    panel.scrollIntoView({ block: "nearest" });
  }

  function openConcept(c) {
    const indices = c >= 0 ? members[c] : outliers;
    openC = c;
    for (const [k, node] of cards) node.classList.toggle("active", k === c);
    markTree(D, c);
    showPanel(conceptPanel(D, c), () => conceptPanel(D, c));
    highlight(indices);
  }

  // A hierarchy node (or a name on the map): its panel, and with `filter` the map shows only
  // its images, framed.
  function openNode(li, c, filter) {
    if (li === D) openConcept(c);
    else {
      openC = null;
      for (const node of cards.values()) node.classList.remove("active");
      markTree(li, c);
      showPanel(conceptPanel(li, c), () => conceptPanel(li, c));
      highlight(membersOf(li, c));
    }
    if (filter && c >= 0) filterTo(li, c);
  }

  function openSelection(indices) {
    const chosen = indices.slice().sort(byProbability);
    openC = null;
    for (const node of cards.values()) node.classList.remove("active");
    markTree(null, null);
    const make = () => {
      const shown = inTime(chosen);
      return el("div", { class: "panel", "data-concept": "selection" },
        el("h3", {}, `Selection · ${fmt(shown.length)} images` + (timeRange ? ` in ${periodText()}` : ""),
          el("button", { class: "close", type: "button", title: "Close", onclick: () => closeMembers(true) }, "×")),
        actions(shown, "selection"),
        ...memberGrid(shown));
    };
    showPanel(make(), make);
  }

  function failuresPanel() {
    openC = null;
    showPanel(el("div", { class: "panel", "data-concept": "failures" },
      el("h3", {}, `Unreadable files · ${fmt(DATA.failures.length)}`,
        el("button", { class: "close", type: "button", title: "Close", onclick: () => closeMembers(true) }, "×")),
      el("div", { class: "note" }, "These inputs could not be read when the model was fitted; they are in no concept."),
      ...DATA.failures.slice(0, 500).map((f) => el("div", { class: "failure" }, el("strong", {}, f.source), ": ", f.reason))));
  }

  // ------------------------------------------------------------------ selections: gallery, CSV
  const csvField = (v, text) => {
    let s = String(v === null || v === undefined ? "" : v);
    if (text && /^[=+\-@\t\r]/.test(s)) s = `'${s}`;  // a spreadsheet must not run it as a formula
    return `"${s.replace(/"/g, '""')}"`;
  };
  function selectionRows(indices) {
    return indices.map((i) => ({ index: i, path: imagePath(i), concept: P.concept[i],
      label: P.concept[i] >= 0 ? labelOf(D, P.concept[i]) : "outliers", probability: P.probability[i] }));
  }
  function csvOf(indices) {
    const lines = ["index,path,concept,label,probability"];
    for (const r of selectionRows(indices.slice().sort((a, b) => a - b))) {  // in the model's order
      lines.push([r.index, csvField(r.path, false), r.concept, csvField(r.label, true), r.probability].join(","));
    }
    return lines.join("\r\n") + "\r\n";
  }
  function downloadCsv(indices, name) {
    const blob = new Blob([csvOf(indices)], { type: "text/csv;charset=utf-8" });
    const a = el("a", { href: URL.createObjectURL(blob), download: `${name.replace(/[^\w.-]+/g, "_").slice(0, 60) || "selection"}.csv` });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  }
  function actions(indices, name) {
    return el("div", { class: "actions" },
      el("button", { class: "button gallery-open", type: "button", onclick: () => openGallery(indices, name) },
        `Gallery (${fmt(indices.length)})`),
      el("button", { class: "button export-csv", type: "button", onclick: () => downloadCsv(indices, name) }, "Export CSV"));
  }

  const GALLERY_PAGE = 24;
  const gallery = { indices: [], page: 0, name: "" };
  function renderGallery() {
    const pages = Math.max(1, Math.ceil(gallery.indices.length / GALLERY_PAGE));
    gallery.page = Math.min(Math.max(0, gallery.page), pages - 1);
    $("gallery-title").textContent = `${gallery.name} · ${fmt(gallery.indices.length)} images`;
    $("gallery-page").textContent = `page ${gallery.page + 1} of ${pages}`;
    $("gallery-prev").disabled = gallery.page === 0;
    $("gallery-next").disabled = gallery.page >= pages - 1;
    const from = gallery.page * GALLERY_PAGE;
    $("gallery-grid").replaceChildren(...gallery.indices.slice(from, from + GALLERY_PAGE).map((i) => {
      const url = fullImageUrl(i);
      const picture = url ? el("a", { href: url, target: "_blank", rel: "noopener" },
        el("img", { src: url, alt: imageName(i), loading: "lazy", "data-index": i })) : thumb(i, 200);
      return el("figure", { "data-index": i }, picture,
        el("figcaption", {}, imageName(i), " · ", P.concept[i] >= 0 ? labelOf(D, P.concept[i]) : "outlier"));
    }));
    $("gallery-grid").scrollTop = 0;
  }
  function openGallery(indices, name) {
    gallery.indices = indices.slice();
    gallery.page = 0;
    gallery.name = name;
    renderGallery();
    $("gallery").hidden = false;
  }
  $("gallery-prev").addEventListener("click", () => { gallery.page--; renderGallery(); });
  $("gallery-next").addEventListener("click", () => { gallery.page++; renderGallery(); });
  $("gallery-close").addEventListener("click", () => { $("gallery").hidden = true; });
  document.addEventListener("keydown", (e) => { if (e.key === "Escape") $("gallery").hidden = true; });

  function closeMembers(clearMap) {
    openC = null;
    panel.hidden = true;
    panel.replaceChildren();
    for (const node of cards.values()) node.classList.remove("active");
    if (clearMap) highlight(null);
  }

  // ------------------------------------------------------------------ filter by concept
  const filter = $("filter");
  filter.append(el("option", { value: "all" }, `All concepts (${fmt(K)})`));
  for (const info of DATA.concepts) {
    filter.append(el("option", { value: info.id }, `${info.id}: ${info.words.slice(0, 3).join(", ")} (${fmt(info.size)})`));
  }
  if (DATA.outliers.size) filter.append(el("option", { value: "-1" }, `Outliers (${fmt(DATA.outliers.size)})`));
  if (inDuplicateGroups.length) {
    filter.append(el("option", { value: "duplicates" }, `Duplicates (${fmt(inDuplicateGroups.length)} images)`));
  }
  // The map (points, names, images) and the cards show only concept (li, c)'s images.
  let conceptFilter = null;  // the images of the concept the map is filtered to, or null
  function applyVisibility() {  // the map shows the images of the concept filter and of the period
    const shown = conceptFilter ? inTime(conceptFilter) : timeMask ? timeIndices : null;
    if (shown) scatterplot.filter(shown, { preventEvent: true });
    else scatterplot.unfilter({ preventEvent: true });
    filteredSet = shown ? new Set(shown) : null;
    scheduleOverlays();
    return shown;
  }
  function filterTo(li, c) {
    const all = membersOf(li, c);
    filterNode = c >= 0 ? [li, c] : null;
    conceptFilter = all;
    const indices = applyVisibility();
    let up = c;  // a concept finer than the cards': the card of the concept holding it
    for (let l = li; l < D && up >= 0; l++) up = LAYERS[l].concepts[up].parent;
    for (const [k, node] of cards) node.hidden = c < 0 ? k !== -1 : li >= D ? k < 0 || !inFilter(D, k) : k !== up;
    filter.value = li === D ? String(c) : "all";
    drawTimeline();
    if (indices.length) scatterplot.zoomToPoints(indices, { padding: 0.15, transition: true });  // frame them
  }
  function unfilter() {
    filterNode = null;
    conceptFilter = null;
    applyVisibility();
    for (const node of cards.values()) node.hidden = false;
    drawTimeline();
  }
  function filterToDuplicates() {  // the map shows the images in duplicate groups; every card stays
    filterNode = null;
    conceptFilter = inDuplicateGroups;
    const indices = applyVisibility();
    for (const node of cards.values()) node.hidden = false;
    filter.value = "duplicates";
    drawTimeline();
    if (indices.length) scatterplot.zoomToPoints(indices, { padding: 0.15, transition: true });
  }
  function applyFilter(value) {
    if (value === "all") { unfilter(); return; }
    if (value === "duplicates") { filterToDuplicates(); return; }
    const c = Number(value);
    openConcept(c);
    filterTo(D, c);
  }
  filter.addEventListener("change", () => applyFilter(filter.value));

  // ------------------------------------------------------------------ images over time
  // DATA.dates (when the page was made with dates): one value per image, days since 1970-01-01
  // ("date") or plain numbers such as years ("number"), null when unknown. A bar per period
  // (days, months or years, by the range) under the map; dragging over the bars, or clicking one,
  // shows only the images of that period on the map and in the lists. No dates: no histogram.
  const DAY_MS = 86400000;
  const MAX_NUMBER_BINS = 40;
  const TD = DATA.dates && Array.isArray(DATA.dates.values) && DATA.dates.values.length === N ? DATA.dates : null;
  const timeline = (() => {
    if (!TD) return null;
    const vals = TD.values.map((v) => (typeof v === "number" && Number.isFinite(v) ? v : null));
    let lo = Infinity, hi = -Infinity, dated = 0;
    for (const v of vals) if (v !== null) { lo = Math.min(lo, v); hi = Math.max(hi, v); dated++; }
    if (!dated) return null;
    const pad = (n) => String(n).padStart(2, "0");
    let unit, labels = [], index;
    if (TD.kind === "date") {
      const d0 = new Date(lo * DAY_MS), d1 = new Date(hi * DAY_MS);
      const y0 = d0.getUTCFullYear(), m0 = d0.getUTCMonth();
      if (hi - lo <= 92) {
        unit = "day";
        const first = Math.floor(lo);
        for (let d = first; d <= Math.floor(hi); d++) labels.push(new Date(d * DAY_MS).toISOString().slice(0, 10));
        index = (v) => Math.floor(v) - first;
      } else if (hi - lo <= 4 * 366) {
        unit = "month";
        const n = (d1.getUTCFullYear() - y0) * 12 + d1.getUTCMonth() - m0 + 1;
        for (let k = 0; k < n; k++) labels.push(`${y0 + Math.floor((m0 + k) / 12)}-${pad(((m0 + k) % 12) + 1)}`);
        index = (v) => { const d = new Date(v * DAY_MS); return (d.getUTCFullYear() - y0) * 12 + d.getUTCMonth() - m0; };
      } else {
        const step = d1.getUTCFullYear() - y0 >= 150 ? 10 : 1;  // decades over a long range
        unit = step === 1 ? "year" : "decade";
        const first = Math.floor(y0 / step) * step;
        for (let y = first; y <= d1.getUTCFullYear(); y += step) labels.push(step === 1 ? String(y) : `${y}s`);
        index = (v) => Math.floor((new Date(v * DAY_MS).getUTCFullYear() - first) / step);
      }
    } else if (vals.every((v) => v === null || Number.isInteger(v)) && hi - lo < 150) {
      unit = "value";  // e.g. years given as numbers: one bar each
      for (let v = lo; v <= hi; v++) labels.push(String(v));
      index = (v) => v - lo;
    } else {
      unit = "range";
      const n = hi > lo ? MAX_NUMBER_BINS : 1, width = (hi - lo) / n || 1;
      const num = (x) => String(Number(x.toPrecision(4)));
      for (let k = 0; k < n; k++) labels.push(`${num(lo + k * width)}–${num(lo + (k + 1) * width)}`);
      index = (v) => Math.min(n - 1, Math.floor((v - lo) / width));
    }
    const binOf = new Int32Array(N).fill(-1), counts = new Int32Array(labels.length);
    vals.forEach((v, i) => {
      if (v === null) return;
      const b = index(v);
      if (b >= 0 && b < labels.length) { binOf[i] = b; counts[b]++; }
    });
    return { unit, labels, counts, binOf, dated, undated: N - dated };
  })();
  function dateText(i) {  // image i's date (or number) as the tooltip shows it
    const v = TD && TD.values[i];
    if (typeof v !== "number" || !Number.isFinite(v)) return "no date";
    if (TD.kind !== "date") return String(v);
    const iso = new Date(Math.round(v * DAY_MS)).toISOString();
    return iso.endsWith("T00:00:00.000Z") ? iso.slice(0, 10) : `${iso.slice(0, 10)} ${iso.slice(11, 16)}`;
  }
  const periodText = () => (!timeRange || !timeline ? "every period"
    : timeRange[0] === timeRange[1] ? timeline.labels[timeRange[0]]
      : `${timeline.labels[timeRange[0]]} – ${timeline.labels[timeRange[1]]}`);

  const SVG = "http://www.w3.org/2000/svg";
  const bars = $("timeline-bars");
  let dragFrom = null, dragTo = null;
  function svgEl(tag, attrs) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    return node;
  }
  function drawTimeline() {
    if (!timeline) return;
    const { labels, counts, binOf } = timeline, n = labels.length;
    const shown = new Int32Array(n);  // the images of the concept filter (all, without one)
    if (conceptFilter) { for (const i of conceptFilter) if (binOf[i] >= 0) shown[binOf[i]]++; } else shown.set(counts);
    const top = Math.max(1, ...counts);
    const range = dragFrom !== null ? [Math.min(dragFrom, dragTo), Math.max(dragFrom, dragTo)] : timeRange;
    bars.setAttribute("viewBox", `0 0 ${n} 100`);
    bars.classList.toggle("ranged", !!range);
    const nodes = [];
    for (let k = 0; k < n; k++) {
      const inside = range && k >= range[0] && k <= range[1];
      const h = (c) => (c ? Math.max(3, (96 * c) / top) : 0);
      nodes.push(svgEl("rect", { class: "all", x: k + 0.08, width: 0.84, y: 100 - h(counts[k]), height: h(counts[k]) }));
      nodes.push(svgEl("rect", { class: inside ? "shown in" : "shown", "data-bin": k, x: k + 0.08, width: 0.84,
        y: 100 - h(shown[k]), height: h(shown[k]) }));
      const hit = svgEl("rect", { class: "hit", "data-bin": k, x: k, width: 1, y: 0, height: 100 });
      const tip = document.createElementNS(SVG, "title");
      tip.textContent = `${labels[k]}: ${fmt(counts[k])} images` + (conceptFilter ? ` (${fmt(shown[k])} of the chosen concept)` : "");
      hit.append(tip);
      nodes.push(hit);
    }
    bars.replaceChildren(...nodes);
    const inRange = range ? counts.slice(range[0], range[1] + 1).reduce((a, b) => a + b, 0) : 0;
    $("timeline-info").textContent = range
      ? `${range[0] === range[1] ? labels[range[0]] : `${labels[range[0]]} – ${labels[range[1]]}`}: ${fmt(inRange)} images`
      : `${fmt(timeline.dated)} dated images by ${timeline.unit} · drag over the bars (or click one) to show a period`;
    $("timeline-undated").textContent = `${fmt(timeline.undated)} without a date`;
    $("timeline-first").textContent = labels[0];
    $("timeline-last").textContent = n > 1 ? labels[n - 1] : "";
    $("timeline-clear").hidden = !timeRange;
  }
  // Only the images dated in bins a..b (null: every image) on the map and in the lists.
  function setTimeRange(range) {
    if (range !== null && !timeline) throw new Error("This page has no dates, so it has no time histogram.");
    if (range !== null) {
      const n = timeline.labels.length;
      const a = Number(range[0]), b = Number(range[1]);
      if (!Number.isInteger(a) || !Number.isInteger(b) || a < 0 || b >= n || a > b) {
        throw new Error(`A period is [first bin, last bin] with 0 <= first <= last <= ${n - 1}`);
      }
      timeRange = [a, b];
      timeMask = new Uint8Array(N);
      timeIndices = [];
      timeCounts = LAYERS.map((layer) => new Int32Array(layer.concepts.length));
      for (let i = 0; i < N; i++) {
        const k = timeline.binOf[i];
        if (k < a || k > b) continue;
        timeMask[i] = 1;
        timeIndices.push(i);
        for (let li = 0; li < NL; li++) { const c = LAYERS[li].labels[i]; if (c >= 0) timeCounts[li][c]++; }
      }
    } else {
      timeRange = timeMask = timeIndices = timeCounts = null;
    }
    const shown = applyVisibility();
    drawTimeline();
    if (!panel.hidden && panelRebuild) panel.replaceChildren(panelRebuild());
    return shown ? shown.length : N;
  }
  if (timeline) {
    $("timeline").hidden = false;
    const binAt = (e) => {
      const r = bars.getBoundingClientRect(), n = timeline.labels.length;
      return Math.min(n - 1, Math.max(0, Math.floor(((e.clientX - r.left) / Math.max(1, r.width)) * n)));
    };
    bars.addEventListener("pointerdown", (e) => {
      if (e.button !== 0) return;
      dragFrom = dragTo = binAt(e);
      bars.setPointerCapture(e.pointerId);
      drawTimeline();
    });
    bars.addEventListener("pointermove", (e) => {
      if (dragFrom === null) return;
      const k = binAt(e);
      if (k !== dragTo) { dragTo = k; drawTimeline(); }
    });
    const finish = (e, apply) => {
      if (dragFrom === null) return;
      const range = [Math.min(dragFrom, dragTo), Math.max(dragFrom, dragTo)];
      dragFrom = dragTo = null;
      if (bars.hasPointerCapture(e.pointerId)) bars.releasePointerCapture(e.pointerId);
      if (apply) setTimeRange(range); else drawTimeline();
    };
    bars.addEventListener("pointerup", (e) => finish(e, true));
    bars.addEventListener("pointercancel", (e) => finish(e, false));
    $("timeline-clear").addEventListener("click", () => setTimeRange(null));
    drawTimeline();
  }

  $("reset").addEventListener("click", () => {
    filter.value = "all";
    setTimeRange(null);
    applyFilter("all");
    closeMembers(true);
    markTree(null, null);
    scatterplot.zoomToOrigin({ transition: true });
  });

  // ------------------------------------------------------------------ the hierarchy
  // Coarsest concepts at the top; a node opens onto the concepts of the next finer layer.
  const treeNodes = new Map();  // "layer:concept" -> element
  function treeNode(li, c) {
    const info = LAYERS[li].concepts[c];
    const kids = childrenOf(li, c).sort((a, b) => b.size - a.size || a.id - b.id);
    const box = el("div", { class: "children", hidden: true });
    const toggle = el("button", { class: "toggle", type: "button", "aria-label": "show sub-concepts" }, kids.length ? "▸" : "");
    const row = el("div", { class: "row", "data-layer": li, "data-concept": c, role: "treeitem", tabindex: 0 },
      toggle, el("span", { class: "swatch", style: { background: nodeColor(li, c) } }),
      el("span", { class: "text", title: labelOf(li, c) }, labelOf(li, c)), el("span", { class: "size" }, fmt(info.size)));
    const node = el("div", { class: "node", "data-layer": li, "data-concept": c }, row, box);
    let built = false;
    const expand = (open) => {
      if (!kids.length) return;
      if (!built) { box.append(...kids.map((k) => treeNode(li - 1, k.id))); built = true; }
      box.hidden = !open;
      toggle.textContent = open ? "▾" : "▸";
    };
    node.expand = expand;
    toggle.addEventListener("click", (e) => { e.stopPropagation(); expand(box.hidden); });
    row.addEventListener("click", () => { expand(true); openNode(li, c, true); });
    row.addEventListener("keydown", (e) => { if (e.key === "Enter") { expand(true); openNode(li, c, true); } });
    treeNodes.set(`${li}:${c}`, node);
    return node;
  }
  function markTree(li, c) {
    for (const node of treeNodes.values()) node.classList.remove("active");
    if (li === null || c < 0 || NL < 2) return;
    for (const [l, k] of ancestors(li, c)) {  // open the path down to the node
      const node = treeNodes.get(`${l}:${k}`);
      if (node && l > li) node.expand(true);
    }
    const node = treeNodes.get(`${li}:${c}`);
    if (node) node.classList.add("active");
  }
  if (NL > 1) {
    const roots = LAYERS[NL - 1].concepts.slice().sort((a, b) => b.size - a.size || a.id - b.id);
    $("tree").replaceChildren(...roots.map((info) => treeNode(NL - 1, info.id)));
    $("tree").setAttribute("role", "tree");
    $("tree").hidden = $("tree-title").hidden = false;
    $("tree-title").textContent = `Hierarchy · ${NL} layers`;
  }

  // ------------------------------------------------------------------ points or images
  const modeButton = $("mode");
  function setMode(next) {
    if (next !== "points" && next !== "images") throw new Error(`setMode takes "points" or "images", not ${JSON.stringify(next)}`);
    if (next === "images" && !DATA.thumbs) throw new Error("This page has no thumbnails (the model holds no image files), so it can only show points.");
    mode = next;
    modeButton.textContent = mode === "images" ? "Show points" : "Show images";
    modeButton.setAttribute("aria-pressed", mode === "images" ? "true" : "false");
    document.body.dataset.mode = mode;
    scheduleOverlays();
    return mode;
  }
  if (DATA.thumbs) {
    modeButton.hidden = false;
    modeButton.addEventListener("click", () => setMode(mode === "images" ? "points" : "images"));
  }

  // ------------------------------------------------------------------ search
  const results = $("results");
  const search = $("search");
  if (SERVED) search.placeholder = "Search concepts and images by text…";

  function markWords(words, query) {
    const node = el("div", { class: "words" });
    words.forEach((w, k) => {
      if (k) node.append(", ");
      node.append(query && w.toLowerCase().includes(query) ? el("mark", {}, w) : w);
    });
    return node;
  }

  function conceptResult(c, query, score) {
    return el("div", { class: "result", "data-concept": c, onclick: () => openConcept(c) },
      el("span", { class: "swatch", style: { background: conceptColor(c), marginTop: "4px" } }),
      el("div", {}, el("strong", {}, `${conceptName(c)} `), el("span", { class: "size" }, `· ${fmt(DATA.concepts[c].size)} images`),
        markWords(DATA.concepts[c].words, query)),
      score !== undefined ? el("span", { class: "score" }, score) : null);
  }

  function imageResults(images) {
    const grid = el("div", { class: "grid" });
    for (const im of images) {
      const t = thumb(im.index, 64);
      t.classList.add("member", "image-result");
      t.append(el("span", { class: "badge" }, im.similarity.toFixed(2)));
      t.addEventListener("mouseenter", () => scatterplot.hover(im.index, { showReticleOnce: true, preventEvent: true }));
      t.addEventListener("click", () => scatterplot.zoomToPoints([im.index], { padding: 0.3, transition: true }));
      grid.append(t);
    }
    return grid;
  }

  function showResults(title, ...children) {
    results.replaceChildren(el("div", { class: "panel" },
      el("h3", {}, title, el("button", { class: "close", type: "button", title: "Close", onclick: clearResults }, "×")),
      ...children));
    results.hidden = false;
    // Results sit above an open concept's members: bring them into view, wherever the side
    // panel was scrolled (the browser's scroll anchoring would otherwise keep them out of it).
    results.scrollIntoView({ block: "start" });
  }
  // Image i's duplicate group side by side (a click on a thumbnail's badge): the kept image first, then
  // its copies, each with its file name and concept; a click on one shows it on the map.
  function showDuplicateGroup(i) {
    if (!DUP || !(DUP.group[i] >= 0)) throw new Error(`Image ${JSON.stringify(i)} is in no duplicate group`);
    const g = DUP.group[i], group = dupGroups.get(g);
    showResults(`Duplicate group ${g} · ${fmt(group.length)} images`,
      el("div", { class: "note" }, "The kept image first, then its copies (what concept export --dedupe leaves out)"
        + (group.length > MEMBERS_PAGE ? `; the first ${fmt(MEMBERS_PAGE)} here, all of them in the gallery.` : ".")),
      el("div", { class: "dup-group", "data-group": g }, ...group.slice(0, MEMBERS_PAGE).map((j) => {
        const copy = dupCopies.has(j);
        const t = thumb(j, 96);
        const badge = t.querySelector(".badge.dup");
        if (badge) badge.remove();  // the caption says it
        return el("figure", { class: `dup-member member ${copy ? "copy" : "kept"}`, "data-index": j, title: imagePath(j) || imageName(j),
          onmouseenter: () => scatterplot.hover(j, { showReticleOnce: true, preventEvent: true }),
          onclick: () => scatterplot.zoomToPoints([j], { padding: 0.3, transition: true }) },
        t, el("figcaption", {}, el("span", { class: "dup-role" }, copy ? "copy" : "kept"),
          el("span", { class: "dup-name" }, imageName(j)),
          el("span", { class: "dup-concept" }, P.concept[j] >= 0 ? labelOf(D, P.concept[j]) : "outlier")));
      })),
      actions(group, `duplicate group ${g}`));
    highlight(group);
    return group.slice();
  }
  function clearResults() {
    results.hidden = true;
    results.replaceChildren();
    highlight(openC === null ? null : openC >= 0 ? members[openC] : outliers);
  }

  // Words of the concepts, matched in the page: whole word > word start > inside a word,
  // earlier (more typical) words count more.
  function wordSearch(query) {
    const scored = [];
    for (const info of DATA.concepts) {
      let score = 0;
      info.words.forEach((w, rank) => {
        const lw = w.toLowerCase();
        const hit = lw === query ? 3 : lw.split(/\s+/).some((t) => t.startsWith(query)) ? 2 : lw.includes(query) ? 1 : 0;
        score += hit / (1 + rank * 0.25);
      });
      if (score > 0) scored.push([score, info.id]);
    }
    return scored.sort((a, b) => b[0] - a[0] || a[1] - b[1]).map(([, c]) => c);
  }

  function runWordSearch(query) {
    const found = wordSearch(query);
    showResults(`Words matching “${query}”`,
      found.length ? null : el("p", { class: "note" }, "No concept has a word that matches."),
      ...found.map((c) => conceptResult(c, query)));
    highlight(found.flatMap((c) => members[c]));
  }

  let searchSeq = 0;
  async function runModelSearch(query) {
    const seq = ++searchSeq;
    showResults(`Searching “${query}”…`);
    try {
      const response = await fetch(`/api/search?q=${encodeURIComponent(query)}&top_n=5&images=24`);
      const body = await response.json();
      if (seq !== searchSeq) return;
      if (!response.ok) throw new Error(body.error || response.statusText);
      const words = wordSearch(query);
      showResults(`Nearest to “${query}”`,
        el("div", { class: "note" }, "Concepts, by the model:"),
        ...body.concepts.map((r) => conceptResult(r.concept, query, r.similarity.toFixed(3))),
        body.images.length ? el("div", { class: "note" }, "Images, by the model:") : null,
        imageResults(body.images),
        words.length ? el("div", { class: "note" }, "Concepts whose words match:") : null,
        ...words.slice(0, 5).map((c) => conceptResult(c, query)));
      highlight(body.images.map((im) => im.index));
    } catch (err) {
      if (seq === searchSeq) showResults("Search failed", el("p", { class: "error" }, String(err.message || err)));
    }
  }

  let searchTimer = null;
  function onSearch(immediate) {
    clearTimeout(searchTimer);
    const query = search.value.trim().toLowerCase();
    if (!query) { searchSeq++; clearResults(); return; }
    searchTimer = setTimeout(() => (SERVED ? runModelSearch(query) : runWordSearch(query)), immediate ? 0 : SERVED ? 350 : 120);
  }
  search.addEventListener("input", () => onSearch(false));
  search.addEventListener("keydown", (e) => { if (e.key === "Enter") onSearch(true); });

  // ------------------------------------------------------------------ upload (served mode)
  async function uploadImage(file) {
    const limit = DATA.max_upload_bytes;
    const preview = el("img", { id: "upload-preview", alt: file.name });
    preview.addEventListener("error", () => { preview.hidden = true; });  // not an image the browser shows
    preview.src = URL.createObjectURL(file);
    if (limit && file.size > limit) {
      showResults("Image too large", el("p", { class: "error", id: "upload-error" },
        `${file.name} is ${(file.size / 1048576).toFixed(1)} MB; the limit is ${(limit / 1048576).toFixed(1)} MB.`));
      return;
    }
    showResults(`Finding the concept of ${file.name}…`, preview);
    try {
      const response = await fetch("/api/search-image?top_n=5&images=24", {
        method: "POST", body: file, headers: { "Content-Type": file.type || "application/octet-stream" } });
      const body = await response.json();
      if (!response.ok) throw new Error(body.error || response.statusText);
      const c = body.concept;
      showResults(`Your image: ${file.name}`,
        el("div", { id: "upload-result", "data-concept": c, style: { display: "flex", gap: "10px", alignItems: "center" } },
          preview,
          el("div", {}, el("span", { class: "swatch", style: { background: conceptColor(c) } }), " ",
            el("strong", {}, c >= 0 ? `Belongs to concept ${c}` : "An outlier: no concept"),
            c >= 0 ? el("div", { class: "note" }, `${Math.round(body.probability * 100)}% of its nearest images vote for it`) : null,
            el("div", { class: "words" }, wordsOf(c, 6)))),
        el("div", { class: "note" }, "Nearest concepts:"),
        ...body.concepts.map((r) => conceptResult(r.concept, "", r.similarity.toFixed(3))),
        el("div", { class: "note" }, "Nearest images:"),
        imageResults(body.images));
      highlight(body.images.map((im) => im.index));
    } catch (err) {
      // The server's reason, without a preview of what may not be an image at all.
      showResults(`Upload failed: ${file.name}`, el("p", { class: "error", id: "upload-error" }, String(err.message || err)));
    }
  }
  if (SERVED) {
    $("upload-label").hidden = false;
    $("upload").addEventListener("change", (e) => { if (e.target.files[0]) uploadImage(e.target.files[0]); e.target.value = ""; });
    let depth = 0;
    document.addEventListener("dragenter", (e) => { e.preventDefault(); depth++; document.body.classList.add("dragging"); });
    document.addEventListener("dragleave", () => { if (--depth <= 0) { depth = 0; document.body.classList.remove("dragging"); } });
    document.addEventListener("dragover", (e) => e.preventDefault());
    document.addEventListener("drop", (e) => {
      e.preventDefault(); depth = 0; document.body.classList.remove("dragging");
      const file = e.dataTransfer.files[0];
      if (file) uploadImage(file);
    });
  }

  // ------------------------------------------------------------------ draw
  // Outliers first so that concept points are drawn on top of them.
  const order = outliers.concat(members.flat());
  // The page's API, for notebooks, agents and tests. Concept ids are those of the default
  // layer (the cards') unless a layer is named; labels are each concept's one display name.
  function conceptsToIndices(ids, li) {
    if (!Array.isArray(ids)) ids = [ids];
    const out = new Set();
    for (const id of ids) {
      const c = Number(id);
      const k = LAYERS[li].concepts.length;
      if (!Number.isInteger(c) || c < -1 || c >= k) throw new Error(`No concept ${JSON.stringify(id)} in ${layerName(li) || "this model"} (ids 0..${k - 1}, -1 for outliers)`);
      for (const i of membersOf(li, c)) out.add(i);
    }
    return Array.from(out);
  }
  window.conceptExplorer = {
    data: DATA, scatterplot, screenPosition, openConcept, openNode, ready: false,
    layers: NL, defaultLayer: D,
    /** The names drawn on the map now, best placed first. */
    visibleLabels: () => drawnLabels.map((l) => l.text),
    /** The same with where they are: {layer, concept, text, x, y, w, h} in map pixels (box centre, size). */
    visibleLabelBoxes: () => drawnLabels.map(({ layer, concept, text, x, y, w, h }) => ({ layer, concept, text, x, y, w, h })),
    /** The images drawn as thumbnails now (image mode). */
    visibleThumbnails: () => drawnThumbs.slice(),
    /** Zoom in (factor > 1) or out around the centre of the view; resolves once drawn. */
    zoom: (factor) => {
      if (!(factor > 0)) throw new Error("zoom takes a positive factor (2 zooms in, 0.5 out)");
      const camera = scatterplot.get("camera");
      return scatterplot.zoomToLocation(camera.target, scatterplot.get("cameraDistance") / factor).then(drawOverlays);
    },
    setMode, mode: () => mode,
    /** Select the images of these concepts (ids of `layer`, default the cards' layer); returns how many. */
    select: (conceptIds, layer) => {
      const li = layer === undefined ? D : Number(layer);
      if (!Number.isInteger(li) || li < 0 || li >= NL) throw new Error(`layer must be 0..${NL - 1}`);
      const ids = Array.isArray(conceptIds) ? conceptIds : [conceptIds];
      const indices = conceptsToIndices(ids, li);  // checks every id
      if (ids.length === 1) { openNode(li, Number(ids[0]), false); return indices.length; }
      openSelection(indices);
      highlight(indices);
      return indices.length;
    },
    /** The selected images: [{index, path, concept, label, probability}]. */
    selection: () => selectionRows((scatterplot.get("selectedPoints") || []).slice().sort((a, b) => a - b)),
    /** The selection as the CSV the Export button writes. */
    selectionCsv: () => csvOf((scatterplot.get("selectedPoints") || []).slice().sort((a, b) => a - b)),
    filter: (concept, layer) => (concept === null ? unfilter() : filterTo(layer === undefined ? D : layer, concept)),
    /** Show image `index`'s duplicate group side by side (as a click on its badge does); returns its images. */
    showDuplicateGroup,
    /** List concepts' members "typical" (most typical first, the default) or "unusual" (by uniqueness). */
    sortMembers: (order) => {
      if (order !== "typical" && order !== "unusual") throw new Error(`sortMembers takes "typical" or "unusual", not ${JSON.stringify(order)}`);
      if (order === "unusual" && !U) throw new Error("This page has no uniqueness (the model's duplicates are not known).");
      memberOrder = order;
      const choice = panel.querySelector(".member-sort");
      if (choice) { choice.value = order; choice.dispatchEvent(new Event("change")); }
      return order;
    },
    /** The time histogram: {unit, labels, counts, undated, range} (null: the page has no dates). */
    timeline: () => (timeline ? { unit: timeline.unit, labels: timeline.labels.slice(), counts: Array.from(timeline.counts),
      undated: timeline.undated, range: timeRange && timeRange.slice() } : null),
    /** Show only the images dated in bins [first, last] of the histogram (null: all); returns how many are shown. */
    setTimeRange,
    /** Served mode: name concept `c` (of the cards' layer; "" gives it back its words) or merge
     *  concepts, through the model's API; the model folder is saved and the page reloads. */
    rename: (c, name) => editModel({ rename: { concept: Number(c), name: String(name) } }),
    merge: (ids) => editModel({ merge: ids.map(Number) }),
    overlayFrames: () => overlayFrames,
    redraw: drawOverlays,
  };
  scatterplot
    .draw({ x: P.x, y: P.y, valueA: Array.from(colorIndex) }, { zDataType: "categorical" })
    .then(() => {
      scatterplot.set({ pointOrder: order });
      window.conceptExplorer.ready = true;
      drawOverlays();
      document.body.dataset.ready = "1";
    });
})();
