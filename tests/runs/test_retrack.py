"""Fixing a tracked clip with clicks: the tiny models on the MovingSquares clip, through SAM2's real video path.

One 8-frame run (key frames 0, 3, 6) is tracked once per module; each test edits its own copy.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from grounded_sam.errors import EditError, OutputFolderError
from grounded_sam.pipeline.track import TrackingOptions
from grounded_sam.runs.retrack import RetrackResult, TrackEdit, retrack
from grounded_sam.runs.track import STATE_NAME, run_tracking
from tests.fakes import write_squares_clip
from tests.readers import check_coco, check_mot, records

FRAMES, EVERY, EDITED = 8, 3, 4
RUN = {"options": TrackingOptions(every=EVERY), "formats": "coco,mot,yolo", "plot": True}


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_squares_clip(tmp_path_factory.mktemp("clip") / "squares.mp4", FRAMES)


@pytest.fixture(scope="module")
def tracked(scripted_pipe: Any, clip: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tracked") / "out"
    run_tracking(scripted_pipe, clip, "square, bar", out, **RUN)
    return out


def _copy(tracked: Path, folder: Path) -> Path:
    return Path(shutil.copytree(tracked, folder / "out"))


def _files(out: Path) -> dict[str, bytes]:
    """Every output's bytes, less the manifest (timings, a line per rewrite), the encoder's bytes and the folder's path."""
    return {p.relative_to(out).as_posix(): p.read_bytes().replace(str(out).encode(), b"OUT")
            for p in sorted(out.rglob("*")) if p.is_file() and p.name not in {"manifest.jsonl", "overlay.mp4"}}


def _inside(mask: np.ndarray) -> tuple[int, int]:
    """A pixel (x, y) well inside a mask: the one farthest from its edge."""
    import cv2

    distance = cv2.distanceTransform(np.pad(mask, 1).astype(np.uint8), cv2.DIST_L2, 5)[1:-1, 1:-1]
    y, x = np.unravel_index(int(distance.argmax()), distance.shape)
    return int(x), int(y)


def _ids(out: Path) -> dict[int, list[int]]:
    return {int(stem.split("_")[1]): sorted(d.tracker_id.tolist()) for stem, d in records(out).items()}


def _negative_edit(tracked: Path) -> tuple[int, int]:
    """Where the negative click of the edit tests goes: inside track 1's mask on the edited frame."""
    frame = records(tracked)[f"frame_{EDITED:06d}"]
    return _inside(frame.mask[list(frame.tracker_id).index(1)])


@pytest.fixture(scope="module")
def edited(scripted_pipe: Any, tracked: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, RetrackResult]:
    """The run with one negative click on track 1 of frame 4 (between the key frames 3 and 6)."""
    out = _copy(tracked, tmp_path_factory.mktemp("edited"))
    return out, retrack(scripted_pipe, out, EDITED, [_negative_edit(tracked)], [0], track_id=1)


def test_a_negative_point_changes_the_track_from_that_frame_and_nothing_before(
        tracked: Path, edited: tuple[Path, RetrackResult]) -> None:
    out, result = edited
    x, y = _negative_edit(tracked)
    old, new = records(tracked), records(out)
    stem = f"frame_{EDITED:06d}"
    before, after = (r.mask[list(r.tracker_id).index(1)] for r in (old[stem], new[stem]))
    assert before[y, x] and not after[y, x] and after.sum() < before.sum()
    # The other tracks keep their ids on every frame; frames before the edit are not touched, byte for byte.
    assert _ids(out) == _ids(tracked)
    old_files, new_files = _files(tracked), _files(out)
    for name, data in old_files.items():
        if "frame_00000" in name and int(name.split("frame_")[1][:6]) < EDITED:
            assert new_files[name] == data, name
    assert new_files[f"labels/{stem}.json"] != old_files[f"labels/{stem}.json"]
    assert result.track_id == 1 and not result.repeated
    assert [o.stem for o in result.summary.skipped] == [f"frame_{i:06d}" for i in range(EDITED)]
    assert [o.stem for o in result.summary.labeled] == [f"frame_{i:06d}" for i in range(EDITED, FRAMES)]
    # The datasets follow: their own readers load them and they agree with the labels.
    assert check_mot(out) == pytest.approx(1.0)
    check_coco(out, ["square", "bar"])
    state = json.loads((out / STATE_NAME).read_text())
    assert state["finished"] and state["edits"] == [
        {"frame": EDITED, "track_id": 1, "new": False, "class_name": "square", "points": [[x, y]], "labels": [0]}]


def test_the_same_edit_again_and_a_rerun_of_the_track_command_keep_the_edit(
        scripted_pipe: Any, clip: Path, edited: tuple[Path, RetrackResult], tracked: Path) -> None:
    out, _ = edited
    files = _files(out)
    again = retrack(scripted_pipe, out, EDITED, [_negative_edit(tracked)], [0], track_id=1)
    assert again.repeated and again.track_id == 1 and not again.summary.labeled
    rerun = run_tracking(scripted_pipe, clip, "square, bar", out, **RUN)
    assert not rerun.labeled and len(rerun.skipped) == FRAMES
    assert _files(out) == files


