"""Cleaning detections: box sanity, score threshold, non-maximum suppression.

Each function takes and returns an ``sv.Detections`` so it can be tested with a hand-made one.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import supervision as sv

NmsMode = Literal["none", "class", "all"]
NMS_MODES: tuple[str, ...] = ("none", "class", "all")


def sanitize_boxes(detections: sv.Detections, image_size: tuple[int, int], min_side: float = 1.0) -> sv.Detections:
    """Sorts box corners, clips boxes to the image and drops degenerate ones.

    Args:
        detections: Boxes in ``xyxy`` pixels, possibly inverted (x2 < x1) or outside the image.
        image_size: ``(width, height)`` in pixels.
        min_side: Boxes narrower or shorter than this many pixels after clipping are dropped.

    Returns:
        Detections whose boxes satisfy ``0 <= x1 < x2 <= width`` and ``0 <= y1 < y2 <= height``.
    """
    if len(detections) == 0:
        return detections
    width, height = image_size
    xyxy = detections.xyxy.astype(np.float32)
    x1, x2 = np.minimum(xyxy[:, 0], xyxy[:, 2]), np.maximum(xyxy[:, 0], xyxy[:, 2])
    y1, y2 = np.minimum(xyxy[:, 1], xyxy[:, 3]), np.maximum(xyxy[:, 1], xyxy[:, 3])
    fixed = np.stack([x1.clip(0, width), y1.clip(0, height), x2.clip(0, width), y2.clip(0, height)], axis=1)
    finite = np.isfinite(fixed).all(axis=1)
    keep = finite & ((fixed[:, 2] - fixed[:, 0]) >= min_side) & ((fixed[:, 3] - fixed[:, 1]) >= min_side)
    detections = detections[keep]
    detections.xyxy = fixed[keep]
    return detections


def drop_duplicate_boxes(detections: sv.Detections) -> sv.Detections:
    """Drops exact repeats of (class, box), e.g. from two prompts that feed one class.

    Done before segmentation, so SAM2 never decodes the same box twice.
    """
    if len(detections) < 2:
        return detections
    class_id = detections.class_id if detections.class_id is not None else np.zeros(len(detections), dtype=int)
    keys = np.concatenate([class_id[:, None].astype(np.float64), detections.xyxy.astype(np.float64)], axis=1)
    _, first = np.unique(keys, axis=0, return_index=True)
    keep = np.zeros(len(detections), dtype=bool)
    keep[first] = True
    return detections[keep]


def filter_min_score(detections: sv.Detections, min_score: float) -> sv.Detections:
    """Keeps detections whose ``confidence`` is at least ``min_score`` (all when it is None)."""
    if detections.confidence is None or min_score <= 0:
        return detections
    return detections[detections.confidence >= min_score]


def apply_nms(detections: sv.Detections, mode: NmsMode, iou_threshold: float) -> sv.Detections:
    """Non-maximum suppression ranked by ``confidence``, on mask IoU when masks exist, else box IoU.

    Args:
        detections: Detections with ``confidence``.
        mode: ``"none"``; ``"class"`` suppresses overlaps within a class; ``"all"`` across classes.
        iou_threshold: IoU above which the lower-scoring detection is dropped.

    Raises:
        ValueError: ``mode`` is unknown.
    """
    if mode not in NMS_MODES:
        raise ValueError(f"nms must be one of {', '.join(NMS_MODES)}, but got {mode!r}")
    if mode == "none" or len(detections) < 2 or detections.confidence is None:
        return detections
    # supervision compares masks when they are there (segmentation overlap), boxes otherwise.
    return detections.with_nms(threshold=iou_threshold, class_agnostic=(mode == "all"))
