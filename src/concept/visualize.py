"""Figures of concepts: one panel per concept, its collage titled with its id, size and words.

Figures are built with `matplotlib.figure.Figure`, never through pyplot's global state, so they
work headless (no display, any backend) and from several threads; nothing is ever shown.
Save one with `fig.savefig(path)`; in Jupyter a returned figure displays itself.
"""

from __future__ import annotations

import logging
import math
import textwrap
from collections.abc import Mapping, Sequence

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from concept._errors import ConceptError
from concept.images import load_image

__all__ = ["barchart_figure", "concept_title", "concepts_figure", "heatmap_figure", "hierarchy_figure",
           "hierarchy_order", "over_time_figure", "per_group_figure"]

logger = logging.getLogger(__name__)

_WRAP_CHARS = 40  # characters per line of words in a title
_WRAP_LINES = 2  # lines of words at most; the rest is cut with an ellipsis
_TITLE_INCHES = 0.6  # height added to each row of panels for its three-line title


def concept_title(concept: int, words: str | Sequence[str] = "", size: int | None = None) -> str:
    """A panel title such as "Concept 3 · 120 images" over "dog, puppy, hound".

    `words` a string or a list of words (joined with ", "); wrapped to about 40 characters a line,
    at most 2 lines, the rest cut with "…". `size` the number of images, left out when None.
    """
    head = f"Concept {concept}"
    if size is not None:
        head += f" · {size:,} image{'' if size == 1 else 's'}"
    text = words if isinstance(words, str) else ", ".join(map(str, words))
    lines = textwrap.wrap(text, _WRAP_CHARS, max_lines=_WRAP_LINES, placeholder=" …")
    return "\n".join([head, *lines])


def concepts_figure(collages: Mapping[int, Image.Image],
                    titles: Mapping[int, str | Sequence[str]], *,
                    sizes: Mapping[int, int] | None = None, columns: int = 3,
                    panel_inches: float = 4.0, figsize: tuple[float, float] | None = None) -> Figure:
    """One panel per concept, in the order of `collages`: its collage, axis off, under a title.

    Parameters: `collages` concept id -> collage image (see `concept.collage.make_collage`);
    `titles` concept id -> its words (a string or a list; a missing id gets no words);
    `sizes` concept id -> number of images, shown in the title when given; `columns` panels per
    row (fewer when there are fewer concepts); `panel_inches` the width of each panel; `figsize`
    (width, height) in inches for the whole figure instead (None: sized by the panels).
    Returns a `matplotlib.figure.Figure` with one axes per concept and none for empty grid cells.
    Raises `ConceptError` if `collages` is empty or `columns`/`panel_inches` are not positive.
    """
    if not collages:
        raise ConceptError("concepts_figure needs at least one collage; got an empty mapping.")
    if isinstance(columns, bool) or not isinstance(columns, int) or columns < 1:
        raise ConceptError(f"columns must be a positive integer, got {columns!r}.")
    if not panel_inches > 0:
        raise ConceptError(f"panel_inches must be positive, got {panel_inches!r}.")
    if figsize is not None and not (isinstance(figsize, (Sequence, np.ndarray)) and len(figsize) == 2 and all(
            isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and 0 < v < 1000
            for v in figsize)):
        raise ConceptError(f"figsize must be None or (width, height) in inches, got {figsize!r}.")

    n = len(collages)
    cols = min(columns, n)  # a single concept should not sit in a wide, mostly empty figure
    rows = math.ceil(n / cols)
    fig = Figure(figsize=tuple(figsize) if figsize is not None
                 else (cols * panel_inches, rows * (panel_inches + _TITLE_INCHES)), layout="constrained")
    # White space between panels, or neighbouring collages on white read as one.
    fig.get_layout_engine().set(w_pad=0.1, h_pad=0.1, wspace=0.05, hspace=0.05)
    fontsize = max(7.0, min(12.0, 2.6 * panel_inches))
    for i, (concept, collage) in enumerate(collages.items()):
        ax = fig.add_subplot(rows, cols, i + 1)  # only occupied cells get an axes
        ax.imshow(np.asarray(load_image(collage)), interpolation="antialiased")
        ax.set_axis_off()
        size = None if sizes is None else sizes.get(concept)
        ax.set_title(concept_title(concept, titles.get(concept, ""), size),
                     fontsize=fontsize, loc="center")
    logger.debug("Figure of %d concepts in %d x %d panels", n, cols, rows)
    return fig


