"""The one way tests build hand-made ``sv.Detections``: the dtypes a pipeline gives, nothing more."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import supervision as sv


def make_detections(
    xyxy: Sequence[Sequence[float]] | np.ndarray,
    *,
    class_id: Sequence[int] | np.ndarray | None = None,
    confidence: Sequence[float] | np.ndarray | None = None,
    mask: np.ndarray | Sequence[np.ndarray] | None = None,
    class_name: Sequence[str] | None = None,
) -> sv.Detections:
    """Detections as the pipeline makes them.

    Args:
        xyxy: (N, 4) boxes in pixels; stored as float32.
        class_id: (N,) class ids; stored as int (zeros when None).
        confidence: (N,) scores; stored as float32 (None keeps it None).
        mask: (N, H, W) bool, or a list of (H, W) masks; None keeps it None.
        class_name: (N,) names for ``data["class_name"]``; None leaves the key out.
    """
    boxes = np.asarray(xyxy, dtype=np.float32).reshape(-1, 4)
    count = len(boxes)
    masks = None
    if mask is not None:
        masks = np.asarray(mask, dtype=bool) if isinstance(mask, np.ndarray) else np.stack(list(mask)).astype(bool)
    return sv.Detections(
        xyxy=boxes,
        mask=masks,
        class_id=np.zeros(count, dtype=int) if class_id is None else np.asarray(class_id, dtype=int),
        confidence=None if confidence is None else np.asarray(confidence, dtype=np.float32),
        data={} if class_name is None else {"class_name": np.array(list(class_name), dtype=str)},
    )


def whole_image(height: int, width: int, class_name: str = "thing", score: float = 0.9) -> sv.Detections:
    """One object covering the whole (height, width) image."""
    return make_detections([[0, 0, width, height]], class_id=[0], confidence=[score],
                           mask=np.ones((1, height, width), dtype=bool), class_name=[class_name])
