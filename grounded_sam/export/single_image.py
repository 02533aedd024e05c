"""The labels of one image as downloads: a COCO JSON file with RLE masks, and a zip of mask PNGs.

The app offers these for the image it just labeled, and the editor keeps them current after every
edit (:class:`grounded_sam.editing.downloads.LabelFiles`, which encodes each mask once and builds
the same files from the same pieces below). Dataset-level COCO for many images belongs to the
dataset writers.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import supervision as sv
from PIL import Image

from grounded_sam.detections import class_names_of
from grounded_sam.export.files import atomic_write_bytes
from grounded_sam.export.rle import encode_mask
from grounded_sam.naming import mask_file_name

__all__ = [
    "coco_annotation", "coco_document", "coco_for_image", "mask_png", "mask_png_files", "stored_zip",
    "write_coco_json", "write_mask_zip",
]


def coco_annotation(
    index: int, box_xyxy: Sequence[float], class_id: int, rle: dict[str, Any], area: int, score: float | None
) -> dict[str, Any]:
    """One object of a one-image COCO document.

    Args:
        index: The object's position (0-based); its annotation id is ``index + 1``.
        box_xyxy: Its box in pixels; written as ``bbox`` ``[x, y, w, h]``.
        class_id: 0-based class id; the COCO category id is ``class_id + 1``.
        rle: Its mask as COCO compressed RLE.
        area: The mask's pixel count.
        score: SAM2's predicted IoU, or None when unknown (then no ``score`` key).
    """
    x1, y1, x2, y2 = (float(v) for v in box_xyxy)
    annotation: dict[str, Any] = {
        "id": index + 1,
        "image_id": 1,
        "category_id": int(class_id) + 1,
        "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
        "area": int(area),
        "segmentation": rle,
        "iscrowd": 0,
    }
    if score is not None:
        annotation["score"] = round(float(np.float32(score)), 5)
    return annotation


def coco_document(
    file_name: str, image_size: tuple[int, int], class_names: Sequence[str], annotations: list[dict[str, Any]]
) -> dict[str, Any]:
    """``{"images", "categories", "annotations"}`` for one image; category ids are 1, 2, ... in class order."""
    width, height = image_size
    return {
        "images": [{"id": 1, "file_name": file_name, "width": int(width), "height": int(height)}],
        "categories": [{"id": i + 1, "name": name, "supercategory": ""} for i, name in enumerate(class_names)],
        "annotations": annotations,
    }


def coco_for_image(
    detections: sv.Detections, image_size: tuple[int, int], class_names: Sequence[str], file_name: str
) -> dict[str, Any]:
    """A COCO instance-segmentation document holding one image.

    Args:
        detections: ``xyxy`` pixels, ``mask`` (N, H, W) bool, ``class_id`` indexing ``class_names``,
            ``confidence`` optional.
        image_size: ``(width, height)`` of the upright image the masks belong to.
        class_names: Every class, in class-id order; COCO category ids are 1, 2, ... in this order.
        file_name: The image's file name, recorded in ``images[0]``.

    Returns:
        ``{"images", "categories", "annotations"}``: ``bbox`` is ``[x, y, w, h]`` pixels (the
        detector's box), ``segmentation`` compressed RLE (``counts`` a string), ``area`` the mask's
        pixel count, ``iscrowd`` 0 and ``score`` SAM2's predicted IoU when known.

    Raises:
        ValueError: The detections carry no masks.
    """
    if len(detections) and detections.mask is None:
        raise ValueError("coco_for_image needs detections with masks (mask of shape (N, H, W)), but mask is None")
    annotations = [
        coco_annotation(
            i, detections.xyxy[i], int(detections.class_id[i]), encode_mask(detections.mask[i]),
            int(detections.mask[i].sum()), None if detections.confidence is None else detections.confidence[i],
        )
        for i in range(len(detections))
    ]
    return coco_document(file_name, image_size, class_names, annotations)


def write_coco_json(path: str | os.PathLike[str], document: dict[str, Any], *, durable: bool = True) -> Path:
    """Writes a COCO document (from :func:`coco_for_image`) atomically; returns the path."""
    return atomic_write_bytes(path, json.dumps(document).encode("utf-8"), durable=durable)


def mask_png(mask: np.ndarray, compress_level: int = 6) -> bytes:
    """8-bit gray PNG bytes of an (H, W) bool mask: 255 inside, 0 outside."""
    buffer = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8) * np.uint8(255)).save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()


def mask_png_files(detections: sv.Detections, stem: str) -> list[tuple[str, bytes]]:
    """One PNG per detection (:func:`mask_png`), the image's size, named by :func:`~grounded_sam.naming.mask_file_name`.

    Names are ``<stem>_<NNN>_<class>.png`` with ``NNN`` the detection's index from 0 (the row of
    the app's table), so they sort in detection order.

    Args:
        detections: With ``mask`` (N, H, W) bool; ``data["class_name"]`` names the files.
        stem: File-name stem, e.g. the image's name without suffix.
    """
    if len(detections) == 0:
        return []
    if detections.mask is None:
        raise ValueError("mask_png_files needs detections with masks (mask of shape (N, H, W)), but mask is None")
    names = class_names_of(detections)
    return [(mask_file_name(stem, i, names[i]), mask_png(detections.mask[i])) for i in range(len(detections))]


def stored_zip(files: Sequence[tuple[str, bytes]]) -> bytes:
    """A zip of ``(name, bytes)`` members, stored (PNGs are compressed already)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, data in files:
            archive.writestr(name, data)
    return buffer.getvalue()


def write_mask_zip(path: str | os.PathLike[str], detections: sv.Detections, stem: str) -> Path:
    """Writes :func:`mask_png_files` into one zip (PNGs stored, not re-compressed); returns the path."""
    return atomic_write_bytes(path, stored_zip(mask_png_files(detections, stem)))
