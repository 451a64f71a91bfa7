"""Checks of what users pass to `ConceptModel`, run before any image is embedded.

Each function raises `ConceptError` with a message that names the argument, says what was
wrong and what is expected, instead of a traceback from numpy or scikit-learn after minutes of
embedding. They return the value to use (e.g. an array view of a list of rows).
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Iterator, Mapping
from collections.abc import Set as AbstractSet
from typing import Any

import numpy as np
from PIL import Image

from concept._errors import ConceptError

#: numpy's and UMAP's seeds are unsigned 32-bit integers.
MAX_SEED = 2**32 - 1


def _is_integer(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_integer(name: str, value: Any, *, minimum: int | None = None,
                  allow_none: bool = False) -> int | None:
    """`value` as an int, refusing bools, floats, strings and values below `minimum`."""
    if value is None and allow_none:
        return None
    bound = f" >= {minimum}" if minimum is not None else ""
    if not _is_integer(value) or (minimum is not None and value < minimum):
        none = "None or " if allow_none else ""
        raise ConceptError(f"{name} must be {none}an integer{bound}, got {value!r}")
    return int(value)


def check_number(name: str, value: Any, low: float, high: float) -> float:
    """`value` as a float in [low, high], refusing bools, strings, NaN and infinities."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
    if not ok or not math.isfinite(float(value)) or not low <= float(value) <= high:
        raise ConceptError(f"{name} must be a number in [{low:g}, {high:g}], got {value!r}")
    return float(value)


def check_random_state(value: Any) -> int | None:
    """None (not reproducible) or an integer seed in [0, 2**32 - 1]."""
    if value is None:
        return None
    if not _is_integer(value) or not 0 <= value <= MAX_SEED:
        raise ConceptError(f"random_state must be None or an integer seed in [0, {MAX_SEED}], got {value!r}")
    return int(value)


def check_docs(docs: Any) -> list[str] | None:
    """The candidate words as a list of strings (None: the bundled vocabulary)."""
    if docs is None:
        return None
    if isinstance(docs, (str, bytes)):
        raise ConceptError("docs must be a list of strings, not a single string.")
    if isinstance(docs, (Mapping, AbstractSet)) or not hasattr(docs, "__iter__"):
        raise ConceptError(f"docs must be a list of strings, got {type(docs).__name__}")
    docs = list(docs)
    for i, doc in enumerate(docs):
        if not isinstance(doc, str):
            raise ConceptError(f"docs must be strings, but docs[{i}] is {doc!r} ({type(doc).__name__}); "
                               "remove it or convert it to text first.")
    return docs


def check_images(images: Any) -> Any:
    """`images` when it is a sequence that can be read twice (embedding, then collages)."""
    if isinstance(images, (str, bytes, os.PathLike, Image.Image)):
        raise ConceptError("images must be a list: concepts are found in a collection (transform takes one image); "
                           "to use every image in a folder, pass concept.images.list_image_files(folder).")
    if images is None or isinstance(images, np.ndarray):
        return images  # an array of images is checked where it is read
    if isinstance(images, (Iterator, Mapping, AbstractSet)) or not (hasattr(images, "__len__")
                                                            and hasattr(images, "__getitem__")):
        raise ConceptError(f"images must be a list (or tuple or array) of paths, PIL images or arrays, "
                           f"got a {type(images).__name__}: the images are read twice (to embed them "
                           "and for the collages), so pass list(images).")
    if len(images) == 0:
        raise ConceptError("images is empty: pass at least one image.")
    return images


def as_image_list(images: Any) -> Any:
    """One image (a path, a PIL image, or an array of one image: 2-D, or 3-D with 1, 3 or 4 channels last) as a
    list of it, as the reference's `transform` took one path; anything else as it is."""
    if isinstance(images, (str, os.PathLike, Image.Image)) or (
            isinstance(images, np.ndarray) and (images.ndim == 2 or images.ndim == 3 and images.shape[2] in (1, 3, 4))):
        return [images]
    return images


def check_image_names(names: Any, n_inputs: int) -> list[str] | None:
    """`image_names` (one per input image, shown for it in tables and the explorer) as strings, or None."""
    if names is None:
        return None
    if isinstance(names, (str, bytes, Mapping, AbstractSet)) or not hasattr(names, "__len__"):
        raise ConceptError(f"image_names must be a list of names, one per image, got a {type(names).__name__}")
    if len(names) != n_inputs:
        raise ConceptError(f"Got {n_inputs} images but {len(names)} image_names; they must match one to one.")
    return [str(name) for name in names]


def check_array(name: str, value: Any) -> np.ndarray | None:
    """A non-empty 2-D array of real numbers (rows x dimensions), not copied when it is one."""
    if value is None:
        return None
    if isinstance(value, (str, bytes)):
        raise ConceptError(f"{name} must be a 2-D array of numbers (n_images, dim), got a string")
    try:
        array = np.asarray(value)
    except ValueError as exc:  # numpy refuses ragged nested lists
        raise ConceptError(f"{name} must be a 2-D array of numbers with rows of one length ({exc})") from exc
    if array.dtype == object:
        raise ConceptError(f"{name} must be a 2-D array of numbers with rows of one length; "
                           "it holds rows of different lengths or values that are not numbers")
    if array.dtype.kind not in "iuf":
        raise ConceptError(f"{name} must hold real numbers, got values of dtype {array.dtype}")
    if array.ndim != 2 or 0 in array.shape:
        raise ConceptError(f"{name} must be a non-empty 2-D array (n_images, dim), got shape {array.shape}")
    return array


