"""Collecting inputs, naming outputs uniquely, runs that survive a bad image, resume and refuse other settings."""

from __future__ import annotations

import threading
import time
from pathlib import Path, PurePath

import numpy as np
import pytest
import supervision as sv
from PIL import Image

from grounded_sam.errors import InputError, OptionError, OutputFolderError
from grounded_sam.export import JsonLabelWriter
from grounded_sam.export.formats import parse_formats
from grounded_sam.naming import sanitize_stem
from grounded_sam.runs.batch import (
    InputImage,
    LocalEngine,
    assign_stems,
    collect_images,
    label_images,
    run_labeling,
)
from grounded_sam.runs.manifest import MANIFEST_NAME
from tests.factories import whole_image
from tests.fakes import ShapesPipe, write_image
from tests.readers import manifest_lines


def _png(path: Path, size=(16, 12)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (10, 20, 30)).save(path, format="PNG")
    return path


def test_collect_images_recurses_and_filters(tmp_path):
    _png(tmp_path / "a.png")
    _png(tmp_path / "sub" / "b.PNG")
    _png(tmp_path / "sub" / "deeper" / "c.JpEg")
    _png(tmp_path / ".hidden" / "d.png")
    _png(tmp_path / ".e.png")
    (tmp_path / "notes.txt").write_text("not an image")
    found = collect_images([tmp_path])
    assert [i.relative.as_posix() for i in found] == ["a.png", "sub/b.PNG", "sub/deeper/c.JpEg"]


def test_a_file_given_directly_is_taken_whatever_its_suffix(tmp_path):
    odd = tmp_path / "notes.txt"
    odd.write_text("x")
    assert collect_images([odd]) == [InputImage(odd, PurePath("notes.txt"))]


@pytest.mark.parametrize("make", ["missing", "empty-folder"])
def test_collect_images_errors(tmp_path, make):
    target = tmp_path / "nothing"
    if make == "empty-folder":
        target.mkdir()
    with pytest.raises(InputError):
        collect_images([target])


@pytest.mark.parametrize(
    ("relative", "stem"),
    [("img.jpg", "img"), ("sub/dir/img 1.jpg", "sub__dir__img_1"), ("../../etc/passwd.png", "etc__passwd"),
     ("ü n/ï.png", "ü_n__ï"), ("a\\b:c.png", "a_b_c"), (".jpg", "jpg")],
)
def test_sanitize_stem(relative, stem):
    result = sanitize_stem(PurePath(relative))
    assert result == stem
    assert "/" not in result and ".." not in result


def test_assign_stems_keeps_same_names_apart():
    images = [InputImage(Path(p), PurePath(r)) for p, r in
              [("a/img.jpg", "img.jpg"), ("b/img.jpg", "img.jpg"), ("c/IMG.png", "IMG.png"), ("x/sub/img.jpg", "sub/img.jpg")]]
    assert assign_stems(images) == ["img", "img-2", "IMG-3", "sub__img"]


class FakePipe:
    """Stands in for GroundedSAM2: one full-image detection per image, failing on demand."""

    def __init__(self, fail_on: str = "") -> None:
        self.fail_on = fail_on
        self.calls = 0

    def __call__(self, image: np.ndarray, categories) -> sv.Detections:
        self.calls += 1
        if self.fail_on and self.calls == 2:
            raise RuntimeError(self.fail_on)
        height, width = image.shape[:2]
        return whole_image(height, width, score=0.5)


def test_one_bad_image_never_stops_the_run(tmp_path):
    _png(tmp_path / "in" / "a.png")
    (tmp_path / "in" / "b.png").write_bytes(b"corrupt")
    _png(tmp_path / "in" / "c.png")
    progress = []
    summary = label_images(
        FakePipe(), collect_images([tmp_path / "in"]), "thing", [JsonLabelWriter(tmp_path / "out")],
        on_progress=lambda done, total, outcome: progress.append((done, total, outcome.ok)),
    )
    assert [o.ok for o in summary.outcomes] == [True, False, True]
    assert "b.png" in summary.failed[0].error
    assert sorted(p.name for p in (tmp_path / "out" / "labels").iterdir()) == ["a.json", "c.json"]
    assert progress == [(1, 3, True), (2, 3, False), (3, 3, True)]
    assert "Failed 1" in summary.as_text() and "b.png" in summary.as_text()


