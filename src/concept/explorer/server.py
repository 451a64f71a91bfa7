"""`concept serve`: the explorer page backed by a small local HTTP server that runs the model.

Routes
  GET  /                               the page (same as the report, plus model search)
  GET  /api/info                       concepts, sizes, words
  GET  /api/search?q=TEXT              nearest concepts (find_concepts) and nearest images
  POST /api/search-image               an image (raw body or multipart/form-data): its concept
                                       (transform), nearest concepts and nearest images
  GET  /assets/thumbs/sheet_NNN.jpg    generated thumbnail sprite sheets
  GET  /assets/collages/concept_N.jpg  generated collage previews
  GET  /model/PATH                     the model folder's own files, nothing outside it
  GET  /api/image/N                    fitted image N at full resolution (by index only: the
                                       files the model was fitted on, never a path from the URL)
  POST /api/edit                       {"rename": {"concept": ID, "name": TEXT}} or {"merge": [IDs]}:
                                       the model's own set_concept_labels / merge_concepts, then
                                       the folder is saved (atomically) and the page made again

The server binds 127.0.0.1 by default, answers only requests addressed to a loopback name
while bound to loopback (a web page cannot reach it through DNS rebinding), refuses searches
and uploads sent by other sites' pages (Origin / Referer / Sec-Fetch-Site), refuses uploads over
`max_upload_bytes` or `MAX_UPLOAD_PIXELS` with 413 and undecodable images with 400, and answers
503 while `MAX_PENDING_UPLOADS` image searches are under way. Connections idle for
`request_timeout` seconds are closed.
"""

from __future__ import annotations

import io
import ipaddress
import json
import logging
import mimetypes
import re
import shutil
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import numpy as np
from PIL import Image, UnidentifiedImageError

from concept._errors import ConceptError, ImageLoadError
from concept.explorer.data import ensure_saved_map, page_data, page_dates
from concept.explorer.page import render_page
from concept.explorer.thumbs import ThumbnailSheets, collage_jpeg
from concept.images import load_image

__all__ = ["MAX_UPLOAD_BYTES", "ExplorerServer", "make_server", "resolve_inside"]

logger = logging.getLogger(__name__)

MAX_UPLOAD_BYTES = 10 * 1024 * 1024
# Decoded size refused before the pixels are decoded: 40 Mpx is a large photo; a PNG at PIL's own
# limit (179 Mpx) takes gigabytes. JPEGs decode at a reduced scale first (the model needs 224 px).
MAX_UPLOAD_PIXELS = 40_000_000
UPLOAD_DRAFT_SIZE = (448, 448)
MAX_PENDING_UPLOADS = 2  # image searches decoding or waiting for the model; more get 503
MAX_PENDING_SEARCHES = 32  # text searches waiting for the model; more get 503
REQUEST_TIMEOUT_S = 30.0
MAX_QUERY_CHARS = 200  # longer texts are not concept queries
MAX_LABEL_CHARS = 120
MAX_EDIT_BYTES = 64 * 1024
MAX_TOP_N = 50
MAX_IMAGES = 200
# An oversized upload is read and discarded up to this size so that the client, which is still
# sending, receives the 413 instead of a reset connection; beyond it the connection is dropped.
_DRAIN_LIMIT = 64 * 1024 * 1024
_GET_BODY_LIMIT = 64 * 1024  # a GET/HEAD body (meaningless here) is read and dropped up to this
_LOOPBACK_NAMES = {"localhost", "localhost.", "127.0.0.1", "::1"}
_CSP = ("default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; style-src 'unsafe-inline'; "
        "img-src 'self' data: blob:; connect-src 'self'; worker-src blob:; base-uri 'none'; "
        "form-action 'none'; frame-ancestors 'none'")  # regl compiles its shaders with Function()


