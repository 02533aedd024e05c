"""Tracking a clip into an output folder with the same guarantees as a folder run.

Every frame's files are written as soon as its window is tracked (atomically), with one manifest
line per frame (``source`` is ``<clip>#frame=<index>``, ``stem`` is ``frame_<index>``). After each
window, ``track_state.json`` records the tracks carried to the next key frame (ids, classes,
scores, masks as RLE) and the next free id, so a run that is killed resumes at the last key frame
it reached and ends with the same files as an uninterrupted run; at the end it records that the run
is finished, so running it again rewrites the dataset files and tracks nothing. Dataset-level files
(COCO with ``track_id``, ``video_id`` and ``frame_id``; ``mot.txt``; ``overlay.mp4``) are assembled
at the end from the per-frame records, one frame at a time.

:func:`track_on` is the frame loop; :func:`run_tracking` and an edit's re-tracking
(:mod:`grounded_sam.runs.retrack`) both run it, on a :class:`TrackRun`.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from grounded_sam.annotate import OverlayAnnotator
from grounded_sam.categories import Categories, CategoriesLike, parse_categories
from grounded_sam.errors import OptionError
from grounded_sam.export.base import ImageRecord, LabeledImage, OutputWriter
from grounded_sam.export.files import atomic_write_text
from grounded_sam.export.formats import build_writers, parse_formats
from grounded_sam.export.rle import decode_rle, encode_mask
from grounded_sam.pipeline.track import Track, TrackedFrame, TrackerState, TrackingOptions, track_frames
from grounded_sam.runs.batch import BatchSummary, ImageOutcome, file_sha256, finish_run, source_key

logger = logging.getLogger(__name__)

STATE_NAME = "track_state.json"
#: Formats a tracking run can write: the image formats per frame, plus MOTChallenge.
TRACK_FORMATS: tuple[str, ...] = ("coco", "yolo", "voc", "masks", "mot")

TrackProgress = Callable[[int, int | None, ImageOutcome], None]


def frame_stem(index: int) -> str:
    """A frame's output name: ``frame_000042`` (zero-padded, so names sort in frame order)."""
    return f"frame_{index:06d}"


def frame_source(clip: str, index: int) -> str:
    """How the manifest names a frame of ``clip`` (a :func:`~grounded_sam.runs.batch.source_key`): ``<clip>#frame=<index>``."""
    return f"{clip}#frame={index}"


def parse_track_formats(formats: str | Iterable[str] | None) -> tuple[tuple[str, ...], bool]:
    """Splits ``"coco,mot"`` (or ``"all"``) into the image dataset formats and whether ``mot`` was asked.

    Raises:
        OptionError: An unknown format; the message lists the valid ones.
    """
    items = formats.split(",") if isinstance(formats, str) else list(formats or ())
    wanted = {str(i).strip().lower() for i in items if str(i).strip()}
    mot = "mot" in wanted or "all" in wanted
    try:
        return parse_formats(sorted(wanted - {"mot"})), mot
    except OptionError:
        unknown = sorted(wanted - set(TRACK_FORMATS) - {"all"})
        raise OptionError(f"Unknown format {', '.join(unknown)}: expected a comma-separated list of "
                          f"{', '.join(TRACK_FORMATS)} (or all).") from None


@dataclass
class RunState:
    """What ``track_state.json`` holds: where a tracking run goes on from, and what it carries there.

    Attributes:
        key_frame: The frame a resumed run starts at: a key frame, or the frame an edit fixed.
        tracker: The tracks carried to that frame (their masks on it) and the next free id.
        detect: Whether the detector runs on ``key_frame`` when the run goes on (False on a frame an
            edit fixed: its masks are final).
        finished: Every frame of the range is written; running again only rewrites the dataset files.
        edits: Every edit of the run in order, as :class:`~grounded_sam.runs.retrack.TrackEdit` records
            them; while the run is not finished, the last one is still being re-tracked.
    """

    key_frame: int
    tracker: TrackerState
    detect: bool = True
    finished: bool = False
    edits: list[dict[str, Any]] = field(default_factory=list)


