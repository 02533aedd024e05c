"""The video tab's job without Gradio or models: the clip's checks against the caps, the options a request hands
over, one frame's objects, the summary and the results zip."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from grounded_sam.app.settings import AppSettings
from grounded_sam.app.video_job import (
    ClipOptions,
    FrameView,
    finish_video_job,
    frame_view,
    plan_clip,
    tracks_by_class,
    video_summary_text,
)
from grounded_sam.errors import InputError, OptionError, VideoLoadError
from grounded_sam.runs.batch import BatchSummary, ImageOutcome
from tests.fakes import MovingSquares, write_clip

FRAMES = 8


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    scene = MovingSquares(frames=FRAMES)
    return write_clip(tmp_path_factory.mktemp("clip") / "squares.mp4", [scene.frame(i) for i in range(FRAMES)])


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (ClipOptions(), (15, (None, None, None), ["coco", "mot"])),
        (ClipOptions(3.0, 0, 0, 0, []), (3, (None, None, None), [])),
        (ClipOptions("4", "10", 0.5, "2.5", ["mot", "yolo"]), (4, (0.5, 2.5, 10), ["yolo", "mot"])),
        (ClipOptions(1, None, None, None, "all"), (1, (None, None, None), ["coco", "yolo", "voc", "masks", "mot"])),
    ],
)
def test_clip_options_read_what_a_request_hands_over(options: ClipOptions, expected: tuple[Any, ...]) -> None:
    every, span, formats = expected
    assert options.tracking().every == every
    assert options.span() == span
    assert options.format_list() == formats


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (ClipOptions(every=0), "every must be a whole number of frames >= 1, but got 0"),
        (ClipOptions(every=2.5), "every must be a whole number, but got 2.5"),
        (ClipOptions(every="often"), "every must be a number, but got 'often'"),
        (ClipOptions(max_frames=1.5), "max_frames must be a whole number"),
        (ClipOptions(formats=["gif"]), "Unknown format gif: expected a comma-separated list of coco, yolo"),
    ],
)
def test_clip_options_refuse_bad_values_by_name(options: ClipOptions, message: str) -> None:
    with pytest.raises(OptionError, match=message):
        options.tracking()
        options.span()
        options.format_list()


def test_plan_clip_counts_the_frames_asked_for(clip: Path) -> None:
    whole = plan_clip(clip, ClipOptions(every=3), AppSettings())
    assert (whole.name, whole.first, whole.frames) == ("squares.mp4", 0, FRAMES)
    assert whole.run["max_frames"] == AppSettings().max_video_frames  # never unbounded
    assert whole.run["options"].every == 3 and whole.run["formats"] == ["coco", "mot"]

    part = plan_clip(clip, ClipOptions(start_s=0.2, end_s=0.6), AppSettings(max_video_frames=4))  # 10 fps
    assert (part.first, part.frames, part.run["start_s"], part.run["end_s"]) == (2, 4, 0.2, 0.6)
    assert plan_clip(clip, ClipOptions(max_frames=3), AppSettings(max_video_frames=3)).frames == 3


def test_a_matroska_clip_is_refused_over_the_cap_from_its_estimated_length(tmp_path: Path) -> None:
    scene = MovingSquares(frames=FRAMES)
    mkv = write_clip(tmp_path / "squares.mkv", [scene.frame(i) for i in range(FRAMES)])  # declares no frame count
    with pytest.raises(VideoLoadError, match="squares.mkv has 8 frames to track"):
        plan_clip(mkv, ClipOptions(), AppSettings(max_video_frames=5))


def test_a_clip_that_does_not_say_its_length_is_tracked_up_to_the_cap(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses

    from grounded_sam.inputs import video

    scene = MovingSquares(frames=FRAMES)
    mkv = write_clip(tmp_path / "squares.mkv", [scene.frame(i) for i in range(FRAMES)])
    probe = video.probe_video
    monkeypatch.setattr(video, "probe_video", lambda path: dataclasses.replace(probe(path), frame_count=None))

    plan = plan_clip(mkv, ClipOptions(), AppSettings(max_video_frames=5))

    assert plan.frames is None and plan.run["max_frames"] == 5
    summary = BatchSummary(outcomes=[ImageOutcome(f"squares.mkv#frame={i}", f"frame_{i:06d}", True) for i in range(5)])
    assert "squares.mkv does not say how long it is: tracking stopped at 5 frames." in video_summary_text(plan, summary)
    assert video_summary_text(plan, None, 2) == "Tracking squares.mkv... 2 of ? frames done."


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("over the frame cap", "squares.mp4 has 8 frames to track (0.8 s at 10 fps), over the cap of 5 frames"),
        ("over the pixel cap", "squares.mp4 has 96x64 frames, over the limit of 1000 pixels per frame"),
        ("not a video", "notes.mp4 is not a video this tool can read"),
        ("empty range", "squares.mp4 has no frames between frames 20 and the end"),
        ("end before start", "The end time 0.1 s must come after the start time 0.5 s"),
    ],
)
def test_plan_clip_refuses_clearly_before_any_model_loads(
    clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str, message: str
) -> None:
    notes = tmp_path / "notes.mp4"
    notes.write_text("a text file, renamed")
    monkeypatch.setenv("GROUNDED_SAM_MAX_PIXELS", "1000" if case == "over the pixel cap" else "0")
    path, options = {
        "over the frame cap": (clip, ClipOptions()),
        "over the pixel cap": (clip, ClipOptions()),
        "not a video": (notes, ClipOptions()),
        "empty range": (clip, ClipOptions(start_s=2.0)),
        "end before start": (clip, ClipOptions(start_s=0.5, end_s=0.1)),
    }[case]
    with pytest.raises(VideoLoadError, match=message.replace("(", r"\(").replace(")", r"\)")):
        plan_clip(path, options, AppSettings(max_video_frames=5 if case == "over the frame cap" else 900))


def fake_job(job: Path, frames: dict[int, list[dict[str, Any]]]) -> BatchSummary:
    """A finished run's folder as run_tracking leaves it (labels, overlays, bookkeeping), and its summary."""
    out = job / "results"
    for folder in ("labels", "overlays", "coco"):
        (out / folder).mkdir(parents=True)
    summary = BatchSummary(total=len(frames), out_dir=out)
    for index, detections in frames.items():
        stem = f"frame_{index:06d}"
        (out / "labels" / f"{stem}.json").write_text(json.dumps({"frame": {"index": index}, "detections": detections}))
        Image.new("RGB", (8, 6), (index, 0, 0)).save(out / "overlays" / f"{stem}.png")
        summary.outcomes.append(ImageOutcome(f"/srv/upload/clip.mp4#frame={index}", stem, True,
                                             num_detections=len(detections)))
    for name in ("mot.txt", "overlay.mp4", "coco/annotations.json", "manifest.jsonl", "track_state.json"):
        (out / name).write_text("x")
    return summary


