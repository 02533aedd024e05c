"""A video job of the web app, without Gradio: the clip checked against the server's caps, the tracking run
streamed frame by frame, one frame's overlay and objects, a click on a frame that fixes a track and
re-tracks from there, the summary and the results zip.

A video job folder holds ``results/`` (the run's folder, as :func:`~grounded_sam.runs.track.run_tracking`
writes it, so an edit (:func:`~grounded_sam.runs.retrack.retrack`) can go on from it) and the results
zip: ``results/`` without the overlay PNGs (the overlay video shows them; a long clip's PNGs would
dwarf the labels) and without the run's own bookkeeping (it names server paths).
:mod:`grounded_sam.app.video_tab` turns these pieces into a page.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grounded_sam.app.jobs import ProgressEvent, stream_job
from grounded_sam.app.settings import AppSettings
from grounded_sam.categories import CategoriesLike
from grounded_sam.editing.editor import GROW, SHRINK
from grounded_sam.errors import EditError, InputError, OptionError, VideoLoadError
from grounded_sam.pipeline.track import DEFAULT_EVERY, TrackingOptions
from grounded_sam.runs.batch import BatchSummary
from grounded_sam.runs.manifest import MANIFEST_NAME
from grounded_sam.runs.track import STATE_NAME, frame_stem, parse_track_formats

if TYPE_CHECKING:
    from grounded_sam.annotate import OverlayAnnotator
    from grounded_sam.app.options import LabelOptions
    from grounded_sam.inputs.video import VideoInfo
    from grounded_sam.runs.retrack import RetrackResult

__all__ = [
    "DEFAULT_VIDEO_FORMATS", "NEW_OBJECT", "POINT_MODES", "ClipOptions", "ClipPlan", "FrameView", "edit_request",
    "edit_status_text", "finish_video_edit", "finish_video_job", "frame_index", "frame_view", "overlay_png",
    "plan_clip", "stream_retrack", "stream_tracking", "track_choices", "tracks_by_class", "video_summary_text",
]

#: Dataset formats a video job writes unless asked otherwise: COCO with track ids, and MOTChallenge.
DEFAULT_VIDEO_FORMATS: tuple[str, ...] = ("coco", "mot")
RESULTS = "results"
#: What the zip leaves out of the run's folder: the overlay PNGs and the run's own bookkeeping.
NOT_ZIPPED = ("overlays", MANIFEST_NAME, STATE_NAME)
#: The track selector's choice that adds an object instead of fixing a track.
NEW_OBJECT = "new"
#: What a click on a frame does: the image editor's + and − points.
POINT_MODES: tuple[str, ...] = (GROW, SHRINK)


def _number(name: str, value: Any, *, whole: bool) -> float | int | None:
    """A request's number: None when empty; a whole number where one is expected (``3.0`` is 3)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise OptionError(f"{name} must be a number, but got {value!r}.") from None
    if whole and not number.is_integer():
        raise OptionError(f"{name} must be a whole number, but got {value!r}.")
    return int(number) if whole else number


@dataclass(frozen=True)
class ClipOptions:
    """How a clip is tracked, as a request hands it over (the named API's parameter names).

    ``max_frames`` and ``end_s`` of 0 or empty mean no limit (up to the server's frame cap).
    """

    every: Any = DEFAULT_EVERY
    max_frames: Any = None
    start_s: Any = None
    end_s: Any = None
    formats: Any = DEFAULT_VIDEO_FORMATS

    def tracking(self) -> TrackingOptions:
        """The package's tracking options.

        Raises:
            OptionError: ``every`` is not a whole number >= 1.
        """
        return TrackingOptions(every=_number("every", self.every, whole=True))  # type: ignore[arg-type]

    def span(self) -> tuple[float | None, float | None, int | None]:
        """``(start_s, end_s, max_frames)`` for :func:`~grounded_sam.runs.track.run_tracking`."""
        start = _number("start_s", self.start_s, whole=False)
        end = _number("end_s", self.end_s, whole=False)
        most = _number("max_frames", self.max_frames, whole=True)
        return start or None, end or None, int(most) if most else None

    def format_list(self) -> list[str]:
        """The dataset formats asked for, checked.

        Raises:
            OptionError: An unknown format (the message lists the valid ones).
        """
        image_formats, mot = parse_track_formats(self.formats if isinstance(self.formats, str) else
                                                 [str(f) for f in self.formats or ()])
        return [*image_formats, *(["mot"] if mot else [])]


