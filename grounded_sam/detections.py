"""Helpers for the one result type, ``sv.Detections``: empty results, class names, and mask boxes.

Boxes are xyxy pixels; masks are (N, H, W) bool; ``class_id`` indexes the run's class names and
``data["class_name"]`` carries each detection's name.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import supervision as sv


def empty_detections(image_size: tuple[int, int] | None = None) -> sv.Detections:
    """A Detections with no rows that still carries every field a result has.

    Args:
        image_size: ``(width, height)``: when given, ``mask`` is a (0, H, W) bool array, so code
            that reads the mask shape works on an empty result too.

    Returns:
        ``xyxy`` (0, 4) float32, ``confidence`` (0,) float32, ``class_id`` (0,) int,
        ``data["class_name"]`` (0,) str, and ``mask`` (0, H, W) bool or None.
    """
    detections = sv.Detections.empty()
    detections.confidence = np.zeros((0,), dtype=np.float32)
    detections.class_id = np.zeros((0,), dtype=int)
    detections.data["class_name"] = np.array([], dtype=str)
    if image_size is not None:
        width, height = image_size
        detections.mask = np.zeros((0, height, width), dtype=bool)
    return detections


def class_names_of(detections: sv.Detections, class_names: Sequence[str] = ()) -> list[str]:
    """Each detection's class name: ``data["class_name"]``, else ``class_names[class_id]``, else ``"class<id>"``.

    Args:
        detections: Any Detections.
        class_names: The run's classes in class-id order, for detections without ``data["class_name"]``.
    """
    names = detections.data.get("class_name")
    if names is not None:
        return [str(name) for name in names]
    ids = detections.class_id if detections.class_id is not None else np.zeros(len(detections), dtype=int)
    return [class_names[i] if 0 <= i < len(class_names) else f"class{i}" for i in (int(v) for v in ids)]


def mask_box(mask: np.ndarray) -> list[int]:
    """Tight box ``[x1, y1, x2, y2]`` of an (H, W) bool mask, ``x2``/``y2`` one past the last pixel.

    The same box as pycocotools' ``toBbox`` in corner form; ``[0, 0, 0, 0]`` for an empty mask.
    """
    columns = np.flatnonzero(mask.any(axis=0))
    if columns.size == 0:
        return [0, 0, 0, 0]
    rows = np.flatnonzero(mask.any(axis=1))
    return [int(columns[0]), int(rows[0]), int(columns[-1]) + 1, int(rows[-1]) + 1]