def test_a_model_failure_on_one_image_is_recorded(tmp_path):
    for name in "abc":
        _png(tmp_path / f"{name}.png")
    summary = label_images(FakePipe(fail_on="CUDA out of memory"), collect_images([tmp_path]), "thing", [])
    assert [o.ok for o in summary.outcomes] == [True, False, True]
    assert "CUDA out of memory" in summary.failed[0].error


# ------------------------------------------------------------------------------------ run_labeling



def _manifest_lines(out: Path) -> list[dict]:
    import json

    return [json.loads(line) for line in (out / MANIFEST_NAME).read_text().splitlines()[1:]]


def _tree(out: Path) -> set[str]:
    return {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() and p.name != MANIFEST_NAME}


@pytest.mark.parametrize(
    ("value", "expected"),
    [("coco,yolo", ("coco", "yolo")), (" VOC , coco,coco", ("coco", "voc")), ("all", ("coco", "yolo", "voc", "masks")),
     ("", ()), (None, ()), (["masks", "yolo"], ("yolo", "masks")), ("coco,json", OptionError)],
)
def test_parse_formats(value, expected):
    if expected is OptionError:
        with pytest.raises(OptionError, match="Unknown format json: expected a comma-separated list of coco, yolo"):
            parse_formats(value)
    else:
        assert parse_formats(value) == expected


def test_assign_stems_keeps_known_names_and_never_gives_them_away(tmp_path):
    earlier = InputImage(tmp_path / "x" / "img.jpg", PurePath("img.jpg"))
    added = InputImage(tmp_path / "a" / "img.jpg", PurePath("img.jpg"))
    known = {str(earlier.path.resolve()): "img"}
    assert assign_stems([added, earlier], known) == ["img-2", "img"]
    assert assign_stems([added, earlier]) == ["img", "img-2"]


def test_a_rerun_resumes_and_retries_what_failed(tmp_path):
    for key in (1, 2, 3):
        write_image(tmp_path / "in" / f"{key}.png", key)
    out = tmp_path / "out"
    first = run_labeling(ShapesPipe(fail_on=(2,)), [tmp_path / "in"], "truck, tire", out, formats="coco")
    assert [(o.stem, o.ok) for o in first.outcomes] == [("1", True), ("2", False), ("3", True)]
    assert "model failure on image 2" in first.as_text()
    pipe = ShapesPipe()
    second = run_labeling(pipe, [tmp_path / "in"], "truck, tire", out, formats="coco")
    assert pipe.calls == 1 and [o.skipped for o in second.outcomes] == [True, False, True]
    assert "Labeled 1 of 3 images" in second.as_text() and "Skipped 2 already labeled" in second.as_text()
    assert [(line["stem"], line["status"]) for line in _manifest_lines(out)] == [
        ("1", "ok"), ("2", "failed"), ("3", "ok"), ("2", "ok")]
    import json

    coco = json.loads((out / "coco" / "annotations.json").read_text())
    assert [i["file_name"] for i in coco["images"]] == ["1.png", "2.png", "3.png"]


def test_files_added_later_never_rename_earlier_outputs(tmp_path):
    earlier = write_image(tmp_path / "x" / "img.png", 1)
    out = tmp_path / "out"
    run_labeling(ShapesPipe(), [earlier], "truck", out)
    added = write_image(tmp_path / "a" / "img.png", 2)
    summary = run_labeling(ShapesPipe(), [added, earlier], "truck", out)
    assert [(o.stem, o.skipped) for o in summary.outcomes] == [("img-2", False), ("img", True)]


def test_a_changed_file_is_labeled_again_and_its_stale_outputs_removed(tmp_path):
    source = write_image(tmp_path / "in" / "a.jpg", 1)
    out = tmp_path / "out"
    run_labeling(ShapesPipe(), [source], "truck, tire", out, formats="yolo")
    assert (out / "images" / "a.jpg").is_file() and (out / "yolo" / "detect" / "images" / "a.jpg").is_file()
    write_image(source, 1, exif_orientation=6)  # now it needs rotating: its dataset copy becomes a PNG
    summary = run_labeling(ShapesPipe(), [source], "truck, tire", out, formats="yolo")
    assert summary.labeled and not summary.skipped
    assert sorted(p.name for p in (out / "images").iterdir()) == ["a.png"]
    assert sorted(p.name for p in (out / "yolo" / "detect" / "images").iterdir()) == ["a.png"]
    write_image(source, 1)
    source.write_bytes(source.read_bytes()[:100])  # now broken: its outputs must leave the dataset too
    summary = run_labeling(ShapesPipe(), [source], "truck, tire", out, formats="yolo")
    assert summary.failed
    assert _tree(out) == {"yolo/detect/data.yaml", "yolo/segment/data.yaml"}


