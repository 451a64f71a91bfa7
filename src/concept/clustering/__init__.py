"""Group images into concepts, as a hierarchy of layers.

`find_hierarchy` is the default core (summary -> dense groups -> refined layers, see
core.py); `legacy.cluster` runs a user's own reducer and clusterer as one layer, and
`from_labels` turns any labels into the same fitted form. `assign` places new images at any
layer; `layout_2d` draws the map.
"""

from concept.clustering.core import (
    Hierarchy,
    assign,
    find_hierarchy,
    from_labels,
    layer_labels,
    n_units,
)
from concept.clustering.kernels import (
    PROJECTION_DIM,
    fit_projection,
    mean_directions,
    nearest,
    one_blas_thread,
    project,
    top_matches,
)
from concept.clustering.layout import layout_2d, reference_rows
from concept.clustering.legacy import (
    Clustering,
    cluster,
    default_clusterer,
    default_reducer,
    sampled_min_size,
    sort_by_size,
)
from concept.clustering.legacy import assign as vote

__all__ = [
    "PROJECTION_DIM", "Clustering", "Hierarchy", "assign", "cluster", "default_clusterer",
    "default_reducer", "find_hierarchy", "fit_projection", "from_labels", "layer_labels",
    "layout_2d", "mean_directions", "n_units", "nearest", "one_blas_thread", "project",
    "reference_rows", "sampled_min_size", "sort_by_size", "top_matches", "vote",
]