def hierarchy_figure(parents: Sequence[np.ndarray], sizes: Sequence[Sequence[int]],
                     words: Sequence[Mapping[int, str]], collages: Sequence[Mapping[int, Image.Image]],
                     *, first: int = 0, node_inches: float = 1.3) -> Figure:
    """The concept tree: one row per layer from `first` (coarsest at the top), each concept a
    node with its small collage (when given) and words, joined by a line to its parent.

    `parents[i]` maps the concepts of layer i to layer i+1; `sizes[i]`, `words[i]` and
    `collages[i]` give each concept of layer i its size, words and collage. Children are
    placed under their parents, so no lines cross.
    """
    layers = len(sizes)
    if not 0 <= first < layers:
        raise ConceptError(f"first must be a layer in 0..{layers - 1}, got {first!r}.")
    # Leaves (layer `first`) ordered by their path from the top, then each parent centred over its children.
    top = layers - 1

    def path(c: int) -> tuple:
        chain, layer = [c], first
        while layer < top:
            chain.append(int(parents[layer][chain[-1]]))
            layer += 1
        return tuple(reversed(chain))

    leaves = sorted(range(len(sizes[first])), key=path)
    xs: dict[tuple[int, int], float] = {(first, c): float(i) for i, c in enumerate(leaves)}
    for layer in range(first, top):
        groups: dict[int, list[float]] = {}
        for c in range(len(sizes[layer])):
            p = int(parents[layer][c])
            if p >= 0:
                groups.setdefault(p, []).append(xs[(layer, c)])
        for p in range(len(sizes[layer + 1])):
            xs[(layer + 1, p)] = float(np.mean(groups[p])) if p in groups else float(len(leaves) + p)
    width = max(len(leaves), 1)
    rows = top - first + 1
    fig = Figure(figsize=(max(4.0, width * node_inches), rows * (node_inches + 0.7)))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(-0.6, width - 0.4)
    ax.set_ylim(-0.7, rows - 0.3)
    ax.set_axis_off()
    fontsize = max(5.0, min(9.0, 6.0 * node_inches))
    for layer in range(first, top + 1):
        y = float(layer - first)
        for c in range(len(sizes[layer])):
            x = xs[(layer, c)]
            if layer < top and int(parents[layer][c]) >= 0:
                ax.plot([x, xs[(layer + 1, int(parents[layer][c]))]], [y + 0.25, y + 0.75], color="#9aa3ab",
                        linewidth=0.8, zorder=1)
            image = collages[layer].get(c)
            if image is not None:
                ax.imshow(np.asarray(load_image(image)), extent=(x - 0.35, x + 0.35, y - 0.05, y + 0.45),
                          zorder=2, interpolation="antialiased")
            text = "\n".join(textwrap.wrap(words[layer].get(c, ""), 18, max_lines=2, placeholder=" …"))
            ax.text(x, y - 0.1, f"{layer}:{c} · {sizes[layer][c]:,}\n{text}", ha="center", va="top",
                    fontsize=fontsize, zorder=3)
    ax.set_aspect("auto")
    return fig


def model_hierarchy_figure(model, first_layer: int | None = None, max_leaves: int = 40) -> Figure:
    """The concept tree of a fitted model (`ConceptModel.visualize_hierarchy`): a row per layer
    from `first_layer` (default: the layer of `labels_`, or a coarser one with at most
    `max_leaves` concepts) to the coarsest, each concept with a small collage of its exemplars
    (when the images are files, or for `labels_`'s concepts) and its words (custom labels first)."""
    from concept._validation import check_layer
    from concept.collage import make_collage

    sizes_per_layer = model.layer_sizes_
    layers, default = model.layers_, model.layer_
    if first_layer is not None:
        first_layer = check_layer(first_layer, len(layers), default)
    else:
        first_layer = next((i for i in range(default, len(layers)) if sizes_per_layer[i] <= max_leaves),
                           len(layers) - 1)
    if sizes_per_layer[first_layer] > max_leaves:
        raise ConceptError(f"Layer {first_layer} has {sizes_per_layer[first_layer]} concepts, more than "
                           f"max_leaves={max_leaves}: start at a coarser layer or raise max_leaves.")
    names = model.custom_labels_
    sizes, words, collages = [], [], []
    for i, labels in enumerate(layers):
        sizes.append(np.bincount(labels[labels >= 0], minlength=sizes_per_layer[i]).tolist())
        words.append({c: ((names[c] + ": ") if i == default and c in names else "")
                      + ", ".join(w for w, _ in ws[:4]) for c, ws in model.layer_topics_[i].items()})
        if i < first_layer:
            collages.append({})
        elif i == default and model.collages_:
            collages.append(model.collages_)
        elif model.image_sources_ is not None:
            collages.append({c: make_collage([model.image_sources_[r] for r in rows[:4]], tile=64)
                             for c, rows in model.layer_exemplars_[i].items() if rows})
        else:
            collages.append({})
    return hierarchy_figure(model.hierarchy_.parents, sizes, words, collages, first=first_layer)