def test_other_settings_are_refused_unless_forced(tmp_path):
    write_image(tmp_path / "in" / "a.png", 1)
    out = tmp_path / "out"
    run_labeling(ShapesPipe(), [tmp_path / "in"], "truck, tire", out, formats="coco")
    with pytest.raises(OutputFolderError, match=r'formats: \["coco"\] -> \["coco", "voc"\]'):
        run_labeling(ShapesPipe(), [tmp_path / "in"], "truck, tire", out, formats="coco,voc")
    pipe = ShapesPipe()
    run_labeling(pipe, [tmp_path / "in"], "truck", out, formats="voc", force=True)
    assert pipe.calls == 1
    assert not (out / "coco").exists() and (out / "voc" / "Annotations" / "a.xml").is_file()


class PrecisionPipe(ShapesPipe):
    """A ShapesPipe that records a GroundedSAM2's settings, with the precision given."""

    def __init__(self, precision: str) -> None:
        super().__init__()
        self.precision = precision

    def settings(self):
        from grounded_sam.pipeline.options import PipelineOptions, PipelineSettings

        return PipelineSettings("florence-2-base", "sam2.1-hiera-base-plus", "cpu", PipelineOptions(precision=self.precision))


def test_another_precision_is_refused_on_resume(tmp_path):
    write_image(tmp_path / "in" / "a.png", 1)
    out = tmp_path / "out"
    run_labeling(PrecisionPipe("fp32"), [tmp_path / "in"], "truck", out)
    assert run_labeling(PrecisionPipe("fp32"), [tmp_path / "in"], "truck", out).skipped  # same precision resumes
    with pytest.raises(OutputFolderError, match=r'precision: "fp32" -> "bf16"'):
        run_labeling(PrecisionPipe("bf16"), [tmp_path / "in"], "truck", out)


class InterruptingPipe(ShapesPipe):
    """Ctrl-C arrives while the model runs on the third image."""

    def __call__(self, rgb, categories):
        if self.calls == 2:
            self.calls += 1
            raise KeyboardInterrupt
        return super().__call__(rgb, categories)


def test_ctrl_c_writes_the_datasets_so_far_and_a_rerun_finishes(tmp_path):
    import json

    for key in range(1, 6):
        write_image(tmp_path / "in" / f"{key}.png", key)
    out = tmp_path / "out"
    summary = run_labeling(InterruptingPipe(), [tmp_path / "in"], "truck, tire", out, formats="coco,yolo")
    assert summary.interrupted and len(summary.outcomes) == 2
    assert "Interrupted after 2 of 5 images" in summary.as_text()
    coco = json.loads((out / "coco" / "annotations.json").read_text())
    assert [i["file_name"] for i in coco["images"]] == ["1.png", "2.png"]
    assert not list(out.rglob(".*.tmp"))
    pipe = ShapesPipe()
    summary = run_labeling(pipe, [tmp_path / "in"], "truck, tire", out, formats="coco,yolo")
    assert pipe.calls == 3 and not summary.interrupted
    coco = json.loads((out / "coco" / "annotations.json").read_text())
    assert len(coco["images"]) == 5 and len(coco["annotations"]) == 15


def test_should_stop_ends_the_run_between_images(tmp_path):
    for key in range(1, 4):
        write_image(tmp_path / "in" / f"{key}.png", key)
    done = []
    summary = run_labeling(ShapesPipe(), [tmp_path / "in"], "truck", tmp_path / "out",
                           on_progress=lambda i, n, o: done.append(i), should_stop=lambda: len(done) >= 1)
    assert summary.interrupted and [o.stem for o in summary.outcomes] == ["1"]