class HTTPProblem(Exception):
    """An error answered as JSON `{"error": message}` with an HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def resolve_inside(root: Path, relative: str) -> Path:
    """The file `root/relative` after following symlinks, refusing anything outside `root`.

    `root` must already be resolved. Raises HTTPProblem 403 for absolute paths, `..` parts,
    NUL bytes and symlinks that lead out of `root`, 404 for files that do not exist.
    """
    if ("\x00" in relative or relative.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", relative)
            or ".." in re.split(r"[\\/]", relative)):
        raise HTTPProblem(403, "Only files inside the model folder are served.")
    try:
        real = (root / relative).resolve(strict=True)
    except (OSError, RuntimeError):  # missing, or a symlink loop
        raise HTTPProblem(404, f"No file {relative!r} in the model folder.") from None
    if not real.is_relative_to(root):
        raise HTTPProblem(403, "Only files inside the model folder are served.")
    if not real.is_file():
        raise HTTPProblem(404, f"No file {relative!r} in the model folder.")
    return real


def _multipart_file(body: bytes, content_type: str) -> bytes:
    """The first file (or the field named image/file) of a multipart/form-data body."""
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if not match:
        raise HTTPProblem(400, "multipart/form-data upload without a boundary.")
    delimiter = b"--" + match.group(1).encode("latin-1")
    for part in body.split(delimiter)[1:]:
        if part.startswith(b"--"):  # the closing delimiter
            break
        head, sep, content = part.partition(b"\r\n\r\n")
        if not sep:
            continue
        disposition = next((line for line in head.decode("latin-1").split("\r\n")
                            if line.lower().startswith("content-disposition:")), "")
        if "filename=" in disposition or re.search(r'name="?(image|file)"?', disposition):
            return content[:-2] if content.endswith(b"\r\n") else content
    raise HTTPProblem(400, "The multipart upload holds no file: send the image as a form field named 'image'.")


class ExplorerApp:
    """The server's state: the model, the page, thumbnails and the search functions."""

    def __init__(self, model: Any, model_dir: str | Path, *, max_upload_bytes: int = MAX_UPLOAD_BYTES,
                 title: str | None = None, prepare_thumbnails: bool = True, dates: Any = None,
                 mtime: bool = False) -> None:
        self.model = model
        self.dates = page_dates(model, dates, mtime=mtime)  # read once: edits do not change them
        self.root = Path(model_dir).resolve(strict=True)
        self.max_upload_bytes = int(max_upload_bytes)
        self._model_lock = threading.Lock()  # embedding backends are not thread-safe
        self._upload_slots = threading.BoundedSemaphore(MAX_PENDING_UPLOADS)
        self._search_slots = threading.BoundedSemaphore(MAX_PENDING_SEARCHES)
        sources = getattr(model, "image_sources_", None)
        self.sheets = ThumbnailSheets(sources) if sources else None
        self._sheet_bytes: dict[int, bytes] = {}
        self._sheet_locks = [threading.Lock() for _ in range(self.sheets.n_sheets if self.sheets else 0)]
        self.title = title or f"concept explorer: {self.root.name}"
        self._render()
        if self.sheets and prepare_thumbnails:  # warm the cache so that hovering is instant
            threading.Thread(target=self._prepare_sheets, name="concept-thumbnails", daemon=True).start()

    def _render(self) -> None:
        """The page and collages from the model as it is now (after a fit or an edit)."""
        model = self.model
        self.collages = {int(c): collage_jpeg(img) for c, img in getattr(model, "collages_", {}).items()}
        data = page_data(
            model, title=self.title, mode="served",
            sheets=[f"/assets/thumbs/sheet_{k:03d}.jpg" for k in range(self.sheets.n_sheets)] if self.sheets else None,
            tile=self.sheets.tile if self.sheets else 0, per_row=self.sheets.per_row if self.sheets else 0,
            collages={c: f"/assets/collages/concept_{c}.jpg" for c in self.collages},
            max_upload_bytes=self.max_upload_bytes, model_files="/model/", dates=self.dates)
        self.page = render_page(data).encode("utf-8")

    # ------------------------------------------------------------------ edits (serve mode writes back)
    def edit(self, request: Any) -> dict[str, Any]:
        """Rename or merge concepts of `labels_` through the model's own API, save the model
        folder (atomically, as `save` always does) and render the page again.

        `request` is the page's JSON, untrusted: {"rename": {"concept": id, "name": text}} or
        {"merge": [id, id, ...]}. Returns {"mapping": {old: new}, "n_concepts": k}.
        """
        if not isinstance(request, dict) or len(request) != 1 or not {"rename", "merge"} & request.keys():
            raise HTTPProblem(400, 'Send {"rename": {"concept": ID, "name": "..."}} or {"merge": [ID, ID, ...]}.')
        k = int(self.model.n_concepts_)

        def concept_id(value: Any) -> int:
            if type(value) is not int or not 0 <= value < k:
                raise HTTPProblem(400, f"Concept ids are integers 0..{k - 1}, not {str(value)[:40]!r}.")
            return value

        with self._model_lock:
            if "rename" in request:
                what = request["rename"]
                if not isinstance(what, dict) or not isinstance(what.get("name"), str):
                    raise HTTPProblem(400, 'rename needs {"concept": ID, "name": "..."}.')
                name = " ".join(what["name"].split())
                if len(name) > MAX_LABEL_CHARS or any(ord(ch) < 32 for ch in what["name"] if ch not in "\t\n"):
                    raise HTTPProblem(400, f"A name is at most {MAX_LABEL_CHARS} characters, without control characters.")
                concept = concept_id(what.get("concept"))
                self.model.set_concept_labels({concept: name})  # "" gives it back its words
                mapping = {c: c for c in range(k)}
            else:
                ids = request["merge"]
                if not isinstance(ids, list) or not 2 <= len(ids) <= k or len(set(map(str, ids))) != len(ids):
                    raise HTTPProblem(400, "merge needs a list of at least two different concept ids.")
                mapping = self.model.merge_concepts([[concept_id(c) for c in ids]])
            self.model.save(self.root)
            self._render()
        return {"mapping": {str(o): int(n) for o, n in mapping.items()}, "n_concepts": int(self.model.n_concepts_)}

    # ------------------------------------------------------------------ assets
    def sheet(self, k: int) -> bytes:
        if self.sheets is None or not 0 <= k < self.sheets.n_sheets:
            raise HTTPProblem(404, f"No thumbnail sheet {k}.")
        with self._sheet_locks[k]:
            if k not in self._sheet_bytes:
                self._sheet_bytes[k] = self.sheets.sheet(k)
            return self._sheet_bytes[k]

    def _prepare_sheets(self) -> None:
        for k in range(self.sheets.n_sheets):
            try:
                self.sheet(k)
            except Exception:  # a background nicety: the request path reports real errors
                logger.exception("Could not prepare thumbnail sheet %d", k)

    # ------------------------------------------------------------------ search
    def _concepts(self, ranked: list[tuple[int, float]]) -> list[dict[str, Any]]:
        topics = self.model.topics
        sizes = np.bincount(self.model.labels_[self.model.labels_ >= 0], minlength=self.model.n_concepts_)
        return [{"concept": c, "similarity": round(s, 4), "size": int(sizes[c]), "words": topics.get(c, [])}
                for c, s in ranked]

    def _images(self, ranked: list[tuple[int, float]]) -> list[dict[str, Any]]:
        labels = self.model.labels_
        return [{"index": i, "similarity": round(s, 4), "concept": int(labels[i])} for i, s in ranked]

    def search_text(self, query: str, top_n: int = 5, n_images: int = 24) -> dict[str, Any]:
        """Concepts nearest to `query` by `find_concepts`, and the images nearest to it."""
        query = " ".join(query.split())
        if not query:
            raise HTTPProblem(400, "Empty query: pass ?q=some+words.")
        if len(query) > MAX_QUERY_CHARS:
            raise HTTPProblem(400, f"The query has {len(query)} characters; at most {MAX_QUERY_CHARS} are searched.")
        if any(ord(ch) < 32 for ch in query):
            raise HTTPProblem(400, "The query contains control characters.")
        with _slot(self._search_slots, "text searches"), self._model_lock:  # raises if there is no embedder
            # kind="text": a query is text whatever it spells, never a path read on the server
            ranked, images = self.model.search(query, top_n=top_n, n_images=n_images, kind="text")
        return {"query": query, "concepts": self._concepts(ranked), "images": self._images(images)}

    def search_image(self, data: bytes, top_n: int = 5, n_images: int = 24) -> dict[str, Any]:
        """The concept `transform` assigns the image to, its nearest concepts and images."""
        if not data:
            raise HTTPProblem(400, "The upload is empty: send the image file as the request body.")
        model = self.model
        with _slot(self._upload_slots, "image searches"):  # decoded pixels are the memory cost
            image = _decode_upload(data)
            with self._model_lock:
                labels, probs = model.transform([image], return_probabilities=True)
                ranked, images = model.search(image, top_n=top_n, n_images=n_images)
        concept = int(labels[0])
        return {"concept": concept,
                "probability": round(float(probs[0, concept]), 4) if concept >= 0 else 0.0,
                "words": model.topics.get(concept, []) if concept >= 0 else [],
                "concepts": self._concepts(ranked),
                "images": self._images(images)}

    def image_file(self, index: int) -> Path:
        """The file of fitted image `index`, if it is still an image file on disk."""
        sources = getattr(self.model, "image_sources_", None) or []
        if not 0 <= index < len(sources):
            raise HTTPProblem(404, f"No fitted image {index}" + (f" (there are {len(sources)})." if sources
                                                                   else ": the model holds no image files."))
        path = Path(sources[index])
        kind = mimetypes.guess_type(path.name)[0] or ""
        if not kind.startswith("image/"):
            raise HTTPProblem(415, f"Fitted image {index} is not a file type the browser shows as an image.")
        try:
            if not path.is_file():
                raise HTTPProblem(404, f"Fitted image {index} is no longer on disk (moved or deleted since fitting?).")
        except OSError:
            raise HTTPProblem(404, f"Fitted image {index} cannot be read.") from None
        return path

    def info(self) -> dict[str, Any]:
        labels = self.model.labels_
        return {"n_images": len(labels), "n_concepts": int(self.model.n_concepts_),
                "outliers": int((labels < 0).sum()),
                "concepts": self._concepts([(c, 1.0) for c in range(self.model.n_concepts_)]),
                "max_upload_bytes": self.max_upload_bytes}