def test_a_finished_job_zips_its_results_and_shows_any_frame(clip: Path, tmp_path: Path) -> None:
    person = {"track_id": 2, "class_name": "person", "score": 0.875}
    summary = fake_job(tmp_path, {4: [person, {"track_id": 1, "class_name": "bed", "score": 0.5}], 5: [person],
                                  6: [{"track_id": 3, "class_name": "person", "score": None}]})
    plan = plan_clip(clip, ClipOptions(every=3, start_s=0.4, end_s=0.7), AppSettings())

    results, view = finish_video_job(tmp_path, plan, summary)

    assert (view.job, view.first, view.last, view.plan) == (tmp_path, 4, 6, plan)
    with zipfile.ZipFile(results) as archive:
        names = set(archive.namelist())
    assert names == {"labels/frame_000004.json", "labels/frame_000005.json", "labels/frame_000006.json", "mot.txt",
                     "overlay.mp4", "coco/annotations.json"}  # no overlay PNGs, no server paths
    overlay, rows = frame_view(view, 4.0)
    assert Path(overlay).name == "frame_000004.png" and np.asarray(Image.open(overlay))[0, 0, 0] == 4
    assert rows == [[1, "bed", "0.500"], [2, "person", "0.875"]]
    assert frame_view(view, 99)[1] == [[3, "person", ""]]  # clamped to the last frame
    assert tracks_by_class(view) == {"person": {2, 3}, "bed": {1}}

    text = video_summary_text(plan, summary, 3, tracks_by_class(view))
    assert text.splitlines()[:2] == ["Tracked 3 frames of squares.mp4 (10 fps; the detector on every 3 frames).",
                                     "Objects tracked: person 2, bed 1."]
    assert "formats: coco, mot" in text and "/srv" not in text
    assert video_summary_text(plan, None, 1) == "Tracking squares.mp4... 1 of 3 frames done."