def test_the_output_folder_is_never_labeled_as_input(tmp_path):
    write_image(tmp_path / "a.png", 1)
    run_labeling(ShapesPipe(), [tmp_path], "truck", tmp_path / "out", formats="coco", plot=True)
    summary = run_labeling(ShapesPipe(), [tmp_path], "truck", tmp_path / "out", formats="coco", plot=True)
    assert [o.source for o in summary.outcomes] == [str(tmp_path / "a.png")]


def test_every_output_stays_inside_the_output_folder(tmp_path):
    # Relative names as an archive or an upload might carry them.
    images = [InputImage(write_image(tmp_path / "in" / "1.png", 1), PurePath("../../etc/a b.png")),
              InputImage(write_image(tmp_path / "in" / "2.png", 2), PurePath("/etc/A B.png")),
              InputImage(write_image(tmp_path / "in" / "3.png", 3), PurePath("..\\..\\x.png"))]
    out = tmp_path / "out"
    summary = run_labeling(ShapesPipe(), images, "truck", out, formats="all", plot=True)
    assert [o.stem for o in summary.outcomes] == ["etc__a_b", "etc__A_B-2", "x"]
    for outcome in summary.outcomes:
        assert all(Path(p).resolve().is_relative_to(out.resolve()) for p in outcome.outputs)


class RecordingWriter:
    """Writes nothing; remembers the records ``finalize`` got."""

    name = "recording"

    def __init__(self) -> None:
        self.finalized: list | None = None

    def write(self, item):
        return []

    def finalize(self, records):
        self.finalized = list(records)
        return []


def test_label_images_hands_every_writer_the_records_sorted_by_stem(tmp_path):
    import json

    from grounded_sam.export import CocoWriter, DatasetImageWriter

    for key in (1, 2):
        write_image(tmp_path / "in" / f"{key}.png", key)
    recording = RecordingWriter()
    writers = [JsonLabelWriter(tmp_path / "out"), DatasetImageWriter(tmp_path / "out"),
               CocoWriter(tmp_path / "out", ["truck", "tire"]), recording]
    summary = label_images(ShapesPipe(), collect_images([tmp_path / "in"]), "truck, tire", writers)
    assert [r.stem for r in recording.finalized] == ["1", "2"] and all(r.ok for r in recording.finalized)
    assert summary.dataset_outputs == [str(tmp_path / "out" / "coco" / "annotations.json")]
    coco = json.loads((tmp_path / "out" / "coco" / "annotations.json").read_text())
    assert [i["file_name"] for i in coco["images"]] == ["1.png", "2.png"] and len(coco["annotations"]) == 6


def test_an_image_whose_outputs_were_deleted_is_labeled_again(tmp_path):
    write_image(tmp_path / "in" / "a.png", 1)
    out = tmp_path / "out"
    run_labeling(ShapesPipe(), [tmp_path / "in"], "truck", out, formats="yolo")
    (out / "yolo" / "detect" / "labels" / "a.txt").unlink()
    pipe = ShapesPipe()
    run_labeling(pipe, [tmp_path / "in"], "truck", out, formats="yolo")
    assert pipe.calls == 1 and (out / "yolo" / "detect" / "labels" / "a.txt").is_file()


class FailingWriter:
    """Fails on the image with key 2, after the writers before it have written their files."""

    name = "failing"

    def write(self, item):
        if item.stem == "2":
            raise OSError("disk full")
        return []

    def finalize(self, records):
        return []


def test_an_image_that_fails_halfway_leaves_no_files(tmp_path):
    for key in (1, 2):
        write_image(tmp_path / "in" / f"{key}.png", key)
    out = tmp_path / "out"
    summary = run_labeling(ShapesPipe(), [tmp_path / "in"], "truck", out, formats="yolo", extra_writers=[FailingWriter()])
    assert [o.ok for o in summary.outcomes] == [True, False] and "OSError: disk full" in summary.failed[0].error
    assert not [p for p in _tree(out) if "/2." in p or p.startswith("images/2") or p.startswith("labels/2")]


# --------------------------------------------------------------------------- overlapped I/O


def _sequential(monkeypatch: pytest.MonkeyPatch) -> LocalEngine:
    """The loop as it ran before overlapping: decode, models, write, one after the other in one thread."""
    from grounded_sam.runs import batch

    monkeypatch.setattr(batch, "WRITE_AHEAD", False)
    return LocalEngine(prefetch=False)


