"""Check a loaded model folder's state before `ConceptModel.load` uses it: one clear ModelFileError.

The checksums in a model folder prove that its files are the ones saved, not that what was saved
(or written by hand, or by a hostile tool that recomputed the checksums) is a fitted model. This
checks every setting, array and text `ConceptModel.load` reads: types, ranges, and shapes that
agree with each other (n images, k concepts, d dimensions). Keys it does not know are left alone,
so newer state (extra arrays or settings) loads.
"""

from __future__ import annotations

import math
import os
import re
from typing import Any

import numpy as np

from concept._errors import ModelFileError
from concept.model_folder.schema import (
    COLLAGE,
    DUPLICATES,
    MAP_2D,
    duplicates_key,
    layer_key,
    parents_key,
)
from concept.persistence import ModelState

__all__ = ["check_fitted_state"]

#: Integers in settings are bounded: a huge one passes JSON but overflows numpy and friends.
_MAX_INT = 2**62
_NUMBERED = re.compile(r".*_\d+")  # what ConceptModel.load parses a collage's concept from


class _Bad(Exception):
    """One problem found, as a phrase; turned into a ModelFileError naming the folder."""


def check_fitted_state(state: ModelState, path: str | os.PathLike) -> None:
    """Raise ModelFileError (naming `path` and the first problem) unless `state` is a fitted
    ConceptModel's: settings of the right types and ranges, arrays of consistent shapes and
    in-range indices, topics for every concept."""
    try:
        _check_settings(state.settings)
        n, k = _check_arrays(state.arrays)
        _check_layers(state.settings, state.arrays, state.texts, n, k)
        _check_seeds_and_captions(state.settings, state.arrays, state.texts, n)
        _check_duplicates(state.settings, state.arrays, n)
        _check_texts(state.texts, n, k)
        _check_images(state.images, k)
    except _Bad as exc:
        raise ModelFileError(f"{os.fspath(path)} does not hold a valid fitted model: {exc}; "
                             "save the model again (or restore the folder from a backup).") from None


# -- settings ----------------------------------------------------------------------------------
def _integer(settings: dict[str, Any], key: str, low: int, *, optional: bool = False) -> int | None:
    if key not in settings:
        raise _Bad(f"settings has no {key!r}")
    value = settings[key]
    if value is None and optional:
        return None
    if type(value) is float and value.is_integer() and abs(value) <= _MAX_INT:  # e.g. 10.0
        value = int(value)
    if type(value) is not int or not low <= value <= _MAX_INT:
        raise _Bad(f"settings[{key!r}] must be an integer >= {low}"
                   f"{' or null' if optional else ''}, not {_short(value)}")
    return value


