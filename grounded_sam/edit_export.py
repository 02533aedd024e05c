"""Downloads of an editing session's labels, kept current after every edit at the cost of what changed.

:class:`LabelFiles` writes the same two files as :mod:`grounded_sam.export.single_image` (a COCO
JSON with RLE masks, identical, and a zip of mask PNGs with the same names and pixels), but
encodes each mask once: objects are immutable, so a mask seen before reuses its RLE and PNG, and a
click re-encodes only the object it changed. The PNGs use zlib's fastest level, and the files are
replaced by a rename without ``fsync``: they are downloads of a live session, rewritten at every
edit, not outputs a run must find intact after a crash. :func:`write_dataset_zip` writes the
dataset formats (COCO, YOLO, Pascal VOC, mask PNGs) for the edited image with the batch writers,
on demand.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import tempfile
import zipfile
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path, PurePath
from typing import Any

import numpy as np
import supervision as sv
from PIL import Image

from grounded_sam.edit_view import output_box
from grounded_sam.errors import GroundedSamError
from grounded_sam.export.rle import encode_mask
from grounded_sam.refine import EditableObject

logger = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^\w.-]+")  # as grounded_sam.export.single_image names mask files
#: Masks whose encodings are kept beyond the current objects' (undo brings them back).
SPARE_ENCODINGS = 64


def replace_file(path: str | Path, data: bytes) -> Path:
    """Writes ``data`` beside ``path`` and renames it over ``path`` (readers never see half a file); no fsync."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


class LabelFiles:
    """``<stem>_coco.json`` and ``<stem>_masks.zip`` for one image's objects, re-encoding only changed masks.

    Args:
        folder: Where the two files are (re)written.
        stem: File-name stem (the image's name without suffix, sanitised).
        file_name: The image's file name, recorded in the COCO document.

    Attributes:
        encoded: How many masks were encoded so far (RLE and PNG), for tests and timing.
    """

    def __init__(self, folder: str | Path, stem: str, file_name: str) -> None:
        self.folder = Path(folder)
        self.stem = stem
        self.file_name = file_name
        self._cache: OrderedDict[int, tuple[np.ndarray, dict[str, Any], int, bytes]] = OrderedDict()
        self.encoded = 0

    def _encoding(self, mask: np.ndarray) -> tuple[dict[str, Any], int, bytes]:
        key = id(mask)
        item = self._cache.get(key)
        if item is None or item[0] is not mask:
            buffer = io.BytesIO()
            Image.fromarray(mask.astype(np.uint8) * np.uint8(255)).save(buffer, format="PNG", compress_level=1)
            item = (mask, encode_mask(mask), int(np.count_nonzero(mask)), buffer.getvalue())
            self._cache[key] = item
            self.encoded += 1
        self._cache.move_to_end(key)
        return item[1], item[2], item[3]

    def _forget_spares(self, keep: set[int]) -> None:
        spare = [k for k in self._cache if k not in keep]
        for key in spare[: max(0, len(spare) - SPARE_ENCODINGS)]:
            del self._cache[key]

    def coco(self, objects: Sequence[EditableObject], class_names: Sequence[str],
             image_size: tuple[int, int]) -> dict[str, Any]:
        """The COCO document :func:`~grounded_sam.export.single_image.coco_for_image` makes for these objects."""
        width, height = image_size
        annotations = []
        for i, obj in enumerate(objects):
            rle, area, _ = self._encoding(obj.mask)
            x1, y1, x2, y2 = (float(v) for v in output_box(obj))
            annotations.append({
                "id": i + 1,
                "image_id": 1,
                "category_id": list(class_names).index(obj.class_name) + 1,
                "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                "area": area,
                "segmentation": rle,
                "iscrowd": 0,
                "score": round(float(np.float32(obj.score)), 5),
            })
        return {
            "images": [{"id": 1, "file_name": self.file_name, "width": int(width), "height": int(height)}],
            "categories": [{"id": i + 1, "name": name, "supercategory": ""} for i, name in enumerate(class_names)],
            "annotations": annotations,
        }

    def mask_pngs(self, objects: Sequence[EditableObject]) -> list[tuple[str, bytes]]:
        """``(name, PNG bytes)`` per object, as :func:`~grounded_sam.export.single_image.mask_png_files` names them."""
        files = []
        for i, obj in enumerate(objects):
            _, _, png = self._encoding(obj.mask)
            files.append((f"{self.stem}_{i:03d}_{_UNSAFE.sub('_', obj.class_name).strip('_') or 'object'}.png", png))
        return files

    def write(self, objects: Sequence[EditableObject], class_names: Sequence[str],
              image_size: tuple[int, int]) -> list[Path]:
        """(Re)writes both files atomically and returns ``[coco_json, masks_zip]``.

        Args:
            objects: The session's objects, in table order.
            class_names: Every class, in class-id order (COCO category ids are 1, 2, ...).
            image_size: ``(width, height)``.
        """
        coco = replace_file(self.folder / f"{self.stem}_coco.json",
                            json.dumps(self.coco(objects, class_names, image_size)).encode("utf-8"))
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
            for name, data in self.mask_pngs(objects):
                archive.writestr(name, data)
        masks = replace_file(self.folder / f"{self.stem}_masks.zip", buffer.getvalue())
        self._forget_spares({id(o.mask) for o in objects})
        return [coco, masks]


def write_dataset_zip(
    image_path: str | Path,
    name: str,
    detections: sv.Detections,
    class_names: Sequence[str],
    folder: str | Path,
    *,
    settings: dict[str, Any] | None = None,
) -> Path:
    """The dataset formats for one edited image, zipped: what a batch run writes, with these labels.

    Args:
        image_path: The image file (its upright pixels must be what ``detections`` belong to).
        name: The name the user knows the image by (names the outputs).
        detections: The labels (``session.to_detections()``).
        class_names: Every class, in class-id order.
        folder: A fresh folder for the dataset tree and the zip.
        settings: Recorded in the per-image JSON.

    Returns:
        ``<folder>/<stem>_dataset.zip`` holding ``labels/``, ``images/``, ``coco/``, ``yolo/``,
        ``voc/`` and ``masks/`` (see :mod:`grounded_sam.export`).

    Raises:
        GroundedSamError: The image could not be written into the dataset.
    """
    from grounded_sam.archive import write_zip
    from grounded_sam.batch import FORMATS, InputImage, build_writers, label_images, sanitize_stem

    folder = Path(folder)
    out = folder / "dataset"
    pairs = [(c, c) for c in class_names]  # the edited classes exactly, new ones included
    writers = build_writers(out, list(class_names), FORMATS)

    def edited(rgb: np.ndarray, categories: Any) -> sv.Detections:
        height, width = rgb.shape[:2]
        if tuple(detections.metadata.get("image_size", (width, height))) != (width, height):
            raise GroundedSamError(f"The labels are for a {detections.metadata['image_size']} image, "
                                   f"but {name} is {width}x{height}: click Run again.")
        return detections

    summary = label_images(edited, [InputImage(Path(image_path), PurePath(name))], pairs, writers,
                           settings=settings)
    if summary.failed:
        raise GroundedSamError(f"Could not write the dataset for {name}: {summary.failed[0].error}")
    return write_zip(out, folder / f"{sanitize_stem(PurePath(name))}_dataset.zip")
