"""Tracking a clip into an output folder with the same guarantees as a folder run.

Every frame's files are written as soon as its window is tracked (atomically), with one manifest
line per frame (``source`` is ``<clip>#frame=<index>``, ``stem`` is ``frame_<index>``). After each
window, ``track_state.json`` records the tracks carried to the next key frame (ids, classes,
scores, masks as RLE) and the next free id, so a run that is killed resumes at the last key frame
it reached and ends with the same files as an uninterrupted run. Dataset-level files (COCO with
``track_id``, ``video_id`` and ``frame_id``; ``mot.txt``; ``overlay.mp4``) are assembled at the end
from the per-frame records, one frame at a time.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from grounded_sam.annotate import OverlayAnnotator
from grounded_sam.categories import CategoriesLike, parse_categories
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


def save_state(path: Path, key_frame: int, state: TrackerState) -> None:
    """Writes the tracks carried to ``key_frame`` (their masks as RLE) and the next id, atomically."""
    tracks = [{"track_id": t.track_id, "class_id": t.class_id, "class_name": t.class_name, "score": t.score,
               "mask": encode_mask(t.mask)} for t in state.tracks]
    atomic_write_text(path, json.dumps({"key_frame": key_frame, "next_id": state.next_id, "tracks": tracks}))


def load_state(path: Path) -> tuple[int, TrackerState] | None:
    """The key frame and carried tracks :func:`save_state` wrote, or None when there is no state file."""
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    tracks = [Track(t["track_id"], t["class_id"], t["class_name"], t["score"], decode_rle(t["mask"]))
              for t in data["tracks"]]
    return int(data["key_frame"]), TrackerState(tracks, int(data["next_id"]))


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
    ``overlays/frame_<i>.png`` and ``overlay.mp4``. Running it again with the same settings resumes.

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
    from grounded_sam.export.overlap import check_overlap_mode
    from grounded_sam.inputs.video import frames_to_track, iter_frames, probe_video
    from grounded_sam.runs.manifest import Manifest

    parsed = parse_categories(categories)
    image_formats, mot = parse_track_formats(formats)
    check_overlap_mode(overlap)
    info = probe_video(video)
    first, _, expected = frames_to_track(info, start_s, end_s, max_frames)
    out = Path(out_dir)
    settings: dict[str, Any] = {
        "video": Path(video).name, "video_sha256": None if Path(video).is_dir() else file_sha256(video),
        "categories": parsed.to_spec(), **pipe.settings().as_dict(short_model_names=short_model_names),
        "every": options.every,
        "match_iou": options.match_iou, "start_s": start_s, "end_s": end_s, "max_frames": max_frames,
        "formats": [*image_formats, *(["mot"] if mot else [])], "plot": bool(plot), "overlap": overlap,
        "coco_masks": coco_masks,
    }
    writers = _writers(out, parsed.class_names, image_formats, mot=mot, plot=plot, overlap=overlap,
                       coco_masks=coco_masks, fps=info.fps, annotator=annotator)
    summary = BatchSummary(total=expected, out_dir=out)
    clip = source_key(video)
    with Manifest.open(out, settings, force=force) as manifest:
        pipe.detector, pipe.segmenter, pipe.video_propagator  # noqa: B018 - missing weights stop the run once
        resumed = load_state(out / STATE_NAME)
        state, start_index = (resumed[1], resumed[0]) if resumed else (TrackerState(), first)
        if resumed:
            logger.info("Resuming %s at key frame %d with %d tracks", out, start_index, len(state.tracks))
            summary.outcomes.extend(ImageOutcome(r.source, r.stem, True, skipped=True, num_detections=r.detections)
                                    for r in manifest.dataset_records() if r.frame is not None and r.frame < start_index)
        frames = iter_frames(video, start_s=start_s, end_s=end_s, max_frames=max_frames, first_index=start_index)

        def on_key_frame(key_frame: int, carried: TrackerState) -> None:
            save_state(out / STATE_NAME, key_frame, carried)

        def detect(rgb: np.ndarray) -> Any:
            return pipe(rgb, parsed)

        try:
            for tracked in track_frames(frames, parsed, detect, pipe.video_propagator.propagate, options, state,
                                        on_key_frame=on_key_frame):
                outcome = _write_frame(tracked, clip, writers, manifest, out, parsed.class_names, settings)
                summary.outcomes.append(outcome)
                if on_progress is not None:
                    on_progress(len(summary.outcomes), expected, outcome)
        except KeyboardInterrupt:
            summary.interrupted = True  # the frame in progress has no manifest line: done again on resume
        finish_run(writers, manifest, summary, "frames")
    return summary


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


def _write_frame(tracked: TrackedFrame, clip: str, writers: list[OutputWriter], manifest: Any, out: Path,
                 class_names: tuple[str, ...], settings: dict[str, Any]) -> ImageOutcome:
    """Writes one frame's files, then its manifest line (last: it promises the files are complete)."""
    started = time.perf_counter()
    stem = frame_stem(tracked.index)
    source = f"{clip}#frame={tracked.index}"
    item = LabeledImage(f"{Path(clip).name}#frame={tracked.index}", stem, tracked.image, tracked.detections,
                        class_names, settings)
    written: list[Path] = []
    for writer in writers:
        written.extend(writer.write(item))
    relative = tuple(Path(p).relative_to(out).as_posix() for p in written)
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
