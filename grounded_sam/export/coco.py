"""COCO instance segmentation: ``<out>/coco/annotations.json`` over the images in ``<out>/images/``.

Assembled at the end of a run (and again when it resumes) from the per-image JSON records, one
image at a time, so memory stays flat however many images there are. What it holds:

* ``categories``: the classes in the order the user gave them, ids from 1.
* ``images``: ids from 1 in stem order; ``file_name`` relative to ``<out>/images/``; ``width`` and
  ``height`` of the upright (EXIF-corrected) image.
* ``annotations``: ``segmentation`` as compressed RLE (default, exact) or polygons
  (``masks="polygon"``, see :mod:`grounded_sam.export.polygons`); ``area`` and ``bbox``
  (``[x, y, w, h]``, the tight box of the segmentation) computed by pycocotools from the
  segmentation as written, so they always agree with it; ``iscrowd`` 0 (each annotation is one
  object); ``score`` is SAM2's predicted IoU.

We write the JSON ourselves rather than with supervision's ``save_coco_annotations``: that one
refuses two images with the same file name and chooses RLE or polygons per mask by itself.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from grounded_sam.errors import OptionError
from grounded_sam.export.base import ImageRecord, LabeledImage
from grounded_sam.export.files import atomic_open
from grounded_sam.export.overlap import OverlapMode, check_overlap_mode, instance_masks, with_masks
from grounded_sam.export.polygons import flatten, mask_to_polygons
from grounded_sam.export.rle import encode_mask, mask_area, rle_bbox_xywh

logger = logging.getLogger(__name__)

CocoMasks = Literal["rle", "polygon"]
COCO_MASK_MODES: tuple[str, ...] = ("rle", "polygon")
COCO_PATH = "coco/annotations.json"


def check_coco_masks(value: str) -> CocoMasks:
    """Returns ``value`` if it is ``rle`` or ``polygon``; else raises OptionError."""
    if value not in COCO_MASK_MODES:
        raise OptionError(f"coco masks must be one of {', '.join(COCO_MASK_MODES)}, but got {value!r}.")
    return value  # type: ignore[return-value]


def categories_json(class_names: Sequence[str]) -> list[dict[str, Any]]:
    """COCO categories: ids from 1 in the given order."""
    return [{"id": i + 1, "name": name, "supercategory": "object"} for i, name in enumerate(class_names)]


def record_annotations(
    record: dict[str, Any], *, masks: CocoMasks = "rle", overlap: OverlapMode = "auto"
) -> list[dict[str, Any]]:
    """COCO annotations (without ``id`` and ``image_id``) of one per-image JSON record.

    Objects whose mask is empty (possible only after ``overlap`` resolution) are left out.
    """
    from pycocotools import mask as mask_utils

    items = record["detections"]
    if not items:
        return []
    if masks == "rle" and overlap == "auto" and all("mask" in item for item in items):
        # The record's RLE is already what COCO wants: no decoding needed.
        segmentations: list[Any] = [item["mask"] for item in items]
    else:
        from grounded_sam.export.labels_json import record_to_detections

        height, width = record["image"]["height"], record["image"]["width"]
        detections = instance_masks(with_masks(record_to_detections(record), height, width), overlap)
        segmentations = []
        for mask in detections.mask:
            if masks == "rle":
                segmentations.append(encode_mask(mask))
            else:
                segmentations.append([flatten(p) for p in mask_to_polygons(mask, "coco")])

    annotations = []
    for item, segmentation in zip(items, segmentations):
        if isinstance(segmentation, dict):
            area, bbox = mask_area(segmentation), rle_bbox_xywh(segmentation)
        elif segmentation:
            height, width = record["image"]["height"], record["image"]["width"]
            rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
            area, bbox = int(mask_utils.area(rle)), [_number(v) for v in mask_utils.toBbox(rle)]
        else:
            area, bbox = 0, [0, 0, 0, 0]
        if area == 0:
            continue
        annotation = {
            "category_id": int(item["class_id"]) + 1, "segmentation": segmentation, "area": area, "bbox": bbox,
            "iscrowd": 0,
        }
        if item.get("score") is not None:
            annotation["score"] = item["score"]
        if item.get("track_id") is not None:
            annotation["track_id"] = item["track_id"]
        annotations.append(annotation)
    return annotations


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else round(float(value), 2)


class CocoWriter:
    """Writes ``<out_dir>/coco/annotations.json`` at the end of a run (nothing per image).

    Args:
        out_dir: The run's output folder.
        class_names: Every class, in class-id order.
        masks: ``rle`` (default, exact) or ``polygon``.
        overlap: See :mod:`grounded_sam.export.overlap`.
        path: Where the JSON goes, relative to ``out_dir``.
    """

    name = "coco"

    def __init__(
        self, out_dir: str | os.PathLike[str], class_names: Sequence[str], *, masks: str = "rle",
        overlap: str = "auto", path: str = COCO_PATH,
    ) -> None:
        self.out_dir = Path(out_dir)
        self.class_names = tuple(class_names)
        self.masks = check_coco_masks(masks)
        self.overlap = check_overlap_mode(overlap)
        self.path = self.out_dir / path

    def write(self, item: LabeledImage) -> list[Path]:
        return []

    def finalize(self, records: Sequence[ImageRecord] = ()) -> list[Path]:
        done = [r for r in records if r.ok and r.labels]
        with atomic_open(self.path, "w") as handle:
            handle.write('{"info": ' + json.dumps({"description": "Labeled with grounded_sam (Florence-2 boxes, SAM2 masks)"}))
            handle.write(',\n"licenses": [],\n"categories": ' + json.dumps(categories_json(self.class_names)))
            handle.write(',\n"images": [')
            for image_id, record in enumerate(done, start=1):
                name = Path(record.image_file).name if record.image_file else Path(record.source).name
                entry = {"id": image_id, "file_name": name, "width": record.width, "height": record.height}
                if record.frame is not None:  # a tracked clip's frame (one clip per run)
                    entry.update(video_id=1, frame_id=record.frame)
                handle.write(("\n" if image_id == 1 else ",\n") + json.dumps(entry))
            handle.write('],\n"annotations": [')
            count = 0
            for image_id, annotation in self._annotations(done):
                count += 1
                annotation = {"id": count, "image_id": image_id, **annotation}
                handle.write(("\n" if count == 1 else ",\n") + json.dumps(annotation))
            handle.write("]}\n")
        logger.info("Wrote %s: %d images, %d annotations", self.path, len(done), count)
        return [self.path]

    def _annotations(self, records: Sequence[ImageRecord]) -> Iterator[tuple[int, dict[str, Any]]]:
        for image_id, record in enumerate(records, start=1):
            data = json.loads((self.out_dir / record.labels).read_text(encoding="utf-8"))  # type: ignore[operator]
            for annotation in record_annotations(data, masks=self.masks, overlap=self.overlap):
                yield image_id, annotation