@dataclass(frozen=True)
class ClipPlan:
    """A clip that passed the server's caps, and what to track of it.

    Attributes:
        path: The uploaded file.
        info: What its header says.
        first: The first frame index to track.
        frames: Frames to track, when the clip says how long it is; None when it does not.
        run: Keyword arguments of :func:`~grounded_sam.runs.track.run_tracking` (the range, the frame
            limit, which is never above the server's cap, the tracking options and the formats).
    """

    path: Path
    info: VideoInfo
    first: int
    frames: int | None
    run: dict[str, Any]

    @property
    def name(self) -> str:
        return self.path.name


def plan_clip(path: Path, clip: ClipOptions, settings: AppSettings) -> ClipPlan:
    """Checks an uploaded clip before any model loads: it is a video, its frames decode and are within the
    pixel cap (``GROUNDED_SAM_MAX_PIXELS``), and the frames asked for are within ``settings.max_video_frames``.

    Raises:
        VideoLoadError: Not a video, corrupt, an unsupported codec, no frames in the range, frames over
            the pixel cap, or more frames than the cap; the message names the file.
        OptionError: A tracking option or format out of range.
    """
    from grounded_sam.inputs.images import default_max_pixels
    from grounded_sam.inputs.video import frames_to_track, iter_frames, probe_video

    tracking, formats = clip.tracking(), clip.format_list()
    start_s, end_s, max_frames = clip.span()
    info = probe_video(path)
    first, _, count = frames_to_track(info, start_s, end_s, max_frames)
    cap = settings.max_video_frames
    if count is not None and count > cap:
        raise VideoLoadError(
            f"{path.name} has {count} frames to track ({count / info.fps:.1f} s at {info.fps:g} fps), over the cap "
            f"of {cap} frames per video job. Track a part of it: set the start and end seconds or the most "
            "frames (the server's operator sets the cap)."
        )
    # The first frame of the range, decoded: the package's own messages for frames over the pixel cap, an
    # empty range or a stream that does not decode, before any model loads.
    frames = iter_frames(path, start_s=start_s, end_s=end_s, max_frames=max_frames, max_pixels=default_max_pixels())
    try:
        next(frames)
    finally:
        frames.close()
    run = {"options": tracking, "formats": formats, "start_s": start_s, "end_s": end_s,
           "max_frames": min(max_frames or cap, cap)}
    return ClipPlan(path, info, first, count, run)


def stream_tracking(pipe: Any, video: Path, categories: CategoriesLike, out_dir: Path,
                    **run: Any) -> Iterator[ProgressEvent | BatchSummary]:
    """:func:`~grounded_sam.runs.track.run_tracking` with its overlays, as a generator
    (:func:`~grounded_sam.app.jobs.stream_job`): a :class:`ProgressEvent` per frame, then the summary.
    Stopping stops the run after the frame it is on."""
    from grounded_sam.runs.track import run_tracking

    return stream_job(lambda on_progress: run_tracking(pipe, video, categories, out_dir, plot=True,
                                                       on_progress=on_progress, **run), name="grounded-sam-track")


@dataclass(frozen=True)
class FrameView:
    """A finished video job, for the frame viewer and for edits: its folder, the frame indices it tracked, and
    what it was tracked with (the options column's models and overlay options; None in views made without).
    """

    job: Path
    first: int
    last: int
    options: LabelOptions | None = None
    plan: ClipPlan | None = None

    @property
    def results(self) -> Path:
        """The run's folder."""
        return self.job / RESULTS

    def overlay(self, index: int) -> Path:
        return self.results / "overlays" / f"{frame_stem(index)}.png"

    def labels(self, index: int) -> Path:
        return self.results / "labels" / f"{frame_stem(index)}.json"

    def frame(self, index: Any) -> int:
        """A requested frame index (the slider's value), as a whole number within the tracked frames."""
        return min(max(int(_number("frame", index, whole=True) or 0), self.first), self.last)