def test_overlapped_run_writes_the_same_bytes_as_the_sequential_one(scripted_pipe, photos, tmp_path, monkeypatch):
    from tests.readers import run_files

    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("truck.jpg", "cars.jpg"):
        (folder / name).write_bytes((photos / name).read_bytes())
    write_image(folder / "small.png", key=3, size=(96, 64))
    (folder / "broken.png").write_bytes(b"not a png")  # a failure in the middle keeps its place too
    args = ([folder], "truck, tire")
    overlapped = run_labeling(scripted_pipe, *args, tmp_path / "A", formats="all", plot=True)
    with monkeypatch.context() as patch:
        sequential = run_labeling(scripted_pipe, *args, tmp_path / "B", formats="all", plot=True,
                                  engine=_sequential(patch))
    assert [o.stem for o in overlapped.outcomes] == [o.stem for o in sequential.outcomes]
    assert [o.ok for o in overlapped.outcomes] == [False, True, True, True]  # broken, cars, small, truck
    assert run_files(tmp_path / "A") == run_files(tmp_path / "B")
    assert manifest_lines(tmp_path / "A") == manifest_lines(tmp_path / "B")  # input order, line for line


class HandshakePipe(ShapesPipe):
    """Records which thread does what; image 2's model call is what image 1's write waits for."""

    def __init__(self) -> None:
        super().__init__()
        self.second_call = threading.Event()
        self.threads: list[str] = []

    def __call__(self, rgb, categories):
        self.threads.append(threading.current_thread().name)
        if self.calls == 1:
            self.second_call.set()
        return super().__call__(rgb, categories)


class WaitingWriter(JsonLabelWriter):
    """Writes image 1 only once the models have started on image 2 (which a sequential loop never does)."""

    name = "waiting"

    def __init__(self, out: Path, pipe: HandshakePipe) -> None:
        super().__init__(out / "extra")
        self.pipe, self.overlapped, self.threads = pipe, [], []

    def write(self, item):
        self.threads.append(threading.current_thread().name)
        if item.stem == "1":
            self.overlapped.append(self.pipe.second_call.wait(timeout=20))
        return super().write(item)

    def settings(self) -> dict:
        return {}


def test_files_are_written_while_the_next_image_is_labeled(tmp_path):
    for key in range(1, 4):
        write_image(tmp_path / "in" / f"{key}.png", key)
    pipe = HandshakePipe()
    writer = WaitingWriter(tmp_path / "out", pipe)
    summary = run_labeling(pipe, [tmp_path / "in"], "truck", tmp_path / "out", extra_writers=[writer])
    assert writer.overlapped == [True] and len(summary.labeled) == 3
    assert set(writer.threads) == {"grounded-sam-writer_0"} and "grounded-sam-writer_0" not in pipe.threads
    records = manifest_lines(tmp_path / "out")[1:]
    assert [r["stem"] for r in records] == ["1", "2", "3"]


def test_the_next_image_is_decoded_during_the_models_and_only_one_ahead(tmp_path, monkeypatch):
    from grounded_sam.runs import batch

    for key in range(1, 6):
        write_image(tmp_path / "in" / f"{key}.png", key)
    loads: list[tuple[str, str]] = []
    real_load = batch.load_image

    def recording_load(path):
        loads.append((Path(path).stem, threading.current_thread().name))
        return real_load(path)

    monkeypatch.setattr(batch, "load_image", recording_load)
    loaded_at_call: list[int] = []

    class Pipe(ShapesPipe):
        def __call__(self, rgb, categories):
            time.sleep(0.05)  # the decode of the next image has time to start; it must not go further
            loaded_at_call.append(len(loads))
            return super().__call__(rgb, categories)

    summary = label_images(Pipe(), collect_images([tmp_path / "in"]), "truck", [])
    assert len(summary.labeled) == 5
    assert [stem for stem, _ in loads] == ["1", "2", "3", "4", "5"]
    assert {thread for _, thread in loads} == {"grounded-sam-decode_0"}
    # While the models run on image k, image k+1 may be decoded too, never k+2: memory stays flat.
    assert all(count <= min(k + 2, 5) for k, count in enumerate(loaded_at_call)), loaded_at_call
