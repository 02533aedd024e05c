"""Tests for grounded_sam.pipeline.postprocess with hand-made sv.Detections: box sanity, duplicates, scores, NMS."""

from __future__ import annotations

import numpy as np
import pytest
import supervision as sv

from grounded_sam.pipeline.postprocess import (
    NMS_MODES,
    apply_nms,
    drop_duplicate_boxes,
    filter_min_score,
    sanitize_boxes,
)
from tests.factories import make_detections

IMAGE_SIZE = (100, 80)  # (width, height)


def make(
    xyxy: list[list[float]],
    class_id: list[int] | None = None,
    confidence: list[float] | None = None,
    mask: np.ndarray | None = None,
) -> sv.Detections:
    """Detections with data["class_name"] derived from class_id (``c0``, ``c1``...) so alignment can be checked."""
    n = len(xyxy)
    class_id = list(range(n)) if class_id is None else class_id
    boxes = np.array(xyxy, dtype=np.float32).reshape(-1, 4)
    detections = make_detections(np.nan_to_num(boxes), class_id=class_id, confidence=confidence, mask=mask,
                                 class_name=[f"c{c}" for c in class_id])
    # supervision refuses NaN boxes at construction, but a field assigned later is not checked: put them back.
    detections.xyxy = boxes
    return detections


def assert_aligned(detections: sv.Detections) -> None:
    """data["class_name"] still names each row's class_id."""
    assert list(detections.data["class_name"]) == [f"c{c}" for c in detections.class_id]


def box_mask(box: tuple[int, int, int, int], shape: tuple[int, int] = (8, 8)) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    x1, y1, x2, y2 = box
    mask[y1:y2, x1:x2] = True
    return mask


# --- sanitize_boxes ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("box", "min_side", "expected"),
    [
        pytest.param([10, 10, 50, 40], 1.0, [10, 10, 50, 40], id="inside-unchanged"),
        pytest.param([50, 40, 10, 10], 1.0, [10, 10, 50, 40], id="inverted-both"),
        pytest.param([50, 10, 10, 40], 1.0, [10, 10, 50, 40], id="inverted-x"),
        pytest.param([10, 40, 50, 10], 1.0, [10, 10, 50, 40], id="inverted-y"),
        pytest.param([-20, -5, 50, 40], 1.0, [0, 0, 50, 40], id="clipped-top-left"),
        pytest.param([60, 50, 150, 90], 1.0, [60, 50, 100, 80], id="clipped-bottom-right"),
        pytest.param([150, 90, -20, -5], 1.0, [0, 0, 100, 80], id="inverted-and-clipped"),
        pytest.param([0, 0, 100, 80], 1.0, [0, 0, 100, 80], id="whole-image"),
        pytest.param([10, 10, 11, 11], 1.0, [10, 10, 11, 11], id="exactly-min-side"),
        pytest.param([10, 10, 10.5, 30], 0.5, [10, 10, 10.5, 30], id="smaller-min-side"),
        pytest.param([110, 10, 150, 40], 1.0, None, id="fully-right"),
        pytest.param([10, -40, 50, -10], 1.0, None, id="fully-above"),
        pytest.param([-50, -50, -10, -10], 1.0, None, id="fully-top-left"),
        pytest.param([10, 10, 10, 40], 1.0, None, id="zero-width"),
        pytest.param([10, 10, 50, 10], 1.0, None, id="zero-height"),
        pytest.param([10, 10, 10.5, 40], 1.0, None, id="thinner-than-min-side"),
        pytest.param([10, 10, 13, 40], 5.0, None, id="narrower-than-custom-min-side"),
        pytest.param([10, 10, 50, 13], 5.0, None, id="shorter-than-custom-min-side"),
        pytest.param([98, 10, 150, 40], 5.0, None, id="too-thin-after-clipping"),
        pytest.param([np.nan, 10, 50, 40], 1.0, None, id="nan-x1"),
        pytest.param([10, 10, 50, np.nan], 1.0, None, id="nan-y2"),
    ],
)
def test_sanitize_boxes_one_box(box: list[float], min_side: float, expected: list[float] | None) -> None:
    out = sanitize_boxes(make([box]), IMAGE_SIZE, min_side=min_side)
    if expected is None:
        assert len(out) == 0
        assert out.xyxy.shape == (0, 4)
    else:
        assert len(out) == 1
        np.testing.assert_array_equal(out.xyxy, np.array([expected], dtype=np.float32))