def _check_settings(settings: dict[str, Any]) -> None:
    min_size = _integer(settings, "min_concept_size", 2)
    for key in ("n_exemplars", "n_words", "vocabulary_size", "batch_size"):
        _integer(settings, key, 1)
    sample = _integer(settings, "sample_size", 1, optional=True)
    if sample is not None and sample < 2 * min_size:
        raise _Bad(f"settings['sample_size'] ({sample}) is below 2 * min_concept_size ({min_size})")
    seed = _integer(settings, "random_state", 0, optional=True)
    if seed is not None and seed >= 2**32:
        raise _Bad(f"settings['random_state'] must be below 2**32, not {seed}")
    diversity = settings.get("diversity")
    if (type(diversity) not in (int, float) or not math.isfinite(diversity)
            or not 0 <= diversity <= 1):
        raise _Bad(f"settings['diversity'] must be a number in [0, 1], not {_short(diversity)}")
    for key in ("ctfidf", "verbose"):  # 0 and 1 too: the model saves what the user passed
        if type(settings.get(key)) is not bool and settings.get(key) not in (0, 1):
            raise _Bad(f"settings[{key!r}] must be true or false, not {_short(settings.get(key))}")
    if settings.get("find_duplicates", False) not in (True, False):  # absent from older folders
        raise _Bad(f"settings['find_duplicates'] must be true or false, not {_short(settings['find_duplicates'])}")
    if settings.get("cluster_space") not in ("auto", "embeddings"):
        raise _Bad(f"settings['cluster_space'] must be 'auto' or 'embeddings', "
                   f"not {_short(settings.get('cluster_space'))}")
    alignment = settings.get("alignment")
    if alignment is not None and not (
            isinstance(alignment, dict) and type(alignment.get("alpha", 0.0)) in (int, float)
            and math.isfinite(alignment.get("alpha", 0.0)) and isinstance(alignment.get("validation", {}), dict)
            and all(isinstance(key, str) and type(v) in (int, float) and math.isfinite(v)
                    for key, v in alignment.get("validation", {}).items())):
        raise _Bad(f"settings['alignment'] must be null or {{'alpha': number, 'validation': {{name: number}}}}, "
                   f"not {_short(alignment)}")
    if "n_concepts" in settings:
        _integer(settings, "n_concepts", 1, optional=True)
    names = settings.get("zeroshot_concepts")
    if names is not None and (not isinstance(names, list) or not all(isinstance(t, str) for t in names)):
        raise _Bad(f"settings['zeroshot_concepts'] must be null or a list of names, not {_short(names)}")
    seeds = settings.get("seed_concepts")
    if seeds is not None and (not isinstance(seeds, list) or not seeds or not all(
            isinstance(ws, list) and ws and all(isinstance(w, str) and w.strip() for w in ws) for ws in seeds)):
        raise _Bad(f"settings['seed_concepts'] must be null or a list of lists of words, not {_short(seeds)}")
    z = settings.get("zeroshot_threshold", 3.0)
    if type(z) not in (int, float) or not math.isfinite(z) or not 0 <= z <= 100:
        raise _Bad(f"settings['zeroshot_threshold'] must be a number in [0, 100], not {_short(z)}")
    for key in ("embedding_model", "embedding_name"):
        if not isinstance(settings.get(key), (str, type(None))):
            raise _Bad(f"settings[{key!r}] must be a string or null, not {_short(settings.get(key))}")


# -- arrays ------------------------------------------------------------------------------------
def _array(arrays: dict[str, np.ndarray], name: str, kind: str, shape: tuple[int | None, ...], *,
           optional: bool = False) -> np.ndarray | None:
    """`arrays[name]` checked for dtype kind ("f": float, "i": integer) and shape (None: any)."""
    if name not in arrays:
        if optional:
            return None
        raise _Bad(f"the array {name!r} is missing")
    a = arrays[name]
    if kind == "i" and a.dtype.kind not in "iu" or kind == "f" and a.dtype.kind != "f":
        raise _Bad(f"the array {name!r} is {a.dtype}, not {'integer' if kind == 'i' else 'float'}")
    if a.ndim != len(shape) or any(want is not None and got != want for got, want in zip(a.shape, shape)):
        want = "(" + ", ".join("*" if w is None else str(w) for w in shape) + ")"
        raise _Bad(f"the array {name!r} has shape {a.shape}, expected {want}")
    if kind == "f" and a.size:  # a NaN or infinity anywhere makes the sum of squares non-finite
        flat = a.reshape(-1)
        if not math.isfinite(float(np.einsum("i,i->", flat, flat, dtype=np.float64))):
            raise _Bad(f"the array {name!r} holds NaN or infinite values")
    return a


def _in_range(a: np.ndarray, name: str, low: int, high: int) -> None:
    if a.size and (int(a.min()) < low or int(a.max()) >= high):
        raise _Bad(f"the array {name!r} holds values outside [{low}, {high}) "
                   f"(from {int(a.min())} to {int(a.max())})")