def save_state(path: Path, state: RunState) -> None:
    """Writes ``state`` (the carried masks as RLE), atomically."""
    tracks = [{"track_id": t.track_id, "class_id": t.class_id, "class_name": t.class_name, "score": t.score,
               "mask": encode_mask(t.mask)} for t in state.tracker.tracks]
    atomic_write_text(path, json.dumps({"key_frame": state.key_frame, "next_id": state.tracker.next_id,
                                        "tracks": tracks, "detect": state.detect, "finished": state.finished,
                                        "edits": state.edits}))


def load_state(path: Path) -> RunState | None:
    """The state :func:`save_state` wrote, or None when there is no state file.

    Files written before edits existed (no ``detect``, ``finished`` or ``edits``) read as a run to
    resume at a key frame, without edits.
    """
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    tracks = [Track(t["track_id"], t["class_id"], t["class_name"], t["score"], decode_rle(t["mask"]))
              for t in data["tracks"]]
    return RunState(int(data["key_frame"]), TrackerState(tracks, int(data["next_id"])), bool(data.get("detect", True)),
                    bool(data.get("finished", False)), list(data.get("edits", [])))


@dataclass(frozen=True)
class TrackRun:
    """A tracking run's folder as its frame loop needs it: what :func:`run_tracking` was asked, or what an
    edit reads back from the manifest (:func:`open_track_run`).

    Attributes:
        out: The output folder.
        video: The clip file or frame folder its frames are read from.
        source: How the manifest names the clip (its frames are ``<source>#frame=<index>``): the path it
            was tracked from.
        settings: The run's settings (the manifest's first line, and every label record's ``settings``).
        categories: The parsed categories.
        options: Key-frame spacing and the match threshold.
        first: Index of the range's first frame: the first key frame.
        expected: Frames in the range, None when the clip does not say.
        writers: Per-frame writers, then MOT and the overlay video.
    """

    out: Path
    video: Path
    source: str
    settings: dict[str, Any]
    categories: Categories
    options: TrackingOptions
    first: int
    expected: int | None
    writers: list[OutputWriter]

    @property
    def span(self) -> dict[str, Any]:
        """``start_s``, ``end_s`` and ``max_frames`` of the range (keyword arguments of ``iter_frames``)."""
        return {key: self.settings[key] for key in ("start_s", "end_s", "max_frames")}

    @property
    def state_path(self) -> Path:
        return self.out / STATE_NAME


def track_settings(pipe: Any, video: str | os.PathLike[str], categories: Categories, options: TrackingOptions, *,
                   formats: str | Iterable[str] | None, plot: bool, overlap: str, coco_masks: str,
                   start_s: float | None, end_s: float | None, max_frames: int | None,
                   short_model_names: bool) -> dict[str, Any]:
    """What a run records as its settings; a folder resumes only with the same ones.

    Raises:
        OptionError: An unknown format or overlap mode.
        VideoLoadError: The clip is missing or not a video.
    """
    from grounded_sam.export.overlap import check_overlap_mode
    from grounded_sam.inputs.video import probe_video

    image_formats, mot = parse_track_formats(formats)
    check_overlap_mode(overlap)
    probe_video(video)  # a clip that is missing or not a video says so before it is hashed
    return {
        "video": Path(video).name, "video_sha256": None if Path(video).is_dir() else file_sha256(video),
        "categories": categories.to_spec(), **pipe.settings().as_dict(short_model_names=short_model_names),
        "every": options.every,
        "match_iou": options.match_iou, "start_s": start_s, "end_s": end_s, "max_frames": max_frames,
        "formats": [*image_formats, *(["mot"] if mot else [])], "plot": bool(plot), "overlap": overlap,
        "coco_masks": coco_masks,
    }


def open_track_run(out_dir: str | os.PathLike[str], video: str | os.PathLike[str], settings: dict[str, Any], *,
                   annotator: OverlayAnnotator | None = None, source: str | None = None) -> TrackRun:
    """A run's folder from its settings (as :func:`track_settings` made them): the clip's range and the writers.

    ``source`` is the clip's name in the manifest when it was tracked from another path (default:
    :func:`~grounded_sam.runs.batch.source_key` of ``video``).

    Raises:
        VideoLoadError: The clip cannot be read, or has no frames in the range.
        OptionError: Settings this version cannot write.
    """
    from grounded_sam.inputs.video import frames_to_track, probe_video

    parsed = parse_categories(settings["categories"])
    options = TrackingOptions(every=int(settings["every"]), match_iou=float(settings["match_iou"]))
    image_formats, mot = parse_track_formats(settings["formats"])
    info = probe_video(video)
    first, _, expected = frames_to_track(info, settings["start_s"], settings["end_s"], settings["max_frames"])
    out = Path(out_dir)
    writers = _writers(out, parsed.class_names, image_formats, mot=mot, plot=settings["plot"],
                       overlap=settings["overlap"], coco_masks=settings["coco_masks"], fps=info.fps, annotator=annotator)
    return TrackRun(out, Path(video), source or source_key(video), settings, parsed, options, first, expected, writers)


