"""The interactive view of a fitted model: a map of every image, concept cards, search.

- `write_report(model, "report.html")`: a static page that works offline (`concept explore`).
- `make_server(model_dir)`: the same page served locally, with search by the model (`concept serve`).
- `repr_html(model)`: the compact gallery a notebook shows for a model.

The map is drawn by regl-scatterplot (WebGL), vendored in `static/` and inlined in the page.
"""

from __future__ import annotations

from concept.explorer.notebook import repr_html
from concept.explorer.report import write_report
from concept.explorer.server import MAX_UPLOAD_BYTES, ExplorerServer, make_server

__all__ = ["MAX_UPLOAD_BYTES", "ExplorerServer", "make_server", "repr_html", "write_report"]