def check_inputs(images: Any, image_embeddings: Any, image_features: Any,
                 ) -> tuple[Any, np.ndarray | None, np.ndarray | None]:
    """The images and arrays of `fit`/`transform`, checked against each other."""
    images = check_images(images)
    image_embeddings = check_array("image_embeddings", image_embeddings)
    image_features = check_array("image_features", image_features)
    if image_features is not None and image_embeddings is None:
        raise ConceptError("image_features are only used together with image_embeddings.")
    if image_features is not None and len(image_features) != len(image_embeddings):
        raise ConceptError(f"Got {len(image_embeddings)} image_embeddings but {len(image_features)} "
                           "image_features; they must match one to one.")
    if (image_embeddings is not None and images is not None and hasattr(images, "__len__")
            and not isinstance(images, (str, bytes, os.PathLike, Image.Image)) and len(images) != len(image_embeddings)):
        raise ConceptError(f"Got {len(images)} images but {len(image_embeddings)} image_embeddings; "
                           "they must match one to one.")
    return images, image_embeddings, image_features


def check_model_params(p: Mapping[str, Any]) -> None:
    """Check a ConceptModel's hyper-parameters (`get_params()`), before any work."""
    from collections.abc import Sequence

    from concept.seeding import check_seed_concepts

    def need(ok: bool, message: str) -> None:
        if not ok:
            raise ConceptError(message)

    check_integer("min_concept_size", p["min_concept_size"], minimum=2)
    check_number("diversity", p["diversity"], 0.0, 1.0)
    need(p["cluster_space"] in ("auto", "embeddings"),
         f"cluster_space must be 'auto' or 'embeddings', got {p['cluster_space']!r}")
    check_integer("sample_size (at least 2 * min_concept_size)", p["sample_size"],
                  minimum=2 * p["min_concept_size"], allow_none=True)
    check_number("outlier_threshold", p["outlier_threshold"], 0.0, 1000.0)
    need(float(p["outlier_threshold"]) > 0, f"outlier_threshold must be > 0, got {p['outlier_threshold']!r}")
    for name in ("n_exemplars", "n_words", "vocabulary_size", "batch_size"):
        check_integer(name, p[name], minimum=1)
    check_random_state(p["random_state"])
    check_integer("n_concepts", p["n_concepts"], minimum=1, allow_none=True)
    names = p["zeroshot_concepts"]
    if names is not None:
        need(not isinstance(names, (str, bytes)) and isinstance(names, Sequence)
             and all(isinstance(t, str) and t.strip() for t in names) and len(set(names)) == len(names),
             "zeroshot_concepts must be a list of distinct, non-empty names, e.g. ['cat', 'car']")
    check_number("zeroshot_threshold", p["zeroshot_threshold"], 0.0, 100.0)
    need(check_seed_concepts(p["seed_concepts"]) is None or not names,
         "zeroshot_concepts and seed_concepts cannot be combined yet: pass one of them")
    need(p["umap_model"] is None or hasattr(p["umap_model"], "fit_transform"),
         "umap_model must have a fit_transform method (e.g. umap.UMAP or sklearn PCA)")
    need(p["hdbscan_model"] is None or hasattr(p["hdbscan_model"], "fit"),
         "hdbscan_model must have a fit method and a labels_ attribute (e.g. hdbscan.HDBSCAN)")
    need(p.get("find_duplicates", False) in (True, False),
         f"find_duplicates must be True or False, got {p.get('find_duplicates')!r}")
    if p.get("caption_model") is not None:  # a missing folder or a bad spec fails before any work
        from concept.captioning import caption_model_name

        caption_model_name(p["caption_model"])


def check_layer(layer: Any, n_layers: int, default: int) -> int:
    """`layer` as an index into a model's `n_layers` layers (None: `default`)."""
    if layer is None:
        return default
    if not isinstance(layer, (int, np.integer)) or isinstance(layer, bool) or not 0 <= int(layer) < n_layers:
        raise ConceptError(f"layer must be an integer in 0..{n_layers - 1} "
                           f"(this model has {n_layers} layers, finest first), got {layer!r}")
    return int(layer)


def check_per_image(name: str, values: Any, image_indices: np.ndarray, n_inputs: int) -> list:
    """`values` (one per image: a label, a date) as one per fitted row: given per fitted row
    (`len(image_indices)` values, in the order of `labels_`) or per input image (`n_inputs`, the
    unreadable ones included), matched to the rows through `image_indices`."""
    if isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
        raise ConceptError(f"{name} must be a sequence with one value per image, got {type(values).__name__}")
    items = list(values)
    n_rows = len(image_indices)
    if len(items) == n_rows:
        return items
    if len(items) == n_inputs:
        return [items[i] for i in np.asarray(image_indices, np.int64)]
    inputs = f" or one per input image ({n_inputs}, the unreadable ones included)" if n_inputs != n_rows else ""
    raise ConceptError(f"{name} has {len(items)} values; expected one per fitted image ({n_rows}, as labels_)"
                       f"{inputs}.")