def model_concepts_figure(model, top_n: int = 9, concepts: Sequence[int] | None = None,
                          columns: int = 3, figsize: tuple[float, float] | None = None) -> Figure:
    """Each concept's collage titled with its size and words (`ConceptModel.visualize_concepts`):
    the `top_n` largest concepts of a fitted model, or the given `concepts` (an empty list: the
    `top_n` largest, as in the reference), in a figure of `figsize` inches (None: sized by the panels)."""
    if not model.collages_:
        raise ConceptError("No collages: the model was fitted on embeddings without images. "
                           "Fit with images to see concepts.")
    chosen, sizes = _chosen_concepts(model, top_n, concepts, model.collages_)
    names = model.custom_labels_
    return concepts_figure({c: model.collages_[c] for c in chosen},
                           {c: (f"{names[c]}: " if c in names else "") + ", ".join(model.topics[c][:6])
                            for c in chosen},
                           sizes=sizes, columns=columns, figsize=figsize)


def _chosen_concepts(model, top_n: int, concepts: Sequence[int] | None,
                     known: Mapping[int, object]) -> tuple[list[int], dict[int, int]]:
    """The given `concepts` (each must be in `known`) or the `top_n` largest of `labels_`, and
    their sizes."""
    chosen = (list(concepts) if concepts is not None and len(concepts)
              else list(model.frequency.Concept[lambda c: c >= 0])[:top_n])
    missing = [c for c in chosen if c not in known]
    if missing:
        raise ConceptError(f"Unknown concepts {missing}; this model has concepts 0..{model.n_concepts_ - 1}.")
    counts = dict(zip(*np.unique(model.labels_, return_counts=True)))
    return chosen, {c: int(counts.get(c, 0)) for c in chosen}


def barchart_figure(topics: Mapping[int, Sequence[tuple[str, float]]], concepts: Sequence[int], *,
                    n_words: int = 5, sizes: Mapping[int, int] | None = None,
                    names: Mapping[int, str] | None = None, columns: int = 4,
                    panel_inches: float = 3.0) -> Figure:
    """One horizontal bar chart per concept of `concepts`: its first `n_words` words (best on top)
    and their scores (BERTopic's `visualize_barchart` for concepts), titled with its id, size and
    custom name."""
    if not concepts:
        raise ConceptError("barchart_figure needs at least one concept.")
    cols = min(columns, len(concepts))
    rows = math.ceil(len(concepts) / cols)
    fig = Figure(figsize=(cols * panel_inches, rows * (0.35 * n_words + 1.0)), layout="constrained")
    for i, c in enumerate(concepts):
        ax = fig.add_subplot(rows, cols, i + 1)
        pairs = list(topics.get(c, []))[:n_words]
        ax.barh(range(len(pairs)), [s for _, s in pairs], color="#4c72b0")
        ax.set_yticks(range(len(pairs)), [textwrap.shorten(w, 24, placeholder="…") for w, _ in pairs], fontsize=8)
        ax.invert_yaxis()
        ax.tick_params(axis="x", labelsize=7)
        size = None if sizes is None else sizes.get(c)
        ax.set_title(concept_title(c, (names or {}).get(c, ""), size), fontsize=9)
    return fig


def hierarchy_order(parents: Sequence[np.ndarray], layer: int, k: int) -> np.ndarray:
    """The concepts 0..k-1 of `layer` ordered along the tree: grouped by their ancestor in the
    coarsest layer, then the next, ..., so that siblings sit side by side (-1: no parent, last)."""
    chains = [np.arange(k)]
    for parent in parents[layer:]:
        up = chains[-1]
        chains.append(np.where(up >= 0, np.asarray(parent)[np.maximum(up, 0)], -1))
    keys = [np.where(chain >= 0, chain, np.iinfo(np.int64).max) for chain in chains]
    return np.lexsort(keys)  # the last key (the coarsest ancestor) sorts first