def run_tracking(
    pipe: Any,
    video: str | os.PathLike[str],
    categories: CategoriesLike,
    out_dir: str | os.PathLike[str],
    *,
    options: TrackingOptions = TrackingOptions(),
    formats: str | Iterable[str] | None = (),
    plot: bool = False,
    overlap: str = "auto",
    coco_masks: str = "rle",
    start_s: float | None = None,
    end_s: float | None = None,
    max_frames: int | None = None,
    force: bool = False,
    annotator: OverlayAnnotator | None = None,
    short_model_names: bool = False,
    on_progress: TrackProgress | None = None,
) -> BatchSummary:
    """Tracks a clip into ``out_dir``: per-frame outputs as each window is done, datasets at the end.

    Writes ``labels/frame_<i>.json`` for every frame (the labels JSON plus ``track_id`` per object
    and ``frame``), the asked image formats per frame, ``mot.txt`` with ``mot``, and with ``plot``
    ``overlays/frame_<i>.png`` and ``overlay.mp4``. Running it again with the same settings resumes
    (an interrupted run, or an edit's re-tracking, see :mod:`grounded_sam.runs.retrack`); on a
    finished run it only rewrites the dataset files, so it never undoes an edit.

    Args:
        pipe: A :class:`~grounded_sam.pipeline.GroundedSAM2`.
        video: A clip file or a folder of frames.
        categories: The category prompts.
        out_dir: The output folder.
        options: Key-frame spacing and the match threshold.
        formats: Any of :data:`TRACK_FORMATS` (``"coco,mot"``, a list, or ``"all"``).
        plot: Also write the overlays and the overlay video.
        overlap: As for folder runs (:mod:`grounded_sam.export.overlap`).
        coco_masks: ``rle`` or ``polygon``.
        start_s: First second of the clip.
        end_s: Second to stop before.
        max_frames: Most frames to track.
        force: Delete this tool's earlier outputs in ``out_dir`` first.
        annotator: How the overlays (and so the overlay video) are drawn; the default shows masks,
            boxes and labels.
        short_model_names: Record model paths by their last part (for outputs handed to others, as the
            app's zips are), instead of in full.
        on_progress: Called after each frame with ``(frames done, frames expected or None, outcome)``.

    Raises:
        VideoLoadError, OptionError, OutputFolderError, and the model errors of the pipeline.
    """
    from grounded_sam.runs.manifest import Manifest

    parsed = parse_categories(categories)
    settings = track_settings(pipe, video, parsed, options, formats=formats, plot=plot, overlap=overlap,
                              coco_masks=coco_masks, start_s=start_s, end_s=end_s, max_frames=max_frames,
                              short_model_names=short_model_names)
    run = open_track_run(out_dir, video, settings, annotator=annotator)
    summary = BatchSummary(total=run.expected, out_dir=run.out)
    with Manifest.open(run.out, settings, force=force) as manifest:
        pipe.detector, pipe.segmenter, pipe.video_propagator  # noqa: B018 - missing weights stop the run once
        track_on(pipe, run, manifest, load_state(run.state_path), summary, on_progress)
        finish_run(run.writers, manifest, summary, "frames")
    return summary


