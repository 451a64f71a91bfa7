"""Captions made by a captioner: a transformers image-to-text model or any callable.

`load_caption_model` turns a spec into a captioner (a callable: list of RGB PIL images -> list
of texts, with a `name`): a callable as it is, ``"hf:ORG/NAME"`` from the Hugging Face cache,
``"hf:/folder"`` or a folder written by ``save_pretrained`` (BLIP; other image-text-to-text
models such as Florence-2 or SmolVLM through transformers' Auto classes, untested here). Nothing
is downloaded unless ``allow_download=True``. `caption_images` captions with a disk cache keyed
by the captioner's name and each image's file (path, size, mtime) or pixels. `ConceptModel(
caption_model=...)` calls `describe_with_captions`: every layer's exemplars are captioned, the
concepts described again with those captions (`describing`'s c-TF-IDF over caption terms) and the
default layer's concepts named by their most representative exemplar caption.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from concept._atomic import atomic_file
from concept._cache import cache_dir
from concept._errors import ConceptError, ImageLoadError
from concept._hub import cached_file, looks_like_folder
from concept.images import load_image

__all__ = ["CAPTION_BATCH", "MAX_NAME_CHARS", "MAX_NEW_TOKENS", "HFCaptioner", "caption_images", "caption_model_name",
           "concept_names", "describe_captioned", "describe_with_captions", "load_caption_model"]

logger = logging.getLogger(__name__)

#: Images captioned per call to the captioner (one progress-bar step).
CAPTION_BATCH = 8
#: Tokens a transformers captioner generates at most per caption (greedy).
MAX_NEW_TOKENS = 30
#: Longest concept name taken from a caption (characters; cut at a word).
MAX_NAME_CHARS = 60
#: The prompt of models that need one (Florence-2's task token; chat VLMs' question).
_PROMPTS = {"florence2": "<CAPTION>"}
_CHAT_PROMPT = "Describe this image in one short sentence."


class _CallableCaptioner:
    """A user's callable as a captioner; its `name` (if any) keys the disk cache."""

    def __init__(self, fn: Callable[[list], list[str]]) -> None:
        self.fn = fn
        name = getattr(fn, "name", None)
        self.name = name if isinstance(name, str) and name else None

    def __call__(self, images: list) -> list[str]:
        return list(self.fn(images))


class HFCaptioner:
    """A transformers image-to-text model (BLIP; others through AutoModelForImageTextToText),
    generating greedily at most `max_new_tokens` tokens per image."""

    def __init__(self, model: str, *, allow_download: bool = False, device: str | None = None,
                 max_new_tokens: int = MAX_NEW_TOKENS, verbose: bool = True) -> None:
        import torch

        from concept.embedding.clip import _model_tag
        from concept.embedding.towers import hub_offline

        local = Path(model).expanduser()
        if not allow_download:
            _require_local(model)
        source = str(local) if local.is_dir() else model
        self.name = f"hf:{_model_tag(source)}" if local.is_dir() else f"hf:{model}"
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.max_new_tokens = int(max_new_tokens)
        options = {"local_files_only": not allow_download}
        from transformers import AutoConfig, AutoProcessor
        from transformers.utils import logging as hf_logging

        bars = hf_logging.is_progress_bar_enabled()
        if not verbose:
            hf_logging.disable_progress_bar()
        try:
            with hub_offline(not allow_download):
                self.model_type = AutoConfig.from_pretrained(source, **options).model_type
                if self.model_type == "blip":
                    from transformers import BlipForConditionalGeneration as Model
                else:
                    from transformers import AutoModelForImageTextToText as Model
                self.processor = AutoProcessor.from_pretrained(source, **options)
                self.model = Model.from_pretrained(source, **options).eval().to(self.device)
        except Exception as exc:  # many causes: a missing file, a model that does not caption
            raise ConceptError(f"Could not load the caption model {model!r}: {exc}") from exc
        finally:
            if bars:
                hf_logging.enable_progress_bar()

    def _prompt(self, n: int) -> dict[str, Any]:
        """The text inputs of models that need a prompt (none for BLIP)."""
        if self.model_type == "blip":
            return {}
        if self.model_type in _PROMPTS:
            return {"text": [_PROMPTS[self.model_type]] * n}
        chat = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": _CHAT_PROMPT}]}]
        return {"text": [self.processor.apply_chat_template(chat, add_generation_prompt=True)] * n}

    def __call__(self, images: list) -> list[str]:
        import torch

        inputs = self.processor(images=images, return_tensors="pt", **self._prompt(len(images)))
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        with torch.inference_mode():
            out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False, num_beams=1)
        if self.model_type != "blip" and "input_ids" in inputs:  # the prompt is echoed first
            out = out[:, inputs["input_ids"].shape[1]:]
        return [t.strip() for t in self.processor.batch_decode(out, skip_special_tokens=True)]


