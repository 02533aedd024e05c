"""Tracking a clip into an output folder: per-frame labels, COCO with track ids, MOT, the overlay video, resume."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from grounded_sam.errors import OptionError, OutputFolderError
from grounded_sam.pipeline.track import TrackingOptions
from grounded_sam.runs.track import STATE_NAME, parse_track_formats, run_tracking
from tests.fakes import write_squares_clip
from tests.readers import check_coco, check_mot

FRAMES, EVERY = 8, 3


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_squares_clip(tmp_path_factory.mktemp("clip") / "squares.mp4", FRAMES)


@pytest.fixture(scope="module")
def full_run(scripted_pipe: Any, clip: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("full")
    summary = run_tracking(scripted_pipe, clip, "square, bar", out, options=TrackingOptions(every=EVERY),
                           formats="coco,mot,yolo", plot=True)
    assert len(summary.labeled) == FRAMES and not summary.failed
    return out


def _files(out: Path) -> dict[str, bytes]:
    """Every output's bytes, less what cannot match across folders: timings, the encoder's bytes, absolute paths."""
    skip = {"manifest.jsonl", "overlay.mp4"}
    return {p.relative_to(out).as_posix(): p.read_bytes().replace(str(out).encode(), b"OUT")
            for p in sorted(out.rglob("*")) if p.is_file() and p.name not in skip}


def test_every_frame_has_labels_with_track_ids(full_run: Path) -> None:
    labels = sorted((full_run / "labels").glob("*.json"))
    assert [p.stem for p in labels] == [f"frame_{i:06d}" for i in range(FRAMES)]
    record = json.loads(labels[4].read_text())
    assert record["frame"] == {"index": 4} and record["categories"] == ["square", "bar"]
    assert record["detections"] and all(isinstance(d["track_id"], int) for d in record["detections"])
    manifest = [json.loads(line) for line in (full_run / "manifest.jsonl").read_text().splitlines()]
    assert [m["frame"] for m in manifest[1:]] == list(range(FRAMES))
    assert manifest[0]["settings"]["every"] == EVERY and manifest[0]["settings"]["formats"] == ["coco", "yolo", "mot"]


def test_mot_and_coco_load_with_their_own_readers(full_run: Path) -> None:
    assert check_mot(full_run) == pytest.approx(1.0)
    check_coco(full_run, ["square", "bar"])
    coco = json.loads((full_run / "coco" / "annotations.json").read_text())
    assert [(i["video_id"], i["frame_id"]) for i in coco["images"]] == [(1, i) for i in range(FRAMES)]
    assert all("track_id" in a for a in coco["annotations"])


def test_the_overlay_video_plays_every_frame(full_run: Path) -> None:
    import av

    with av.open(str(full_run / "overlay.mp4")) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height) == (96, 64)
        assert sum(1 for _ in container.decode(stream)) == FRAMES


def test_an_interrupted_run_resumes_to_the_same_files(scripted_pipe: Any, clip: Path, full_run: Path,
                                                      tmp_path: Path) -> None:
    out = tmp_path / "out"
    options = TrackingOptions(every=EVERY)

    def stop_after_five(done: int, total: Any, outcome: Any) -> None:
        if done == 5:
            raise KeyboardInterrupt

    first = run_tracking(scripted_pipe, clip, "square, bar", out, options=options, formats="coco,mot,yolo", plot=True,
                         on_progress=stop_after_five)
    assert first.interrupted and len(first.outcomes) == 5
    assert json.loads((out / STATE_NAME).read_text())["key_frame"] == 3
    second = run_tracking(scripted_pipe, clip, "square, bar", out, options=options, formats="coco,mot,yolo", plot=True)
    assert [o.stem for o in second.skipped] == [f"frame_{i:06d}" for i in range(3)]
    assert _files(out) == _files(full_run)


def test_other_settings_into_the_same_folder_are_refused(scripted_pipe: Any, clip: Path, full_run: Path) -> None:
    with pytest.raises(OutputFolderError, match="every: 3 -> 4"):
        run_tracking(scripted_pipe, clip, "square, bar", full_run, options=TrackingOptions(every=4),
                     formats="coco,mot,yolo", plot=True)


def test_formats() -> None:
    assert parse_track_formats("mot, coco") == (("coco",), True)
    assert parse_track_formats("all") == (("coco", "yolo", "voc", "masks"), True)
    with pytest.raises(OptionError, match="Unknown format gif: expected .* mot"):
        parse_track_formats("coco,gif")


def test_the_overlays_follow_the_annotator_and_short_model_names_hide_folders(scripted_pipe: Any, clip: Path,
                                                                              tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image

    from grounded_sam.annotate import OverlayAnnotator
    from grounded_sam.inputs.video import iter_frames

    run_tracking(scripted_pipe, clip, "square", tmp_path, options=TrackingOptions(every=EVERY), plot=True,
                 max_frames=2, annotator=OverlayAnnotator(masks=False, boxes=False, labels=False),
                 short_model_names=True)
    first = next(iter_frames(clip))[1]
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "overlays" / "frame_000000.png")), first)
    settings = json.loads((tmp_path / "labels" / "frame_000001.json").read_text())["settings"]
    assert settings["detector"] == "florence-scripted" and settings["segmenter"] == "sam2-tiny.pt"
