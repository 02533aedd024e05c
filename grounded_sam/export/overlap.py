"""Overlapping masks: which object owns a pixel that several masks claim.

SAM2 segments every box on its own, so masks of neighbouring objects often share pixels. Instance
formats can keep that (each annotation is its own mask); single-label images (a class map, an
instance-id map) cannot, so every pixel there goes to one object. The ``--overlap`` modes:

* ``auto`` (default): COCO, YOLO, the VOC XML and the per-image JSON keep SAM2's masks as they are
  (they may overlap); the single-label images (VOC ``SegmentationClass``/``SegmentationObject``,
  ``masks/``) give a contested pixel to the object with the higher SAM2 score.
* ``score``: every dataset format gets non-overlapping masks, the higher score winning each pixel.
* ``order``: every dataset format gets non-overlapping masks, the earlier category (in the order
  the categories were given) winning each pixel, then the higher score.

Ties go to the detection listed first. The per-image JSON (``labels/``) and the overlays always
keep SAM2's own masks: they record what the models said.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import numpy as np
import supervision as sv

from grounded_sam.errors import OptionError

OverlapMode = Literal["auto", "score", "order"]
OVERLAP_MODES: tuple[str, ...] = ("auto", "score", "order")


def check_overlap_mode(mode: str) -> OverlapMode:
    """Returns ``mode`` if it is one of :data:`OVERLAP_MODES`.

    Raises:
        OptionError: Any other value; the message lists the valid ones.
    """
    if mode not in OVERLAP_MODES:
        raise OptionError(f"overlap must be one of {', '.join(OVERLAP_MODES)}, but got {mode!r}.")
    return mode  # type: ignore[return-value]


def with_masks(detections: sv.Detections, height: int, width: int) -> sv.Detections:
    """``detections`` itself if it has masks, else a copy whose masks fill the boxes (box-only results)."""
    if detections.mask is not None:
        return detections
    masks = np.zeros((len(detections), height, width), dtype=bool)
    for mask, (x1, y1, x2, y2) in zip(masks, np.round(detections.xyxy).astype(int)):
        mask[max(y1, 0): max(y2, 0), max(x1, 0): max(x2, 0)] = True
    return dataclasses.replace(detections, mask=masks)


def priority_order(detections: sv.Detections, by: Literal["score", "order"]) -> np.ndarray:
    """Detection indices from the strongest claim on a pixel to the weakest.

    ``score``: higher confidence first (detections without scores keep their order).
    ``order``: lower ``class_id`` first, then higher confidence. Ties keep the detection order.
    """
    n = len(detections)
    index = np.arange(n)
    scores = detections.confidence if detections.confidence is not None else np.zeros(n, dtype=np.float32)
    if by == "score":
        return np.lexsort((index, -scores.astype(np.float64)))
    class_ids = detections.class_id if detections.class_id is not None else np.zeros(n, dtype=int)
    return np.lexsort((index, -scores.astype(np.float64), class_ids))


def owner_map(detections: sv.Detections, by: Literal["score", "order"]) -> np.ndarray:
    """Which detection each pixel belongs to.

    Args:
        detections: With ``mask`` (N, H, W) bool.
        by: ``score`` or ``order`` (see :func:`priority_order`).

    Returns:
        (H, W) int32: the index of the owning detection, -1 where no mask is.
    """
    masks = detections.mask
    owner = np.full(masks.shape[1:], -1, dtype=np.int32)
    # Paint the weakest claim first so that stronger ones overwrite it.
    for i in priority_order(detections, by)[::-1]:
        owner[masks[i]] = i
    return owner


def non_overlapping(detections: sv.Detections, by: Literal["score", "order"]) -> sv.Detections:
    """A copy of ``detections`` whose masks share no pixel (each goes to its strongest claim).

    A detection may end up with an empty mask; it is kept so indices still match the input.
    """
    if detections.mask is None or len(detections) < 2:
        return detections
    owner = owner_map(detections, by)
    return dataclasses.replace(detections, mask=owner[None, :, :] == np.arange(len(detections))[:, None, None])


def instance_masks(detections: sv.Detections, mode: OverlapMode) -> sv.Detections:
    """What instance formats (COCO, YOLO, VOC XML) write: SAM2's masks, or non-overlapping ones."""
    return detections if mode == "auto" else non_overlapping(detections, mode)


def semantic_owner_map(detections: sv.Detections, mode: OverlapMode) -> np.ndarray:
    """What single-label images write: the owning detection per pixel ((H, W) int32, -1 = none)."""
    return owner_map(detections, "order" if mode == "order" else "score")