def test_frame_view_without_a_result_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="No tracked clip yet"):
        frame_view(None, 0)
    with pytest.raises(InputError, match="Frame 2 of this result is gone"):
        frame_view(FrameView(tmp_path, 0, 3), 2)


def test_closing_a_run_stops_the_tracking_worker_and_zips_nothing(
    app_env: None, tiny_models: dict[str, Path], clip: Path
) -> None:
    """What Stop does: Gradio closes the handler's generator; the worker stops after the frame it is on."""
    import tempfile
    import threading

    from grounded_sam.app.options import LabelOptions
    from grounded_sam.app.video_tab import run_video

    settings = AppSettings(detector=str(tiny_models["florence_scripted"]), segmenter=str(tiny_models["sam2"]),
                           device="cpu")
    updates = run_video(settings, str(clip), LabelOptions("square, bar"), ClipOptions(every=3))
    assert "loading models" in next(updates).progress_html
    first = next(updates)
    assert "Tracked 1 of 8 frames" in first.progress_html and first.frame.endswith("frame_000000.png")
    updates.close()

    assert not [t for t in threading.enumerate() if t.name == "grounded-sam-track"]
    jobs = Path(tempfile.gettempdir()) / "grounded-sam-app"
    assert not list(jobs.rglob("*.zip")) and not list(jobs.rglob("overlay.mp4"))


# ---------------------------------------------------------------------------------------------
# A click on a frame: fix a track there (or add an object), then track the clip again from that frame


@pytest.mark.parametrize(
    ("view", "kwargs", "message"),
    [
        (None, {}, "No tracked clip to fix yet"),
        ("job", {"track": ""}, "Pick the track to fix"),
        ("job", {"track": "new", "class_name": None}, "Pick the new object's class"),
        ("job", {"mode": "Select"}, "Unknown point mode 'Select'"),
    ],
)
def test_a_click_without_what_it_needs_says_so(tmp_path: Path, view: Any, kwargs: dict[str, Any], message: str) -> None:
    from grounded_sam.app.options import LabelOptions
    from grounded_sam.app.video_job import GROW, edit_request
    from grounded_sam.errors import EditError

    job = FrameView(tmp_path, 0, 7, LabelOptions("square, bar")) if view else None
    request = {"mode": GROW, "track": "2", "class_name": None, **kwargs}
    with pytest.raises(EditError, match=message):
        edit_request(job, 3, (10.0, 20.0), request["mode"], request["track"], request["class_name"])