def _check_arrays(arrays: dict[str, np.ndarray]) -> tuple[int, int]:
    """Check the arrays; return (n images, k concepts)."""
    x = _array(arrays, "embeddings", "f", (None, None))
    n, d = x.shape
    if n == 0 or d == 0:
        raise _Bad(f"the array 'embeddings' is empty (shape {x.shape})")
    concepts = _array(arrays, "concept_embeddings", "f", (None, d))
    k = len(concepts)
    labels = _array(arrays, "labels", "i", (n,))
    _in_range(labels, "labels", -1, k)
    _array(arrays, "probabilities", "f", (n,))
    _in_range(_array(arrays, "image_indices", "i", (n,)), "image_indices", 0, _MAX_INT)
    reference = _array(arrays, "reference_rows", "i", (None,))
    if len(reference) == 0:
        raise _Bad("the array 'reference_rows' is empty")
    _in_range(reference, "reference_rows", 0, n)
    counts = _array(arrays, "exemplar_counts", "i", (k,))
    exemplars = _array(arrays, "exemplars", "i", (None,))
    _in_range(counts, "exemplar_counts", 0, n + 1)
    if int(counts.sum()) != len(exemplars):
        raise _Bad(f"'exemplar_counts' add up to {int(counts.sum())} but there are "
                   f"{len(exemplars)} exemplars")
    _in_range(exemplars, "exemplars", 0, n)
    features = _array(arrays, "features", "f", (n, None), optional=True)
    space = d if features is None else features.shape[1]
    projection = _array(arrays, "projection", "f", (space, None), optional=True)
    if projection is not None and not 1 <= projection.shape[1] <= space:
        raise _Bad(f"the array 'projection' has shape {projection.shape}, expected ({space}, 1..{space})")
    _array(arrays, "image_center", "f", (d,))
    _array(arrays, "word_center", "f", (d,), optional=True)
    _array(arrays, MAP_2D, "f", (n, 2), optional=True)
    _check_alignment(arrays, space, d)
    return n, k


def _check_alignment(arrays: dict[str, np.ndarray], space: int, d: int) -> None:
    """The learned image-text map: (features or embeddings dim) x (text dim) weights and a bias,
    both or neither; the text space is the shared space the words live in."""
    weights = _array(arrays, "alignment_weights", "f", (space, d), optional=True)
    bias = _array(arrays, "alignment_bias", "f", (d,), optional=True)
    if (weights is None) != (bias is None):
        raise _Bad("the arrays 'alignment_weights' and 'alignment_bias' must be saved together")


def _check_layers(settings: dict[str, Any], arrays: dict[str, np.ndarray], texts: dict[str, Any],
                  n: int, k: int) -> None:
    """The concept hierarchy (absent in folders saved before layers): the finest labels, the
    centres and spreads new images are assigned by, a parent map between each pair of layers,
    and each layer's embeddings, exemplars and words; the default layer must be `labels`."""
    if "centres" not in arrays:
        return
    n_layers = _integer(settings, "n_layers", 1)
    default = _integer(settings, "layer", 0)
    if default >= n_layers or n_layers > 64:
        raise _Bad(f"settings['layer'] ({default}) must be below settings['n_layers'] ({n_layers}, at most 64)")
    if "fitted_outlier_threshold" in settings:
        value = settings["fitted_outlier_threshold"]
        if type(value) not in (int, float) or not math.isfinite(value) or value <= 0:
            raise _Bad(f"settings['fitted_outlier_threshold'] must be a number > 0, not {_short(value)}")
    centres = _array(arrays, "centres", "f", (None, None))
    k0 = len(centres)
    space = arrays["features"].shape[1] if "features" in arrays else arrays["embeddings"].shape[1]
    if k0 == 0 or centres.shape[1] != space:
        raise _Bad(f"the array 'centres' has shape {centres.shape}, expected (k, {space})")
    _array(arrays, "medians", "f", (k0,))
    _array(arrays, "sds", "f", (k0,))
    fine = _array(arrays, "fine_labels", "i", (n,))
    _in_range(fine, "fine_labels", -1, k0)
    _in_range(_array(arrays, "nearest", "i", (n,)), "nearest", 0, k0)
    labels, sizes = fine, [k0]
    for i in range(n_layers - 1):
        parent = _array(arrays, parents_key(i), "i", (sizes[-1],))
        upper = int(parent.max()) + 1 if parent.size else 0
        _in_range(parent, parents_key(i), -1, max(upper, 1))  # -1: deleted to outliers
        labels = np.where(labels >= 0, parent[np.maximum(labels, 0)], -1)
        sizes.append(upper)
        if i + 1 == default and not np.array_equal(labels, arrays["labels"]):
            raise _Bad(f"the array 'labels' is not layer {default} of the hierarchy")
    if default == 0 and not np.array_equal(fine, arrays["labels"]):
        raise _Bad("the array 'labels' is not layer 0 of the hierarchy")
    if sizes[default] != k:
        raise _Bad(f"layer {default} has {sizes[default]} concepts but 'concept_embeddings' has {k}")
    d = arrays["embeddings"].shape[1]
    layer_topics = texts.get("layer_topics")
    if not isinstance(layer_topics, list) or len(layer_topics) != n_layers:
        raise _Bad(f"texts must have 'layer_topics', a list of {n_layers} dictionaries")
    for i, size in enumerate(sizes):
        _array(arrays, layer_key(i, "embeddings"), "f", (size, d))
        counts = _array(arrays, layer_key(i, "exemplar_counts"), "i", (size,))
        exemplars = _array(arrays, layer_key(i, "exemplars"), "i", (None,))
        _in_range(counts, layer_key(i, "exemplar_counts"), 0, n + 1)
        if int(counts.sum()) != len(exemplars):
            raise _Bad(f"'layer_{i}_exemplar_counts' do not add up to the {len(exemplars)} exemplars")
        _in_range(exemplars, layer_key(i, "exemplars"), 0, n)
        topics = layer_topics[i]
        if not isinstance(topics, dict) or set(topics) != {str(c) for c in range(size)}:
            raise _Bad(f"layer_topics[{i}] must have one entry per concept 0..{size - 1}")


