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
  }).observe(mapBox);

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
        el("div", { class: "words" }, wordsOf(c, 5))));
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
  scatterplot.subscribe("select", ({ points }) => {
    if (points.length === 1) openConcept(P.concept[points[0]]);
    else if (points.length > 1) openSelection(points);
  });
  scatterplot.subscribe("deselect", () => closeMembers(false));

  function screenPosition(i, page) {
    const [x, y] = scatterplot.getScreenPosition(i);
    if (!page) return [x, y];
    const r = canvas.getBoundingClientRect();
    return [r.left + x, r.top + y];
  }
  function highlight(indices) {
    if (indices && indices.length) scatterplot.select(indices, { preventEvent: true });
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
      el("div", { class: "words" }, wordsOf(c, 8)));
    node.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); openConcept(c); } });
    cards.set(c, node);
    return node;
  }
  $("cards").replaceChildren(...DATA.concepts.map((info) => card(info.id)));
  if (!K) $("cards").append(el("p", { class: "note" }, "No concept was found: every image is an outlier."));
  if (DATA.outliers.size) $("outliers").append(card(-1));
  else { $("outliers-title").hidden = true; }
  $("stats").textContent = `${fmt(DATA.n_images)} images · ${fmt(K)} concepts · ${fmt(DATA.outliers.size)} outliers`;

  // ------------------------------------------------------------------ members panel
  const panel = $("members");
  let openC = null;

  function memberGrid(indices) {
    const grid = el("div", { class: "grid" });
    const add = (from) => {
      for (const i of indices.slice(from, from + MEMBERS_PAGE)) {
        const t = thumb(i, 64);
        t.classList.add("member");
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

  function openConcept(c) {
    const indices = c >= 0 ? members[c] : outliers;
    openC = c;
    for (const [k, node] of cards) node.classList.toggle("active", k === c);
    panel.replaceChildren(el("div", { class: "panel", "data-concept": c },
      el("h3", {}, el("span", { class: "swatch", style: { background: conceptColor(c) } }), conceptName(c),
        el("span", { class: "size" }, ` · ${fmt(indices.length)} images`),
        el("button", { class: "close", type: "button", title: "Close", onclick: () => closeMembers(true) }, "×")),
      el("div", { class: "words" }, c >= 0 ? DATA.concepts[c].words.join(", ") : "Images that belong to no concept."),
      c >= 0 && DATA.model_files
        ? el("div", { class: "note" }, el("a", { href: `${DATA.model_files}images/concept_${c}.png`, target: "_blank" }, "full-size collage"))
        : null,
      el("div", { class: "note" }, c >= 0 ? "Members, most typical first:" : "Members:"),
      ...memberGrid(indices)));
    panel.hidden = false;
    highlight(indices);
    panel.scrollIntoView({ block: "nearest" });
  }

  function openSelection(indices) {
    openC = null;
    for (const node of cards.values()) node.classList.remove("active");
    panel.replaceChildren(el("div", { class: "panel", "data-concept": "selection" },
      el("h3", {}, `Selection · ${fmt(indices.length)} images`,
        el("button", { class: "close", type: "button", title: "Close", onclick: () => closeMembers(true) }, "×")),
      ...memberGrid(indices.slice().sort(byProbability))));
    panel.hidden = false;
  }

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
  function applyFilter(value) {
    if (value === "all") {
      scatterplot.unfilter({ preventEvent: true });
      for (const node of cards.values()) node.hidden = false;
      return;
    }
    const c = Number(value);
    const indices = c >= 0 ? members[c] : outliers;
    scatterplot.filter(indices, { preventEvent: true });
    for (const [k, node] of cards) node.hidden = k !== c;
    openConcept(c);
    if (indices.length) scatterplot.zoomToPoints(indices, { padding: 0.15, transition: true });  // frame them
  }
  filter.addEventListener("change", () => applyFilter(filter.value));

  $("reset").addEventListener("click", () => {
    filter.value = "all";
    applyFilter("all");
    closeMembers(true);
    scatterplot.zoomToOrigin({ transition: true });
  });

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
  window.conceptExplorer = { data: DATA, scatterplot, screenPosition, openConcept, ready: false };
  scatterplot
    .draw({ x: P.x, y: P.y, valueA: Array.from(colorIndex) }, { zDataType: "categorical" })
    .then(() => {
      scatterplot.set({ pointOrder: order });
      window.conceptExplorer.ready = true;
      document.body.dataset.ready = "1";
    });
})();