def test_sanitize_boxes_keeps_rows_aligned() -> None:
    detections = make(
        [[10, 10, 50, 40], [np.nan, 0, 1, 1], [60, 50, 150, 90], [10, 10, 10, 40], [200, 200, 300, 300], [30, 30, 5, 5]],
        class_id=[0, 1, 2, 3, 4, 5],
        confidence=[0.9, 0.8, 0.7, 0.6, 0.5, 0.4],
        mask=np.stack([np.full((80, 100), i % 2 == 0) for i in range(6)]),
    )
    out = sanitize_boxes(detections, IMAGE_SIZE)
    assert list(out.class_id) == [0, 2, 5]
    assert_aligned(out)
    np.testing.assert_array_equal(out.confidence, np.array([0.9, 0.7, 0.4], dtype=np.float32))
    np.testing.assert_array_equal(out.xyxy, np.array([[10, 10, 50, 40], [60, 50, 100, 80], [5, 5, 30, 30]], dtype=np.float32))
    assert out.mask.shape == (3, 80, 100)
    assert out.mask[:, 0, 0].tolist() == [True, True, False]


def test_sanitize_boxes_does_not_change_its_input() -> None:
    detections = make([[50, 40, 10, 10], [-20, -5, 150, 90]])
    before = detections.xyxy.copy()
    sanitize_boxes(detections, IMAGE_SIZE)
    np.testing.assert_array_equal(detections.xyxy, before)


def test_sanitize_boxes_all_dropped_and_empty() -> None:
    out = sanitize_boxes(make([[200, 200, 300, 300], [1, 1, 1, 1]]), IMAGE_SIZE)
    assert len(out) == 0
    assert out.xyxy.shape == (0, 4)
    assert list(out.data["class_name"]) == []
    empty = sv.Detections.empty()
    assert len(sanitize_boxes(empty, IMAGE_SIZE)) == 0


# --- drop_duplicate_boxes ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("xyxy", "class_id", "kept"),
    [
        pytest.param([[1, 2, 3, 4], [1, 2, 3, 4]], [0, 0], [0], id="exact-duplicate"),
        pytest.param([[1, 2, 3, 4], [1, 2, 3, 4]], [0, 1], [0, 1], id="same-box-other-class"),
        pytest.param([[1, 2, 3, 4], [1, 2, 3, 4.5]], [0, 0], [0, 1], id="different-box-same-class"),
        pytest.param([[5, 5, 9, 9], [1, 2, 3, 4], [5, 5, 9, 9], [1, 2, 3, 4], [5, 5, 9, 9]], [2, 0, 2, 0, 1],
                     [0, 1, 4], id="first-of-each-kept-in-order"),
        pytest.param([[1, 2, 3, 4]], [0], [0], id="single"),
    ],
)
def test_drop_duplicate_boxes(xyxy: list[list[float]], class_id: list[int], kept: list[int]) -> None:
    detections = make(xyxy, class_id=class_id, confidence=[0.1 * (i + 1) for i in range(len(xyxy))])
    out = drop_duplicate_boxes(detections)
    np.testing.assert_array_equal(out.xyxy, detections.xyxy[kept])
    np.testing.assert_array_equal(out.class_id, detections.class_id[kept])
    np.testing.assert_array_equal(out.confidence, detections.confidence[kept])
    assert_aligned(out)