def _check_seeds_and_captions(settings: dict[str, Any], arrays: dict[str, np.ndarray], texts: dict[str, Any],
                              n: int) -> None:
    """Each image's matched seed (with seed_concepts only), and the fit's caption terms per
    image (a sparse row form: terms, row pointers, term indices, and which rows are captions)."""
    seeds = settings.get("seed_concepts")
    matches = _array(arrays, "seed_matches", "i", (n,), optional=True)
    if matches is not None:
        if seeds is None:
            raise _Bad("the array 'seed_matches' is saved but settings['seed_concepts'] is null")
        _in_range(matches, "seed_matches", -1, len(seeds))
    names = ("caption_term_indptr", "caption_term_indices", "captioned")
    present = [name in arrays for name in names]
    if not any(present) and "caption_terms" not in texts:
        return
    if not all(present) or "caption_terms" not in texts:
        raise _Bad("the caption terms need the arrays 'caption_term_indptr', 'caption_term_indices', "
                   "'captioned' and texts['caption_terms'] together")
    terms = texts["caption_terms"]
    if not isinstance(terms, list) or not all(isinstance(t, str) for t in terms):
        raise _Bad("texts['caption_terms'] must be a list of terms")
    indptr = _array(arrays, "caption_term_indptr", "i", (n + 1,))
    indices = _array(arrays, "caption_term_indices", "i", (None,))
    if int(indptr[0]) != 0 or (np.diff(indptr) < 0).any() or int(indptr[-1]) != len(indices):
        raise _Bad("the array 'caption_term_indptr' must rise from 0 to the number of caption term indices")
    _in_range(indices, "caption_term_indices", 0, len(terms))
    _in_range(_array(arrays, "captioned", "i", (n,)), "captioned", 0, 2)


