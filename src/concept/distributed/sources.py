"""Images under a URI: an object store (s3://bucket/prefix, gs://, ...) or any pyarrow
filesystem (file:///data/photos), listed on the driver and read by the actors.

pyarrow's filesystems are what Ray Data itself reads object stores with; a filesystem object
pickles with its options (region, endpoint, credentials given in the URI), so it travels to
every actor once. An actor copies each image of its shard to a local temporary file and
embeds that file, so decoding and resizing are the single-machine path's, byte for byte, and
the vectors equal those of the same files in a local folder. Options go in the URI as pyarrow
reads them, e.g. ``s3://KEY:SECRET@bucket/photos?region=eu-west-1&endpoint_override=host:9000``;
without them the usual environment (AWS_ACCESS_KEY_ID, ~/.aws, instance roles) applies, on
every node.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from concept.images import IMAGE_EXTENSIONS, ImageLoadError

_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_uri(value: Any) -> bool:
    """Whether `value` is a URI string such as s3://bucket/prefix (not a local path)."""
    return isinstance(value, str) and bool(_URI.match(value))


@dataclass
class RemoteImages:
    """The image files under a URI, sorted: their URIs (without the URI's options), a key per
    file (size and modification time, for the shard names) and the filesystem to read them."""

    uri: str
    filesystem: Any
    paths: list[str]
    keys: list[str]


def _location(uri: str) -> tuple[Any, str]:
    import pyarrow.fs as pafs

    try:
        return pafs.FileSystem.from_uri(uri)
    except (ValueError, OSError) as exc:  # unknown scheme, malformed options, no such bucket
        raise ImageLoadError(f"Cannot open {shown(uri)}: {exc}") from exc


def list_images(uri: str) -> RemoteImages:
    """The image files under `uri` (searched recursively; hidden files and folders skipped,
    as `list_image_files` does), or an ImageLoadError saying why there are none."""
    import pyarrow.fs as pafs

    fs, root = _location(uri)
    scheme = uri.split("://", 1)[0].lower()
    try:
        infos = fs.get_file_info(pafs.FileSelector(root, recursive=True))
    except (OSError, FileNotFoundError) as exc:
        raise ImageLoadError(f"Cannot list {shown(uri)}: {exc}") from exc
    found = []
    for info in infos:
        if info.type != pafs.FileType.File:
            continue
        rel = PurePosixPath(info.path[len(root.rstrip("/")) + 1:] if info.path.startswith(root) else info.path)
        if any(part.startswith(".") for part in rel.parts) or rel.suffix.lower() not in IMAGE_EXTENSIONS:
            continue
        mtime = info.mtime_ns if info.mtime_ns is not None else 0
        found.append((f"{scheme}://{info.path}", f"{info.size}\0{mtime}"))
    found.sort()
    return RemoteImages(uri, fs, [p for p, _ in found], [f"{p}\0{k}" for p, k in found])


def shown(uri: str) -> str:
    """`uri` as it may be printed or logged: without credentials (user:secret@) or options."""
    scheme, sep, rest = str(uri).partition("://")
    if not sep:
        return str(uri)
    rest = rest.split("?", 1)[0]
    host, slash, path = rest.partition("/")
    return f"{scheme}://{host.rsplit('@', 1)[-1]}{slash}{path}"


def fs_path(uri: str) -> str:
    """The path a pyarrow filesystem takes for one of `RemoteImages.paths`."""
    return uri.split("://", 1)[1]


class LocalCopies:
    """Local temporary copies of remote images, for the single-machine loader; the reason
    for each one that could not be read (None when copied). Use as a context manager."""

    def __init__(self, filesystem: Any, uris: list[str]) -> None:
        self.filesystem, self.uris = filesystem, uris

    def __enter__(self) -> tuple[list[str], list[str | None]]:
        self._dir = tempfile.TemporaryDirectory(prefix="concept-fetch-")
        paths, errors = [], []
        for i, uri in enumerate(self.uris):
            local = os.path.join(self._dir.name, f"{i:06d}{PurePosixPath(uri).suffix}")
            paths.append(local)
            try:
                with self.filesystem.open_input_stream(fs_path(uri)) as src, open(local, "wb") as dst:
                    while chunk := src.read(1 << 20):
                        dst.write(chunk)
                errors.append(None)
            except (OSError, FileNotFoundError) as exc:
                errors.append(f"could not read it from the store: {exc}")
        return paths, errors

    def __exit__(self, *exc: object) -> None:
        self._dir.cleanup()