def test_drop_duplicate_boxes_without_class_id() -> None:
    detections = make_detections([[1, 2, 3, 4], [1, 2, 3, 4], [0, 0, 5, 5]])
    out = drop_duplicate_boxes(detections)
    np.testing.assert_array_equal(out.xyxy, np.array([[1, 2, 3, 4], [0, 0, 5, 5]], dtype=np.float32))


def test_drop_duplicate_boxes_empty() -> None:
    assert len(drop_duplicate_boxes(sv.Detections.empty())) == 0


# --- filter_min_score ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("confidence", "min_score", "kept"),
    [
        pytest.param([0.2, 0.5, 0.7], 0.5, [1, 2], id="keeps-at-or-above"),
        pytest.param([0.2, 0.5, 0.7], 0.71, [], id="none-left"),
        pytest.param([0.2, 0.5, 0.7], 0.0, [0, 1, 2], id="zero-keeps-all"),
        pytest.param([0.0, 0.5], -1.0, [0, 1], id="negative-keeps-all"),
        pytest.param([0.25, 1.0], 1.0, [1], id="one"),
    ],
)
def test_filter_min_score(confidence: list[float], min_score: float, kept: list[int]) -> None:
    detections = make([[0, 0, 5, 5]] * len(confidence), confidence=confidence)
    out = filter_min_score(detections, min_score)
    assert list(out.class_id) == kept
    assert_aligned(out)


def test_filter_min_score_without_confidence_is_noop() -> None:
    detections = make([[0, 0, 5, 5], [1, 1, 6, 6]])
    assert filter_min_score(detections, 0.9) is detections


# --- apply_nms -----------------------------------------------------------------------------------------------------

A = [0, 0, 10, 10]
A_SHIFTED = [1, 0, 11, 10]  # IoU with A = 90 / 110, about 0.82
FAR = [50, 50, 60, 60]


@pytest.mark.parametrize(
    ("xyxy", "class_id", "mode", "kept"),
    [
        pytest.param([A, A_SHIFTED], [0, 1], "class", [0, 1], id="class-keeps-other-class"),
        pytest.param([A, A_SHIFTED], [0, 0], "class", [0], id="class-suppresses-same-class"),
        pytest.param([A, A_SHIFTED], [0, 1], "all", [0], id="all-suppresses-across-classes"),
        pytest.param([A, A_SHIFTED], [0, 0], "none", [0, 1], id="none-keeps-same-class"),
        pytest.param([A, A_SHIFTED, FAR], [0, 1, 1], "none", [0, 1, 2], id="none-keeps-all"),
        pytest.param([A, A_SHIFTED, FAR], [0, 1, 1], "all", [0, 2], id="all-keeps-far-box"),
        pytest.param([A, FAR], [0, 0], "class", [0, 1], id="class-keeps-disjoint"),
    ],
)
def test_apply_nms_boxes(xyxy: list[list[float]], class_id: list[int], mode: str, kept: list[int]) -> None:
    confidence = [0.9, 0.6, 0.5][: len(xyxy)]
    detections = make(xyxy, class_id=class_id, confidence=confidence)
    out = apply_nms(detections, mode, iou_threshold=0.5)
    assert sorted(np.flatnonzero(np.isin(detections.confidence, out.confidence))) == kept
    assert_aligned(out)


def test_apply_nms_keeps_higher_score() -> None:
    detections = make([A, A_SHIFTED], class_id=[0, 0], confidence=[0.3, 0.8])
    out = apply_nms(detections, "class", iou_threshold=0.5)
    np.testing.assert_array_equal(out.xyxy, np.array([A_SHIFTED], dtype=np.float32))
    np.testing.assert_array_equal(out.confidence, np.array([0.8], dtype=np.float32))


