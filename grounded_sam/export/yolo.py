"""YOLO (Ultralytics) detection and segmentation datasets.

Ultralytics finds an image's labels by replacing ``/images/`` with ``/labels/`` in its path, so
detection and segmentation get a tree each::

    <out>/yolo/detect/data.yaml
    <out>/yolo/detect/images/<stem>.<ext>     hard links to <out>/images/ (copies where links fail)
    <out>/yolo/detect/labels/<stem>.txt       "class cx cy w h" per object, normalised to [0, 1]
    <out>/yolo/segment/...                    same, "class x1 y1 x2 y2 ..." polygons

Class ids start at 0 in the user's order. Boxes are the tight box of the mask; polygons follow the
pixel-centre convention of OpenCV's ``fillPoly`` (see :mod:`grounded_sam.export.polygons`), one per
object, a multi-part mask joined into one outline as Ultralytics' own converters do. An image with
no objects gets an empty label file (a background image). ``data.yaml`` uses the whole set for
``train`` and ``val``; split it before training if you need a held-out set. Its ``path`` is the
tree's absolute path: edit that line if you move the folder.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from grounded_sam.detections import mask_box
from grounded_sam.export.base import ImageRecord, LabeledImage
from grounded_sam.export.dataset_images import IMAGES_DIR, dataset_image_name
from grounded_sam.export.files import atomic_link_or_copy, atomic_write_text
from grounded_sam.export.overlap import check_overlap_mode, instance_masks, with_masks
from grounded_sam.export.polygons import mask_to_polygons, merge_polygons

YoloTask = Literal["detect", "segment"]


def yolo_lines(
    masks: np.ndarray, class_ids: np.ndarray, task: YoloTask, image_size: tuple[int, int]
) -> list[str]:
    """YOLO label lines for one image.

    Args:
        masks: (N, H, W) bool.
        class_ids: (N,) int, from 0.
        task: ``detect`` (boxes) or ``segment`` (polygons).
        image_size: ``(width, height)``.

    Returns:
        One line per object with a non-empty mask, coordinates normalised to [0, 1] with 6 decimals.
    """
    width, height = image_size
    scale = np.array([width, height], dtype=np.float64)
    lines = []
    for mask, class_id in zip(masks, class_ids):
        if task == "detect":
            x1, y1, x2, y2 = mask_box(mask)
            if x2 <= x1 or y2 <= y1:
                continue
            values = [(x1 + x2) / 2 / width, (y1 + y2) / 2 / height, (x2 - x1) / width, (y2 - y1) / height]
        else:
            polygon = merge_polygons(mask_to_polygons(mask, "pixel_centers"))
            if polygon is None:
                continue
            values = np.clip(polygon / scale, 0.0, 1.0).reshape(-1).tolist()
        lines.append(f"{int(class_id)} " + " ".join(f"{v:.6f}" for v in values))
    return lines


def data_yaml(root: Path, class_names: Sequence[str]) -> str:
    """The ``data.yaml`` Ultralytics reads (``path``, ``train``, ``val``, ``nc``, ``names``)."""
    import yaml

    body = yaml.safe_dump(
        {"path": str(root.resolve()), "train": "images", "val": "images", "nc": len(class_names),
         "names": {i: name for i, name in enumerate(class_names)}},
        sort_keys=False, allow_unicode=True,
    )
    return "# Written by grounded_sam. `path` is absolute: edit it if you move this folder.\n" + body


class YoloWriter:
    """Writes one YOLO tree, ``<out_dir>/yolo/<task>/`` (see the module docstring).

    Args:
        out_dir: The run's output folder; images are linked from ``<out_dir>/images/``, written by
            :class:`~grounded_sam.export.dataset_images.DatasetImageWriter` before this writer runs.
        class_names: Every class, in class-id order.
        task: ``detect`` or ``segment``.
        overlap: See :mod:`grounded_sam.export.overlap`.
    """

    def __init__(
        self, out_dir: str | os.PathLike[str], class_names: Sequence[str], *, task: YoloTask = "detect",
        overlap: str = "auto", subdir: str = "yolo",
    ) -> None:
        if task not in ("detect", "segment"):
            raise ValueError(f"task must be 'detect' or 'segment', but got {task!r}")
        self.out_dir = Path(out_dir)
        self.class_names = tuple(class_names)
        self.task: YoloTask = task
        self.overlap = check_overlap_mode(overlap)
        self.root = self.out_dir / subdir / task
        self.name = f"yolo-{task}"

    def write(self, item: LabeledImage) -> list[Path]:
        image_name = dataset_image_name(item.source_path, item.stem)
        image = atomic_link_or_copy(self.out_dir / IMAGES_DIR / image_name, self.root / "images" / image_name)
        height, width = item.image.shape[:2]
        detections = instance_masks(with_masks(item.detections, height, width), self.overlap)
        lines = yolo_lines(detections.mask, detections.class_id, self.task, (width, height)) if len(detections) else []
        labels = atomic_write_text(self.root / "labels" / f"{item.stem}.txt", "".join(line + "\n" for line in lines))
        return [image, labels]

    def finalize(self, records: Sequence[ImageRecord] = ()) -> list[Path]:
        return [atomic_write_text(self.root / "data.yaml", data_yaml(self.root, self.class_names))]

