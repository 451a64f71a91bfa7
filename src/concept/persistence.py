"""Save and load a model's state as a folder of JSON, safetensors and PNG files, never pickle.

Layout: `path/concept.json` (format, versions, settings, texts, file list, sha256 checksums),
`path/arrays.safetensors` (every array, dtype and shape exact), `path/images/<name>.png`.
Saving is atomic (`concept._atomic.atomic_folder`): the folder is written and flushed next to
`path`, then swapped in by renames, so `path` holds the old or the new complete model, never a
mix. The folder's mode follows the umask like any folder the user creates; a symlinked `path` is
saved into its target. A save that was killed leaves `.NAME.tmp-HOST-PID-TOKEN`; the next save
removes it once its writer is gone. Loading executes nothing.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import io
import json
import logging
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.numpy
from PIL import Image

from concept._atomic import atomic_folder
from concept._atomic import fsync_dir as _fsync_dir
from concept._atomic import host_tag as _host_tag
from concept._atomic import old_siblings as _old_siblings
from concept._errors import ModelFileError
from concept._version import __version__

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "ModelState", "load_model_state", "save_model_state"]

logger = logging.getLogger(__name__)

FORMAT_VERSION: int = 1
FORMAT_NAME = "concept-model"

_MANIFEST = "concept.json"
_ARRAYS = "arrays.safetensors"
_IMAGES = "images"
_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_DTYPES = frozenset(map(np.dtype, ("?", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8",
                                   "f2", "f4", "f8")))  # what safetensors stores
_PNG_MODES = frozenset({"1", "L", "LA", "P", "RGB", "RGBA", "I", "I;16"})
#: A temporary folder of a save whose writer cannot be checked (another host, an older concept)
#: is removed once nothing in it changed for this long: a live save writes continuously.
STALE_TMP_SECONDS = 600.0
#: ... and one whose writer pid runs on this host, once idle this long (the pid may be reused).
STALE_TMP_LIVE_PID_SECONDS = 86_400.0


@dataclass
class ModelState:
    """Everything a fitted model needs, as plain data.

    settings: JSON-native hyper-parameters and metadata (str keys; str/int/float/bool/None,
        lists and dicts of them).
    arrays: numeric arrays (bool, signed/unsigned ints, float16/32/64), any shape, also 0-size.
    texts: JSON-native extra data (topics, image paths, ...); unicode is kept.
    images: named images stored losslessly as PNG; names match ``[A-Za-z0-9_.-]+``.
    """

    settings: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    texts: dict[str, Any] = field(default_factory=dict)
    images: dict[str, Image.Image] = field(default_factory=dict)


def save_model_state(state: ModelState, path: str | os.PathLike, *,
                     overwrite: bool = True) -> Path:
    """Write `state` to the folder `path` atomically and return the folder's path.

    Raises TypeError/ValueError for state that cannot be stored (naming the offending key) and
    ModelFileError when `path` exists and `overwrite` is False, or `path` is not a model folder.
    """
    path = Path(path)
    if path.is_symlink():  # save into the link's target; renaming would replace the link
        path = path.resolve()
    arrays, images = _check_state(state)
    if path.exists() or path.is_symlink():
        if not overwrite:
            raise ModelFileError(f"{path} already exists; pass overwrite=True or another path.")
        if not (path.is_dir() and ((path / _MANIFEST).is_file() or not any(path.iterdir()))):
            raise ModelFileError(f"{path} exists and is not a concept model folder (no "
                                 f"{_MANIFEST}); refusing to replace it: choose another path.")
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_tmps(path)
    with atomic_folder(path) as tmp:  # replaces only what the checks above allowed
        _write_folder(tmp, state, arrays, images)
    for stale in _old_siblings(path):  # left by an interrupted save, superseded now
        shutil.rmtree(stale, ignore_errors=True)
    logger.debug("saved model state to %s", path)
    return path


def load_model_state(path: str | os.PathLike, *, load_images: bool = True) -> ModelState:
    """Read a model folder written by `save_model_state`, verifying every file's checksum.

    With ``load_images=False`` the images are neither read nor verified and `images` is empty.
    Raises ModelFileError saying what is wrong when the folder is missing, damaged or too new.
    """
    path = Path(path)
    if not path.exists():
        path = _interrupted_save(path)
    if not path.is_dir():
        raise ModelFileError(f"{path} is not a folder; pass the folder that save() wrote.")
    doc = _read_manifest(path)
    checksums = doc["checksums"]
    arrays_file = _verified(path, _ARRAYS, checksums)
    try:
        arrays = safetensors.numpy.load_file(arrays_file)
    except Exception as exc:  # SafetensorError and others
        raise ModelFileError(f"{arrays_file} is damaged ({exc}); save the model again.") from exc
    if set(arrays) != set(doc["arrays"]):
        raise ModelFileError(f"{arrays_file} does not hold the arrays {_MANIFEST} lists; "
                             "save the model again.")
    images = {}
    for file_name in doc["images"] if load_images else ():
        image_file = _verified(path, f"{_IMAGES}/{file_name}", checksums)
        try:
            with Image.open(image_file) as image:
                image.load()
        except Exception as exc:  # PIL raises OSError, ValueError, SyntaxError, ...
            raise ModelFileError(f"{image_file} is not a readable PNG ({exc}); "
                                 "save the model again.") from exc
        images[file_name[: -len(".png")]] = image
    arrays = {name: arrays[name] for name in doc["arrays"]}  # in the order they were saved
    return ModelState(doc["settings"], arrays, doc["texts"], images)


def _check_state(state: ModelState) -> tuple[dict[str, np.ndarray], dict[str, Image.Image]]:
    """Validate `state` before anything touches the disk; return storable arrays and images."""
    _check_json(state.settings, "settings")
    _check_json(state.texts, "texts")
    arrays = {}
    for name, array in state.arrays.items():
        if not isinstance(name, str) or not name or name == "__metadata__":
            raise ValueError(f"arrays[{name!r}]: array names must be non-empty strings "
                             "other than '__metadata__'.")
        if not isinstance(array, np.ndarray) or array.dtype.newbyteorder("=") not in _DTYPES:
            kind = getattr(array, "dtype", type(array).__name__)
            raise TypeError(f"arrays[{name!r}]: {kind} cannot be stored; pass a numpy array "
                            "of bool, int8..int64, uint8..uint64 or float16/32/64.")
        arrays[name] = np.asarray(array, order="C")  # safetensors reads raw memory (C order)
    images, lowered = {}, set()
    for name, image in state.images.items():
        if not isinstance(name, str) or not _valid_name(name):
            raise ValueError(f"images[{name!r}]: image names may only use letters, digits, "
                             "'_', '.' and '-' (no folders); rename the image.")
        if name.lower() in lowered:  # would collide on case-insensitive file systems
            raise ValueError(f"images[{name!r}]: another image has the same name up to case.")
        if not isinstance(image, Image.Image):
            raise TypeError(f"images[{name!r}]: {type(image).__name__} is not a PIL image.")
        lowered.add(name.lower())
        if image.mode not in _PNG_MODES:  # e.g. CMYK, which PNG cannot hold
            image = image.convert("RGBA" if "A" in image.mode.upper() else "RGB")
        images[name] = image
    return arrays, images


def _check_json(value: Any, where: str) -> None:
    """Raise TypeError naming the first value under `where` that JSON would not round-trip."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{where}[{key!r}]: dictionary keys must be str (JSON turns "
                                f"{type(key).__name__} keys into strings); convert the key.")
            _check_json(item, f"{where}[{key!r}]")
    elif isinstance(value, (list, tuple)):  # tuples come back as lists
        for i, item in enumerate(value):
            _check_json(item, f"{where}[{i}]")
    else:
        raise TypeError(f"{where}: {type(value).__name__} is not JSON-serialisable; pass plain "
                        "str/int/float/bool/None/list/dict (e.g. x.item() or array.tolist()).")


