"""The explorer without a browser: the report's HTML and data, the local server's endpoints and
its refusals (path traversal, oversized and broken uploads, foreign Host headers), the notebook
gallery, and the `explore` / `serve` commands.

Models are fitted on solid-colour PNG files with `ColorEmbedder`, so "red" really finds the red
images and an uploaded red image really belongs to the red concept.
"""

from __future__ import annotations

import http.client
import io
import json
import re
import socket
import struct
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from conftest import ColorEmbedder, blobs, serving
from PIL import Image

from concept import ConceptModel
from concept.cli import main
from concept.explorer import make_server, repr_html, write_report
from concept.explorer.page import render_page

COLORS = {"red": (220, 20, 20), "green": (20, 200, 40), "blue": (30, 40, 230)}
WORDS = ["red", "green", "blue", "apple", "grass", "sky", "ocean", "fire"]
# The only absolute URLs in the page: two error-message strings inside the vendored library.
LIBRARY_MESSAGE_URLS = {"http://get.webgl.org", "https://www.npmjs.com/package/glsl-read-float"}
# and the SVG namespace the time histogram's bars are made in (a name, never fetched)
SVG_NAMESPACE = "http://www.w3.org/2000/svg"
UPLOAD_LIMIT = 100_000


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory) -> Path:
    """3 colours x 20 PNGs, each a slightly different shade (identical images would not cluster)."""
    root = tmp_path_factory.mktemp("colours")
    rng = np.random.default_rng(0)
    for name, rgb in COLORS.items():
        for i in range(20):
            shade = tuple(int(v) for v in np.clip(np.add(rgb, rng.integers(-25, 26, 3)), 0, 255))
            Image.new("RGB", (30 + 2 * i, 50 - i), shade).save(root / f"{name}_{i:02d}.png")
    return root


@pytest.fixture(scope="module")
def fitted(image_dir, tmp_path_factory):
    """A model fitted on the colour files, with its 2-D map, saved to a folder."""
    paths = sorted(str(p) for p in image_dir.glob("*.png"))
    model = ConceptModel(min_concept_size=5, embedding_model=ColorEmbedder(), n_words=3,
                         random_state=0, verbose=False).fit(paths, docs=WORDS)
    model.map_2d()
    folder = tmp_path_factory.mktemp("model") / "colours.model"
    model.save(folder)
    assert model.n_concepts_ >= 2
    return model, folder


def concept_of(model, colour: str) -> int:
    """The concept most of `colour`'s files belong to."""
    labels = [lab for src, lab in zip(model.image_sources_, model.labels_) if Path(src).name.startswith(colour)]
    return int(np.bincount([lab for lab in labels if lab >= 0]).argmax())


def page_json(html: str) -> dict:
    match = re.search(r'<script type="application/json" id="concept-data">(.*?)</script>', html, re.DOTALL)
    assert match, "the page holds no data block"
    return json.loads(match.group(1))


# ---------------------------------------------------------------------------- the report
@pytest.fixture(scope="module")
def report(fitted, tmp_path_factory):
    model, _ = fitted
    path = write_report(model, tmp_path_factory.mktemp("report") / "report.html", verbose=False)
    return path, path.read_text(encoding="utf-8")


def test_report_has_one_card_per_concept_and_every_point(fitted, report):
    model, _ = fitted
    _, html = report
    data = page_json(html)
    assert data["mode"] == "report"
    assert [c["id"] for c in data["concepts"]] == list(range(model.n_concepts_))
    assert [c["size"] for c in data["concepts"]] == np.bincount(model.labels_[model.labels_ >= 0]).tolist()
    assert [c["words"] for c in data["concepts"]] == [model.topics[c] for c in range(model.n_concepts_)]
    points = data["points"]
    n = len(model.labels_)
    assert len(points["x"]) == len(points["y"]) == len(points["probability"]) == n
    assert points["concept"] == model.labels_.tolist()
    assert max(map(abs, points["x"] + points["y"])) <= 1.0  # the map library wants [-1, 1]
    assert data["names"] == [Path(s).name for s in model.image_sources_]
    assert data["outliers"]["size"] == int((model.labels_ < 0).sum())


