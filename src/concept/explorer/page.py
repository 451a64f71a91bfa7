"""The explorer page: one HTML document with its styles, scripts and data inlined.

Nothing is fetched from the network: the map library is vendored in `static/` and inlined, and
thumbnails and collages come from relative URLs (a folder beside the report, or the local server).
"""

from __future__ import annotations

import html
import json
import re
from functools import cache
from importlib import resources
from typing import Any

__all__ = ["render_page"]

_SLOT = re.compile(r"/\*__(CSS|LIB|APP|DATA)__\*/|__TITLE__")


@cache
def _static(name: str) -> str:
    return resources.files("concept.explorer").joinpath("static", name).read_text(encoding="utf-8")


def _script_safe(text: str) -> str:
    """Text that cannot end the <script> element it is inlined in."""
    return re.sub(r"</(script)", r"<\\/\1", text, flags=re.IGNORECASE).replace("<!--", "<\\!--")


def _json_for_html(data: Any) -> str:
    """JSON that is inert inside <script type="application/json"> (no <, >, & or line separators)."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    for char, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                         ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, escape)
    return text


def render_page(data: dict[str, Any]) -> str:
    """The explorer page showing `data` (from `page_data`)."""
    parts = {
        "CSS": _static("explorer.css"),
        "LIB": _script_safe(_static("regl-scatterplot.min.js")),
        "APP": _script_safe(_static("maplayers.js") + "\n" + _static("explorer.js")),
        "DATA": _json_for_html(data),
    }
    title = html.escape(str(data.get("title", "concept explorer")))
    # One pass over the template: text inserted in one slot is never searched for another.
    return _SLOT.sub(lambda m: title if m.group(0) == "__TITLE__" else parts[m.group(1)],
                     _static("explorer.html"))
