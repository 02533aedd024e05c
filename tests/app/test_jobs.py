"""Jobs of the app: job folders, gathering inputs, streaming a blocking run item by item."""

from __future__ import annotations

import json
import os
import threading
import time
import zipfile
from pathlib import Path, PurePath
from typing import Any

import numpy as np
import pytest
import supervision as sv
from PIL import Image

from grounded_sam.app.jobs import (
    BatchInputs,
    DisplayNameWriter,
    ProgressEvent,
    format_seconds,
    gather_inputs,
    job_summary_text,
    new_job_dir,
    seconds_left,
    stream_job,
    stream_label_images,
    upload_path,
    write_job_summary,
)
from grounded_sam.app.settings import AppSettings
from grounded_sam.errors import ArchiveError, InputError, VideoLoadError
from grounded_sam.export import JsonLabelWriter
from grounded_sam.inputs.archive import SkippedMember, ZipLimits
from grounded_sam.runs.batch import BatchSummary, ImageOutcome, InputImage
from tests.factories import whole_image


def save_png(path: Path, size: tuple[int, int] = (32, 24)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (10, 120, 200)).save(path)
    return path


class FakePipe:
    """Stands in for GroundedSAM2: one full-image box and mask of class 0 per image."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.calls = 0
        self.delay_s = delay_s
        self.threads: set[str] = set()

    def __call__(self, rgb: np.ndarray, categories: Any) -> sv.Detections:
        self.calls += 1
        self.threads.add(threading.current_thread().name)
        time.sleep(self.delay_s)
        height, width = rgb.shape[:2]
        return whole_image(height, width)


def test_new_job_dir_makes_unique_folders_and_sweeps_old_ones(tmp_path: Path) -> None:
    old = tmp_path / "old-job"
    old.mkdir()
    (old / "x.png").write_bytes(b"x")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    fresh = tmp_path / "fresh-job"
    fresh.mkdir()

    first = new_job_dir(tmp_path, max_age_s=3600)
    second = new_job_dir(tmp_path, max_age_s=3600)

    assert first != second and first.is_dir() and second.is_dir()
    assert first.parent == tmp_path
    assert not old.exists() and fresh.exists()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("/tmp/gradio/abc/truck.jpg", ("/tmp/gradio/abc/truck.jpg", "truck.jpg")),
        ({"path": "/tmp/gradio/abc/x.jpg", "orig_name": "My Photo.jpg"}, ("/tmp/gradio/abc/x.jpg", "My Photo.jpg")),
        ({"path": "/tmp/gradio/abc/x.jpg", "orig_name": None}, ("/tmp/gradio/abc/x.jpg", "x.jpg")),
        ({"path": None}, None),
    ],
)
def test_upload_path_reads_every_shape_gradio_hands_over(value: Any, expected: tuple[str, str] | None) -> None:
    result = upload_path(value)
    assert (None if result is None else (str(result[0]), result[1])) == expected


def test_upload_path_reads_file_objects() -> None:
    class FileData:
        path = "/tmp/gradio/abc/a.png"
        orig_name = "a.png"

    assert upload_path(FileData()) == (Path("/tmp/gradio/abc/a.png"), "a.png")


def test_gather_inputs_from_images_zips_and_other_files(tmp_path: Path) -> None:
    image = save_png(tmp_path / "uploads" / "cache-name.png")
    zip_path = tmp_path / "uploads" / "photos.zip"
    with zipfile.ZipFile(zip_path, "w") as archive:
        archive.write(image, "set/a.png")
        archive.write(image, "set/b.png")
        archive.writestr("set/readme.txt", "hi")
    text = tmp_path / "uploads" / "notes.txt"
    text.write_text("hello")
    uploads = [(image, "field.png"), (zip_path, "photos.zip"), (text, "notes.txt")]

    found = gather_inputs(uploads, "", AppSettings(), tmp_path / "job" / "input")

    assert [i.relative.as_posix() for i in found.images] == ["field.png", "set/a.png", "set/b.png"]
    shown = [found.names[str(i.path)] for i in found.images]
    assert shown == ["field.png", "photos.zip/set/a.png", "photos.zip/set/b.png"]
    assert found.skipped == [
        SkippedMember("photos.zip/set/readme.txt", found.skipped[0].reason),
        SkippedMember("notes.txt", "not an image or a .zip"),
    ]
    assert all(i.path.is_file() for i in found.images)


def test_a_single_zip_names_images_by_their_path_inside_it(tmp_path: Path) -> None:
    zip_path = tmp_path / "photos.zip"
    with zipfile.ZipFile(zip_path, "w") as archive:
        archive.write(save_png(tmp_path / "a.png"), "a.png")
    found = gather_inputs([(zip_path, "photos.zip")], "", AppSettings(), tmp_path / "input")
    assert list(found.names.values()) == ["a.png"]


def test_gather_inputs_without_images_says_what_was_skipped(tmp_path: Path) -> None:
    zip_path = tmp_path / "empty.zip"
    with zipfile.ZipFile(zip_path, "w") as archive:
        archive.writestr("__MACOSX/._a.png", b"x")
        archive.writestr("notes.txt", b"x")
    with pytest.raises(InputError, match=r"No images to label.*Skipped: __MACOSX/._a.png \(macOS metadata"):
        gather_inputs([(zip_path, "empty.zip")], "", AppSettings(), tmp_path / "input")


def test_gather_inputs_enforces_the_image_cap_and_zip_limits(tmp_path: Path) -> None:
    images = [(save_png(tmp_path / f"{i}.png"), f"{i}.png") for i in range(3)]
    with pytest.raises(InputError, match="3 images, over the cap of 2 per job"):
        gather_inputs(images, "", AppSettings(max_batch_images=2), tmp_path / "input")

    zip_path = tmp_path / "many.zip"
    with zipfile.ZipFile(zip_path, "w") as archive:
        for _, name in images:
            archive.writestr(name, b"x")
    with pytest.raises(ArchiveError, match="over the cap of 2"):
        gather_inputs([(zip_path, "many.zip")], "", AppSettings(zip_limits=ZipLimits(max_members=2)), tmp_path / "in")


def test_gather_inputs_from_a_server_folder_stays_inside_the_roots(tmp_path: Path) -> None:
    root = tmp_path / "data"
    save_png(root / "site" / "a.png")
    save_png(root / "site" / "deeper" / "b.png")
    outside = save_png(tmp_path / "secret" / "private.png")
    (root / "site" / "link.png").symlink_to(outside)
    settings = AppSettings(batch_roots=(root.resolve(),))

    found = gather_inputs([], "site", settings, tmp_path / "input")

    assert sorted(i.relative.as_posix() for i in found.images) == ["a.png", "deeper/b.png"]
    assert found.skipped == [SkippedMember("link.png", "links outside the allowed folders")]
    with pytest.raises(InputError, match="turned off"):
        gather_inputs([], "site", AppSettings(), tmp_path / "input")


def test_stream_label_images_yields_each_image_then_the_summary(tmp_path: Path) -> None:
    images = [InputImage(save_png(tmp_path / "in" / f"{n}.png"), PurePath(f"{n}.png")) for n in ("a", "b", "c")]
    pipe = FakePipe()
    writer = JsonLabelWriter(tmp_path / "out")

    events = list(stream_label_images(pipe, images, "thing", [writer], settings={"run": 1}))

    assert [type(e) for e in events] == [ProgressEvent, ProgressEvent, ProgressEvent, BatchSummary]
    assert [(e.done, e.total, e.outcome.stem) for e in events[:3]] == [(1, 3, "a"), (2, 3, "b"), (3, 3, "c")]
    assert len(events[3].labeled) == 3
    assert pipe.threads == {"grounded-sam-batch"}  # the work ran off the caller's thread
    assert json.loads((tmp_path / "out" / "labels" / "b.json").read_text())["settings"] == {"run": 1}


def test_stream_label_images_stops_when_the_consumer_goes_away(tmp_path: Path) -> None:
    images = [InputImage(save_png(tmp_path / f"{i}.png"), PurePath(f"{i}.png")) for i in range(6)]
    pipe = FakePipe(delay_s=0.05)

    stream = stream_label_images(pipe, images, "thing", [])
    first = next(stream)
    stream.close()  # waits for the worker, which stops after the image it is on

    assert first.done == 1
    assert pipe.calls < len(images)
    assert not [t for t in threading.enumerate() if t.name == "grounded-sam-batch"]


def test_stream_label_images_reraises_a_setup_error(tmp_path: Path) -> None:
    images = [InputImage(save_png(tmp_path / "a.png"), PurePath("a.png"))]
    with pytest.raises(Exception, match="Expected at least one category"):
        list(stream_label_images(FakePipe(), images, " , ", []))


def test_stream_job_yields_progress_with_an_unknown_total_then_the_result() -> None:
    def job(on_progress: Any) -> str:
        for done in (1, 2):
            on_progress(done, None, ImageOutcome(f"clip#frame={done - 1}", f"frame_{done - 1:06d}", True))
        return "summary"

    events = list(stream_job(job, name="grounded-sam-test"))

    assert [(e.done, e.total) for e in events[:2] if isinstance(e, ProgressEvent)] == [(1, None), (2, None)]
    assert events[2] == "summary"


def test_stream_job_ends_the_run_at_once_when_the_consumer_goes_away() -> None:
    """What Stop needs: the worker waits for the consumer between items, so closing never waits for another item."""
    started: list[int] = []

    def job(on_progress: Any) -> str:
        for done in range(1, 10):
            started.append(done)
            time.sleep(0.5)  # one item's work
            on_progress(done, 9, ImageOutcome("x", "x", True))
        return "finished"

    stream = stream_job(job, name="grounded-sam-test")
    assert next(stream).done == 1
    time.sleep(0.1)  # the worker must not start the next item meanwhile
    began = time.perf_counter()
    stream.close()

    assert time.perf_counter() - began < 0.3
    assert started == [1]
    assert not [t for t in threading.enumerate() if t.name == "grounded-sam-test"]


def test_stream_job_reraises_the_jobs_error_in_the_callers_thread() -> None:
    def job(on_progress: Any) -> str:
        raise VideoLoadError("clip.mp4 is corrupt after frame 3")

    with pytest.raises(VideoLoadError, match="corrupt after frame 3"):
        list(stream_job(job))


def test_display_name_writer_records_the_users_name(tmp_path: Path) -> None:
    images = [InputImage(save_png(tmp_path / "cache" / "x1.png"), PurePath("x1.png"))]
    writer = DisplayNameWriter(JsonLabelWriter(tmp_path / "out"), {str(images[0].path): "holiday/beach.png"})

    list(stream_label_images(FakePipe(), images, "thing", [writer]))

    record = json.loads((tmp_path / "out" / "labels" / "x1.json").read_text())
    assert record["image"]["source"] == "holiday/beach.png"
    assert writer.name == "json" and writer.finalize() == []


def test_seconds_left_and_its_text() -> None:
    assert seconds_left(0, 10, 5.0) is None
    assert seconds_left(2, 10, 4.0) == pytest.approx(16.0)
    assert seconds_left(10, 10, 4.0) == 0.0
    assert format_seconds(None) == ""
    assert format_seconds(0.0) == "finishing"
    assert format_seconds(12.4) == "about 12 s left"
    assert format_seconds(600) == "about 10 min left"


def test_summary_text_and_json_use_the_users_names(tmp_path: Path) -> None:
    good = InputImage(save_png(tmp_path / "a.png"), PurePath("a.png"))
    bad_path = tmp_path / "b.png"
    bad_path.write_bytes(b"not a png")
    bad = InputImage(bad_path, PurePath("b.png"))
    inputs = BatchInputs(images=[good, bad], skipped=[SkippedMember("notes.txt", "not an image")],
                         names={str(good.path): "set/a.png", str(bad_path): "set/b.png"})
    summary = list(stream_label_images(FakePipe(), inputs.images, "thing", []))[-1]

    text = job_summary_text(summary, inputs)
    assert text.splitlines()[0] == "Labeled 1 of 2 images (1 objects)."
    assert "  set/b.png: Cannot load image" in text
    assert "  notes.txt: not an image" in text
    assert str(tmp_path) not in text  # no server paths in what the user reads
    assert job_summary_text(None, inputs, 1).startswith("Labeling... 1 of 2 images done.")

    document = json.loads(write_job_summary(tmp_path / "summary.json", summary, inputs, {"k": "v"}).read_text())
    assert (document["labeled"], document["failed"]) == (1, 1)
    assert [i["name"] for i in document["images"]] == ["set/a.png", "set/b.png"]
    assert document["skipped"] == [{"name": "notes.txt", "reason": "not an image"}]
    assert document["settings"] == {"k": "v"}
    assert str(tmp_path) not in json.dumps(document)


def test_display_name_writer_forwards_the_records_to_finalize() -> None:
    class Recording:
        name = "recording"

        def __init__(self) -> None:
            self.seen: Any = None

        def finalize(self, records: Any) -> list[Path]:
            self.seen = records
            return [Path("new.txt")]

    writer = Recording()
    assert DisplayNameWriter(writer, {}).finalize(["r"]) == [Path("new.txt")] and writer.seen == ["r"]
