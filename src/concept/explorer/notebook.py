"""`repr_html`: how a ConceptModel shows itself in a notebook (its `_repr_html_`).

A compact gallery of the largest concepts: collage thumbnail (inline base64 PNG), size and words.
Inline styles only, so notebook front-ends that strip <style> still lay it out.
"""

from __future__ import annotations

import base64
import html
import io
from typing import Any

import numpy as np

__all__ = ["repr_html"]

GALLERY_CONCEPTS = 8  # concepts shown, largest first
THUMB_WIDTH = 150  # pixels of each collage thumbnail
WORDS_SHOWN = 6


def _png_data_uri(image: Any, width: int = THUMB_WIDTH) -> str:
    image = image.convert("RGB")
    if image.width > width:
        image = image.resize((width, max(1, round(image.height * width / image.width))))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def repr_html(model: Any, max_concepts: int = GALLERY_CONCEPTS) -> str:
    """An HTML gallery of the `max_concepts` largest concepts of `model` (or "not fitted")."""
    box = ("font-family:system-ui,sans-serif;font-size:13px;line-height:1.35;color:#1d2329;"
           "border:1px solid #dde1e6;border-radius:8px;padding:10px;max-width:980px")
    if not hasattr(model, "labels_"):
        return f'<div style="{box}"><b>ConceptModel</b> (not fitted): call fit() or ConceptModel.load().</div>'
    labels = np.asarray(model.labels_)
    n_concepts = int(model.n_concepts_)
    n_out = int((labels < 0).sum())
    sizes = np.bincount(labels[labels >= 0], minlength=n_concepts)
    order = sorted(range(n_concepts), key=lambda c: (-sizes[c], c))[:max_concepts]
    topics = model.topics
    collages = getattr(model, "collages_", None) or {}
    head = (f"<div style='margin-bottom:8px'><b>ConceptModel</b>: {n_concepts:,} concepts in "
            f"{len(labels):,} images, {n_out:,} outliers")
    if n_concepts > len(order):
        head += f" · the {len(order)} largest shown"
    head += "</div>"
    cards = []
    for c in order:
        words = html.escape(", ".join(topics.get(c, [])[:WORDS_SHOWN])) or "<i>no words</i>"
        image = (f"<img src='{_png_data_uri(collages[c])}' alt='concept {c}' "
                 f"style='width:{THUMB_WIDTH}px;height:auto;display:block;border-radius:4px'>"
                 if c in collages else
                 f"<div style='width:{THUMB_WIDTH}px;height:60px;background:#f1f3f5;color:#8a939c;"
                 "display:flex;align-items:center;justify-content:center;border-radius:4px'>no collage</div>")
        cards.append(f"<div style='width:{THUMB_WIDTH}px;flex:none'>{image}"
                     f"<div style='margin-top:4px'><b>Concept {c}</b> · {int(sizes[c]):,} images</div>"
                     f"<div style='color:#4a545e'>{words}</div></div>")
    if not cards:
        cards.append("<div style='color:#5b6570'>No concept found: every image is an outlier.</div>")
    return f"<div style='{box}'>{head}<div style='display:flex;flex-wrap:wrap;gap:12px'>{''.join(cards)}</div></div>"