def test_report_files_beside_the_html_hold_thumbnails_and_collages(fitted, report):
    model, _ = fitted
    path, html = report
    data = page_json(html)
    files = path.parent / "report_files"
    assert data["thumbs"]["sheets"] == ["report_files/thumbs/sheet_000.jpg"]
    with Image.open(files / "thumbs" / "sheet_000.jpg") as sheet:
        tile, per_row = data["thumbs"]["tile"], data["thumbs"]["per_row"]
        assert sheet.size == (tile * per_row, tile * -(-len(model.labels_) // per_row))
        # Thumbnail 0 is the first fitted file, whole and in its colour.
        first = Path(model.image_sources_[0]).name.split("_")[0]
        r, g, b = sheet.getpixel((tile // 2, tile // 2))
        assert np.abs(np.subtract((r, g, b), COLORS[first])).max() < 40
    for c in range(model.n_concepts_):
        assert data["concepts"][c]["collage"] == f"report_files/collages/concept_{c}.jpg"
        assert (files / "collages" / f"concept_{c}.jpg").is_file()


def test_report_loads_nothing_from_the_network(report):
    _, html = report
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.IGNORECASE)
    assert not re.search(r"""url\(\s*["']?\s*(https?:)?//""", html, re.IGNORECASE)
    assert not re.search(r"@import|<script[^>]*\bsrc=", html, re.IGNORECASE)
    assert not re.search(r"cdn|unpkg|jsdelivr|googleapis", html, re.IGNORECASE)
    assert set(re.findall(r"https?://[^\s\"'<>)`]+", html)) <= LIBRARY_MESSAGE_URLS | {SVG_NAMESPACE}


def test_report_rewrites_its_folder_and_refuses_non_html(fitted, tmp_path):
    model, _ = fitted
    stale = tmp_path / "r_files" / "thumbs" / "sheet_999.jpg"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old")
    write_report(model, tmp_path / "r.html", verbose=False)
    assert not stale.exists() and (tmp_path / "r_files" / "thumbs" / "sheet_000.jpg").is_file()
    with pytest.raises(Exception, match="html"):
        write_report(model, tmp_path / "r.txt", verbose=False)


def test_report_without_image_files_draws_points_and_takes_thumbnails_from_images(tmp_path):
    x, _ = blobs(n_per=20, centers=3)
    model = ConceptModel(min_concept_size=5, embedding_model=None, random_state=0, verbose=False)
    model.fit(image_embeddings=x)
    data = page_json(write_report(model, tmp_path / "plain.html", verbose=False).read_text())
    assert data["thumbs"] is None and data["names"] is None
    assert len(data["points"]["x"]) == len(x) and len(data["concepts"]) == model.n_concepts_
    arrays = [np.full((28, 28), 40 * (i % 6), dtype=np.uint8) for i in range(len(x))]
    data = page_json(write_report(model, tmp_path / "arrays.html", images=arrays, verbose=False).read_text())
    assert data["thumbs"]["sheets"] == ["arrays_files/thumbs/sheet_000.jpg"]
    with pytest.raises(Exception, match="fitted images"):
        write_report(model, tmp_path / "bad.html", images=arrays[:3], verbose=False)


def test_page_text_from_the_model_cannot_break_out_of_its_script():
    evil = "</script><script>alert(1)</script><!--"
    html = render_page({"title": evil, "mode": "report", "n_images": 0,
                        "points": {"x": [], "y": [], "concept": [], "probability": []}, "names": None,
                        "concepts": [{"id": 0, "size": 0, "words": [evil], "color": "#000", "collage": None}],
                        "outliers": {"size": 0, "color": "#ccc"}, "thumbs": None,
                        "max_upload_bytes": None, "model_files": None})
    assert "<script>alert(1)" not in html
    assert html.count("</script>") == 3  # data, library, app
    assert page_json(html)["concepts"][0]["words"] == [evil]


# ---------------------------------------------------------------------------- the server
@pytest.fixture(scope="module")
def server(fitted):
    model_dir = fitted[1]
    model = ConceptModel.load(model_dir, embedding_model=ColorEmbedder())
    with serving(make_server(model_dir, port=0, model=model, max_upload_bytes=UPLOAD_LIMIT,
                             prepare_thumbnails=False)) as srv:
        yield srv


def request(server, path: str, body: bytes | None = None, headers: dict | None = None,
            method: str | None = None) -> tuple[int, bytes, dict]:
    """Send `path` byte for byte (no client-side normalisation of '..' or %-escapes)."""
    host, port = server.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=30)
    try:
        conn.request(method or ("POST" if body is not None else "GET"), path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read(), dict(response.getheaders())
    finally:
        conn.close()


def api(server, path: str, body: bytes | None = None, content_type: str = "image/png") -> tuple[int, dict]:
    req = urllib.request.Request(server.url.rstrip("/") + path, data=body,
                                 headers={"Content-Type": content_type} if body is not None else {})
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def png(rgb, size=(40, 32)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, rgb).save(buffer, format="PNG")
    return buffer.getvalue()


def test_server_binds_loopback_and_serves_the_page(server, fitted):
    assert server.server_address[0] == "127.0.0.1" and server.loopback
    status, body, headers = request(server, "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "connect-src 'self'" in headers["Content-Security-Policy"]
    data = page_json(body.decode("utf-8"))
    assert data["mode"] == "served" and len(data["concepts"]) == fitted[0].n_concepts_
    assert data["max_upload_bytes"] == UPLOAD_LIMIT


def test_text_search_runs_the_model(server, fitted):
    model, _ = fitted
    status, result = api(server, "/api/search?q=red&top_n=2&images=5")
    assert status == 200
    red = concept_of(model, "red")
    assert [r["concept"] for r in result["concepts"]] == [c for c, _ in model.find_concepts("red", top_n=2)]
    assert result["concepts"][0]["concept"] == red and result["concepts"][0]["words"] == model.topics[red]
    assert len(result["images"]) == 5
    assert all(Path(model.image_sources_[im["index"]]).name.startswith("red") for im in result["images"])
    sims = [im["similarity"] for im in result["images"]]
    assert sims == sorted(sims, reverse=True)


def test_text_search_refuses_bad_queries(server):
    assert api(server, "/api/search?q=")[0] == 400
    assert api(server, "/api/search?q=" + "x" * 300)[0] == 400


def test_text_search_is_text_whatever_it_spells(server, fitted, tmp_path):
    """Issue 11 item 1: a query naming a server file is searched as text, so the answer does
    not tell which files exist."""
    model, _ = fitted
    file = tmp_path / "query.png"
    file.write_bytes(png((220, 20, 20)))
    answers = {}
    for query in (str(file), str(tmp_path / "missing.png"), "/etc/passwd", "/no/such/file"):
        status, answers[query] = api(server, "/api/search?q=" + urllib.parse.quote(query) + "&images=3")
        assert status == 200, (query, answers[query])
        expected, _ = model.search(query, top_n=5, kind="text")
        assert [(r["concept"], r["similarity"]) for r in answers[query]["concepts"]] == \
            [(c, round(sim, 4)) for c, sim in expected]


def test_uploaded_image_gets_its_concept_raw_or_multipart(server, fitted):
    model, _ = fitted
    status, result = api(server, "/api/search-image?images=3", png(COLORS["red"]))
    assert status == 200
    assert result["concept"] == concept_of(model, "red") == int(model.transform([Image.open(io.BytesIO(png(COLORS["red"])))])[0])
    assert 0 < result["probability"] <= 1 and result["words"] == model.topics[result["concept"]]
    assert len(result["images"]) == 3 and len(result["concepts"]) == model.n_concepts_
    boundary = "----conceptTestBoundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"b.png\"\r\n"
            "Content-Type: image/png\r\n\r\n").encode() + png(COLORS["blue"]) + f"\r\n--{boundary}--\r\n".encode()
    status, result = api(server, "/api/search-image", body, f"multipart/form-data; boundary={boundary}")
    assert status == 200 and result["concept"] == concept_of(model, "blue")


def test_oversized_upload_is_refused_with_413(server):
    status, result = api(server, "/api/search-image", b"\0" * (UPLOAD_LIMIT + 1))
    assert status == 413
    assert "limit" in result["error"] and "smaller" in result["error"]
    # The server still answers afterwards.
    assert api(server, "/api/search?q=red")[0] == 200


def test_broken_uploads_are_refused_with_400(server):
    status, result = api(server, "/api/search-image", b"this is not an image")
    assert status == 400 and "not an image" in result["error"]
    truncated = png(COLORS["green"], (200, 200))[:200]
    status, result = api(server, "/api/search-image", truncated)
    assert status == 400 and result["error"]
    status, result = api(server, "/api/search-image", b"")
    assert status == 400 and "empty" in result["error"]


def test_thumbnails_and_collages_are_generated(server, fitted):
    status, body, headers = request(server, "/assets/thumbs/sheet_000.jpg")
    assert status == 200 and headers["Content-Type"] == "image/jpeg"
    assert Image.open(io.BytesIO(body)).width == 64 * 16
    assert request(server, "/assets/collages/concept_0.jpg")[0] == 200
    assert request(server, "/assets/thumbs/sheet_001.jpg")[0] == 404
    assert request(server, f"/assets/collages/concept_{fitted[0].n_concepts_}.jpg")[0] == 404


def test_model_files_are_served_and_nothing_outside_the_model_folder(server, fitted, tmp_path):
    model_dir = fitted[1]
    status, body, _ = request(server, "/model/concept.json")
    assert status == 200 and json.loads(body)["format"] == "concept-model"
    assert request(server, "/model/images/concept_0.png")[0] == 200
    secret = model_dir.parent / "secret.txt"
    secret.write_text("TOP-SECRET")
    (model_dir / "leak.txt").symlink_to(secret)
    (model_dir / "leak_dir").symlink_to(model_dir.parent, target_is_directory=True)
    attacks = [
        "/model/../secret.txt", "/model/images/../../secret.txt", "/model/%2e%2e/secret.txt",
        "/model/%2E%2E%2Fsecret.txt", "/model/..%2fsecret.txt", "/model/..%5csecret.txt",
        f"/model/{secret}", f"/model/%2F{str(secret).lstrip('/')}", "/model//etc/passwd",
        "/model/../../../../../../etc/passwd", "/model/%252e%252e/secret.txt",
        "/model/leak.txt", "/model/leak_dir/secret.txt", "/model/secret.txt%00.json",
        "/../secret.txt", "/%2e%2e/secret.txt", "http://127.0.0.1/model/../secret.txt",
    ]
    for path in attacks:
        status, body, _ = request(server, path)
        assert status in (403, 404), (path, status)
        assert b"TOP-SECRET" not in body and b"root:" not in body, path
        assert "error" in json.loads(body), path


def test_requests_for_other_host_names_are_refused(server):
    """A page on another site cannot reach the server through DNS rebinding."""
    status, body, _ = request(server, "/api/info", headers={"Host": "attacker.example:80"})
    assert status == 403 and "localhost" in json.loads(body)["error"]
    assert request(server, "/api/info", headers={"Host": "localhost"})[0] == 200


def test_other_sites_pages_cannot_search_or_upload(server):
    """Issue 11 item 3: a page on another site can send these requests (a multipart POST needs
    no CORS preflight), so the server checks where they come from."""
    here = server.url.rstrip("/")
    foreign = [{"Origin": "http://evil.example"}, {"Origin": "null"}, {"Origin": "http://127.0.0.1:1"},
               {"Referer": "http://evil.example/page.html"}, {"Sec-Fetch-Site": "cross-site"},
               {"Sec-Fetch-Site": "same-site", "Origin": here}]
    for headers in foreign:
        status, body, _ = request(server, "/api/search?q=red", headers=headers)
        assert status == 403 and "another site" in json.loads(body)["error"], headers
        status, body, _ = request(server, "/api/search-image", png(COLORS["red"]),
                                  {**headers, "Content-Type": "image/png"})
        assert status == 403, headers
    own = {"Origin": here, "Sec-Fetch-Site": "same-origin"}
    assert request(server, "/api/search?q=red", headers={"Sec-Fetch-Site": "same-origin"})[0] == 200
    assert request(server, "/api/search-image", png(COLORS["red"]), {**own, "Content-Type": "image/png"})[0] == 200
    assert request(server, "/api/search?q=red", headers={"Referer": here + "/"})[0] == 200
    assert request(server, "/", headers={"Sec-Fetch-Site": "cross-site"})[0] == 200  # a link to the page


def test_uploads_are_decoded_small_and_refused_over_the_pixel_cap(server, monkeypatch):
    """Issue 11 item 3: a small file of many pixels is refused before decoding; a large JPEG
    decodes at a reduced scale (draft mode), so it is accepted."""
    from concept.explorer import server as server_module

    monkeypatch.setattr(server.app, "max_upload_bytes", 10 * 2**20)
    buffer = io.BytesIO()
    Image.new("L", (8000, 6000), 128).save(buffer, format="PNG")  # 48 Mpx in ~50 KB
    assert len(buffer.getvalue()) < 200_000
    status, result = api(server, "/api/search-image", buffer.getvalue())
    assert status == 413 and "Mpx" in result["error"]
    buffer = io.BytesIO()
    Image.new("RGB", (9000, 6000), COLORS["red"]).save(buffer, format="JPEG", quality=50)  # 54 Mpx
    decoded = []
    load_image = server_module.load_image
    monkeypatch.setattr(server_module, "load_image", lambda im, **kw: decoded.append(im.size) or load_image(im, **kw))
    status, result = api(server, "/api/search-image", buffer.getvalue(), "image/jpeg")
    assert status == 200, result
    assert decoded == [(1125, 750)]  # decoded at 1/8 scale, still over twice the model's 224 px


def test_image_searches_beyond_the_bound_get_503(server, monkeypatch):
    """Issue 11 item 3: at most MAX_PENDING_UPLOADS image searches decode or wait at once."""
    import threading

    from concept.explorer.server import MAX_PENDING_UPLOADS

    model = server.app.model
    release, entered = threading.Event(), threading.Event()
    transform = model.transform

    def slow_transform(*args, **kwargs):
        entered.set()
        release.wait(20)
        return transform(*args, **kwargs)

    monkeypatch.setattr(model, "transform", slow_transform)
    statuses: list[int] = []
    threads = [threading.Thread(target=lambda: statuses.append(api(server, "/api/search-image", png(COLORS["red"]))[0]))
               for _ in range(MAX_PENDING_UPLOADS)]
    for t in threads:
        t.start()
    assert entered.wait(20)
    deadline = time.monotonic() + 20
    while server.app._upload_slots._value and time.monotonic() < deadline:  # the others are in
        time.sleep(0.02)
    status, body, headers = request(server, "/api/search-image", png(COLORS["red"]), {"Content-Type": "image/png"})
    assert status == 503 and "busy" in json.loads(body)["error"] and headers["Retry-After"] == "1"
    release.set()
    for t in threads:
        t.join(30)
    assert statuses == [200] * MAX_PENDING_UPLOADS
    assert api(server, "/api/search-image", png(COLORS["red"]))[0] == 200


def raw_connection(server) -> socket.socket:
    return socket.create_connection(server.server_address[:2], timeout=10)


def read_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_silent_connections_are_closed_after_the_timeout(server, monkeypatch):
    """Issue 11 item 4: a client that never finishes its request does not hold a thread."""
    monkeypatch.setattr(server, "request_timeout", 0.5)
    with raw_connection(server) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the blank line
        start = time.monotonic()
        assert sock.recv(1024) == b""  # closed by the server (the socket's own timeout is 10 s)
        assert time.monotonic() - start < 5


def test_a_get_body_is_never_read_as_the_next_request(server):
    """Issue 11 item 4: a body sent with GET is consumed (or refused), never parsed as a second
    request (a request-smuggling primitive behind a proxy)."""
    hidden = b"GET /api/search?q=hidden HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    with raw_connection(server) as sock:
        sock.sendall(b"GET /api/info HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n" % len(hidden)
                     + hidden + b"GET /api/info HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        answers = read_all(sock)
    assert answers.count(b"HTTP/1.1 200") == 2 and b"hidden" not in answers
    for head in (b"Content-Length: 999999999", b"Content-Length: x", b"Transfer-Encoding: chunked"):
        with raw_connection(server) as sock:
            sock.sendall(b"HEAD /api/info HTTP/1.1\r\nHost: 127.0.0.1\r\n" + head + b"\r\n\r\n" + hidden)
            answers = read_all(sock)  # the server closes the connection
        assert answers.startswith(b"HTTP/1.1 400") and answers.count(b"HTTP/1.1") == 1, head


def test_the_server_header_does_not_name_the_python_version(server):
    """Issue 11 item 4."""
    status, _, headers = request(server, "/api/info")
    assert status == 200 and headers["Server"] == "concept"


def test_clients_that_leave_print_no_traceback(server, capfd):
    """Issue 11 item 4: clients that reset their connection (between requests, during a request,
    while a file is sent, after an oversized upload's headers) are routine: no traceback."""
    def reset(sock: socket.socket) -> None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()

    requests = [b"GET /api/info HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",  # answered, then reset while waiting
                b"GET /api/info HTTP/1.1\r\nHost: 127.0.0.1\r\n",  # reset in the middle of the headers
                b"GET /model/arrays.safetensors HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
                b"POST /api/search-image HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 999999999\r\n\r\n"]
    capfd.readouterr()
    for data in requests:
        sock = raw_connection(server)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
        sock.sendall(data)
        time.sleep(0.3)
        reset(sock)
    time.sleep(0.5)
    assert request(server, "/api/info")[0] == 200
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Exception occurred" not in err, err


def test_info_endpoint(server, fitted):
    status, info = api(server, "/api/info")
    assert status == 200 and info["n_concepts"] == fitted[0].n_concepts_
    assert info["n_images"] == len(fitted[0].labels_)


# ---------------------------------------------------------------------------- notebooks
def test_repr_html_is_a_gallery_of_the_largest_concepts(fitted):
    model, _ = fitted
    html = model._repr_html_()
    assert html == repr_html(model)
    assert html.count("<img src='data:image/png;base64,") == min(8, model.n_concepts_)
    sizes = np.bincount(model.labels_[model.labels_ >= 0])
    first = int(sizes.argmax())
    assert f"<b>Concept {first}</b> · {sizes[first]:,} images" in html
    assert ", ".join(model.topics[first]) in html


def test_repr_html_of_unfitted_and_collage_free_models():
    assert "not fitted" in ConceptModel()._repr_html_()
    x, _ = blobs(n_per=20, centers=3)
    model = ConceptModel(min_concept_size=5, embedding_model=None, random_state=0, verbose=False)
    model.fit(image_embeddings=x)
    html = model._repr_html_()
    assert "<img" not in html and "no collage" in html
    model.topics_ = {c: [("<b>bold</b>", 1.0)] for c in model.topics_}
    assert "&lt;b&gt;bold&lt;/b&gt;" in model._repr_html_()


# ---------------------------------------------------------------------------- the commands
def test_explore_command_writes_the_report(fitted, tmp_path, capsys):
    out = tmp_path / "explore.html"
    assert main(["explore", str(fitted[1]), "--out", str(out), "--quiet"]) == 0
    assert "explore_files" in capsys.readouterr().out
    assert len(page_json(out.read_text())["concepts"]) == fitted[0].n_concepts_
    assert main(["explore", str(fitted[1]), "--out", str(tmp_path / "x.txt"), "--quiet"]) == 2
    assert "must be an .html file" in capsys.readouterr().err


def test_explore_command_adds_dates_only_when_asked(fitted, tmp_path, monkeypatch, capsys):
    """Issue 26: --dates FILE (PATH<TAB>DATE) or --exif give the page its time histogram; without
    them no file is opened for its date."""
    import concept.over_time

    model, folder = fitted
    opened = []
    monkeypatch.setattr(concept.over_time, "exif_date", lambda path, mtime=False: opened.append(path) or (None, "missing"))
    assert main(["explore", str(folder), "--out", str(tmp_path / "plain.html"), "--quiet"]) == 0
    assert page_json((tmp_path / "plain.html").read_text())["dates"] is None
    assert not opened

    listed = model.image_sources_[:5]
    (tmp_path / "dates.tsv").write_text("".join(f"{p}\t2021-06-0{k + 1}\n" for k, p in enumerate(listed)), encoding="utf-8")
    assert main(["explore", str(folder), "--out", str(tmp_path / "given.html"), "--dates", str(tmp_path / "dates.tsv"),
                 "--quiet"]) == 0
    dates = page_json((tmp_path / "given.html").read_text())["dates"]
    assert dates["kind"] == "date" and dates["dated"] == 5 and dates["undated"] == len(model.labels_) - 5
    assert dates["values"][:5] == [18779.0 + k for k in range(5)]  # 2021-06-01 is day 18,779
    assert not opened

    assert main(["explore", str(folder), "--out", str(tmp_path / "exif.html"), "--exif", "--quiet"]) == 0
    assert len(opened) == len(model.labels_)  # asked for: every file's header is read
    assert page_json((tmp_path / "exif.html").read_text())["dates"] is None  # PNGs without dates: no histogram
    assert main(["explore", str(folder), "--out", str(tmp_path / "x.html"), "--mtime", "--quiet"]) == 2
    assert "--mtime" in capsys.readouterr().err


def test_serve_command_passes_dates_to_the_page(fitted, tmp_path, monkeypatch, capsys):
    import concept.explorer

    model, folder = fitted
    made = {}

    class Stopped:  # a server that is stopped at once (Ctrl+C)
        loopback, url = True, "http://127.0.0.1:1/"

        def serve_forever(self):
            raise KeyboardInterrupt

        def server_close(self):
            made["closed"] = True

    monkeypatch.setattr(concept.explorer, "make_server", lambda *a, **kw: made.update(kw) or Stopped())
    (tmp_path / "dates.tsv").write_text(f"{model.image_sources_[0]}\t2021-06-01\n", encoding="utf-8")
    assert main(["serve", str(folder), "--port", "0", "--dates", str(tmp_path / "dates.tsv")]) == 0
    assert made["dates"][0] == "2021-06-01" and made["dates"][1:] == [None] * (len(model.labels_) - 1)
    assert made["closed"] and made["mtime"] is False
    assert main(["serve", str(folder), "--port", "0", "--exif", "--mtime"]) == 0
    assert made["dates"] == "exif" and made["mtime"] is True
    assert main(["serve", str(folder), "--port", "0"]) == 0
    assert made["dates"] is None
    capsys.readouterr()


def test_explore_and_serve_compute_the_map_once_and_save_it(fitted, tmp_path, monkeypatch, capsys):
    """Issue 11 item 11: the 2-D map (76 s for the demo) is computed by the first explore or
    serve and saved in the model folder, which keeps its settings; later calls read it."""
    import concept.model
    from concept.persistence import load_model_state

    folder = tmp_path / "nomap.model"
    model = ConceptModel.load(fitted[1], embedding_model=ColorEmbedder())
    model.map_2d_ = None
    model.save(folder)
    before = load_model_state(folder)
    assert "map_2d" not in before.arrays
    calls = []
    layout_2d = concept.model.layout_2d
    monkeypatch.setattr(concept.model, "layout_2d", lambda *a, **kw: calls.append(1) or layout_2d(*a, **kw))
    assert main(["explore", str(folder), "--out", str(tmp_path / "a.html"), "--quiet"]) == 0
    assert len(calls) == 1
    after = load_model_state(folder)
    assert after.settings == before.settings and after.texts == before.texts
    assert set(after.arrays) == set(before.arrays) | {"map_2d"}
    assert all(np.array_equal(after.arrays[k], v) for k, v in before.arrays.items())
    assert set(after.images) == set(before.images)
    assert main(["explore", str(folder), "--out", str(tmp_path / "b.html"), "--quiet"]) == 0
    make_server(folder, port=0, embedding_model=ColorEmbedder(), prepare_thumbnails=False).server_close()
    assert len(calls) == 1  # read from the folder since
    capsys.readouterr()
    assert page_json((tmp_path / "a.html").read_text())["points"] == page_json((tmp_path / "b.html").read_text())["points"]


def test_a_map_that_cannot_be_saved_is_reported_and_the_page_still_written(fitted, tmp_path, monkeypatch, caplog):
    import concept.persistence

    folder = tmp_path / "nomap.model"
    model = ConceptModel.load(fitted[1], embedding_model=ColorEmbedder())
    model.map_2d_ = None
    model.save(folder)

    def read_only(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(folder))

    monkeypatch.setattr(concept.persistence, "save_model_state", read_only)
    with serving(make_server(folder, port=0, embedding_model=ColorEmbedder(), prepare_thumbnails=False)) as srv:
        status, body, _ = request(srv, "/")
    assert status == 200 and len(page_json(body.decode())["points"]["x"]) == len(model.labels_)
    assert "Could not save the 2-D map" in caplog.text and "computed again" in caplog.text


def test_serve_command_refuses_bad_options(fitted, capsys):
    assert main(["serve", str(fitted[1]), "--port", "70000", "--quiet"]) == 2
    assert "--port 70000" in capsys.readouterr().err
    assert main(["serve", str(fitted[1]), "--max-upload-mb", "0", "--quiet"]) == 2


# ---------------------------------------------------------------------------- issue 14: layers, labels, files
def test_page_data_has_every_layer_with_labels_anchors_and_parents(fitted):
    from concept.explorer.data import page_data

    model, _ = fitted
    data = page_data(model, title="t", mode="report")
    assert len(data["layers"]) == len(model.layers_) and data["default_layer"] == model.layer_
    for c, info in enumerate(data["concepts"]):
        assert info["label"] == ", ".join(model.topics[c][:3])
        assert model.labels_[info["anchor"]] == c  # the label sits on one of its own images
    for li, layer in enumerate(data["layers"]):
        if li == model.layer_:
            assert layer["concepts"] is None and layer["labels"] is None  # the cards' data
            continue
        assert layer["labels"] == model.layers_[li].tolist()
        for info in layer["concepts"]:
            assert model.layers_[li][info["anchor"]] == info["id"]
            if li + 1 < len(model.layers_):
                assert info["parent"] in set(model.layers_[li + 1][model.layers_[li] == info["id"]].tolist())
    rel, prefix = data["sources"]["rel"], data["sources"]["prefix"]
    assert [str(Path(prefix) / r) for r in rel] == [str(Path(s).resolve()) for s in model.image_sources_]
    assert data["sources"]["url"].startswith("file://")


def test_custom_labels_name_the_concepts_on_the_page(fitted):
    from concept.explorer.data import page_data

    model, _ = fitted
    for custom in ({0: "  My <b>red</b>\nthings "}, ["My <b>red</b> things"]):
        model.custom_labels_ = custom
        try:
            data = page_data(model, title="t", mode="report")
        finally:
            del model.custom_labels_
        assert data["concepts"][0]["label"] == "My <b>red</b> things"
        assert all(info["label"] == ", ".join(model.topics[info["id"]][:3]) for info in data["concepts"][1:])
        assert "<b>" not in render_page(data).split('id="concept-data">')[1].split("</script>")[0]


def test_a_model_with_a_flat_or_mismatched_hierarchy_still_gets_one_layer(fitted):
    from concept.explorer.data import page_data

    model, _ = fitted

    class Flat:
        labels_ = model.labels_
        n_concepts_ = model.n_concepts_
        topics = model.topics
        probabilities_ = model.probabilities_
        layers_ = [model.labels_[:-1]]  # noqa: RUF012 -- not one label per image: ignored

        def map_2d(self):
            return model.map_2d()

    data = page_data(Flat(), title="t", mode="report")
    assert data["layers"] == [{"concepts": None, "labels": None}] and data["sources"] is None


def test_full_resolution_images_are_served_by_index_only(server, fitted):
    model, _ = fitted
    status, body, headers = request(server, "/api/image/0")
    assert status == 200 and headers["Content-Type"] == "image/png"
    assert body == Path(model.image_sources_[0]).read_bytes()
    assert "sandbox" in headers["Content-Security-Policy"]
    n = len(model.labels_)
    assert request(server, f"/api/image/{n}")[0] == 404
    for bad in ("/api/image/-1", "/api/image/..%2f..%2fetc%2fpasswd", "/api/image/1e3", "/api/image/0x1"):
        assert request(server, bad)[0] == 404, bad
    status, _, _ = request(server, "/api/image/0", headers={"Sec-Fetch-Site": "cross-site"})
    assert status == 403  # another site's page cannot embed the user's images
    status, _, _ = request(server, "/api/image/0", headers={"Origin": "http://evil.example"})
    assert status == 403


def test_a_fitted_image_that_is_gone_is_a_404_not_a_crash(server, fitted, monkeypatch):
    model, _ = fitted
    monkeypatch.setattr(server.app.model, "image_sources_",
                        ["/nonexistent/gone.png", "/etc/passwd"] + list(model.image_sources_[2:]))
    status, body, _ = request(server, "/api/image/0")
    assert status == 404 and b"no longer on disk" in body
    assert request(server, "/api/image/1")[0] == 415  # not an image type: never served


def test_renaming_and_merging_from_the_page_write_back_to_the_model_folder(fitted, tmp_path):
    # a folder of its own (the shared one holds other tests' symlinks), saved as a user's would be
    folder = ConceptModel.load(fitted[1], embedding_model=ColorEmbedder()).save(tmp_path / "edited.model")
    model = ConceptModel.load(folder, embedding_model=ColorEmbedder())
    k = model.n_concepts_
    with serving(make_server(folder, port=0, model=model, prepare_thumbnails=False)) as srv:
        def edit(body, headers=None) -> tuple[int, dict]:
            status, data, _ = request(srv, "/api/edit", json.dumps(body).encode() if not isinstance(body, bytes) else body,
                                      {"Content-Type": "application/json", **(headers or {})})
            return status, json.loads(data)

        # untrusted input: clear 4xx answers, nothing changed
        assert edit({"rename": {"concept": 0, "name": "x"}}, {"Origin": "http://evil.example"})[0] == 403
        for bad in ({"rename": {"concept": k, "name": "x"}}, {"rename": {"concept": "0", "name": "x"}},
                    {"rename": {"concept": 0, "name": "a\x00b"}}, {"rename": {"concept": 0, "name": "x" * 500}},
                    {"merge": [0]}, {"merge": [0, 0]}, {"merge": [0, True]}, {"delete": [0]}, [1, 2], b"{not json"):
            status, body = edit(bad)
            assert status == 400 and body["error"], bad
        assert ConceptModel.load(folder, embedding_model=ColorEmbedder()).custom_labels_ == {}

        status, body = edit({"rename": {"concept": 1, "name": "  my   <b>sky</b> "}})
        assert status == 200 and body["n_concepts"] == k
        saved = ConceptModel.load(folder, embedding_model=ColorEmbedder())
        assert saved.custom_labels_ == {1: "my <b>sky</b>"}
        page = request(srv, "/")[1].decode()
        assert page_json(page)["custom_labels"] == {"1": "my <b>sky</b>"} and "<b>sky</b>" not in page

        before = ConceptModel.load(folder, embedding_model=ColorEmbedder()).labels_
        status, body = edit({"merge": [0, 1]})
        assert status == 200 and body["n_concepts"] == k - 1 and body["mapping"]["1"] == 0
        saved = ConceptModel.load(folder, embedding_model=ColorEmbedder())
        assert saved.n_concepts_ == k - 1
        assert np.array_equal(saved.labels_ == 0, (before == 0) | (before == 1))
        assert api(srv, "/api/info")[1]["n_concepts"] == k - 1


def test_page_data_has_the_duplicates_only_when_the_model_knows_them():
    from concept.duplicates import Duplicates
    from concept.explorer.data import page_data
    from concept.testing import LayeredMapModel

    model = LayeredMapModel(n=300)
    assert page_data(model, title="t", mode="report")["duplicates"] is None  # never looked for: not found here
    model._duplicates = Duplicates([[5, 9]], [[1, 2, 7]], 0.95, None, None, 300)
    dup = page_data(model, title="t", mode="report")["duplicates"]
    assert dup["copies"] == [2, 7, 9]
    assert [dup["group"][i] for i in (1, 2, 7, 5, 9, 0)] == [0, 0, 0, 1, 1, -1]
    model._duplicates = Duplicates([[5, 9]], [], 0.95, None, None, 299)  # of other rows: left out
    assert page_data(model, title="t", mode="report")["duplicates"] is None


def test_page_data_has_the_uniqueness_only_when_the_duplicates_are_known():
    """Issue 27: each image's uniqueness (0-1, 3 decimals, None where unknown) comes with known duplicates only."""
    from concept.duplicates import Duplicates
    from concept.explorer.data import page_data
    from concept.testing import LayeredMapModel

    model = LayeredMapModel(n=300)
    assert page_data(model, title="t", mode="report")["uniqueness"] is None  # never looked for: not found here
    values = np.random.default_rng(0).uniform(0, 1, 300)
    values[7] = np.nan
    model._duplicates = Duplicates([[5, 9]], [[1, 2, 7]], 0.95, values, None, 300)
    data = page_data(model, title="t", mode="report")
    unique = data["uniqueness"]
    assert len(unique) == 300 and unique[7] is None
    known = [u for u in unique if u is not None]
    assert len(known) == 299 and all(isinstance(u, float) and 0 <= u <= 1 for u in known)
    assert np.allclose([unique[i] for i in (0, 1, 299)], np.round(values[[0, 1, 299]], 3), atol=0)
    assert json.loads(json.dumps(data, allow_nan=False))["uniqueness"][7] is None  # valid JSON: no NaN
    model._duplicates = Duplicates([[5, 9]], [[1, 2, 7]], 0.95, None, None, 300)  # found without embeddings
    data = page_data(model, title="t", mode="report")
    assert data["duplicates"] is not None and data["uniqueness"] is None
    model._duplicates = Duplicates([[5, 9]], [], 0.95, values[:299], None, 299)  # of other rows: left out
    assert page_data(model, title="t", mode="report")["uniqueness"] is None
