"""Fixing a tracked clip with clicks: one track's mask on one frame, then the clip re-tracked from there.

:func:`retrack` takes a tracking run's folder (:func:`~grounded_sam.runs.track.run_tracking`), a frame
F, a track id (or None: a new object of one of the run's classes) and points (xy pixels, label 1
positive / 0 negative):

1. **Refine.** Frame F's objects are read back from ``labels/frame_F.json``. The track's mask is
   refined with SAM2's mask decoder from the points, its box and its mask, the way the image
   editor's clicks are (:class:`~grounded_sam.editing.session.LabelSession`, on a
   :class:`~grounded_sam.models.sam2.refiner.Sam2Refiner`); earlier clicks on the same track and
   frame that are still in effect go with them, so a second click does not undo the first. A new
   object starts from its first (positive) point, and takes the next id the run never used.
2. **Re-track.** Every object of frame F (the edited one replaced; one whose mask a negative click
   emptied is dropped) is carried by SAM2's video predictor from F to the run's next key frame, and
   from there on the run goes on as it did: the detector on the same key frames, tracks matched and
   started by the same rule (:mod:`grounded_sam.pipeline.track`). Tracks keep their ids. Objects
   not visible on frame F are not carried past it (a detection may start them again).
3. **Rewrite.** Frames F to the end of the run's range are rewritten by the run's own loop and
   writers (:func:`~grounded_sam.runs.track.track_on`): labels, the formats the run wrote, overlays,
   then ``mot.txt``, COCO and ``overlay.mp4`` from every frame's record. Frames before F are not
   touched (their files stay byte for byte). Only frames >= F are computed again: the cost of an
   edit is that of tracking the rest of the clip.

The edit is recorded in ``track_state.json`` (with the masks of frame F) before any frame is
rewritten, and each frame's manifest line is marked as being rewritten before its files are: a
killed edit leaves every frame either complete or listed as not done, and running the same edit
again, another edit, or the ``track`` command finishes it. A finished run's rerun tracks nothing,
so it never undoes an edit; the same edit twice is applied once. An edit at frame F re-tracks every
frame after it, so it replaces edits made on later frames (make edits from the first frame on).

>>> pipe = GroundedSAM2(...)  # doctest: +SKIP (the models and options the run was tracked with)
>>> retrack(pipe, "out", frame=12, points=[(40, 30)], labels=[0], track_id=3)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from grounded_sam.annotate import OverlayAnnotator
from grounded_sam.errors import EditError, InputError, OutputFolderError
from grounded_sam.pipeline.track import Track, TrackerState
from grounded_sam.runs.batch import BatchSummary, file_sha256, finish_run
from grounded_sam.runs.track import (
    RunState,
    TrackProgress,
    TrackRun,
    frame_source,
    load_state,
    open_track_run,
    save_state,
    track_on,
)

__all__ = ["RetrackResult", "TrackEdit", "retrack"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrackEdit:
    """Clicks on one frame of a tracked clip, for one track or a new object.

    Attributes:
        frame: The frame's index in the clip.
        points: ``(x, y)`` pixels of the clicks, in order.
        labels: 1 (positive: the object is there) or 0 (negative: it is not), one per point.
        track_id: The track to fix; None for a new object.
        class_name: A new object's class (one of the run's classes); None for a track.

    Raises:
        EditError: No point, points and labels of different lengths, a label other than 0 or 1, a
            new object without a class or starting with a negative point, a class given for a track.
    """

    frame: int
    points: tuple[tuple[float, float], ...]
    labels: tuple[int, ...]
    track_id: int | None = None
    class_name: str | None = None

    @classmethod
    def of(cls, frame: Any, points: Any, labels: Any, track_id: Any = None, class_name: str | None = None) -> TrackEdit:
        """An edit from loosely typed values (lists, arrays, numpy numbers), checked."""
        xy = np.asarray(points, dtype=float).reshape(-1, 2) if len(points) else np.zeros((0, 2))
        return cls(int(frame), tuple((float(x), float(y)) for x, y in xy), tuple(int(v) for v in np.ravel(labels)),
                   None if track_id is None else int(track_id), class_name)

    def __post_init__(self) -> None:
        if not self.points:
            raise EditError("An edit needs at least one point: click on the frame.")
        if len(self.points) != len(self.labels):
            raise EditError(f"Every point needs a label (1 positive, 0 negative): got {len(self.points)} points "
                            f"and {len(self.labels)} labels.")
        if set(self.labels) - {0, 1}:
            raise EditError(f"Labels must be 1 (positive) or 0 (negative), but got {list(self.labels)}.")
        if self.track_id is None:
            if not " ".join(str(self.class_name or "").split()):
                raise EditError("A new object needs its class: pass class_name (one of the run's categories).")
            if self.labels[0] != 1:
                raise EditError("A new object starts with a positive point on it (label 1).")
        elif self.class_name is not None:
            raise EditError(f"class_name is for a new object (track_id=None); track {self.track_id} keeps its class.")

    def record(self, track_id: int, class_name: str) -> dict[str, Any]:
        """What the run's state records of this edit, once applied to ``track_id`` (a new object's new id)."""
        return {"frame": self.frame, "track_id": track_id, "new": self.track_id is None, "class_name": class_name,
                "points": [list(p) for p in self.points], "labels": list(self.labels)}

    def same_as(self, record: dict[str, Any]) -> bool:
        """Whether ``record`` (of :meth:`record`) is this very edit."""
        if (record["frame"], [tuple(p) for p in record["points"]], record["labels"]) != (
                self.frame, list(self.points), list(self.labels)):
            return False
        if self.track_id is None:
            return bool(record["new"]) and str(record["class_name"]).casefold() == _clean(self.class_name).casefold()
        return not record["new"] and record["track_id"] == self.track_id


@dataclass(frozen=True)
class RetrackResult:
    """What an edit did.

    Attributes:
        track_id: The edited track (a new object's new id); None when the run was interrupted before
            the edit was applied.
        summary: Frames before the edited one as skipped, the re-tracked ones as labeled.
        repeated: The same edit was the run's last one already (done, or killed and now finished): it was
            not applied a second time.
    """

    track_id: int | None
    summary: BatchSummary
    repeated: bool = False


def retrack(
    pipe: Any,
    out_dir: str | os.PathLike[str],
    frame: int,
    points: Sequence[Sequence[float]] | np.ndarray,
    labels: Sequence[int] | np.ndarray,
    *,
    track_id: int | None = None,
    class_name: str | None = None,
    video: str | os.PathLike[str] | None = None,
    annotator: OverlayAnnotator | None = None,
    on_progress: TrackProgress | None = None,
) -> RetrackResult:
    """Refines one track's mask on ``frame`` with clicks, then re-tracks the clip from there (see the module docstring).

    Args:
        pipe: A :class:`~grounded_sam.pipeline.GroundedSAM2` with the models and options the run was
            tracked with.
        out_dir: The run's output folder.
        frame: The frame to fix (its index in the clip, as in ``labels/frame_<index>.json``).
        points: (K, 2) ``(x, y)`` pixels of the clicks.
        labels: (K,) 1 positive / 0 negative.
        track_id: The track to fix; None adds a new object of ``class_name``.
        class_name: The new object's class: one of the run's classes.
        video: The clip, when it is no longer where it was tracked from (it must be the same file).
        annotator: How the overlays are drawn; give the run's own (default: masks, boxes and labels).
        on_progress: Called after each re-tracked frame with ``(frames done, frames expected or None,
            outcome)``, frames before ``frame`` counted as done.

    Returns:
        The edited track and the run's summary.

    Raises:
        EditError: A frame the run did not track, a track not on that frame, a point outside the
            frame, a class that is not one of the run's, malformed points or labels.
        OutputFolderError: No tracking run in ``out_dir``, a pipeline other than the run's, or
            another run writing to the folder.
        InputError: The clip is gone, or ``video`` is another file.
        VideoLoadError, and the model errors of the pipeline.
    """
    from grounded_sam.runs.manifest import Manifest

    edit = TrackEdit.of(frame, points, labels, track_id, class_name)
    out = Path(out_dir)
    settings = _recorded_settings(out)
    _check_pipeline(pipe, settings, out)
    with Manifest.open(out, settings) as manifest:
        source, clip = _clip(manifest, settings, video, out)
        run = open_track_run(out, clip, settings, annotator=annotator, source=source)
        summary = BatchSummary(total=run.expected, out_dir=out)
        pipe.detector, pipe.segmenter, pipe.video_propagator  # noqa: B018 - missing weights stop before any change
        state = load_state(run.state_path)
        if state is not None and state.finished and state.edits and edit.same_as(state.edits[-1]):
            logger.info("The same edit was the last one applied to %s: nothing to do", out)
            track_on(pipe, run, manifest, state, summary)  # counts the frames as done, tracks nothing
            return RetrackResult(state.edits[-1]["track_id"], summary, repeated=True)
        if state is not None and not state.finished:
            # A killed run or edit goes on first, so that this edit starts from complete frames.
            pending = state.edits[-1] if state.edits else None
            logger.info("Finishing the interrupted %s of %s first", "edit" if pending else "run", out)
            track_on(pipe, run, manifest, state, summary, on_progress)
            if summary.interrupted or (pending is not None and edit.same_as(pending)):
                finish_run(run.writers, manifest, summary, "frames")
                applied = None if summary.interrupted or pending is None else pending["track_id"]
                return RetrackResult(applied, summary, repeated=applied is not None)
            summary = BatchSummary(total=run.expected, out_dir=out)
            state = load_state(run.state_path)
        edits = state.edits if state is not None else []
        start, edited = _edited_frame(pipe, run, manifest, edit, edits)
        logger.info("Edited track %d on frame %d of %s: re-tracking frames %d on", edited, edit.frame, out, edit.frame)
        # The point of no return: from here on the folder resumes towards the edit, never back.
        save_state(run.state_path, start)
        track_on(pipe, run, manifest, start, summary, on_progress)
        finish_run(run.writers, manifest, summary, "frames")
    return RetrackResult(edited, summary)


def _recorded_settings(out: Path) -> dict[str, Any]:
    """The settings on the first line of ``out``'s manifest, which must be a tracking run's."""
    from grounded_sam.runs.manifest import MANIFEST_NAME

    path = out / MANIFEST_NAME
    try:
        with open(path, encoding="utf-8") as handle:
            header = json.loads(handle.readline())
    except FileNotFoundError:
        raise OutputFolderError(f"{out} holds no {MANIFEST_NAME}: expected the output folder of a tracking run "
                                "(python -m grounded_sam track ... --out OUT).") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise OutputFolderError(f"{path} is not a manifest this tool can read ({exc}).") from None
    settings = header.get("settings") if isinstance(header, dict) else None
    if not isinstance(settings, dict) or "every" not in settings:
        raise OutputFolderError(f"{out} holds a folder run of images, not a tracked clip: only tracked clips are "
                                "edited frame by frame.")
    return settings


def _check_pipeline(pipe: Any, settings: dict[str, Any], out: Path) -> None:
    """Refuses a pipeline whose models or options differ from the run's (full or short model names)."""
    from grounded_sam.runs.manifest import settings_differences

    found = []
    for short in (False, True):
        mine = pipe.settings().as_dict(short_model_names=short)
        found.append(settings_differences({key: settings.get(key) for key in mine}, mine))
        if not found[-1]:
            return
    raise OutputFolderError(f"{out} was tracked with other models or options:\n  " + "\n  ".join(found[0])
                            + "\nEdit it with a pipeline of the same models and options.")


def _clip(manifest: Any, settings: dict[str, Any], video: str | os.PathLike[str] | None, out: Path) -> tuple[str, Path]:
    """The clip's name in the manifest, and the file to read its frames from (checked against the run's hash)."""
    records = [r for r in manifest.dataset_records() if r.frame is not None]
    if not records:
        raise OutputFolderError(f"{out} holds no tracked frame yet: track the clip first.")
    source = records[0].source.rsplit("#frame=", 1)[0]
    path = Path(video) if video is not None else Path(source)
    if not path.exists():
        raise InputError(f"The clip {settings['video']} is no longer at {path}: pass video= (the same file) "
                         "to edit this run.")
    expected = settings.get("video_sha256")
    if expected is not None and video is not None and file_sha256(path) != expected:
        raise InputError(f"{path.name} is not the clip this run tracked ({settings['video']}, sha256 "
                         f"{expected[:12]}...): pass that very file.")
    return source, path


def _edited_frame(pipe: Any, run: TrackRun, manifest: Any, edit: TrackEdit,
                  edits: list[dict[str, Any]]) -> tuple[RunState, int]:
    """Frame F's objects with the edit applied, as the state the re-tracking starts from; and the edited id."""
    from grounded_sam.editing.session import LabelSession
    from grounded_sam.export.labels_json import record_to_detections
    from grounded_sam.inputs.video import iter_frames
    from grounded_sam.models.sam2.refiner import EmbeddingCache, Sam2Refiner

    record = manifest.previous(frame_source(run.source, edit.frame))
    if record is None or not record.ok or not record.labels:
        done = [r.frame for r in manifest.dataset_records() if r.frame is not None]
        raise EditError(f"Frame {edit.frame} is not a tracked frame of this run: expected one of frames "
                        f"{min(done)}-{max(done)}.")
    detections = record_to_detections(json.loads((run.out / record.labels).read_text(encoding="utf-8")))
    ids = [] if detections.tracker_id is None else [int(i) for i in detections.tracker_id]
    class_names = run.categories.class_names
    clicks = list(zip(edit.points, edit.labels))
    if edit.track_id is None:
        name = next((c for c in class_names if c.casefold() == _clean(edit.class_name).casefold()), None)
        if name is None:
            raise EditError(f"{edit.class_name!r} is not a class of this run: expected one of {', '.join(class_names)}.")
    elif edit.track_id not in ids:
        raise EditError(f"Track {edit.track_id} is not on frame {edit.frame}: its tracks are "
                        f"{', '.join(map(str, ids)) or 'none'}. Pick one of them, or add a new object.")
    else:
        name = class_names[int(detections.class_id[ids.index(edit.track_id)])]
        clicks = _clicks_in_effect(edits, edit.frame, edit.track_id) + clicks

    rgb = next(iter_frames(run.video, **run.span, first_index=edit.frame))[1]
    # A cache of its own, not attached: one frame's clicks, and the segmenter stays as it was.
    refiner = Sam2Refiner(pipe.segmenter, EmbeddingCache(), attach=False)
    session = LabelSession(refiner, rgb, detections, class_names)
    if edit.track_id is None:
        (x, y), _ = clicks.pop(0)
        index = session.add_object(name, point=(x, y))
    else:
        index = ids.index(edit.track_id)
    for (x, y), label in clicks:
        session.refine(index, x, y, positive=bool(label))
    edited = session.objects[index]

    used = _track_ids(run.out, manifest, up_to=None if edit.track_id is None else edit.frame)
    next_id = max(used, default=0) + 1
    new_id = next_id if edit.track_id is None else edit.track_id
    tracks = [Track(track, int(detections.class_id[i]), class_names[int(detections.class_id[i])],
                    float(detections.confidence[i]) if detections.confidence is not None else 1.0, detections.mask[i])
              for i, track in enumerate(ids)]
    fixed = Track(new_id, class_names.index(name), name, edited.score, edited.mask)
    tracks = [fixed if t.track_id == new_id else t for t in tracks] + ([fixed] if edit.track_id is None else [])
    if not fixed.mask.any():
        logger.info("Track %d has no mask left on frame %d: it ends there", new_id, edit.frame)
    tracker = TrackerState(sorted((t for t in tracks if t.mask.any()), key=lambda t: t.track_id),
                           max(next_id, new_id + 1))
    return RunState(edit.frame, tracker, detect=False, edits=[*edits, edit.record(new_id, name)]), new_id


def _clicks_in_effect(edits: list[dict[str, Any]], frame: int, track_id: int) -> list[tuple[tuple[float, float], int]]:
    """Earlier clicks on this track and frame that its mask there still follows: those since the last edit of an
    earlier frame (which re-tracked this one from scratch)."""
    clicks: list[tuple[tuple[float, float], int]] = []
    for record in reversed(edits):
        if record["frame"] < frame:
            break
        if record["frame"] == frame and record["track_id"] == track_id:
            clicks[:0] = [(tuple(p), int(v)) for p, v in zip(record["points"], record["labels"])]
    return clicks


def _track_ids(out: Path, manifest: Any, up_to: int | None) -> set[int]:
    """Every track id on the run's frames (up to frame ``up_to`` included, or all)."""
    ids: set[int] = set()
    for record in manifest.dataset_records():
        if record.frame is None or not record.labels or (up_to is not None and record.frame > up_to):
            continue
        items = json.loads((out / record.labels).read_text(encoding="utf-8"))["detections"]
        ids.update(int(item["track_id"]) for item in items if "track_id" in item)
    return ids


def _clean(name: str | None) -> str:
    return " ".join(str(name or "").split())