def _write_folder(folder: Path, state: ModelState, arrays: dict[str, np.ndarray],
                  images: dict[str, Image.Image]) -> None:
    """Write the whole model into the (new, empty) `folder` and flush it to disk."""
    checksums = {_ARRAYS: _write(folder / _ARRAYS, safetensors.numpy.save(arrays))}
    (folder / _IMAGES).mkdir()
    for name, image in images.items():
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        file = f"{_IMAGES}/{name}.png"
        checksums[file] = _write(folder / file, buffer.getvalue())
    _fsync_dir(folder / _IMAGES)
    doc = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION,
           "concept_version": __version__, "settings": state.settings,
           "texts": state.texts, "arrays": list(arrays),
           "images": [f"{name}.png" for name in images], "checksums": checksums}
    _write(folder / _MANIFEST, json.dumps(doc, ensure_ascii=False, indent=1).encode("utf-8"))
    _fsync_dir(folder)


def _interrupted_save(path: Path) -> Path:
    """Return the previous model a save moved aside before crashing, or raise if there is none."""
    olds = [old for old in _old_siblings(path) if (old / _MANIFEST).is_file()]
    if not olds:
        raise ModelFileError(f"{path} does not exist; pass the folder that save() wrote.")
    old = max(olds, key=lambda p: p.stat().st_mtime)
    logger.warning("%s is missing: a save was interrupted. Loading the previous model from "
                   "%s; save again to repair the folder.", path, old)
    return old


def _pid_alive(pid: int) -> bool | None:
    """Whether process `pid` runs on this host; None where that cannot be asked safely."""
    if os.name != "posix":  # on Windows os.kill(pid, 0) would terminate the process
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError, OverflowError):  # exists, but another user's (or odd)
        return True
    return True