@pytest.mark.parametrize(
    ("threshold", "kept"),
    [pytest.param(0.9, 2, id="iou-below-threshold"), pytest.param(0.5, 1, id="iou-above-threshold")],
)
def test_apply_nms_threshold(threshold: float, kept: int) -> None:
    detections = make([A, A_SHIFTED], class_id=[0, 0], confidence=[0.9, 0.8])
    assert len(apply_nms(detections, "class", iou_threshold=threshold)) == kept


@pytest.mark.parametrize(
    ("masks", "kept"),
    [
        pytest.param([(0, 0, 4, 8), (4, 0, 8, 8)], 2, id="same-box-disjoint-masks-both-kept"),
        pytest.param([(0, 0, 8, 8), (0, 0, 8, 7)], 1, id="same-box-overlapping-masks-one-kept"),
    ],
)
@pytest.mark.parametrize("mode", ["class", "all"])
def test_apply_nms_uses_mask_overlap(masks: list[tuple[int, int, int, int]], kept: int, mode: str) -> None:
    detections = make(
        [[0, 0, 8, 8], [0, 0, 8, 8]], class_id=[0, 0], confidence=[0.9, 0.8],
        mask=np.stack([box_mask(m) for m in masks]),
    )
    out = apply_nms(detections, mode, iou_threshold=0.5)
    assert len(out) == kept
    assert out.mask.shape == (kept, 8, 8)
    assert out.confidence[0] == pytest.approx(0.9)


@pytest.mark.parametrize(
    ("detections", "mode"),
    [
        pytest.param(make([A, A], class_id=[0, 0]), "all", id="no-confidence"),
        pytest.param(make([A], class_id=[0], confidence=[0.5]), "all", id="single"),
        pytest.param(sv.Detections.empty(), "class", id="empty"),
    ],
)
def test_apply_nms_nothing_to_do(detections: sv.Detections, mode: str) -> None:
    assert apply_nms(detections, mode, iou_threshold=0.5) is detections


@pytest.mark.parametrize(
    ("mode", "error", "match"),
    [
        pytest.param("classes", ValueError, "nms must be one of none, class, all, but got 'classes'", id="typo"),
        pytest.param("", ValueError, "nms must be one of", id="empty"),
        pytest.param(None, ValueError, "nms must be one of", id="none-object"),
        pytest.param("ALL", ValueError, "nms must be one of", id="case-sensitive"),
    ],
)
def test_apply_nms_unknown_mode(mode, error: type[Exception], match: str) -> None:
    detections = make([A, A_SHIFTED], class_id=[0, 1], confidence=[0.9, 0.8])
    with pytest.raises(error, match=match):
        apply_nms(detections, mode, iou_threshold=0.5)


def test_nms_modes() -> None:
    assert NMS_MODES == ("none", "class", "all")


def test_mask_nms_matches_a_brute_force_reference():
    """Exact mask IoU, greedy by score, within classes: checked against a plain all-pairs loop."""
    from grounded_sam.pipeline.postprocess import mask_nms_keep

    rng = np.random.default_rng(7)
    for trial in range(20):
        count = int(rng.integers(2, 9))
        masks = np.zeros((count, 40, 50), dtype=bool)
        for k in range(count):
            x, y = rng.integers(0, 35), rng.integers(0, 25)
            masks[k, y : y + rng.integers(5, 15), x : x + rng.integers(5, 15)] = True
        scores = rng.random(count)
        classes = rng.integers(0, 2, count)
        threshold = float(rng.choice([0.1, 0.3, 0.5]))
        expected = np.zeros(count, dtype=bool)
        kept = []
        for i in np.argsort(-scores, kind="stable"):
            ious = [(masks[i] & masks[j]).sum() / (masks[i] | masks[j]).sum() for j in kept if classes[j] == classes[i]]
            if not any(iou > threshold for iou in ious):
                expected[i] = True
                kept.append(i)
        np.testing.assert_array_equal(mask_nms_keep(masks, scores, classes, threshold), expected, err_msg=f"trial {trial}")