def track_on(pipe: Any, run: TrackRun, manifest: Any, resumed: RunState | None, summary: BatchSummary,
             on_progress: TrackProgress | None = None) -> None:
    """The frame loop of a run and of an edit: tracks from ``resumed`` (else the range's first frame) to the
    end of the range, writes each frame as it is done, saves the state at every key frame, and at the end
    marks the run finished.

    Frames before the start count in ``summary`` as skipped; a Ctrl-C sets ``summary.interrupted``
    (the state then says where to go on). The caller writes the dataset files (:func:`finish_run`).
    """
    from grounded_sam.inputs.video import iter_frames

    state = resumed or RunState(run.first, TrackerState())
    done_before = state.key_frame if not state.finished else None
    summary.outcomes.extend(ImageOutcome(r.source, r.stem, True, skipped=True, num_detections=r.detections)
                            for r in manifest.dataset_records()
                            if r.frame is not None and (done_before is None or r.frame < done_before))
    if state.finished:
        logger.info("%s is tracked to the end already: rewriting its dataset files only", run.out)
        return
    if resumed:
        logger.info("Tracking %s on from frame %d with %d tracks", run.out, state.key_frame, len(state.tracker.tracks))
    frames = iter_frames(run.video, **run.span, first_index=state.key_frame)
    last_key = state.key_frame

    def on_key_frame(key_frame: int, carried: TrackerState) -> None:
        nonlocal last_key
        last_key = key_frame
        save_state(run.state_path, RunState(key_frame, carried, edits=state.edits))

    def detect(rgb: np.ndarray) -> Any:
        return pipe(rgb, run.categories)

    try:
        for tracked in track_frames(frames, run.categories, detect, pipe.video_propagator.propagate, run.options,
                                    state.tracker, on_key_frame=on_key_frame, detect_first=state.detect,
                                    origin=run.first):
            outcome = _write_frame(tracked, run, manifest)
            summary.outcomes.append(outcome)
            if on_progress is not None:
                on_progress(len(summary.outcomes), run.expected, outcome)
    except KeyboardInterrupt:
        summary.interrupted = True  # the frame in progress has no manifest line: done again on resume
        return
    # The tracks themselves are of no more use: a finished run is never resumed, only edited.
    save_state(run.state_path, RunState(last_key, TrackerState([], state.tracker.next_id), finished=True,
                                        edits=state.edits))


def _writers(out: Path, class_names: tuple[str, ...], image_formats: tuple[str, ...], *, mot: bool, plot: bool,
             overlap: str, coco_masks: str, fps: float, annotator: OverlayAnnotator | None) -> list[OutputWriter]:
    """The folder-run writers for the image formats (per frame), then MOT and the overlay video."""
    from grounded_sam.export.mot import MotWriter
    from grounded_sam.export.video import OverlayVideoWriter

    writers = build_writers(out, class_names, image_formats, plot=plot, overlap=overlap, coco_masks=coco_masks,
                            annotator=annotator)
    if mot:
        writers.append(MotWriter(out))
    if plot:
        writers.append(OverlayVideoWriter(out, fps))  # after the OverlayWriter, whose PNGs it encodes
    return writers


def _write_frame(tracked: TrackedFrame, run: TrackRun, manifest: Any) -> ImageOutcome:
    """Writes one frame's files, then its manifest line (last: it promises the files are complete).

    A frame the manifest lists as done already (a resumed window, or a frame an edit re-tracks) is first
    listed as being rewritten, so a kill among its files never leaves the manifest promising a mix of
    old and new ones: the resumed run writes it again.
    """
    started = time.perf_counter()
    stem = frame_stem(tracked.index)
    source = frame_source(run.source, tracked.index)
    previous = manifest.previous(source)
    if previous is not None and previous.ok:
        manifest.record(ImageRecord(source=source, stem=stem, status="failed", frame=tracked.index,
                                    error="being rewritten: run again to finish the re-tracking"))
    class_names = run.categories.class_names
    item = LabeledImage(f"{Path(run.source).name}#frame={tracked.index}", stem, tracked.image, tracked.detections,
                        class_names, run.settings)
    written: list[Path] = []
    for writer in run.writers:
        written.extend(writer.write(item))
    relative = tuple(Path(p).relative_to(run.out).as_posix() for p in written)
    height, width = tracked.image.shape[:2]
    seconds = time.perf_counter() - started
    manifest.record(ImageRecord(
        source=source, stem=stem, status="ok", width=width, height=height, detections=len(tracked.detections),
        labels=next((p for p in relative if p == f"labels/{stem}.json"), None),
        image_file=next((p for p in relative if p.startswith("images/")), None),
        outputs=relative, seconds=round(seconds, 3), frame=tracked.index,
    ))
    return ImageOutcome(source, stem, True, num_detections=len(tracked.detections),
                        outputs=[str(p) for p in written], seconds=seconds)
