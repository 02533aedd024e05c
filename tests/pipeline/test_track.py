"""The tracking rule (ids kept, new ids for objects that enter, tracks that end) and SAM2's video predictor."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from grounded_sam.categories import parse_categories
from grounded_sam.detections import empty_detections
from grounded_sam.errors import OptionError
from grounded_sam.pipeline.track import (
    Track,
    TrackerState,
    TrackingOptions,
    match_detections,
    track_frames,
    update_tracks,
)
from tests.factories import make_detections
from tests.fakes import MovingSquares

CATEGORIES = parse_categories("square, bar")


def _mask(x1: int, y1: int, x2: int, y2: int, size: tuple[int, int] = (20, 20)) -> np.ndarray:
    mask = np.zeros(size, bool)
    mask[y1:y2, x1:x2] = True
    return mask


def _detections(masks: list[np.ndarray], classes: list[int]) -> Any:
    return make_detections(np.zeros((len(masks), 4)), mask=masks, class_id=classes, confidence=[0.8] * len(masks),
                           class_name=[("square", "bar")[c] for c in classes])


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"every": 0}, "every must be"), ({"every": 2.5}, "every must be"), ({"match_iou": 0}, "match_iou must be"),
])
def test_bad_options_are_option_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(OptionError, match=message):
        TrackingOptions(**kwargs)


def test_matching_takes_the_best_pairs_of_one_class_first() -> None:
    tracks = [Track(1, 0, "square", 0.9, _mask(0, 0, 10, 10)), Track(2, 0, "square", 0.9, _mask(5, 0, 15, 10)),
              Track(3, 1, "bar", 0.9, _mask(0, 0, 10, 10))]
    detections = _detections([_mask(5, 0, 14, 10), _mask(0, 0, 10, 10), _mask(0, 0, 10, 10)], [0, 0, 1])
    assert match_detections(tracks, detections, 0.5) == {0: 1, 1: 0, 2: 2}
    # Below the threshold nothing matches; another class never does.
    assert match_detections(tracks, _detections([_mask(12, 12, 20, 20)], [0]), 0.5) == {}
    assert match_detections(tracks[:2], _detections([_mask(0, 0, 10, 10)], [1]), 0.1) == {}


def test_key_frame_rule_keeps_ends_and_starts_tracks() -> None:
    state = TrackerState([Track(1, 0, "square", 0.9, _mask(0, 0, 10, 10)),
                          Track(2, 1, "bar", 0.9, np.zeros((20, 20), bool)),  # lost for a window: ends
                          Track(3, 1, "bar", 0.9, _mask(12, 12, 20, 20))],  # unmatched but visible: goes on
                         next_id=4)
    fresh = _mask(1, 1, 10, 10)
    live = update_tracks(state, _detections([fresh, _mask(0, 12, 6, 20)], [0, 0]), 0.5)
    assert [t.track_id for t in live] == [1, 3, 4] and state.next_id == 5
    assert np.array_equal(live[0].mask, fresh) and live[0].score == pytest.approx(0.8)  # the detection's mask corrects drift
    assert live[2].class_name == "square"


def test_ids_through_a_clip_where_objects_enter_and_leave() -> None:
    scene = MovingSquares(frames=40, enter_at=20, leave_at=30)
    keys: list[int] = []
    frames = [(i, scene.frame(i)) for i in range(scene.frames)]
    tracked = list(track_frames(frames, CATEGORIES, scene.detect, scene.propagate, TrackingOptions(every=8),
                                on_key_frame=lambda index, state: keys.append(index)))
    assert [f.index for f in tracked] == list(range(40)) and keys == [8, 16, 24, 32]
    ids = [f.detections.tracker_id.tolist() for f in tracked]
    assert ids[0] == [1, 2] and ids[19] == [1, 2]
    # The square entering at frame 20 is first seen by the detector at key frame 24: a new id from there on.
    assert ids[23] == [1, 2] and ids[24] == [1, 2, 3]
    # The bar leaves at frame 30: gone from its frames, and its id is never given again.
    assert ids[29] == [1, 2, 3] and ids[30] == [1, 3] and ids[39] == [1, 3]
    square = tracked[39].detections
    assert square.class_id.tolist() == [0, 0] and square.data["class_name"].tolist() == ["square", "square"]
    np.testing.assert_array_equal(square.mask[0], scene.masks(39)[0])
    assert square.xyxy[0].tolist() == [43, 6, 59, 22] and square.metadata["frame_index"] == 39


def test_a_clip_with_nothing_to_find_has_empty_frames() -> None:
    scene = MovingSquares(frames=5)
    tracked = list(track_frames([(i, scene.frame(i)) for i in range(5)], CATEGORIES,
                                lambda rgb: empty_detections((96, 64)), scene.propagate, TrackingOptions(every=2)))
    assert [len(f.detections) for f in tracked] == [0] * 5
    assert tracked[0].detections.mask.shape == (0, 64, 96) and tracked[0].detections.tracker_id.shape == (0,)


def test_sam2_video_predictor_carries_prompts_through_a_window(tiny_models) -> None:
    """The real path: the tiny SAM2 built as sam2's SAM2VideoPredictor, prompted with masks."""
    from grounded_sam.models.loading import load_video_propagator

    propagator = load_video_propagator(tiny_models["sam2"], "cpu")
    assert type(propagator.predictor).__name__ == "SAM2VideoPredictor"
    scene = MovingSquares(frames=4)
    frames = [scene.frame(i) for i in range(4)]
    prompts = {7: scene.masks(0)[0], 9: scene.masks(0)[1]}
    out = list(propagator.propagate(frames, prompts))
    assert len(out) == 4 and all(sorted(masks) == [7, 9] for masks in out)
    assert all(m.shape == (64, 96) and m.dtype == bool for masks in out for m in masks.values())
    # The prompt frame gives back the prompts (random weights decide the rest).
    assert np.mean(out[0][7] == prompts[7]) > 0.95


def test_tracking_from_a_frame_fixed_by_hand_keeps_the_key_frame_schedule() -> None:
    """What an edit re-tracks: from frame 10 (between the key frames 8 and 16), square 1 fixed to follow the bar."""
    scene = MovingSquares(frames=40, enter_at=20, leave_at=30)
    detected: list[int] = []
    keys: list[int] = []

    def detect(rgb: np.ndarray) -> Any:
        detected.append(int(rgb[0, 0, 0]))
        return scene.detect(rgb)

    bar = scene.masks(10)[1]
    state = TrackerState([Track(1, 0, "square", 0.9, bar), Track(2, 1, "bar", 0.9, scene.masks(10)[1])], next_id=3)
    frames = [(i, scene.frame(i)) for i in range(10, scene.frames)]
    tracked = list(track_frames(frames, CATEGORIES, detect, scene.propagate, TrackingOptions(every=8), state,
                                on_key_frame=lambda index, carried: keys.append(index), detect_first=False, origin=0))

    assert [f.index for f in tracked] == list(range(10, 40))
    # No detection on the fixed frame; the run's own key frames after it, as before the fix.
    assert detected == [16, 24, 32] and keys == [16, 24, 32]
    # Until the next key frame the fixed track follows what the fix said: the bar.
    for frame in tracked[:6]:
        square = list(frame.detections.tracker_id).index(1)
        assert np.array_equal(frame.detections.mask[square], scene.masks(frame.index)[1])
    # From there on the rule applies: the square, whose track now follows the bar, starts a new track.
    assert tracked[6].detections.tracker_id.tolist() == [1, 2, 3]
