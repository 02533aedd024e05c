"""Tracking every object of every category through a clip: detect every N frames, propagate with SAM2.

The rule (documented in the README):

* Florence-2 (with SAM2's image masks) runs on the first frame and on every ``every``-th frame
  after it. Between two such *key frames*, SAM2's video predictor carries each live object's mask
  from the first key frame to the next, one window at a time, so memory holds one window of frames,
  never the clip.
* At a key frame, each detection is matched to the live track of the same class whose carried mask
  overlaps it most, if that mask IoU is at least ``match_iou`` (greedy, best pairs first, one to
  one). A matched track keeps its id and takes the detection's fresh mask (which corrects drift);
  an unmatched detection starts a new track with the next id; an unmatched track goes on with its
  carried mask.
* A track ends when its carried mask is empty at a key frame and no detection matches it: the
  object left, or SAM2 lost it, for a whole window. Ids are never reused.
* A track's score is SAM2's predicted IoU at its latest detection; its class is that of the
  detection that started it.
* Tracking may also start on a frame whose masks were fixed by hand (``detect_first=False``): those
  masks are carried to the next key frame of the original schedule (``origin``), and from there on
  the rule above applies unchanged.

Each frame comes out as ``sv.Detections`` with ``tracker_id`` (supervision's field), boxes that are
the masks' tight boxes, and ``metadata`` holding ``frame_index`` and ``class_names``. Objects whose
mask is empty on a frame are left out of that frame.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import supervision as sv

from grounded_sam.categories import Categories
from grounded_sam.detections import class_names_of, empty_detections, mask_box
from grounded_sam.errors import OptionError

logger = logging.getLogger(__name__)

#: Key frame every this many frames (half a second at 30 fps).
DEFAULT_EVERY = 15
#: Mask IoU at or above which a detection continues a live track.
DEFAULT_MATCH_IOU = 0.5


@dataclass(frozen=True)
class TrackingOptions:
    """How a clip is tracked.

    Attributes:
        every: Run the detector on every ``every``-th frame (the window length), >= 1.
        match_iou: Mask IoU at or above which a key-frame detection continues a live track, in (0, 1].
    """

    every: int = DEFAULT_EVERY
    match_iou: float = DEFAULT_MATCH_IOU

    def __post_init__(self) -> None:
        if isinstance(self.every, bool) or not isinstance(self.every, int) or self.every < 1:
            raise OptionError(f"every must be a whole number of frames >= 1, but got {self.every!r}.")
        if not 0.0 < self.match_iou <= 1.0:
            raise OptionError(f"match_iou must be within (0, 1], but got {self.match_iou}.")


@dataclass
class Track:
    """One live object: its id, class, score, and its mask on the current key frame."""

    track_id: int
    class_id: int
    class_name: str
    score: float
    mask: np.ndarray


@dataclass
class TrackerState:
    """What carries from one window to the next: the live tracks and the next free id."""

    tracks: list[Track] = field(default_factory=list)
    next_id: int = 1


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two (H, W) bool masks (0 when both are empty)."""
    union = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / union if union else 0.0


def match_detections(tracks: list[Track], detections: sv.Detections, min_iou: float) -> dict[int, int]:
    """Which detection continues which track: detection index -> track index.

    Pairs of the same class with mask IoU >= ``min_iou`` are taken greedily, the best IoU first
    (ties: the earlier detection, then the earlier track), each detection and track at most once.
    """
    pairs = []
    for d in range(len(detections)):
        for t, track in enumerate(tracks):
            if int(detections.class_id[d]) != track.class_id:
                continue
            iou = mask_iou(detections.mask[d], track.mask)
            if iou >= min_iou:
                pairs.append((-iou, d, t))
    matched: dict[int, int] = {}
    used: set[int] = set()
    for _, d, t in sorted(pairs):
        if d not in matched and t not in used:
            matched[d] = t
            used.add(t)
    return matched


def update_tracks(state: TrackerState, detections: sv.Detections, min_iou: float) -> list[Track]:
    """Applies the key-frame rule: matched tracks take the detection's mask, new detections start tracks,
    unmatched tracks with a non-empty mask go on, the rest end. Returns the live tracks, in id order."""
    names = class_names_of(detections)
    matched = match_detections(state.tracks, detections, min_iou)
    continued = set(matched.values())
    live = [t for i, t in enumerate(state.tracks) if i not in continued and t.mask.any()]
    ended = [t.track_id for i, t in enumerate(state.tracks) if i not in continued and not t.mask.any()]
    if ended:
        logger.debug("Tracks ended (mask empty at a key frame, no detection): %s", ended)
    for d in range(len(detections)):
        score = float(detections.confidence[d]) if detections.confidence is not None else 1.0
        if d in matched:
            old = state.tracks[matched[d]]
            live.append(Track(old.track_id, old.class_id, old.class_name, score, detections.mask[d]))
        else:
            live.append(Track(state.next_id, int(detections.class_id[d]), names[d], score, detections.mask[d]))
            state.next_id += 1
    state.tracks = sorted(live, key=lambda t: t.track_id)
    return state.tracks