def _check_duplicates(settings: dict[str, Any], arrays: dict[str, np.ndarray], n: int) -> None:
    """The duplicates, once found (absent from older folders): a near threshold, groups of at least two rows in
    range, no row in two groups of one kind, and a uniqueness in [0, 1] per row."""
    names = [duplicates_key(kind, part) for kind in ("exact", "near") for part in ("rows", "counts")]
    if DUPLICATES not in settings:
        if any(name in arrays for name in [*names, duplicates_key("uniqueness")]):
            raise _Bad(f"duplicate arrays are saved but settings has no {DUPLICATES!r}")
        return
    saved = settings[DUPLICATES]
    near = saved.get("near_threshold") if isinstance(saved, dict) else "missing"
    if near is not None and (type(near) not in (int, float) or not 0 < near <= 1):
        raise _Bad(f"settings[{DUPLICATES!r}] must hold a near_threshold in (0, 1] or null, not {_short(near)}")
    for kind in ("exact", "near"):
        rows = _array(arrays, duplicates_key(kind, "rows"), "i", (None,))
        counts = _array(arrays, duplicates_key(kind, "counts"), "i", (None,))
        _in_range(counts, duplicates_key(kind, "counts"), 2, n + 1)
        if int(counts.sum()) != len(rows) or len(np.unique(rows)) != len(rows):
            raise _Bad(f"the {kind} duplicate groups must hold {int(counts.sum())} distinct rows, one group each")
        _in_range(rows, duplicates_key(kind, "rows"), 0, n)
    unique = _array(arrays, duplicates_key("uniqueness"), "f", (n,), optional=True)
    if unique is not None and unique.size and not (0 <= unique.min() and unique.max() <= 1):
        raise _Bad(f"the array {duplicates_key('uniqueness')!r} must lie in [0, 1]")


# -- texts and images --------------------------------------------------------------------------
def _check_texts(texts: dict[str, Any], n: int, k: int) -> None:
    topics = texts.get("topics")
    if not isinstance(topics, dict):
        raise _Bad("texts has no 'topics' dictionary")
    if set(topics) != {str(c) for c in range(k)}:
        missing = sorted(set(map(str, range(k))) - set(topics), key=len)[:5]
        extra = sorted(set(topics) - set(map(str, range(k))))[:5]
        raise _Bad(f"'topics' must have one entry per concept 0..{k - 1} "
                   f"(missing {missing}, unexpected {[_short(e) for e in extra]})")
    for c, words in topics.items():
        if not isinstance(words, list) or not all(
                isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str)
                and type(pair[1]) in (int, float) and math.isfinite(pair[1]) for pair in words):
            raise _Bad(f"topics[{c!r}] must be a list of [word, score] pairs")
    sources = texts.get("image_sources")
    if sources is not None and (not isinstance(sources, list) or len(sources) != n
                                or not all(isinstance(s, str) for s in sources)):
        raise _Bad(f"'image_sources' must be null or a list of {n} file names")
    image_names = texts.get("image_names")
    if image_names is not None and (not isinstance(image_names, list) or len(image_names) != n
                                    or not all(isinstance(s, str) for s in image_names)):
        raise _Bad(f"'image_names' must be null or a list of {n} names")
    names = texts.get("custom_labels", {})
    if not isinstance(names, dict) or not all(
            isinstance(c, str) and c.isdigit() and int(c) < k and isinstance(v, str) for c, v in names.items()):
        raise _Bad(f"'custom_labels' must map concept ids 0..{k - 1} to names")
    mapping = texts.get("concept_mapping", [])
    if not isinstance(mapping, list) or not all(isinstance(m, dict) for m in mapping):
        raise _Bad("'concept_mapping' must be a list of edits")
    docs = texts.get("docs")
    if docs is not None and (not isinstance(docs, list) or not all(isinstance(w, str) for w in docs)):
        raise _Bad("'docs' must be null or a list of words")
    failures = texts.get("failures", [])
    if not isinstance(failures, list) or not all(
            isinstance(f, list) and len(f) == 3 and type(f[0]) is int and 0 <= f[0] <= _MAX_INT
            and isinstance(f[1], str) and isinstance(f[2], str) for f in failures):
        raise _Bad("'failures' must be a list of [position, source, reason]")


def _check_images(images: dict[str, Any], k: int) -> None:
    for name in images:
        match = COLLAGE.fullmatch(name)
        if _NUMBERED.fullmatch(name) is None or match is not None and int(match.group(1)) >= k:
            raise _Bad(f"the image {name!r} is not the collage of one of the {k} concepts "
                       "(concept_0 ...)")


def _short(value: Any) -> str:
    """A value for a message, cut short (a hostile file may hold huge ones)."""
    text = repr(value) if not isinstance(value, int) or abs(value) < 10**30 else "a huge integer"
    return text if len(text) <= 60 else text[:57] + "..."