def test_a_new_object_gets_the_next_id_from_its_frame_on(scripted_pipe: Any, tracked: Path, tmp_path: Path) -> None:
    out = _copy(tracked, tmp_path)
    key_frame = 2 * EVERY  # the detector ran there: the edit's masks win over a second detection
    result = retrack(scripted_pipe, out, key_frame, [(48, 20), (10, 60)], [1, 0], class_name="Bar")
    assert result.track_id == 5
    ids = _ids(out)
    assert all(5 not in ids[i] for i in range(key_frame)) and all(5 in ids[i] for i in range(key_frame, FRAMES))
    assert all(set(ids[i]) - {5} == set(_ids(tracked)[i]) for i in range(FRAMES))
    frame = records(out)[f"frame_{key_frame:06d}"]
    new = list(frame.tracker_id).index(5)
    assert frame.data["class_name"][new] == "bar" and frame.mask[new][20, 48] and not frame.mask[new][60, 10]
    assert check_mot(out) == pytest.approx(1.0)
    check_coco(out, ["square", "bar"])


@pytest.mark.parametrize("resume", ["the same edit", "the track command"])
def test_an_edit_killed_among_a_frames_files_resumes_to_the_same_files(
        scripted_pipe: Any, clip: Path, tracked: Path, edited: tuple[Path, RetrackResult], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, resume: str) -> None:
    from grounded_sam.export.yolo import YoloWriter

    out = _copy(tracked, tmp_path)
    point = _negative_edit(tracked)
    killed_at = f"frame_{EDITED + 1:06d}"
    write = YoloWriter.write

    def killed_after_the_labels(writer: YoloWriter, item: Any) -> Any:
        if item.stem == killed_at:
            raise KeyboardInterrupt  # Ctrl-C between the frame's labels JSON and its YOLO files
        return write(writer, item)

    monkeypatch.setattr(YoloWriter, "write", killed_after_the_labels)
    killed = retrack(scripted_pipe, out, EDITED, [point], [0], track_id=1)
    monkeypatch.undo()

    assert killed.summary.interrupted and killed.track_id == 1
    state = json.loads((out / STATE_NAME).read_text())
    assert (state["key_frame"], state["detect"], state["finished"], len(state["edits"])) == (EDITED, False, False, 1)
    # The half-written frame is listed as not done, so the dataset files leave it out; the others are complete.
    lines = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()[1:]]
    assert [line["status"] for line in lines if line["stem"] == killed_at][-1] == "failed"
    coco = json.loads((out / "coco" / "annotations.json").read_text())
    assert [Path(image["file_name"]).stem for image in coco["images"]] == [
        f"frame_{i:06d}" for i in range(FRAMES) if i != EDITED + 1]

    if resume == "the track command":
        assert len(run_tracking(scripted_pipe, clip, "square, bar", out, **RUN).labeled) == FRAMES - EDITED
    resumed = retrack(scripted_pipe, out, EDITED, [point], [0], track_id=1)  # finished (or found done), not redone
    assert resumed.repeated and resumed.track_id == 1
    assert _files(out) == _files(edited[0])


@pytest.mark.parametrize(
    ("edit", "error", "message"),
    [
        ({"frame": 99, "points": [(5, 5)], "labels": [1], "track_id": 1}, EditError,
         "Frame 99 is not a tracked frame of this run: expected one of frames 0-7"),
        ({"frame": 4, "points": [(5, 5)], "labels": [1], "track_id": 9}, EditError,
         "Track 9 is not on frame 4: its tracks are 1, 2, 3, 4"),
        ({"frame": 4, "points": [(500, 5)], "labels": [1], "track_id": 1}, EditError,
         r"Point \(500, 5\) is outside the 96x64 image"),
        ({"frame": 4, "points": [(5, 5)], "labels": [1], "class_name": "dog"}, EditError,
         "'dog' is not a class of this run: expected one of square, bar"),
        ({"frame": 4, "points": [(5, 5)], "labels": [0], "class_name": "bar"}, EditError,
         "A new object starts with a positive point"),
        ({"frame": 4, "points": [(5, 5)], "labels": [1], "track_id": 1, "class_name": "bar"}, EditError,
         "class_name is for a new object"),
        ({"frame": 4, "points": [], "labels": [], "track_id": 1}, EditError, "An edit needs at least one point"),
        ({"frame": 4, "points": [(5, 5)], "labels": [2], "track_id": 1}, EditError, "Labels must be 1"),
    ],
)
def test_bad_edits_are_refused_before_anything_changes(scripted_pipe: Any, tracked: Path, edit: dict[str, Any],
                                                       error: type[Exception], message: str) -> None:
    files = _files(tracked)
    with pytest.raises(error, match=message):
        retrack(scripted_pipe, tracked, **edit)
    assert _files(tracked) == files


def test_a_folder_that_is_not_this_pipelines_tracking_run_is_refused(
        tiny_models: dict[str, Path], scripted_pipe: Any, tracked: Path, tmp_path: Path) -> None:
    from grounded_sam.pipeline import GroundedSAM2

    with pytest.raises(OutputFolderError, match="holds no manifest.jsonl"):
        retrack(scripted_pipe, tmp_path, 0, [(5, 5)], [1], track_id=1)
    other = GroundedSAM2(tiny_models["florence"], tiny_models["sam2"], device="cpu", nms="none")
    with pytest.raises(OutputFolderError, match="tracked with other models or options:\n  detector: "):
        retrack(other, tracked, 0, [(5, 5)], [1], track_id=1)


def test_an_edit_reads_loose_points() -> None:
    edit = TrackEdit.of(np.int64(3), np.array([[1, 2], [3.5, 4]]), np.array([1, 0]), np.int64(2))
    assert edit == TrackEdit(3, ((1.0, 2.0), (3.5, 4.0)), (1, 0), 2)
    assert edit.same_as(edit.record(2, "square")) and not edit.same_as(TrackEdit(3, ((1, 2),), (1,), 2).record(2, "x"))