def _require_local(model: str) -> None:
    """ConceptError saying what to do unless `model` is a folder or a hub model in the local cache."""
    if Path(model).expanduser().is_dir():
        return
    if looks_like_folder(model):
        raise ConceptError(f"The caption model folder {model!r} does not exist: pass a folder written by "
                           "save_pretrained (model and processor), 'hf:ORG/NAME' from the Hugging Face cache, "
                           "or a callable.")
    from huggingface_hub import constants

    if cached_file(model, ("config.json",)) is None:
        raise ConceptError(
            f"The caption model {model!r} is not on this machine: it was looked for in the Hugging Face cache "
            f"{constants.HF_HUB_CACHE} and concept never downloads by default. Run `hf download {model}` on a "
            f"machine with network (then copy the cache), pass a folder written by save_pretrained, or pass "
            f"load_caption_model('hf:{model}', allow_download=True).")


def _hf_source(spec: Any, require_local: bool = True) -> str | None:
    """The model of a string spec ("hf:ORG/NAME", "hf:/folder" or a folder), None for a callable;
    ConceptError for anything else, or (`require_local`) a model that is not on this machine."""
    if callable(spec) and not isinstance(spec, (str, os.PathLike)):
        return None
    if not isinstance(spec, (str, os.PathLike)) or not str(spec).strip():
        raise ConceptError(f"caption_model must be a callable, 'hf:ORG/NAME' or a model folder, got {spec!r}")
    text = str(spec)
    model = text[3:] if text.startswith("hf:") else text
    if not text.startswith("hf:") and not Path(model).expanduser().is_dir():
        raise ConceptError(f"The caption model folder {text!r} does not exist: pass a folder written by "
                           "save_pretrained (model and processor), 'hf:ORG/NAME' from the Hugging Face cache, "
                           "or a callable.")
    if require_local:
        _require_local(model)
    return model


def caption_model_name(spec: Any) -> str | None:
    """The name that keys the caption cache, found without loading the model: "hf:ORG/NAME", or
    "hf:" and a folder's name and digest of its files; a callable's `name` attribute (None: not cached)."""
    if isinstance(spec, (_CallableCaptioner, HFCaptioner)):
        return spec.name
    model = _hf_source(spec)
    if model is None:
        name = getattr(spec, "name", None)
        return name if isinstance(name, str) and name else None
    from concept.embedding.clip import _model_tag

    local = Path(model).expanduser()
    return f"hf:{_model_tag(str(local))}" if local.is_dir() else f"hf:{model}"


def load_caption_model(spec: Any, allow_download: bool = False, device: str | None = None,
                       verbose: bool = True) -> Any:
    """A captioner from `spec`: a callable (list of PIL images -> list of texts) as it is,
    "hf:ORG/NAME" / "hf:/folder" / a folder of a transformers image-to-text model. Raises
    ConceptError for a model that is not on this machine (nothing is downloaded unless
    `allow_download`)."""
    if isinstance(spec, (_CallableCaptioner, HFCaptioner)):
        return spec
    model = _hf_source(spec, require_local=not allow_download)
    if model is None:
        return _CallableCaptioner(spec)
    return HFCaptioner(model, allow_download=allow_download, device=device, verbose=verbose)


def _image_key(item: Any) -> str | None:
    """A cache key of one image: its file (resolved path, size, mtime) or its pixels' hash."""
    if isinstance(item, (str, os.PathLike)):
        try:
            stat = os.stat(item)
        except OSError:
            return None
        return f"file:{Path(item).resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    if isinstance(item, np.ndarray):
        data, shape = np.ascontiguousarray(item).tobytes(), f"{item.shape}{item.dtype}"
    elif hasattr(item, "tobytes"):  # a PIL image
        data, shape = item.tobytes(), f"{item.mode}{item.size}"
    else:
        return None
    return f"pixels:{shape}:{hashlib.sha256(data).hexdigest()}"


def _cache_path(name: str) -> Path:
    return cache_dir() / f"captions-{hashlib.sha256(name.encode('utf-8')).hexdigest()[:24]}.json"


def _read_cache(path: Path) -> dict[str, str]:
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
        return found if isinstance(found, dict) else {}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        logger.warning("Ignoring a damaged caption cache %s (%s)", path, exc)
        return {}