def test_a_click_is_a_retrack_request_for_the_slider_frame(tmp_path: Path) -> None:
    from grounded_sam.app.options import LabelOptions
    from grounded_sam.app.video_job import GROW, NEW_OBJECT, SHRINK, edit_request, track_choices

    fake_job(tmp_path, {4: [{"track_id": 2, "class_name": "bar"}, {"track_id": 1, "class_name": "square"}], 5: []})
    view = FrameView(tmp_path, 4, 5, LabelOptions("square, bar"))
    assert track_choices(view) == [("#1 square", "1"), ("#2 bar", "2"), ("New object", NEW_OBJECT)]
    assert edit_request(view, 9, (10, 20), SHRINK, "2", "square") == {
        "frame": 5, "points": [(10.0, 20.0)], "labels": [0], "track_id": 2, "class_name": None}
    assert edit_request(view, "4", (1.5, 2), GROW, NEW_OBJECT, "bar") == {
        "frame": 4, "points": [(1.5, 2.0)], "labels": [1], "track_id": None, "class_name": "bar"}


def test_a_click_on_a_frame_adds_an_object_and_tracks_it_from_there(
    app_env: None, tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Through the page's handlers: Track a 4-frame clip, then a click on frame 1 adds a bar that the video, the
    frame viewer, the track selector and the zip all show; frame 0 stays as it was."""
    from types import SimpleNamespace

    import gradio as gr

    from grounded_sam.app.blocks import build_demo
    from grounded_sam.app.options import LabelOptions, ModelOptions
    from grounded_sam.app.video_job import GROW, NEW_OBJECT
    from grounded_sam.app.video_tab import run_video

    frames = 4
    scene = MovingSquares(frames=frames)
    short = write_clip(tmp_path_factory.mktemp("short") / "squares.mp4", [scene.frame(i) for i in range(frames)])
    settings = AppSettings(detector=str(tiny_models["florence_scripted"]), segmenter=str(tiny_models["sam2"]),
                           device="cpu")
    handlers = {fn.name: fn for fn in build_demo(settings).fns.values()}["click_frame"].fn.__self__
    tab = handlers.tab
    finished = list(run_video(settings, str(short), LabelOptions("square, bar", ModelOptions(nms="none")),
                              ClipOptions(every=2)))[-1]
    view = finished.view
    shown = tab.show(finished)
    assert shown[tab.track].visible and shown[tab.track].choices[-1] == ("New object", NEW_OBJECT)
    assert [c[0] for c in shown[tab.new_class].choices] == ["square", "bar"]
    before = {i: view.overlay(i).read_bytes() for i in range(frames)}
    ids = {row[0] for row in finished.objects}
    bars = len(tracks_by_class(view)["bar"])

    def click(track: str, x: float, y: float, view: Any = view) -> list[dict[Any, Any]]:
        return list(handlers.click_frame(view, 1, track, GROW, "bar", SimpleNamespace(index=[x, y]),
                                         progress=lambda *args, **kwargs: None))

    answers = click(NEW_OBJECT, 48, 20)
    assert "Re-tracked 0 of 3 frames" in answers[0][tab.progress]
    last = answers[-1]
    new_id = max(ids) + 1
    assert f"New object #{new_id} bar added on frame 1" in last[tab.edit_status]
    assert last[tab.frame] == str(view.overlay(1)) and [new_id, "bar"] in [row[:2] for row in last[tab.objects]]
    assert (f"#{new_id} bar", str(new_id)) in last[tab.track].choices
    assert last[tab.summary].startswith("Tracked 4 frames of squares.mp4") and f"bar {bars + 1}" in last[tab.summary]
    assert view.overlay(0).read_bytes() == before[0] and view.overlay(1).read_bytes() != before[1]
    assert last[tab.results] != finished.results and not Path(finished.results).exists()
    with zipfile.ZipFile(last[tab.results]) as archive:
        labels = json.loads(archive.read("labels/frame_000003.json"))
    assert new_id in [d["track_id"] for d in labels["detections"]]

    with pytest.raises(gr.Error, match="Track 99 is not on frame 1"):
        click("99", 10, 10)
    with pytest.raises(gr.Error, match="No tracked clip to fix yet"):
        click("1", 10, 10, view=None)