def overlay_png(out_dir: Path, stem: str) -> Path:
    """A frame's overlay while the run writes it (before :func:`finish_video_job` sets the overlays aside)."""
    return out_dir / "overlays" / f"{stem}.png"


def frame_view(view: FrameView | None, index: Any) -> tuple[str, list[list[Any]]]:
    """One frame of a finished job: its overlay PNG and a row per object (track id, class, score).

    Raises:
        InputError: No finished job, or its files were removed (job folders live 6 hours).
    """
    if view is None:
        raise InputError("No tracked clip yet: upload a clip and click Track first.")
    frame = view.frame(index)
    overlay, labels = view.overlay(frame), view.labels(frame)
    if not overlay.is_file() or not labels.is_file():
        raise InputError(f"Frame {frame} of this result is gone (results are kept 6 hours): track the clip again.")
    detections = json.loads(labels.read_text(encoding="utf-8"))["detections"]
    rows = sorted([d.get("track_id"), d["class_name"], "" if d.get("score") is None else f"{d['score']:.3f}"]
                  for d in detections)
    return str(overlay), rows


def finish_video_job(job: Path, plan: ClipPlan, summary: BatchSummary,
                     options: LabelOptions | None = None) -> tuple[Path, FrameView]:
    """Zips the results (without the overlay PNGs and the run's bookkeeping).

    Args:
        options: What the clip was tracked with, kept in the view for edits.

    Returns:
        The results zip, and the frame viewer's view of the job.
    """
    indices = [frame_index(o.source) for o in summary.labeled]
    view = FrameView(job, min(indices, default=plan.first), max(indices, default=plan.first), options, plan)
    return _zip_results(job), view


def _zip_results(job: Path) -> Path:
    """The results zip, written anew (an edit replaces the one before, so the page never offers stale labels)."""
    from grounded_sam.inputs.archive import write_zip

    old = list(job.glob("grounded-sam-video-*.zip"))
    # A new name for every zip: a page still holding the old link never gets half of a rewritten file.
    stamp, n = time.strftime("%Y%m%d-%H%M%S"), len(old)
    results = write_zip(job / RESULTS, job / f"grounded-sam-video-{stamp}{f'-edit{n}' if n else ''}.zip",
                        exclude=NOT_ZIPPED)
    for path in old:
        if path != results:
            path.unlink(missing_ok=True)
    return results


def frame_index(source: str) -> int:
    """The frame index of a tracked frame's source (``<clip>#frame=<index>``)."""
    return int(source.rsplit("#frame=", 1)[1])


def video_summary_text(plan: ClipPlan, summary: BatchSummary | None, done: int = 0,
                       tracks: Mapping[str, set[int]] | None = None, *, tracked: int | None = None) -> str:
    """What the user reads: frames done while it runs; at the end the objects tracked per class and the zip.

    ``tracked`` is the number of frames the job holds when that is not what ``summary`` labeled (after an
    edit, which tracks only the frames from its own on).
    """
    total = f"{plan.frames}" if plan.frames is not None else "?"
    if summary is None:
        return f"Tracking {plan.name}... {done} of {total} frames done."
    every = plan.run["options"].every
    objects = ", ".join(f"{name} {len(ids)}" for name, ids in (tracks or {}).items()) or "none"
    detector = "every frame" if every == 1 else f"every {every} frames"
    tracked = len(summary.labeled) if tracked is None else tracked
    frames = f"{tracked} frame{'s' if tracked != 1 else ''}"
    lines = [f"Tracked {frames} of {plan.name} ({plan.info.fps:g} fps; the detector on {detector}).",
             f"Objects tracked: {objects}."]
    if plan.frames is None and tracked >= plan.run["max_frames"]:
        lines.append(f"{plan.name} does not say how long it is: tracking stopped at {plan.run['max_frames']} frames.")
    formats = ", ".join(plan.run["formats"]) or "none"
    lines.append(f"The zip holds labels/ (one JSON per frame, with track ids), overlay.mp4 and the formats: {formats}.")
    return "\n".join(lines)