def heatmap_figure(similarity: np.ndarray, labels: Sequence[str], *, inches: float = 8.0) -> Figure:
    """The concepts' similarity matrix (cosine) as a heatmap, rows and columns in the given
    order, labelled (BERTopic's `visualize_heatmap` for concepts)."""
    k = len(labels)
    if similarity.shape != (k, k) or k == 0:
        raise ConceptError(f"similarity must be {k} x {k} for {k} labels, got {similarity.shape}.")
    fig = Figure(figsize=(inches, inches * 0.9), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(similarity, cmap="viridis", vmin=min(0.0, float(similarity.min())), vmax=1.0)
    ticks = range(k)
    fontsize = max(4.0, min(9.0, 300.0 / k))
    short = [textwrap.shorten(t, 28, placeholder="…") for t in labels]
    ax.set_xticks(ticks, short, rotation=90, fontsize=fontsize)
    ax.set_yticks(ticks, short, fontsize=fontsize)
    fig.colorbar(image, ax=ax, shrink=0.8, label="cosine similarity")
    return fig


def model_barchart_figure(model, top_n: int = 8, n_words: int = 5, concepts: Sequence[int] | None = None,
                          columns: int = 4) -> Figure:
    """`barchart_figure` of a fitted model's `top_n` largest concepts of `labels_` (or `concepts`)."""
    chosen, sizes = _chosen_concepts(model, top_n, concepts, model.topics_)
    if not chosen:
        raise ConceptError("The model has no concept to show.")
    return barchart_figure(model.topics_, chosen, n_words=n_words, sizes=sizes, names=model.custom_labels_,
                           columns=columns)


def model_heatmap_figure(model, layer: int | None = None) -> Figure:
    """`heatmap_figure` of the cosine similarity between a fitted model's concept embeddings of
    `layer` (default: `labels_`'s), centred on the images' mean as words are compared (in a shared
    space every concept is near every other: raw cosines run 0.6-1 on the demo), ordered along
    the hierarchy, labelled "id: name"."""
    from concept._validation import check_layer
    from concept.tables import concept_names

    layer = check_layer(layer, len(model.layers_), model.layer_)
    emb = np.asarray(model.layer_embeddings_[layer], np.float64) - np.asarray(model.image_center_, np.float64)
    if len(emb) < 2:
        raise ConceptError(f"Layer {layer} has {len(emb)} concept(s); a heatmap needs at least 2.")
    unit = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    order = hierarchy_order(model.hierarchy_.parents, layer, len(emb))
    names = concept_names(model.layer_topics_[layer], model.custom_labels_ if layer == model.layer_ else None)
    return heatmap_figure((unit @ unit.T)[np.ix_(order, order)], [f"{c}: {names.get(int(c), '')}" for c in order])


def _top_concepts(table, top_n: int, concepts: Sequence[int] | None) -> list[int]:
    """The given `concepts` (each must be in `table`) or the `top_n` with the most images in it, outliers left
    out."""
    totals = table.groupby("Concept", sort=False)["Frequency"].sum()
    if concepts is not None:
        missing = [c for c in concepts if c not in totals.index]
        if missing:
            raise ConceptError(f"Concepts {missing} are not in the table; it has {sorted(totals.index.tolist())}.")
        return list(concepts)
    totals = totals[totals.index >= 0]
    return sorted(totals.index.tolist(), key=lambda c: (-int(totals[c]), c))[:top_n]


def _legend_label(table, concept: int) -> str:
    name = table.loc[table.Concept == concept, "Name"]
    return textwrap.shorten(f"{concept}: {name.iloc[0] if len(name) else ''}", 40, placeholder="…")


def over_time_figure(table, top_n: int = 8, concepts: Sequence[int] | None = None, *, normalize: bool = False,
                     stacked: bool = False, width: float = 10.0, height: float = 4.5) -> Figure:
    """Concepts over time (BERTopic's `visualize_topics_over_time` for images), from a table of
    `concept.over_time.over_time_table`: one line per concept (the `top_n` with most images, or `concepts`)
    over the time bins, or stacked areas (`stacked=True`). `normalize`: each concept's share of the bin's images
    (outliers included) instead of its count, for collections whose years hold very different numbers of
    images. The images without a date are counted in the subtitle, not drawn."""
    if top_n < 1 and concepts is None:
        raise ConceptError(f"top_n must be at least 1, got {top_n!r}.")
    dated = table[table.Timestamp.notna()]
    undated = int(table.loc[table.Timestamp.isna(), "Frequency"].sum())
    if dated.empty:
        raise ConceptError(f"No image has a date ({undated:,} without one): nothing to draw over time.")
    chosen = _top_concepts(table, top_n, concepts)
    grid = dated.pivot_table(index="Timestamp", columns="Concept", values="Frequency", aggfunc="sum",
                             fill_value=0).sort_index()
    values = grid.reindex(columns=chosen, fill_value=0).astype(float)
    if normalize:
        totals = grid.sum(axis=1).replace(0, np.nan)
        values = values.div(totals, axis=0)
    x = grid.index.to_numpy()
    fig = Figure(figsize=(width, height), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    palette = [matplotlib.colormaps["tab10" if len(chosen) <= 10 else "tab20"](i % 20) for i in range(len(chosen))]
    labels = [_legend_label(table, c) for c in chosen]
    if stacked:
        ax.stackplot(x, *[values[c].fillna(0).to_numpy() for c in chosen], labels=labels, colors=palette, alpha=0.85)
    else:
        for c, label, color in zip(chosen, labels, palette):
            ax.plot(x, values[c].to_numpy(), marker="o", markersize=3, linewidth=1.5, label=label, color=color)
    ax.set_ylabel("share of the period's images" if normalize else "images")
    ax.set_ylim(bottom=0)
    ax.grid(axis="y", color="#e5e5e5", linewidth=0.8)
    ax.set_axisbelow(True)
    total = int(table.Frequency.sum())
    note = f" · {undated:,} of {total:,} images have no date, not shown" if undated else ""
    ax.set_title(f"Concepts over time{note}", fontsize=10, loc="left")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    if np.issubdtype(x.dtype, np.datetime64):
        for tick in ax.get_xticklabels():
            tick.set_rotation(30)
            tick.set_horizontalalignment("right")
    return fig


def per_group_figure(table, top_n: int = 12, concepts: Sequence[int] | None = None, *, max_groups: int = 25,
                     inches_per_cell: float = 0.45) -> Figure:
    """Concepts per group (BERTopic's `visualize_topics_per_class` for images), from a table of
    `concept.per_group.per_group_table`: a heatmap of the Score (smoothed log2 lift: red, more common in the
    group than overall; blue, less) of the `max_groups` largest groups (rows) and the `top_n` largest concepts
    (or `concepts`), each cell showing its number of images."""
    chosen = _top_concepts(table, top_n, concepts)
    groups = list(dict.fromkeys(table.Group.tolist()))[:max_groups]  # the table lists the largest groups first
    if not chosen or not groups:
        raise ConceptError("The table has no concept or no group to show.")
    shown = table[table.Group.isin(groups) & table.Concept.isin(chosen)]
    score = shown.pivot(index="Group", columns="Concept", values="Score").reindex(index=groups, columns=chosen)
    count = shown.pivot(index="Group", columns="Concept", values="Frequency").reindex(index=groups, columns=chosen)
    finite = np.abs(score.to_numpy()[np.isfinite(score.to_numpy())])
    limit = max(float(finite.max()) if finite.size else 1.0, 0.5)
    rows, cols = len(groups), len(chosen)
    fig = Figure(figsize=(max(5.0, 2.5 + cols * inches_per_cell), max(3.0, 2.2 + rows * inches_per_cell * 0.8)),
                 layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(np.clip(score.to_numpy(), -limit, limit), cmap="RdBu_r", vmin=-limit, vmax=limit,
                      aspect="auto")
    if rows * cols <= 900:
        fontsize = max(5.0, min(8.0, 60.0 / max(rows, cols) ** 0.5))
        for i in range(rows):
            for j in range(cols):
                ax.text(j, i, f"{int(count.iat[i, j])}", ha="center", va="center", fontsize=fontsize,
                        color="white" if abs(score.iat[i, j]) > 0.6 * limit else "#222222")
    ax.set_xticks(range(cols), [_legend_label(table, c) for c in chosen], rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(rows), [textwrap.shorten(str(g), 30, placeholder="…") for g in groups], fontsize=8)
    ax.set_title("Concepts per group: images in each cell, colour = log2 lift", fontsize=10, loc="left")
    prior = table.attrs.get("prior")
    label = "log2 lift: share in group / overall" + (f"\n(smoothed by {prior:g} images)" if prior else "")
    fig.colorbar(image, ax=ax, shrink=0.8, label=label)
    return fig