class _slot:
    """Take one of a semaphore's slots for a `with` block, or answer 503 when none is free."""

    def __init__(self, slots: threading.BoundedSemaphore, what: str) -> None:
        self.slots, self.what = slots, what

    def __enter__(self) -> None:
        if not self.slots.acquire(blocking=False):
            raise HTTPProblem(503, f"The server is busy with other {self.what}; try again in a moment.")

    def __exit__(self, *exc: object) -> None:
        self.slots.release()


def _decode_upload(data: bytes) -> Image.Image:
    """An uploaded file as RGB, refusing more than MAX_UPLOAD_PIXELS before decoding; JPEGs
    decode at the smallest scale still at least UPLOAD_DRAFT_SIZE (PIL's draft mode)."""
    try:
        im = Image.open(io.BytesIO(data))  # reads the header only
        if im.format in ("JPEG", "MPO"):
            im.draft("RGB", UPLOAD_DRAFT_SIZE)
        pixels = im.width * im.height
        if pixels > MAX_UPLOAD_PIXELS:
            raise HTTPProblem(413, f"The image is {im.width}x{im.height} pixels ({pixels / 1e6:.0f} Mpx); at most "
                                   f"{MAX_UPLOAD_PIXELS / 1e6:.0f} Mpx are accepted. Send a smaller image.")
        return load_image(im, max_pixels=MAX_UPLOAD_PIXELS)
    except HTTPProblem:
        raise
    except UnidentifiedImageError:
        raise HTTPProblem(400, "The upload is not an image: send a PNG, JPEG, GIF, WebP, BMP or TIFF file.") from None
    except Image.DecompressionBombError as exc:
        raise HTTPProblem(413, f"The image has too many pixels ({exc}). Send a smaller image.") from None
    except Exception as exc:  # PIL raises many kinds; ImageLoadError names the reason
        reason = str(exc).removeprefix("Could not load image ")
        raise HTTPProblem(400, f"The upload is an image that cannot be read ({reason}).") from exc


