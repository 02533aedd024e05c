"""Hostile input against the running app: each case gets a clear refusal or a correct result, and the next
request still works.

One server for the module (tiny models, a server folder allowed, a 5-megapixel cap); the cases go through the
HTTP API (``gradio_client`` where it can say the thing, raw HTTP where a client would not), table-driven.
"""

from __future__ import annotations

import http.server
import io
import json
import threading
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from tests.app.server import REPO, AppServer, api_client, run_app

EXAMPLES = REPO / "examples"
SECRET = "grounded-sam-secret-"  # the first bytes of a file outside every allowed folder


@pytest.fixture(scope="module")
def outside(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A file no request may read: outside Gradio's cache, the examples and the batch root."""
    folder = tmp_path_factory.mktemp("outside")
    secret = folder / "secret.jpg"
    secret.write_bytes(SECRET.encode() + (EXAMPLES / "groceries.jpg").read_bytes())
    return secret


@pytest.fixture(scope="module")
def batch_root(tmp_path_factory: pytest.TempPathFactory, outside: Path) -> Path:
    """The server folder the batch tab may read: one photo, and a symlink pointing outside it."""
    root = tmp_path_factory.mktemp("batch-root")
    (root / "photos").mkdir()
    (root / "photos" / "truck.jpg").write_bytes((EXAMPLES / "truck.jpg").read_bytes())
    (root / "photos" / "escape.jpg").symlink_to(outside)
    (root / "photos" / "escape-dir").symlink_to(outside.parent, target_is_directory=True)
    return root


@pytest.fixture(scope="module")
def server(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory, batch_root: Path,
           ) -> Iterator[AppServer]:
    env = {"GROUNDED_SAM_MAX_PIXELS": "5000000", "GROUNDED_SAM_BATCH_ROOTS": str(batch_root)}
    with run_app(tiny_models, tmp_path_factory.mktemp("app-hostile"), env) as running:
        yield running


@pytest.fixture(scope="module")
def client(server: AppServer, tmp_path_factory: pytest.TempPathFactory) -> Client:
    return api_client(server, tmp_path_factory.mktemp("downloads"))


@pytest.fixture(scope="module")
def fetches() -> Iterator[tuple[str, list[str]]]:
    """A web server on this machine that counts requests: a server-side fetch of a URL would show here."""
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.end_headers()
            self.wfile.write((EXAMPLES / "groceries.jpg").read_bytes())

        def log_message(self, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/photo.jpg", seen
    finally:
        httpd.shutdown()


def with_defaults(server: AppServer, api: str, data: list[Any]) -> list[Any]:
    """``data`` followed by the endpoint's defaults for the parameters it leaves out (as a client would send)."""
    with urllib.request.urlopen(urllib.parse.urljoin(server.url, "gradio_api/info"), timeout=30) as response:
        parameters = json.loads(response.read())["named_endpoints"][f"/{api}"]["parameters"]
    return [*data, *(p.get("parameter_default") for p in parameters[len(data):])]


def raw_call(server: AppServer, api: str, data: list[Any]) -> tuple[str, str]:
    """Calls an endpoint with hand-made JSON (what no well-behaved client sends): ``(event, payload)`` of the end.

    The parameters after ``data`` get their defaults, so the call is refused for what ``data`` holds, not for
    missing values.
    """
    data = with_defaults(server, api, data)
    request = urllib.request.Request(
        urllib.parse.urljoin(server.url, f"gradio_api/call/{api}"), data=json.dumps({"data": data}).encode(),
        headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            event_id = json.loads(response.read())["event_id"]
    except urllib.error.HTTPError as exc:
        return f"http {exc.code}", exc.read().decode(errors="replace")
    with urllib.request.urlopen(urllib.parse.urljoin(server.url, f"gradio_api/call/{api}/{event_id}"),
                                timeout=300) as response:
        text = response.read().decode(errors="replace")
    events = [line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("event:")]
    payloads = [line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("data:")]
    return (events[-1] if events else ""), (payloads[-1] if payloads else "")


def refusal(payload: str) -> str:
    """The message of an ``error`` event (empty when Gradio sent a bare error)."""
    return str(json.loads(payload).get("error") or "")


def get(server: AppServer, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(server.url.rstrip("/") + path, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def file_data(path: str, **extra: Any) -> dict[str, Any]:
    return {"path": path, "meta": {"_type": "gradio.FileData"}, **extra}


def still_serving(client: Client, server: AppServer) -> None:
    overlay, record = client.predict(handle_file(str(EXAMPLES / "groceries.jpg")), "bag", api_name="/segment")
    assert Path(overlay).is_file() and record["categories"] == ["bag"]
    assert server.process.poll() is None


# ------------------------------------------------------------------------------- files the server must not read

@pytest.mark.parametrize("which", ["absolute", "traversal", "home", "proc"])
def test_a_file_field_never_reads_a_path_outside_the_uploads(server: AppServer, client: Client, outside: Path,
                                                              which: str) -> None:
    cache = server.tmp / "gradio"
    path = {"absolute": str(outside), "traversal": f"{cache}/../../../../../..{outside}",
            "home": "~/.bashrc", "proc": "/proc/self/environ"}[which]
    for api, data in (("segment", [file_data(path), "truck"]),
                      ("label_batch", [[file_data(path)], "truck"]),
                      ("track", [file_data(path), "truck"])):
        event, payload = raw_call(server, api, data)
        assert event == "error", (api, event, payload[:300])
        assert "not uploaded by a user" in refusal(payload), payload  # Gradio's own words, not a bare "Error"
        assert SECRET not in payload and "HF_HUB_OFFLINE" not in payload
    still_serving(client, server)


@pytest.mark.parametrize("route", [
    "/gradio_api/file={outside}",
    "/gradio_api/file=../../../../../../..{outside}",
    "/gradio_api/file=%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e{outside}",
    "/gradio_api/file={repo}/app.py",
    "/gradio_api/file={repo}/grounded_sam/app/settings.py",
    "/gradio_api/file=/proc/self/environ",
    "/gradio_api/file={tmp}/../app.log",
    "/file={outside}",
])
def test_gradios_file_routes_serve_nothing_outside_the_cache(server: AppServer, outside: Path, route: str) -> None:
    status, body = get(server, route.format(outside=outside, repo=REPO, tmp=server.tmp))
    assert status in (400, 403, 404, 405), (route, status)
    assert SECRET.encode() not in body and b"HF_HUB_OFFLINE" not in body and b"def load_settings" not in body


def test_a_url_in_a_file_field_is_not_fetched_by_the_server(server: AppServer, client: Client,
                                                            fetches: tuple[str, list[str]]) -> None:
    url, seen = fetches
    for data in ([file_data(url, url=url), "bag"], [file_data("photo.jpg", url=url), "bag"], [url, "bag"],
                 [{"url": url, "meta": {"_type": "gradio.FileData"}}, "bag"]):
        event, payload = raw_call(server, "segment", data)
        assert event == "error" and refusal(payload), payload[:300]
    assert seen == [], f"the server fetched {seen}"
    still_serving(client, server)


# ------------------------------------------------------------------------------- odd text

@pytest.mark.parametrize(("case", "categories", "expected"), [
    ("10,000 categories", ", ".join(f"thing {i}" for i in range(10_000)), "at most 200 categories"),
    ("1 MB of text", "x" * (1 << 20), "at most 200 characters"),
    ("only separators", " ,;\n" * 1000, "Expected at least one category"),
    ("control characters", "b\x00ag\x1b[2J, \x07tire", ["b ag", "[2J", "tire"]),
    ("right-to-left", "\u05e9\u05e7\u05d9\u05ea, \u0643\u064a\u0633", ["\u05e9\u05e7\u05d9\u05ea", "\u0643\u064a\u0633"]),
    ("emoji", "\U0001f6cd\ufe0f, \U0001f9d1\u200d\U0001f692", ["\U0001f6cd\ufe0f", "\U0001f9d1\u200d\U0001f692"]),
])
def test_odd_category_text_is_refused_clearly_or_labeled(client: Client, server: AppServer, case: str,
                                                         categories: str, expected: Any) -> None:
    photo = handle_file(str(EXAMPLES / "groceries.jpg"))
    if isinstance(expected, str):
        with pytest.raises(AppError, match=expected) as error:
            client.predict(photo, categories, api_name="/segment")
        assert len(str(error.value)) < 1000
    else:
        _, record = client.predict(photo, categories, api_name="/segment")
        names = record["categories"]
        assert all(any(part in name for name in names) for part in expected), names
        assert all(d["class_name"] in names for d in record["detections"])
    still_serving(client, server)


# ------------------------------------------------------------------------------- odd files

def _image(path: Path, writer: Callable[[Path], None]) -> Path:
    writer(path)
    return path


def _animated_gif(path: Path) -> None:
    frames = [Image.new("RGB", (64, 48), color) for color in ("red", "green", "blue")]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)


def _multipage_tiff(path: Path) -> None:
    pages = [Image.fromarray(np.full((40, 60, 3), value, np.uint8)) for value in (30, 120, 220)]
    pages[0].save(path, save_all=True, append_images=pages[1:])


ODD_FILES: dict[str, tuple[str, Callable[[Path], None], str | tuple[int, int]]] = {
    # name: (file name, how to write it, the error expected or the (width, height) labeled)
    "1x1 pixel": ("dot.png", lambda p: Image.new("RGB", (1, 1), "white").save(p), (1, 1)),
    "30000x20 pixels": ("strip.png", lambda p: Image.new("RGB", (30_000, 20), "gray").save(p), (30_000, 20)),
    "animated GIF": ("animated.gif", _animated_gif, (64, 48)),
    "multi-page TIFF": ("pages.tiff", _multipage_tiff, (60, 40)),
    "0 bytes": ("empty.jpg", lambda p: p.write_bytes(b""), "empty.jpg"),
    "over the pixel cap": ("huge.png", lambda p: Image.new("L", (3000, 2000)).save(p), "over the cap"),
    "text named .jpg": ("notes.jpg", lambda p: p.write_text("not a photo"), "notes.jpg"),
}


@pytest.mark.parametrize("case", list(ODD_FILES))
def test_odd_image_files_are_labeled_or_refused_clearly(client: Client, server: AppServer, tmp_path: Path,
                                                        case: str) -> None:
    name, writer, expected = ODD_FILES[case]
    path = _image(tmp_path / name, writer)
    if isinstance(expected, str):
        with pytest.raises(AppError, match=expected) as error:
            client.predict(handle_file(str(path)), "bag", api_name="/segment")
        assert "Traceback" not in str(error.value) and "error id" not in str(error.value)
    else:
        overlay, record = client.predict(handle_file(str(path)), "bag", api_name="/segment")
        assert (record["image"]["width"], record["image"]["height"]) == expected
        assert Image.open(overlay).size == expected
    still_serving(client, server)


def test_a_zip_of_zips_is_not_unpacked_twice(client: Client, server: AppServer, tmp_path: Path) -> None:
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as archive:
        archive.write(EXAMPLES / "truck.jpg", "truck.jpg")
    outer = tmp_path / "nested.zip"
    with zipfile.ZipFile(outer, "w") as archive:
        archive.writestr("inner.zip", inner.getvalue())
        archive.writestr("deeper/inner2.zip", inner.getvalue())
        archive.write(EXAMPLES / "groceries.jpg", "groceries.jpg")
    results, summary = client.predict([handle_file(str(outer))], "bag", api_name="/label_batch")
    assert summary.splitlines()[0].startswith("Labeled 1 of 1 image")
    assert "inner.zip" in summary  # said, not silently dropped
    with zipfile.ZipFile(results) as archive:
        names = archive.namelist()
    assert "labels/groceries.json" in names and not any("truck" in n for n in names)

    only_zips = tmp_path / "only-zips.zip"
    with zipfile.ZipFile(only_zips, "w") as archive:
        archive.writestr("inner.zip", inner.getvalue())
    with pytest.raises(AppError, match="inner.zip"):
        client.predict([handle_file(str(only_zips))], "bag", api_name="/label_batch")
    still_serving(client, server)


def test_a_symlink_in_the_server_folder_never_reaches_outside_it(client: Client, server: AppServer,
                                                                  batch_root: Path) -> None:
    results, summary = client.predict(None, "truck", server_folder="photos", api_name="/label_batch")
    with zipfile.ZipFile(results) as archive:
        names = archive.namelist()
        contents = b"".join(archive.read(n) for n in names)
    assert "labels/truck.json" in names
    assert not any("escape" in n or "secret" in n for n in names)
    assert SECRET.encode() not in contents
    assert "escape" in summary  # the skipped links are named, with the reason

    with pytest.raises(AppError, match="not a folder inside the allowed roots"):
        client.predict(None, "truck", server_folder="photos/escape-dir", api_name="/label_batch")
    with pytest.raises(AppError, match="not a folder inside the allowed roots"):
        client.predict(None, "truck", server_folder="../../..", api_name="/label_batch")
    still_serving(client, server)


def test_the_log_holds_no_traceback_of_ours_after_every_hostile_case(server: AppServer) -> None:
    """Gradio logs its own refusals of forged requests with a traceback; none may come from this package."""
    assert server.process.poll() is None
    frames = [line for line in server.log_text().splitlines() if line.lstrip().startswith('File "')]
    ours = [line for line in frames if "/grounded_sam/" in line or line.split('"')[1] == str(REPO / "app.py")]
    assert not ours, ours