def _write_cache(path: Path, entries: dict[str, str]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(path) as f:
            f.write(json.dumps(entries, ensure_ascii=False).encode("utf-8"))
    except OSError as exc:  # a read-only home must not break fitting
        logger.info("Could not write the caption cache %s (%s)", path, exc)


def caption_images(captioner: Any, images: Sequence[Any], batch_size: int = CAPTION_BATCH,
                   verbose: bool = True) -> list[str | None]:
    """One caption per image (paths, PIL images or arrays; None for one that cannot be read or
    gets an empty text), in batches with a progress bar. A captioner with a `name` (every "hf:"
    one) reads and fills the disk cache; a callable without one captions every time."""
    name = caption_model_name(captioner)
    path = _cache_path(name) if name else None
    cache = _read_cache(path) if path else {}
    keys = [_image_key(i) if path else None for i in images]
    out: list[str | None] = [cache.get(k) if k else None for k in keys]
    todo = [i for i, k in enumerate(keys) if k is None or k not in cache]
    added = 0
    if todo:  # a model is loaded only for images not in the cache
        captioner = load_caption_model(captioner, verbose=verbose)
    try:
        with tqdm(total=len(todo), disable=not verbose or not todo, unit="image", desc="Captioning") as bar:
            for start in range(0, len(todo), int(batch_size)):
                rows, loaded = [], []
                for i in todo[start:start + int(batch_size)]:
                    try:
                        loaded.append(load_image(images[i]))
                        rows.append(i)
                    except ImageLoadError as exc:
                        logger.warning("Not captioned: %s", exc)
                texts = captioner(loaded) if loaded else []
                if len(texts) != len(loaded):
                    raise ConceptError(f"The caption model returned {len(texts)} texts for {len(loaded)} images: "
                                       "it must return one text per image.")
                for i, t in zip(rows, texts):
                    out[i] = str(t).strip() or None if t is not None else None
                    if keys[i] is not None and out[i] is not None:
                        cache[keys[i]], added = out[i], added + 1
                bar.update(len(todo[start:start + int(batch_size)]))
    finally:
        if path and added:
            _write_cache(path, {**_read_cache(path), **cache})  # another process may have added some
    logger.info("Captioned %d images (%d from the cache).", len(images), len(images) - len(todo))
    return out


def _short(text: str) -> str:
    if len(text) <= MAX_NAME_CHARS:
        return text
    cut = text[:MAX_NAME_CHARS].rsplit(" ", 1)[0]
    return (cut or text[:MAX_NAME_CHARS]).rstrip(" ,;:.") + "…"


def concept_names(exemplars: dict[int, list[int]], captions: Sequence[str | None],
                  topics: dict[int, list[tuple[str, float]]], analyzer: Callable[[str], list[str]]) -> dict[int, str]:
    """A short name per concept: the caption of its exemplars (most representative first) whose
    terms carry most of the concept's word scores (its c-TF-IDF words); the first one on a tie."""
    names = {}
    for c, rows in exemplars.items():
        scores = {w: float(s) for w, s in topics.get(c, [])}
        best, best_score = None, -np.inf
        for r in rows:
            text = captions[r]
            if not text:
                continue
            score = sum(scores.get(t, 0.0) for t in set(analyzer(text)))
            if score > best_score:
                best, best_score = text, score
        if best is not None:
            names[int(c)] = _short(best)
    return names


def describe_with_captions(describe: Callable[[list[str | None] | None], Any], captions: Sequence[str | None] | None,
                           images: Sequence[Any] | None, kept: np.ndarray, layer: int,
                           params: dict[str, Any]) -> tuple[Any, dict[int, str]]:
    """`describe(captions of the fitted rows)` (the describing stage; `captions`: one per input or
    None), and with the model's `params["caption_model"]`: every layer's exemplars captioned (the
    user's `captions` kept where given), described again with them, and names for the concepts of
    `layer`. Returns (described, {concept: name}); names are empty without a caption model."""
    rows_captions = None if captions is None else [captions[i] for i in kept]
    described = describe(rows_captions)
    caption_model, verbose = params.get("caption_model"), bool(params.get("verbose", True))
    if caption_model is None:
        return described, {}
    if images is None:
        logger.warning("caption_model needs images (paths, PIL images or arrays): precomputed embeddings "
                       "are not captioned.")
        return described, {}
    merged = list(rows_captions) if rows_captions is not None else [None] * len(kept)
    rows = sorted({r for ex in described.layer_exemplars for rs in ex.values() for r in rs if not merged[r]})
    for r, text in zip(rows, caption_images(caption_model, [images[kept[r]] for r in rows], verbose=verbose)):
        merged[r] = text
    if not any(merged):
        return described, {}
    from concept.words import caption_analyzer

    described = describe(merged)
    names = concept_names(described.layer_exemplars[layer], merged, described.layer_topics[layer],
                          caption_analyzer(params.get("vectorizer_model")))
    return described, names


def describe_captioned(model: Any, embedder: Any, x: Any, space: Any, docs: list[str] | None,
                       captions: list[str | None] | None, images: Sequence[Any] | None,
                       kept: Any) -> tuple[Any, dict[int, str]]:
    """The describing stage of `model`'s fit (`concept.describing.describe_fit`) with the fitted rows'
    `captions` (one per input, or None); with `model.caption_model`, also with its captions of every
    layer's exemplars (`concept.captioning`). Returns (described, names for the default layer's concepts)."""
    from concept.captioning import describe_with_captions
    from concept.clustering import one_blas_thread
    from concept.deduplicated import describing_settings
    from concept.describing import describe_fit

    def describe(rows_captions: list[str | None] | None) -> Any:
        with one_blas_thread():
            return describe_fit(embedder, x, space, model.layers_, model.layer_sizes_, model.layer_, docs,
                                describing_settings(model), rows_captions, model.seed_matches_)

    return describe_with_captions(describe, captions, images, kept, model.layer_, model.get_params())