def tracks_by_class(view: FrameView) -> dict[str, set[int]]:
    """Every track id of a finished job, by class name (from the per-frame labels)."""
    tracks: dict[str, set[int]] = {}
    for index in range(view.first, view.last + 1):
        labels = view.labels(index)
        if labels.is_file():
            for item in json.loads(labels.read_text(encoding="utf-8"))["detections"]:
                tracks.setdefault(item["class_name"], set()).add(item.get("track_id"))
    return tracks


def track_choices(view: FrameView) -> list[tuple[str, str]]:
    """The track selector's choices: ``("#3 person", "3")`` per track of the job in id order, then a new object."""
    tracks = sorted((track_id, name) for name, ids in tracks_by_class(view).items() for track_id in ids)
    return [(f"#{track_id} {name}", str(track_id)) for track_id, name in tracks] + [("New object", NEW_OBJECT)]


def edit_request(view: FrameView | None, index: Any, point: tuple[float, float], mode: Any, track: Any,
                 class_name: Any) -> dict[str, Any]:
    """A click on the frame the slider shows, as keyword arguments of :func:`~grounded_sam.runs.retrack.retrack`.

    Args:
        view: The finished job.
        index: The slider's frame.
        point: ``(x, y)`` pixels of the click on the frame.
        mode: One of :data:`POINT_MODES`.
        track: A track id (as the selector holds it), or :data:`NEW_OBJECT`.
        class_name: The new object's class.

    Raises:
        EditError: No finished job, no track picked, an unknown mode, a new object without a class.
    """
    if view is None or view.options is None:
        raise EditError("No tracked clip to fix yet: upload a clip and click Track, then click on a frame.")
    if mode not in POINT_MODES:
        raise EditError(f"Unknown point mode {mode!r}: expected one of {', '.join(POINT_MODES)}.")
    if track is None or str(track).strip() == "":
        raise EditError("Pick the track to fix (or New object) first, then click on the frame.")
    new = str(track) == NEW_OBJECT
    if new and not str(class_name or "").strip():
        raise EditError("Pick the new object's class first, then click on it.")
    return {"frame": view.frame(index), "points": [tuple(float(v) for v in point)], "labels": [int(mode == GROW)],
            "track_id": None if new else int(_number("track", track, whole=True)),  # type: ignore[arg-type]
            "class_name": str(class_name) if new else None}


def stream_retrack(pipe: Any, out_dir: Path, edit: dict[str, Any],
                   annotator: OverlayAnnotator | None) -> Iterator[ProgressEvent | RetrackResult]:
    """:func:`~grounded_sam.runs.retrack.retrack` as a generator (:func:`~grounded_sam.app.jobs.stream_job`): a
    :class:`ProgressEvent` per frame (the frames before the edited one count as done), then its result."""
    from grounded_sam.runs.retrack import retrack

    return stream_job(lambda on_progress: retrack(pipe, out_dir, **edit, annotator=annotator, on_progress=on_progress),
                      name="grounded-sam-retrack")


def finish_video_edit(view: FrameView, result: RetrackResult) -> tuple[Path, str | None]:
    """After an edit: the results zip, anew, and the job's summary (its tracks may have changed)."""
    summary = None if view.plan is None else video_summary_text(
        view.plan, result.summary, tracks=tracks_by_class(view), tracked=view.last - view.first + 1)
    return _zip_results(view.job), summary


def edit_status_text(edit: dict[str, Any], result: RetrackResult, view: FrameView, seconds: float) -> str:
    """What the user reads after an edit: which track, and which frames were tracked again."""
    frame, (x, y) = edit["frame"], edit["points"][0]
    if result.summary.interrupted or result.track_id is None:
        return f"The edit on frame {frame} was stopped: click again to finish it."
    if result.repeated:
        return f"That click was the last edit already (track #{result.track_id}, frame {frame}): nothing changed."
    click = f"{'+' if edit['labels'][0] else '−'} point at ({x:.0f}, {y:.0f})"
    what = (f"New object #{result.track_id} {edit['class_name']} added" if edit["track_id"] is None
            else f"Track #{result.track_id} fixed")
    return (f"{what} on frame {frame} ({click}); frames {frame}–{view.last} tracked again in {seconds:.0f} s. "
            "The video, the frames and the zip show the edit.")
