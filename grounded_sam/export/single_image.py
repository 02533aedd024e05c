"""The labels of one image as downloads: a COCO JSON file with RLE masks, and mask PNGs.

Small on purpose: the app offers these for the image it just labeled. Dataset-level COCO for
many images belongs to the dataset writers; this module can then delegate to them.
"""

from __future__ import annotations

import io
import json
import os
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import supervision as sv
from PIL import Image

from grounded_sam.export.files import atomic_write_bytes, atomic_write_text
from grounded_sam.export.rle import encode_mask

__all__ = ["coco_for_image", "mask_png_files", "write_coco_json", "write_mask_zip"]

_UNSAFE = re.compile(r"[^\w.-]+")


def coco_for_image(
    detections: sv.Detections, image_size: tuple[int, int], class_names: tuple[str, ...] | list[str], file_name: str
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
    width, height = image_size
    if len(detections) and detections.mask is None:
        raise ValueError("coco_for_image needs detections with masks (mask of shape (N, H, W)), but mask is None")
    annotations = []
    for i in range(len(detections)):
        x1, y1, x2, y2 = (float(v) for v in detections.xyxy[i])
        mask = detections.mask[i]
        annotation: dict[str, Any] = {
            "id": i + 1,
            "image_id": 1,
            "category_id": int(detections.class_id[i]) + 1,
            "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
            "area": int(mask.sum()),
            "segmentation": encode_mask(mask),
            "iscrowd": 0,
        }
        if detections.confidence is not None:
            annotation["score"] = round(float(detections.confidence[i]), 5)
        annotations.append(annotation)
    return {
        "images": [{"id": 1, "file_name": file_name, "width": int(width), "height": int(height)}],
        "categories": [{"id": i + 1, "name": name, "supercategory": ""} for i, name in enumerate(class_names)],
        "annotations": annotations,
    }


def write_coco_json(path: str | os.PathLike[str], document: dict[str, Any]) -> Path:
    """Writes a COCO document (from :func:`coco_for_image`) atomically; returns the path."""
    return atomic_write_text(path, json.dumps(document))


def mask_png_files(detections: sv.Detections, stem: str) -> list[tuple[str, bytes]]:
    """One PNG per detection: 8-bit gray, 255 inside the mask, 0 outside, the image's size.

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
    names = detections.data.get("class_name")
    files = []
    for i in range(len(detections)):
        label = str(names[i]) if names is not None else f"class{int(detections.class_id[i])}"
        buffer = io.BytesIO()
        Image.fromarray(detections.mask[i].astype(np.uint8) * np.uint8(255)).save(buffer, format="PNG")
        files.append((f"{stem}_{i:03d}_{_UNSAFE.sub('_', label).strip('_') or 'object'}.png", buffer.getvalue()))
    return files


def write_mask_zip(path: str | os.PathLike[str], detections: sv.Detections, stem: str) -> Path:
    """Writes :func:`mask_png_files` into one zip (PNGs stored, not re-compressed); returns the path."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, data in mask_png_files(detections, stem):
            archive.writestr(name, data)
    return atomic_write_bytes(path, buffer.getvalue())