def frame_detections(tracks: list[Track], masks: dict[int, np.ndarray], frame_index: int,
                     categories: Categories, image_size: tuple[int, int]) -> sv.Detections:
    """One frame's result: the tracks whose mask on it is non-empty, with ``tracker_id``."""
    kept = [(t, masks[t.track_id]) for t in tracks if t.track_id in masks and masks[t.track_id].any()]
    if kept:
        detections = sv.Detections(
            xyxy=np.array([mask_box(m) for _, m in kept], dtype=np.float32),
            mask=np.stack([m for _, m in kept]),
            confidence=np.array([t.score for t, _ in kept], dtype=np.float32),
            class_id=np.array([t.class_id for t, _ in kept], dtype=int),
            tracker_id=np.array([t.track_id for t, _ in kept], dtype=int),
            data={"class_name": np.array([t.class_name for t, _ in kept])},
        )
    else:
        detections = empty_detections(image_size)
        detections.tracker_id = np.zeros((0,), dtype=int)
    detections.metadata["frame_index"] = frame_index
    detections.metadata["class_names"] = list(categories.class_names)
    detections.metadata["image_size"] = image_size
    return detections


@dataclass(frozen=True)
class TrackedFrame:
    """A frame of a tracked clip: its index, its pixels (H, W, 3) uint8 RGB, and its result."""

    index: int
    image: np.ndarray
    detections: sv.Detections


def track_frames(
    frames: Iterable[tuple[int, np.ndarray]],
    categories: Categories,
    detect: Callable[[np.ndarray], sv.Detections],
    propagate: Callable[[list[np.ndarray], dict[int, np.ndarray]], Iterator[dict[int, np.ndarray]]],
    options: TrackingOptions = TrackingOptions(),
    state: TrackerState | None = None,
    *,
    on_key_frame: Callable[[int, TrackerState], None] | None = None,
    detect_first: bool = True,
    origin: int | None = None,
) -> Iterator[TrackedFrame]:
    """Tracks objects through ``frames`` (see the module docstring for the rule).

    Args:
        frames: ``(index, rgb)`` in clip order (e.g. :func:`grounded_sam.inputs.video.iter_frames`).
        categories: The parsed categories (class ids index ``categories.class_names``).
        detect: A key frame's detections with masks (``GroundedSAM2``'s call, or a test double).
        propagate: SAM2's window propagation (:meth:`Sam2VideoPropagator.propagate`, or a double).
        options: Key-frame spacing and the match threshold.
        state: Tracks carried in from an earlier part of the clip (resuming), else a fresh start;
            ``frames`` then starts at the key frame it was saved for.
        on_key_frame: Called with ``(key frame index, state)`` once every frame before that key frame
            has been yielded and ``state`` holds the tracks carried to it (for a resumable run to save).
        detect_first: Run the detector on the first frame. False when ``state`` already holds every
            object's final mask on it (a frame fixed by hand, see :mod:`grounded_sam.runs.retrack`):
            those masks are the first window's prompts as they are, and the first frame need not be a
            key frame.
        origin: Index of the clip's first key frame: key frames are ``origin + k * every``, so a
            first frame between two key frames starts a short window that ends on the next one, and
            the detector keeps the schedule of the run it continues. Default: the first frame's index.

    Yields:
        Every frame once, in order, as soon as its window is done.
    """
    state = state or TrackerState()
    stream = iter(frames)
    first = next(stream, None)
    if first is None:
        return
    origin = first[0] if origin is None else origin
    window = [first, *itertools.islice(stream, options.every - (first[0] - origin) % options.every)]
    detect_now = detect_first
    while True:
        upcoming = list(itertools.islice(stream, options.every))
        last_window = not upcoming
        start_rgb = window[0][1]
        height, width = start_rgb.shape[:2]
        tracks = update_tracks(state, detect(start_rgb), options.match_iou) if detect_now else state.tracks
        detect_now = True
        prompts = {t.track_id: t.mask for t in tracks}
        for k, masks in enumerate(propagate([rgb for _, rgb in window], prompts)):
            index, rgb = window[k]
            if k == len(window) - 1 and not last_window:
                # The window's last frame is the next window's key frame: carry, do not emit.
                for track in tracks:
                    track.mask = masks.get(track.track_id, np.zeros((height, width), bool))
                if on_key_frame is not None:
                    on_key_frame(index, state)
                break
            yield TrackedFrame(index, rgb, frame_detections(tracks, masks, index, categories, (width, height)))
        if last_window:
            return
        window = [window[-1], *upcoming]
