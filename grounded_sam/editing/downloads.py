"""Downloads of an editing session's labels, kept current after every edit at the cost of what changed.

:class:`LabelFiles` writes the same two files as :mod:`grounded_sam.export.single_image` (a COCO
JSON with RLE masks and a zip of mask PNGs, built by that module's functions), but encodes each
mask once: objects are immutable, so a mask seen before reuses its RLE and PNG, and a click
re-encodes only the object it changed. The PNGs use zlib's fastest level, and the files are
replaced without ``fsync``: they are downloads of a live session, rewritten at every edit, not
outputs a run must find intact after a crash. :func:`write_dataset_zip` writes the dataset formats
(COCO, YOLO, Pascal VOC, mask PNGs) for the edited image with the batch writers, on demand.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path, PurePath
from typing import Any

import numpy as np
import supervision as sv

from grounded_sam.editing.session import EditableObject, output_box
from grounded_sam.errors import GroundedSamError
from grounded_sam.export.files import atomic_write_bytes
from grounded_sam.export.rle import encode_mask
from grounded_sam.export.single_image import coco_annotation, coco_document, mask_png, stored_zip, write_coco_json
from grounded_sam.naming import mask_file_name

logger = logging.getLogger(__name__)

#: Masks whose encodings are kept beyond the current objects' (undo brings them back).
SPARE_ENCODINGS = 64


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
            item = (mask, encode_mask(mask), int(np.count_nonzero(mask)), mask_png(mask, compress_level=1))
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
        annotations = []
        for i, obj in enumerate(objects):
            rle, area, _ = self._encoding(obj.mask)
            annotations.append(coco_annotation(i, output_box(obj), list(class_names).index(obj.class_name), rle,
                                               area, obj.score))
        return coco_document(self.file_name, image_size, class_names, annotations)

    def mask_pngs(self, objects: Sequence[EditableObject]) -> list[tuple[str, bytes]]:
        """``(name, PNG bytes)`` per object, as :func:`~grounded_sam.export.single_image.mask_png_files` names them."""
        return [(mask_file_name(self.stem, i, obj.class_name), self._encoding(obj.mask)[2])
                for i, obj in enumerate(objects)]

    def write(self, objects: Sequence[EditableObject], class_names: Sequence[str],
              image_size: tuple[int, int]) -> list[Path]:
        """(Re)writes both files atomically and returns ``[coco_json, masks_zip]``.

        Args:
            objects: The session's objects, in table order.
            class_names: Every class, in class-id order (COCO category ids are 1, 2, ...).
            image_size: ``(width, height)``.
        """
        coco = write_coco_json(self.folder / f"{self.stem}_coco.json", self.coco(objects, class_names, image_size),
                               durable=False)
        masks = atomic_write_bytes(self.folder / f"{self.stem}_masks.zip", stored_zip(self.mask_pngs(objects)),
                                   durable=False)
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
    from grounded_sam.export.formats import FORMATS, build_writers
    from grounded_sam.inputs.archive import write_zip
    from grounded_sam.naming import sanitize_stem
    from grounded_sam.runs.batch import InputImage, label_images

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
