"""The app's named API, through ``gradio_client``, against ``python app.py`` with the tiny test models.

One server runs for the module. Its pixel cap is lowered to 3 megapixels so that ``cars.jpg``
(2250 x 1500) is over it while ``truck.jpg`` (1800 x 1200) is not, and its video cap to 12 frames, so
that ``bedroom.mp4`` (200 frames) is over it while a synthetic 8-frame clip is not. The first tests build the
app in-process to check what needs no server: no model at build time, the queue settings, and
the ZeroGPU wrapping.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import types
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests.app.server import REPO, AppServer, api_client, run_app
from tests.factories import make_detections

gradio_client = pytest.importorskip("gradio_client", reason="gradio_client is a test dependency (requirements-dev.txt)")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

EXAMPLES = REPO / "examples"


# ---------------------------------------------------------------------------------------------
# In-process: the page and its wiring, without a server


SETTINGS_WITHOUT_WEIGHTS = {"detector": "/nowhere/florence", "segmenter": "/nowhere/sam2.pt"}


def test_building_the_page_loads_no_model(app_env: None) -> None:
    from grounded_sam.app.blocks import build_demo
    from grounded_sam.app.queues import JOB_QUEUE, MODEL_QUEUE
    from grounded_sam.app.settings import AppSettings
    from grounded_sam.models import loading as models

    models.clear_model_cache()
    demo = build_demo(AppSettings(**SETTINGS_WITHOUT_WEIGHTS))

    assert models._cache == {}
    by_name = {fn.api_name: fn for fn in demo.fns.values()}
    # Run starts beside a running batch or clip (the model gate orders their model calls); one job at a time.
    for name, queue in (("segment", MODEL_QUEUE), ("label_batch", JOB_QUEUE), ("label_batch_stream", JOB_QUEUE),
                        ("track", JOB_QUEUE), ("track_stream", JOB_QUEUE)):
        assert (by_name[name].concurrency_id, by_name[name].concurrency_limit) == (queue, 1), name
    assert demo._queue.max_size == AppSettings().queue_size


def test_the_named_endpoints_keep_their_parameters(app_env: None) -> None:
    from grounded_sam.app.blocks import build_demo
    from grounded_sam.app.settings import AppSettings

    endpoints = build_demo(AppSettings(**SETTINGS_WITHOUT_WEIGHTS)).get_api_info()["named_endpoints"]
    options = [("categories", False, None), ("detector", True, "/nowhere/florence"),
               ("segmenter", True, "/nowhere/sam2.pt"), ("min_score", True, 0.0), ("nms", True, "class"),
               ("nms_iou", True, 0.7), ("show_masks", True, True), ("show_boxes", True, True),
               ("show_labels", True, True), ("opacity", True, 0.5)]

    def parameters(name: str) -> list[tuple[str, bool, Any]]:
        return [(p["parameter_name"], p["parameter_has_default"], p["parameter_default"])
                for p in endpoints[name]["parameters"]]

    assert sorted(endpoints) == ["/label_batch", "/segment", "/track"]
    assert parameters("/segment") == [("image", False, None), *options]
    assert parameters("/label_batch") == [("files", False, None), *options, ("server_folder", True, None),
                                          ("formats", True, [])]
    assert [r["label"] for r in endpoints["/segment"]["returns"]] == ["Overlay · click to fix", "Detections"]
    assert [r["label"] for r in endpoints["/label_batch"]["returns"]] == ["Results zip", "Summary"]
    assert parameters("/track") == [("video", False, None), *options, ("every", True, 15), ("max_frames", True, 0),
                                    ("start_s", True, 0), ("end_s", True, 0), ("formats", True, ["coco", "mot"])]
    assert [r["label"] for r in endpoints["/track"]["returns"]] == ["Overlay video", "Results zip", "Summary"]


def test_every_handler_declares_what_gradio_fills_in(app_env: None) -> None:
    """Gradio fills ``gr.Request`` and ``gr.SelectData`` parameters by their type hints: every hint must resolve."""
    import typing

    from grounded_sam.app.blocks import build_demo
    from grounded_sam.app.settings import AppSettings

    demo = build_demo(AppSettings(**SETTINGS_WITHOUT_WEIGHTS))
    handlers = [fn.fn for fn in demo.fns.values() if fn.fn is not None]
    hints = {fn.__name__: typing.get_type_hints(fn) for fn in handlers}
    for name in ("click_overlay", "select_row"):
        assert {"evt", "request"} <= set(hints[name])
    for name in ("start_editing", "clear_result", "release_editor", "handler"):
        assert "request" in hints[name]


def test_the_app_imports_spaces_before_torch_and_no_model_module(tmp_path: Path) -> None:
    """On ZeroGPU, ``spaces`` must come before torch; importing the app loads neither torch nor a model module."""
    import subprocess

    (tmp_path / "spaces.py").write_text(
        "import sys\n"
        "LOADED = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'grounded_sam'))\n"
        "def GPU(duration):\n    return lambda fn: fn\n"
    )
    code = ("import json, sys, app, spaces\n"
            "print(json.dumps([spaces.LOADED, sorted(m for m in sys.modules if m.split('.')[0] == 'torch')]))")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}", "GRADIO_ANALYTICS_ENABLED": "False"}
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120, check=True)
    loaded_before_spaces, torch_modules = json.loads(done.stdout.strip().splitlines()[-1])
    assert loaded_before_spaces == [] and torch_modules == []


def test_gpu_functions_are_wrapped_only_where_spaces_is_importable(
    app_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from grounded_sam.app import gpu as gpu_module
    from grounded_sam.categories import parse_categories

    requested: list[Any] = []

    def gpu(*, duration: Any) -> Any:
        def wrap(fn: Any) -> Any:
            requested.append(duration)
            fn.zerogpu_duration = duration
            return fn
        return wrap

    monkeypatch.setitem(sys.modules, "spaces", types.SimpleNamespace(GPU=gpu))
    try:
        wrapped = importlib.reload(gpu_module)
        # One lease per image of Run, per image of a batch, per clip, per edit of a clip, per click's decoder pass.
        assert requested == [wrapped.segment_gpu_seconds, wrapped.batch_image_gpu_seconds, wrapped.track_gpu_seconds,
                             wrapped.retrack_gpu_seconds, wrapped.click_gpu_seconds]
        assert wrapped._retrack_on_gpu.zerogpu_duration is wrapped.retrack_gpu_seconds
        assert wrapped._segment_on_gpu.zerogpu_duration is wrapped.segment_gpu_seconds
        assert wrapped._batch_image_on_gpu.zerogpu_duration is wrapped.batch_image_gpu_seconds
        assert wrapped._track_on_gpu.zerogpu_duration is wrapped.track_gpu_seconds
        assert wrapped._decode_on_gpu.zerogpu_duration is wrapped.click_gpu_seconds

        one, three = parse_categories("a"), parse_categories("a, b, c")
        assert wrapped.segment_gpu_seconds(None, None, three) > wrapped.segment_gpu_seconds(None, None, one)
        assert wrapped.track_gpu_seconds(None, None, one, None, 200, {}) > wrapped.track_gpu_seconds(None, None, one,
                                                                                                   None, 8, {})
        # No call asks for more than the platform grants, whatever the work.
        many = parse_categories(", ".join(f"c{i}" for i in range(150)))
        assert wrapped.segment_gpu_seconds(None, None, many) == wrapped.ZEROGPU_MAX_S
        assert wrapped.track_gpu_seconds(None, None, one, None, 100_000, {}) == wrapped.ZEROGPU_MAX_S

        monkeypatch.setitem(sys.modules, "spaces", None)  # `import spaces` now raises ImportError
        plain = importlib.reload(gpu_module)
        assert plain.spaces is None
        assert not hasattr(plain._segment_on_gpu, "zerogpu_duration")
        assert not hasattr(plain._decode_on_gpu, "zerogpu_duration")
    finally:
        monkeypatch.undo()
        importlib.reload(gpu_module)


def test_image_details_for_a_result_and_for_nothing_found(app_env: None, tiny_record: dict[str, Any]) -> None:
    from grounded_sam.app.image_result import image_details

    legend, rows, files = image_details(tiny_record)
    assert "1 object found" in legend and "truck" in legend and "&lt;tire&gt;" in legend  # names are escaped
    assert rows == [[0, "truck", "0.900", "1, 2, 5, 6", 16]]
    assert [Path(f).name for f in files] == ["site_coco.json", "site_masks.zip"]
    assert json.loads(Path(files[0]).read_text())["annotations"][0]["area"] == 16

    empty = {**tiny_record, "detections": []}
    legend, rows, files = image_details(empty)
    assert "Nothing found" in legend and rows == [] and len(files) == 2
    assert image_details(None) == ("", [], None)


def test_redraw_uses_the_last_result_only_for_the_same_image(
    app_env: None, tiny_record: dict[str, Any], tmp_path: Path
) -> None:
    from grounded_sam.app.image_result import redraw_overlay
    from grounded_sam.app.options import OverlayOptions

    photo = tmp_path / "site.png"
    Image.new("RGB", (8, 8), (0, 0, 0)).save(photo)
    upload = {"path": str(photo), "orig_name": "site.png"}

    drawn = redraw_overlay(upload, tiny_record, OverlayOptions(True, False, False, 1.0))
    pixels = np.asarray(Image.open(drawn))
    assert pixels.shape == (8, 8, 3) and pixels[3, 2].any() and not pixels[0, 0].any()  # mask filled, rest black
    everything = OverlayOptions(True, True, True, 0.5)
    assert redraw_overlay({**upload, "orig_name": "other.png"}, tiny_record, everything) is None
    assert redraw_overlay(upload, None, everything) is None


@pytest.fixture
def tiny_record() -> dict[str, Any]:
    from grounded_sam.export import detections_to_record

    mask = np.zeros((1, 8, 8), dtype=bool)
    mask[0, 2:6, 1:5] = True
    detections = make_detections([[1, 2, 5, 6]], mask=mask, confidence=[0.9], class_id=[0], class_name=["truck"])
    return detections_to_record(detections, (8, 8), ["truck", "<tire>"], source="site.png")


# ---------------------------------------------------------------------------------------------
# Through the API of a running server


@pytest.fixture(scope="module")
def server(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    caps = {"GROUNDED_SAM_MAX_PIXELS": "3000000", "GROUNDED_SAM_MAX_VIDEO_FRAMES": "12"}
    with run_app(tiny_models, tmp_path_factory.mktemp("app-api"), caps) as running:
        yield running


@pytest.fixture(scope="module")
def client(server: AppServer, tmp_path_factory: pytest.TempPathFactory) -> Client:
    return api_client(server, tmp_path_factory.mktemp("downloads"))


def check_record(record: dict[str, Any], categories: list[str], size: tuple[int, int]) -> None:
    from grounded_sam.export.rle import decode_rle

    width, height = size
    assert record["categories"] == categories
    assert (record["image"]["width"], record["image"]["height"]) == (width, height)
    for item in record["detections"]:
        assert item["class_name"] == categories[item["class_id"]]
        x1, y1, x2, y2 = item["bbox_xyxy"]
        assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height
        assert 0.0 <= item["score"] <= 1.0
        mask = decode_rle(item["mask"])
        assert mask.shape == (height, width)
        assert int(mask.sum()) == item["area"] > 0


def test_serves_with_the_upload_cap_set(server: AppServer) -> None:
    with urllib.request.urlopen(server.url + "config", timeout=10) as response:
        config = json.load(response)
    assert config["max_file_size"] == 200 * 1024 * 1024


def test_segment_returns_an_overlay_the_size_of_the_input_and_detections(client: Client) -> None:
    overlay, record = client.predict(handle_file(str(EXAMPLES / "truck.jpg")), "truck, tire", api_name="/segment")

    with Image.open(overlay) as image:
        assert image.format == "PNG" and image.size == (1800, 1200)
    check_record(record, ["truck", "tire"], (1800, 1200))
    assert record["detections"], "the scripted detector always finds boxes"
    assert record["image"]["file_name"] == "truck.jpg"
    assert record["settings"]["categories"] == "truck, tire"
    assert "/" not in record["settings"]["detector"]  # no server paths in what clients get


def test_segment_options_are_applied(client: Client) -> None:
    _, everything = client.predict(handle_file(str(EXAMPLES / "groceries.jpg")), "bag", nms="none",
                                   api_name="/segment")
    overlay, nothing = client.predict(handle_file(str(EXAMPLES / "groceries.jpg")), "bag", min_score=1.0,
                                      show_masks=False, api_name="/segment")

    assert len(everything["detections"]) >= 1
    assert nothing["detections"] == [] and nothing["settings"]["min_score"] == 1.0
    with Image.open(overlay) as image, Image.open(EXAMPLES / "groceries.jpg") as original:
        # Nothing drawn: the overlay is the photo itself (PNG of the decoded JPEG).
        assert np.array_equal(np.asarray(image.convert("RGB")), np.asarray(original.convert("RGB")))


def corrupt_jpeg(tmp_path: Path) -> Path:
    path = tmp_path / "corrupt.jpg"
    path.write_bytes((EXAMPLES / "truck.jpg").read_bytes()[:600])
    return path


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("no categories", "Expected at least one category"),
        ("corrupt image", "Cannot load image corrupt.jpg"),
        ("over the pixel cap", "over the cap of 3_000_000 pixels"),
        ("weights not available", "florence-2-large"),
        ("model not offered", "Unknown detector '/etc/passwd'"),
        ("bad option", "min_score must be within [0, 1]"),
    ],
)
def test_segment_user_errors_are_clear_and_the_server_keeps_serving(
    client: Client, server: AppServer, tmp_path: Path, case: str, message: str
) -> None:
    truck = handle_file(str(EXAMPLES / "truck.jpg"))
    calls = {
        "no categories": ((truck, " , "), {}),
        "corrupt image": ((handle_file(str(corrupt_jpeg(tmp_path))), "truck"), {}),
        "over the pixel cap": ((handle_file(str(EXAMPLES / "cars.jpg")), "car"), {}),
        "weights not available": ((truck, "truck"), {"detector": "florence-2-large"}),
        "model not offered": ((truck, "truck"), {"detector": "/etc/passwd"}),
        "bad option": ((truck, "truck"), {"min_score": 2.0}),
    }
    args, kwargs = calls[case]
    with pytest.raises(AppError) as error:
        client.predict(*args, **kwargs, api_name="/segment")
    assert message in str(error.value)
    assert "Traceback" not in str(error.value)

    overlay, record = client.predict(truck, "tire", api_name="/segment")  # the next call still works
    assert Path(overlay).is_file() and record["categories"] == ["tire"]
    assert server.process.poll() is None


def photos_zip(path: Path, members: dict[str, bytes] | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name in ("truck.jpg", "groceries.jpg", "cars.jpg"):
            archive.write(EXAMPLES / name, f"photos/{name}")
        archive.writestr("__MACOSX/photos/._truck.jpg", b"\x00\x05\x16\x07")
        archive.writestr("photos/notes.txt", b"taken on site")
        for name, data in (members or {}).items():
            archive.writestr(name, data)
    return path


def test_label_batch_with_a_zip_returns_a_results_zip_listing_every_image(client: Client, tmp_path: Path) -> None:
    results, summary = client.predict([handle_file(str(photos_zip(tmp_path / "photos.zip")))], "car, wheel",
                                      api_name="/label_batch")

    # cars.jpg is over this server's 3-megapixel cap: it fails with its reason, the rest are labeled.
    assert summary.splitlines()[0].startswith("Labeled 2 of 3 images")
    assert "photos/cars.jpg: Cannot load image photos/cars.jpg" in summary
    assert "__MACOSX/photos/._truck.jpg: macOS metadata" in summary
    assert "photos/notes.txt: not an image" in summary
    with zipfile.ZipFile(results) as archive:
        names = set(archive.namelist())
        assert {"labels/photos__truck.json", "labels/photos__groceries.json", "overlays/photos__truck.png",
                "overlays/photos__groceries.png", "summary.json"} <= names
        document = json.loads(archive.read("summary.json"))
        record = json.loads(archive.read("labels/photos__truck.json"))
    assert [i["name"] for i in document["images"]] == ["photos/truck.jpg", "photos/groceries.jpg", "photos/cars.jpg"]
    assert [i["ok"] for i in document["images"]] == [True, True, False]
    assert record["image"]["source"] == "photos/truck.jpg"
    check_record(record, ["car", "wheel"], (1800, 1200))


def test_label_batch_adds_the_chosen_dataset_formats(client: Client, tmp_path: Path) -> None:
    from pycocotools.coco import COCO

    results, summary = client.predict([handle_file(str(photos_zip(tmp_path / "photos.zip")))], "car, wheel",
                                      formats=["coco", "yolo"], api_name="/label_batch")
    assert summary.splitlines()[0].startswith("Labeled 2 of 3 images")
    extracted = tmp_path / "results"
    with zipfile.ZipFile(results) as archive:
        names = set(archive.namelist())
        archive.extractall(extracted)
    assert {"coco/annotations.json", "yolo/detect/data.yaml", "yolo/segment/data.yaml"} <= names
    assert not any(name.startswith("voc/") for name in names)
    coco = COCO(str(extracted / "coco" / "annotations.json"))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == ["car", "wheel"]
    assert len(coco.getImgIds()) == 2


def test_label_batch_with_several_images_reports_a_corrupt_one(client: Client, tmp_path: Path) -> None:
    files = [handle_file(str(EXAMPLES / "truck.jpg")), handle_file(str(corrupt_jpeg(tmp_path))),
             handle_file(str(EXAMPLES / "groceries.jpg"))]
    results, summary = client.predict(files, "truck", api_name="/label_batch")

    assert summary.startswith("Labeled 2 of 3 images")
    assert "corrupt.jpg: Cannot load image corrupt.jpg" in summary
    with zipfile.ZipFile(results) as archive:
        assert {"labels/truck.json", "labels/groceries.json"} <= set(archive.namelist())
        assert not any("corrupt" in name for name in archive.namelist() if name != "summary.json")


@pytest.mark.parametrize(
    ("upload", "message"),
    [
        ("evil zip", "leaves its folder"),
        ("absolute zip", "absolute path"),
        ("not a zip", "Cannot open photos.zip as a zip archive"),
        ("no categories", "Expected at least one category"),
        ("nothing", "No input: upload images or one .zip"),
        ("server folder", "Reading folders on the server is turned off"),
    ],
)
def test_label_batch_refuses_bad_input_clearly_and_the_next_call_works(
    client: Client, server: AppServer, tmp_path: Path, upload: str, message: str
) -> None:
    evil = photos_zip(tmp_path / "evil.zip", {"../evil.jpg": (EXAMPLES / "truck.jpg").read_bytes()})
    absolute = photos_zip(tmp_path / "absolute.zip", {"/tmp/evil.jpg": b"x"})
    fake = tmp_path / "photos.zip"
    fake.write_bytes(b"PK but not really")
    calls = {
        "evil zip": (([handle_file(str(evil))], "truck"), {}),
        "absolute zip": (([handle_file(str(absolute))], "truck"), {}),
        "not a zip": (([handle_file(str(fake))], "truck"), {}),
        "no categories": (([handle_file(str(EXAMPLES / "truck.jpg"))], ""), {}),
        "nothing": (([], "truck"), {}),
        "server folder": (([], "truck"), {"server_folder": "/etc"}),
    }
    args, kwargs = calls[upload]
    with pytest.raises(AppError) as error:
        client.predict(*args, **kwargs, api_name="/label_batch")
    assert message in str(error.value)
    # Nothing from the zip was written anywhere: not outside the job folder, not inside it.
    assert not [p for p in server.tmp.rglob("evil.jpg")]
    assert not Path("/tmp/evil.jpg").exists()

    results, summary = client.predict([handle_file(str(EXAMPLES / "groceries.jpg"))], "bag", api_name="/label_batch")
    assert summary.startswith("Labeled 1 of 1 images") and zipfile.is_zipfile(results)
    assert server.process.poll() is None


# ---------------------------------------------------------------------------------------------
# Tracking a clip


TRACK_FRAMES, TRACK_EVERY = 8, 3


@pytest.fixture(scope="module")
def squares_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.fakes import MovingSquares, write_clip

    scene = MovingSquares(frames=TRACK_FRAMES)
    return write_clip(tmp_path_factory.mktemp("clip") / "squares.mp4", [scene.frame(i) for i in range(TRACK_FRAMES)])


def test_track_returns_a_playable_overlay_video_and_every_frames_labels(
    client: Client, squares_clip: Path, tmp_path: Path
) -> None:
    import av

    from tests.readers import check_mot

    video, results, summary = client.predict(handle_file(str(squares_clip)), "square, bar", every=TRACK_EVERY,
                                             formats=["coco", "mot", "yolo"], api_name="/track")

    with av.open(video) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and (stream.width, stream.height) == (96, 64)
        assert sum(1 for _ in container.decode(stream)) == TRACK_FRAMES
    extracted = tmp_path / "results"
    with zipfile.ZipFile(results) as archive:
        names = set(archive.namelist())
        archive.extractall(extracted)
    assert {f"labels/frame_{i:06d}.json" for i in range(TRACK_FRAMES)} <= names
    assert {"mot.txt", "overlay.mp4", "coco/annotations.json", "yolo/segment/data.yaml"} <= names
    assert not any(name.startswith("overlays/") or name == "manifest.jsonl" for name in names)
    record = json.loads((extracted / "labels" / "frame_000004.json").read_text())
    assert record["detections"] and all(isinstance(d["track_id"], int) for d in record["detections"])
    assert check_mot(extracted) == pytest.approx(1.0)
    assert summary.startswith(f"Tracked {TRACK_FRAMES} frames of squares.mp4")
    assert "every 3 frames" in summary and "Objects tracked: square" in summary


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("not a video", "notes.mp4 is not a video this tool can read"),
        ("over the frame cap", "bedroom.mp4 has 200 frames to track (6.7 s at 30 fps), over the cap of 12 frames"),
        ("over the pixel cap", "big.mp4 has 2048x1536 frames, over the limit of 3000000 pixels per frame"),
        ("no video", "No video: upload a clip"),
        ("bad every", "every must be a whole number of frames >= 1, but got 0"),
    ],
)
def test_track_refuses_a_bad_clip_clearly_and_the_next_call_works(
    client: Client, server: AppServer, squares_clip: Path, tmp_path: Path, case: str, message: str
) -> None:
    from tests.fakes import write_clip

    notes = tmp_path / "notes.mp4"
    notes.write_text("not a video, whatever its name says")
    clips = {
        "not a video": notes,
        "over the frame cap": EXAMPLES / "bedroom.mp4",
        "over the pixel cap": write_clip(tmp_path / "big.mp4", [np.zeros((1536, 2048, 3), np.uint8)]),
        "no video": None,
        "bad every": squares_clip,
    }
    clip = clips[case]
    with pytest.raises(AppError) as error:
        client.predict(None if clip is None else handle_file(str(clip)), "square",
                       every=0 if case == "bad every" else 3, api_name="/track")
    assert message in str(error.value)
    assert "Traceback" not in str(error.value)

    video, results, summary = client.predict(handle_file(str(squares_clip)), "square", max_frames=1,
                                             api_name="/track")
    assert summary.startswith("Tracked 1 frame of squares.mp4") and zipfile.is_zipfile(results)
    assert server.process.poll() is None


def test_the_server_log_holds_no_traceback_for_user_errors(server: AppServer) -> None:
    assert "Traceback" not in server.log_text()
