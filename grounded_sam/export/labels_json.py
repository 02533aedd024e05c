"""One JSON file of labels per image: classes, boxes, scores and COCO RLE masks.

Layout (``<stem>.json``)::

    {"image": {"source": "...", "file_name": "truck.jpg", "width": 1800, "height": 1200},
     "categories": ["truck", "tire"],
     "detections": [{"class_id": 0, "class_name": "truck", "score": 0.93,
                     "bbox_xyxy": [x1, y1, x2, y2], "mask_bbox_xyxy": [x1, y1, x2, y2], "area": 123456,
                     "mask": {"size": [1200, 1800], "counts": "..."}}],
     "settings": {...}}

``score`` is SAM2's predicted IoU of the mask. A detector that scores its boxes (Grounding DINO,
OWLv2) adds ``"detector_score"`` after it: its own score for the box. Florence-2 gives no scores, so
its records have no such key. Width and height
are the upright (EXIF-corrected) size. ``bbox_xyxy`` is the detector's box (the prompt SAM2 got);
``mask_bbox_xyxy`` is the tight box of the mask (``x2``/``y2`` one past the last pixel), which is
the box every dataset format writes, so that a format's box always agrees with its mask. Masks are
SAM2's own and may overlap (see :mod:`grounded_sam.export.overlap`). Nothing in a record depends
on timing, so the same image and settings always give the same bytes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import supervision as sv

from grounded_sam.detections import class_names_of, empty_detections
from grounded_sam.export.base import ImageRecord, LabeledImage
from grounded_sam.export.files import atomic_write_text
from grounded_sam.export.rle import decode_rle, encode_mask, mask_area, rle_bbox_xywh

FORMAT_VERSION = 1


def detections_to_record(
    detections: sv.Detections, image_size: tuple[int, int], class_names: tuple[str, ...] | list[str],
    *, source: str = "", settings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Turns Detections into the JSON record described in this module's docstring.

    Args:
        detections: With ``xyxy`` pixels; ``mask`` (N, H, W), ``confidence`` and ``class_id`` when present.
        image_size: ``(width, height)`` of the upright image.
        class_names: Every class of the run, in class-id order.
        source: Where the image came from.
        settings: The run's settings.
    """
    width, height = image_size
    names = class_names_of(detections, class_names)
    detector_scores = detections.data.get("detector_score")
    items = []
    for i in range(len(detections)):
        class_id = int(detections.class_id[i]) if detections.class_id is not None else -1
        item: dict[str, Any] = {
            "class_id": class_id,
            "class_name": names[i],
            "score": None if detections.confidence is None else round(float(detections.confidence[i]), 5),
        }
        if detector_scores is not None:  # NaN (an object added by hand in the editor) is written as null
            score = float(detector_scores[i])
            item["detector_score"] = None if np.isnan(score) else round(score, 5)
        item["bbox_xyxy"] = [round(float(v), 2) for v in detections.xyxy[i]]
        if detections.tracker_id is not None:
            item["track_id"] = int(detections.tracker_id[i])
        if detections.mask is not None:
            rle = encode_mask(detections.mask[i])
            x, y, w, h = rle_bbox_xywh(rle)
            item["mask_bbox_xyxy"] = [x, y, x + w, y + h]
            item["area"] = mask_area(rle)
            item["mask"] = rle
        items.append(item)
    record: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "image": {"source": source, "file_name": Path(source).name if source else "", "width": int(width), "height": int(height)},
    }
    if "frame_index" in detections.metadata:
        record["frame"] = {"index": int(detections.metadata["frame_index"])}
    return {
        **record,
        "categories": list(class_names),
        "detections": items,
        "settings": settings or {},
    }


def record_to_detections(record: dict[str, Any]) -> sv.Detections:
    """Reads a record written by :func:`detections_to_record` back into Detections."""
    items = record["detections"]
    height, width = record["image"]["height"], record["image"]["width"]
    if not items:
        return empty_detections((width, height))
    masks = None
    if all("mask" in item for item in items):
        masks = np.stack([decode_rle(item["mask"]) for item in items])
    scores = [item.get("score") for item in items]
    data = {"class_name": np.array([item["class_name"] for item in items])}
    if all("detector_score" in item for item in items):
        data["detector_score"] = np.array([np.nan if item["detector_score"] is None else item["detector_score"]
                                           for item in items], dtype=np.float32)
    return sv.Detections(
        xyxy=np.array([item["bbox_xyxy"] for item in items], dtype=np.float32),
        mask=masks,
        confidence=None if any(s is None for s in scores) else np.array(scores, dtype=np.float32),
        class_id=np.array([item["class_id"] for item in items], dtype=int),
        tracker_id=np.array([item["track_id"] for item in items], dtype=int) if all("track_id" in i for i in items) else None,
        data=data,
    )


class JsonLabelWriter:
    """Writes ``<out_dir>/labels/<stem>.json`` for every image (the record above)."""

    name = "json"

    def __init__(self, out_dir: str | os.PathLike[str], subdir: str = "labels") -> None:
        self.folder = Path(out_dir) / subdir

    def write(self, item: LabeledImage) -> list[Path]:
        height, width = item.image.shape[:2]
        record = detections_to_record(
            item.detections, (width, height), item.class_names, source=item.source, settings=item.settings
        )
        return [atomic_write_text(self.folder / f"{item.stem}.json", json.dumps(record, indent=1))]

    def finalize(self, records: Sequence[ImageRecord] = ()) -> list[Path]:
        return []