def _last_change(folder: Path) -> float:
    """The latest mtime of `folder` and everything in it (a live save keeps writing)."""
    latest = folder.lstat().st_mtime
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            with contextlib.suppress(OSError):
                latest = max(latest, os.lstat(os.path.join(root, name)).st_mtime)
    return latest


def _remove_stale_tmps(path: Path) -> None:
    """Delete the temporary folders that killed saves of `path` left, never a live save's.

    Written by this host and its pid is gone: stale. Otherwise (another host, a name without
    pid from an older concept, or a pid that runs and may have been reused) only once nothing
    in it changed for STALE_TMP_SECONDS (STALE_TMP_LIVE_PID_SECONDS for a running pid).
    """
    # Ours: HOST-PID-TOKEN; an older concept's: mkdtemp's 8 random characters.
    pattern = re.compile(rf"\.{re.escape(path.name)}\.tmp-(?:([0-9a-f]{{8}})-(\d+)-[0-9a-f]{{8}}|[a-z0-9_]{{8}})")
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.tmp-*"):
        match = pattern.fullmatch(tmp.name)
        if match is None or tmp.is_symlink() or not tmp.is_dir():
            continue
        host, pid = match.group(1), match.group(2)
        try:
            idle = time.time() - _last_change(tmp)
        except OSError:  # removed meanwhile (its save finished or failed)
            continue
        alive = _pid_alive(int(pid)) if host == _host_tag() else None
        if alive is None:  # another host, an older concept's name, or no way to ask
            stale = idle > STALE_TMP_SECONDS
        else:
            stale = not alive or idle > STALE_TMP_LIVE_PID_SECONDS
        if stale:
            logger.info("Removing %s, left by an interrupted save.", tmp)
            shutil.rmtree(tmp, ignore_errors=True)


def _read_manifest(path: Path) -> dict[str, Any]:
    """Parse and validate `concept.json`."""
    manifest = path / _MANIFEST
    if not manifest.is_file():
        raise ModelFileError(f"{path} is not a concept model folder: {_MANIFEST} is missing.")
    try:
        doc = json.loads(manifest.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:  # also integers of over 4,300 digits
        raise ModelFileError(f"{manifest} is not valid JSON ({str(exc)[:200]}); the folder is "
                             "damaged, save the model again.") from exc
    except RecursionError:
        raise ModelFileError(f"{manifest} is nested too deeply to be a model's; the folder is "
                             "damaged, save the model again.") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT_NAME:
        found = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise ModelFileError(f"{manifest} is not a {FORMAT_NAME!r} file (format: {found!r}).")
    version = doc.get("format_version")
    if type(version) is int and version > FORMAT_VERSION:
        raise ModelFileError(f"{path} was written by a newer concept (format {version}; this "
                             f"one reads up to {FORMAT_VERSION}); upgrade concept.")
    if type(version) is not int or version < 1:
        raise ModelFileError(f"{manifest} has an unknown format_version {version!r}.")
    kinds = {"settings": dict, "texts": dict, "arrays": list, "images": list, "checksums": dict}
    for key, kind in kinds.items():
        if not isinstance(doc.get(key), kind):
            raise ModelFileError(f"{manifest}: {key!r} is missing or not a {kind.__name__}; "
                                 "the folder is damaged, save the model again.")
    if not all(isinstance(name, str) for name in doc["arrays"]):
        raise ModelFileError(f"{manifest}: 'arrays' must list array names; it is damaged.")
    for file in doc["images"]:  # never trust a path from the file: no "../"
        if not (isinstance(file, str) and file.endswith(".png") and _valid_name(file[:-4])):
            raise ModelFileError(f"{manifest} lists an invalid image file {file!r}.")
    return doc


def _verified(folder: Path, name: str, checksums: dict[str, Any]) -> Path:
    """Return `folder/name` after checking that it exists and matches its recorded sha256."""
    file = folder / name
    if not file.is_file():
        raise ModelFileError(f"{file} is missing; the model folder is incomplete, save again.")
    digest = hashlib.sha256()
    with open(file, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    if digest.hexdigest() != checksums.get(name):
        raise ModelFileError(f"{file} is damaged (its sha256 checksum does not match "
                             f"{_MANIFEST}); restore it from a backup or save the model again.")
    return file


def _valid_name(name: str) -> bool:
    """True for a plain file name of letters, digits, '_', '.', '-' that is not only dots."""
    return bool(_NAME.fullmatch(name)) and bool(name.strip("."))


def _write(file: Path, data: bytes) -> str:
    """Write `data` to `file`, flush it to disk and return its sha256."""
    with open(file, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return hashlib.sha256(data).hexdigest()