def _int_param(params: dict[str, list[str]], name: str, default: int, high: int) -> int:
    try:
        value = int(params.get(name, [default])[0])
    except ValueError:
        raise HTTPProblem(400, f"Parameter {name} must be an integer.") from None
    return min(max(value, 0), high)


class _Handler(BaseHTTPRequestHandler):
    server_version = "concept"
    protocol_version = "HTTP/1.1"
    server: ExplorerServer

    # ------------------------------------------------------------------ plumbing
    def setup(self) -> None:
        self.timeout = self.server.request_timeout  # read by StreamRequestHandler.setup
        super().setup()

    def version_string(self) -> str:
        return self.server_version  # not the Python version (BaseHTTPRequestHandler's default)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s", self.address_string(), format % args)

    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        self._send(status, body, "application/json; charset=utf-8", {"Cache-Control": "no-store", **(headers or {})})

    def _path(self) -> tuple[str, dict[str, list[str]]]:
        target = self.path
        if target.startswith(("http://", "https://")):  # absolute-form request target
            target = urlsplit(target).path or "/"
        raw, _, query = target.partition("?")
        return unquote(raw.partition("#")[0], errors="strict"), parse_qs(query)

    def _host_allowed(self) -> bool:
        if not self.server.loopback:
            return True
        host = (self.headers.get("Host") or "").strip().lower()
        name = host[1:host.find("]")] if host.startswith("[") else host.rsplit(":", 1)[0] if host.count(":") == 1 else host
        try:
            return ipaddress.ip_address(name).is_loopback
        except ValueError:
            return name in _LOOPBACK_NAMES

    def _same_origin(self) -> bool:
        """False for a request a browser sent from another site's page; True for the page's
        own requests and for clients that send none of these headers (curl, scripts)."""
        site = self.headers.get("Sec-Fetch-Site")
        if site is not None and site.strip().lower() not in ("same-origin", "none"):
            return False
        source = self.headers.get("Origin") or self.headers.get("Referer")
        if source is None:
            return True
        there = _origin(source.strip())
        # This server as the browser addressed it, in the scheme of the source (a TLS proxy).
        here = there and _origin(f"{there[0]}://{(self.headers.get('Host') or '').strip()}")
        return there is not None and there == here

    def _require_same_origin(self) -> None:
        if not self._same_origin():
            raise HTTPProblem(403, "Searches and uploads are answered only for this server's own page "
                                   "(the request came from another site).")

    def _drain(self, length: int) -> None:
        remaining = length
        while remaining > 0 and (chunk := self.rfile.read(min(remaining, 1 << 16))):
            remaining -= len(chunk)

    def _consume_body(self) -> None:
        """Read and drop a GET/HEAD body, so that it is never parsed as the next request."""
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            raise HTTPProblem(400, f"A {self.command} request cannot have a chunked body.")
        if self.headers.get("Content-Length") is None:
            return
        try:
            length = int(self.headers["Content-Length"])
        except ValueError:
            length = -1
        if not 0 <= length <= _GET_BODY_LIMIT:
            self.close_connection = True
            raise HTTPProblem(400, f"A {self.command} request with Content-Length "
                                   f"{self.headers['Content-Length']!r} is not accepted.")
        self._drain(length)

    def _dispatch(self, handler, *, has_body: bool = False) -> None:
        try:
            try:
                if not has_body:
                    self._consume_body()
                if not self._host_allowed():
                    raise HTTPProblem(403, "This server answers only requests addressed to localhost / 127.0.0.1.")
                handler()
            except (ConnectionError, TimeoutError):
                raise
            except HTTPProblem as problem:
                headers = {"Retry-After": "1"} if problem.status == 503 else None
                self._json(problem.status, {"error": problem.message}, headers)
            except UnicodeDecodeError:
                self._json(400, {"error": "The URL is not valid UTF-8."})
            except ImageLoadError as exc:
                self._json(400, {"error": str(exc)})
            except ConceptError as exc:
                self._json(500, {"error": str(exc)})
            except Exception as exc:
                logger.exception("Error answering %s %s", self.command, self.path)
                self._json(500, {"error": f"Internal error: {type(exc).__name__}: {exc}"})
        except (ConnectionError, TimeoutError) as exc:  # the client left or stalled: nothing to answer
            logger.debug("%s %s: %s", self.command, self.path, exc)
            self.close_connection = True

    def do_GET(self) -> None:
        self._dispatch(self._get)

    def do_HEAD(self) -> None:
        self._dispatch(self._get)

    def do_POST(self) -> None:
        self.close_connection = True  # an unread body must never be parsed as the next request
        self._dispatch(self._post, has_body=True)

    # ------------------------------------------------------------------ routes
    def _get(self) -> None:
        app = self.server.app
        path, params = self._path()
        if path in ("/", "/index.html"):
            self._send(200, app.page, "text/html; charset=utf-8",
                       {"Content-Security-Policy": _CSP, "Cache-Control": "no-store"})
        elif path == "/api/info":
            self._json(200, app.info())
        elif path == "/api/search":
            self._require_same_origin()
            query = params.get("q", [""])[0]
            self._json(200, app.search_text(query, _int_param(params, "top_n", 5, MAX_TOP_N),
                                             _int_param(params, "images", 24, MAX_IMAGES)))
        elif m := re.fullmatch(r"/assets/thumbs/sheet_(\d{1,6})\.jpg", path):
            self._send(200, app.sheet(int(m.group(1))), "image/jpeg", {"Cache-Control": "max-age=3600"})
        elif m := re.fullmatch(r"/assets/collages/concept_(\d{1,6})\.jpg", path):
            if int(m.group(1)) not in app.collages:
                raise HTTPProblem(404, f"Concept {m.group(1)} has no collage.")
            self._send(200, app.collages[int(m.group(1))], "image/jpeg", {"Cache-Control": "max-age=3600"})
        elif m := re.fullmatch(r"/api/image/(\d{1,9})", path):
            self._require_same_origin()  # other sites' pages cannot embed the user's images
            self._model_file(app.image_file(int(m.group(1))))
        elif path.startswith("/model/"):
            self._model_file(resolve_inside(app.root, path[len("/model/"):]))
        else:
            raise HTTPProblem(404, f"Nothing at {path}.")

    def _model_file(self, file: Path) -> None:
        size = file.stat().st_size
        self.send_response(200)
        self.send_header("Content-Type", mimetypes.guess_type(file.name)[0] or "application/octet-stream")
        self.send_header("Content-Length", str(size))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy", "default-src 'none'; sandbox")
        self.end_headers()
        if self.command != "HEAD":
            with open(file, "rb") as f:
                shutil.copyfileobj(f, self.wfile)

    def _post(self) -> None:
        path, params = self._path()
        if path == "/api/edit":
            self._require_same_origin()  # another site's page must never rename the user's concepts
            self._json(200, self.server.app.edit(self._read_json()))
            return
        if path != "/api/search-image":
            raise HTTPProblem(404, f"Nothing to POST at {path}; upload images to /api/search-image "
                                   "or edits to /api/edit.")
        if not self._same_origin():
            self._read_upload()  # read, so that the browser sees the answer rather than a reset
            self._require_same_origin()
        data = self._read_upload()
        content_type = self.headers.get("Content-Type", "")
        if content_type.lower().startswith("multipart/form-data"):
            data = _multipart_file(data, content_type)
        self._json(200, self.server.app.search_image(data, _int_param(params, "top_n", 5, MAX_TOP_N),
                                                     _int_param(params, "images", 24, MAX_IMAGES)))

    def _read_json(self) -> Any:
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            raise HTTPProblem(411, "The edit needs a Content-Length header.") from None
        if not 0 < length <= MAX_EDIT_BYTES:
            raise HTTPProblem(413 if length > 0 else 400, f"An edit is a JSON body of 1 to {MAX_EDIT_BYTES} bytes.")
        try:
            return json.loads(self.rfile.read(length).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            raise HTTPProblem(400, "The edit is not valid UTF-8 JSON.") from None

    def _read_upload(self) -> bytes:
        limit = self.server.app.max_upload_bytes
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            raise HTTPProblem(411, "Send the image with a Content-Length header (chunked uploads are not accepted).")
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self.close_connection = True
            raise HTTPProblem(411, "The upload needs a Content-Length header.") from None
        if length < 0:
            self.close_connection = True
            raise HTTPProblem(400, "Negative Content-Length.")
        if length > limit:
            self.close_connection = True
            if length <= _DRAIN_LIMIT:
                self._drain(length)
            raise HTTPProblem(413, f"The upload is {length / 2**20:.1f} MB; the limit is {limit / 2**20:.1f} MB. "
                                   "Send a smaller image (or start the server with a larger --max-upload-mb).")
        data = self.rfile.read(length)
        if len(data) < length:
            self.close_connection = True
            raise HTTPProblem(400, f"The upload ended after {len(data)} of {length} bytes.")
        return data


def _origin(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of a URL, or None if it has no host (e.g. Origin: null)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80)


class ExplorerServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer serving one model's explorer; `url` is where it listens.

    `request_timeout`: seconds a connection may stay silent (while sending its request or
    between requests) before it is closed.
    """

    daemon_threads = True
    request_timeout: float = REQUEST_TIMEOUT_S

    def __init__(self, app: ExplorerApp, host: str = "127.0.0.1", port: int = 8000) -> None:
        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__((host, port), _Handler)
        self.app = app
        try:
            self.loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            self.loopback = host.lower() in _LOOPBACK_NAMES

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that leave or stall are routine (logged at debug level); anything else is
        logged with its traceback instead of printed to stderr."""
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            logger.debug("Connection from %s ended: %s", client_address, exc)
        else:
            logger.exception("Error serving a request from %s", client_address)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{f'[{host}]' if ':' in host else host}:{port}/"


def make_server(model_dir: str | Path, *, host: str = "127.0.0.1", port: int = 8000,
                embedding_model: Any = None, model: Any = None, max_upload_bytes: int = MAX_UPLOAD_BYTES,
                title: str | None = None, prepare_thumbnails: bool = True, dates: Any = None,
                mtime: bool = False) -> ExplorerServer:
    """A server for the model saved in `model_dir` (call `serve_forever()`; port 0 picks a free one).

    `dates` / `mtime`: the page's time histogram, as `write_report` takes them (None: none).
    `model` is used instead of loading the folder again (it must be the model saved there);
    `embedding_model` is passed to `ConceptModel.load` when the saved one cannot be rebuilt.
    """
    if model is None:
        from concept.model import ConceptModel

        model = ConceptModel.load(model_dir, embedding_model=embedding_model)
    if not hasattr(model, "labels_"):
        raise ConceptError("The model is not fitted: serve a folder written by save() or `concept fit`.")
    ensure_saved_map(model, model_dir)  # computed once, then read from the folder
    app = ExplorerApp(model, model_dir, max_upload_bytes=max_upload_bytes, title=title,
                      prepare_thumbnails=prepare_thumbnails, dates=dates, mtime=mtime)
    return ExplorerServer(app, host, port)
