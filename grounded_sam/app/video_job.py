"""A video job of the web app, without Gradio: the clip checked against the server's caps, the tracking run
streamed frame by frame, one frame's overlay and objects, the summary and the results zip.

A video job folder holds ``results/`` (what :func:`~grounded_sam.runs.track.run_tracking` writes),
``frames/`` (every frame's overlay PNG, for the frame viewer), ``run/`` (the run's manifest and
tracker state) and the results zip: ``results/`` without the overlay PNGs (the overlay video shows
them; a long clip's PNGs would dwarf the labels) and without the run's own bookkeeping (it names
server paths). :mod:`grounded_sam.app.video_tab` turns these pieces into a page.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grounded_sam.app.jobs import ProgressEvent, stream_job
from grounded_sam.app.settings import AppSettings
from grounded_sam.categories import CategoriesLike
from grounded_sam.errors import InputError, OptionError, VideoLoadError
from grounded_sam.pipeline.track import DEFAULT_EVERY, TrackingOptions
from grounded_sam.runs.batch import BatchSummary
from grounded_sam.runs.track import STATE_NAME, frame_stem, parse_track_formats

if TYPE_CHECKING:
    from grounded_sam.inputs.video import VideoInfo

__all__ = [
    "DEFAULT_VIDEO_FORMATS", "ClipOptions", "ClipPlan", "FrameView", "finish_video_job", "frame_index", "frame_view",
    "overlay_png", "plan_clip", "stream_tracking", "tracks_by_class", "video_summary_text",
]

#: Dataset formats a video job writes unless asked otherwise: COCO with track ids, and MOTChallenge.
DEFAULT_VIDEO_FORMATS: tuple[str, ...] = ("coco", "mot")
RESULTS, FRAMES, RUN = "results", "frames", "run"
#: What the run writes for itself, set aside from the results zip.
BOOKKEEPING = ("manifest.jsonl", STATE_NAME)


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
    """A finished video job, for the frame viewer: its folder and the frame indices it tracked."""

    job: Path
    first: int
    last: int

    def overlay(self, index: int) -> Path:
        return self.job / FRAMES / f"{frame_stem(index)}.png"

    def labels(self, index: int) -> Path:
        return self.job / RESULTS / "labels" / f"{frame_stem(index)}.json"


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
    frame = min(max(int(_number("frame", index, whole=True) or 0), view.first), view.last)
    overlay, labels = view.overlay(frame), view.labels(frame)
    if not overlay.is_file() or not labels.is_file():
        raise InputError(f"Frame {frame} of this result is gone (results are kept 6 hours): track the clip again.")
    detections = json.loads(labels.read_text(encoding="utf-8"))["detections"]
    rows = sorted([d.get("track_id"), d["class_name"], "" if d.get("score") is None else f"{d['score']:.3f}"]
                  for d in detections)
    return str(overlay), rows


def finish_video_job(job: Path, plan: ClipPlan, summary: BatchSummary) -> tuple[Path, FrameView]:
    """Sets the overlay PNGs and the run's bookkeeping aside, then zips the results.

    Returns:
        The results zip, and the frame viewer's view of the job.
    """
    from grounded_sam.inputs.archive import write_zip

    out = job / RESULTS
    os.replace(out / "overlays", job / FRAMES)
    (job / RUN).mkdir(exist_ok=True)
    for name in BOOKKEEPING:
        if (out / name).exists():
            os.replace(out / name, job / RUN / name)
    results = write_zip(out, job / f"grounded-sam-video-{time.strftime('%Y%m%d-%H%M%S')}.zip")
    indices = [frame_index(o.source) for o in summary.labeled]
    return results, FrameView(job, min(indices, default=plan.first), max(indices, default=plan.first))


def frame_index(source: str) -> int:
    """The frame index of a tracked frame's source (``<clip>#frame=<index>``)."""
    return int(source.rsplit("#frame=", 1)[1])


def video_summary_text(plan: ClipPlan, summary: BatchSummary | None, done: int = 0,
                       tracks: Mapping[str, set[int]] | None = None) -> str:
    """What the user reads: frames done while it runs; at the end the objects tracked per class and the zip."""
    total = f"{plan.frames}" if plan.frames is not None else "?"
    if summary is None:
        return f"Tracking {plan.name}... {done} of {total} frames done."
    every = plan.run["options"].every
    objects = ", ".join(f"{name} {len(ids)}" for name, ids in (tracks or {}).items()) or "none"
    detector = "every frame" if every == 1 else f"every {every} frames"
    tracked = len(summary.labeled)
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
