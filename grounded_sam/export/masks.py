"""Mask images: one instance-id PNG per image and one binary PNG per class::

    <out>/masks/instances/<stem>.png              16-bit gray: 0 background, k = the k-th object of
                                                  labels/<stem>.json (detection index + 1)
    <out>/masks/classes/<class>/<stem>.png        8-bit gray: 255 where that class is, else 0
    <out>/masks/classes.json                      class id, name and folder of each class

Every pixel belongs to at most one object (``--overlap``: the higher score by default, see
:mod:`grounded_sam.export.overlap`), so a class PNG is exactly the pixels of that class in the
instance PNG. Every class gets a PNG for every image, empty where the class is absent, so each
class folder pairs one to one with ``<out>/images/``. Class folder names are the class names made
file-system safe (:func:`grounded_sam.naming.class_folder_names`, as the crops' folders).
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from grounded_sam.export.base import ImageRecord, LabeledImage
from grounded_sam.export.files import atomic_write_bytes, atomic_write_text
from grounded_sam.export.overlap import check_overlap_mode, semantic_owner_map, with_masks
from grounded_sam.naming import class_folder_names


def gray_png(array: np.ndarray) -> bytes:
    """PNG bytes of an (H, W) uint8 or uint16 gray image (16-bit stays 16-bit)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", optimize=False, compress_level=6)
    return buffer.getvalue()


class MaskPngWriter:
    """Writes ``<out_dir>/masks/`` (see the module docstring).

    Args:
        out_dir: The run's output folder.
        class_names: Every class, in class-id order.
        overlap: See :mod:`grounded_sam.export.overlap`.
    """

    name = "masks"

    def __init__(
        self, out_dir: str | os.PathLike[str], class_names: Sequence[str], *, overlap: str = "auto",
        subdir: str = "masks",
    ) -> None:
        self.root = Path(out_dir) / subdir
        self.class_names = tuple(class_names)
        self.folders = class_folder_names(self.class_names)
        self.overlap = check_overlap_mode(overlap)

    def write(self, item: LabeledImage) -> list[Path]:
        height, width = item.image.shape[:2]
        detections = with_masks(item.detections, height, width)
        if len(detections) >= 2**16:
            raise ValueError(f"{item.stem} has {len(detections)} objects; a 16-bit instance PNG holds at most 65535")
        owner = semantic_owner_map(detections, self.overlap)
        paths = [atomic_write_bytes(self.root / "instances" / f"{item.stem}.png", gray_png((owner + 1).astype(np.uint16)))]
        class_ids = detections.class_id if detections.class_id is not None else np.zeros(len(detections), dtype=int)
        pixel_class = np.concatenate([[-1], class_ids.astype(np.int64)])[owner + 1]
        for class_id, folder in enumerate(self.folders):
            binary = np.where(pixel_class == class_id, 255, 0).astype(np.uint8)
            paths.append(atomic_write_bytes(self.root / "classes" / folder / f"{item.stem}.png", gray_png(binary)))
        return paths

    def finalize(self, records: Sequence[ImageRecord] = ()) -> list[Path]:
        classes = [{"class_id": i, "name": name, "folder": f"classes/{folder}"}
                   for i, (name, folder) in enumerate(zip(self.class_names, self.folders))]
        return [atomic_write_text(self.root / "classes.json", json.dumps({"classes": classes}, indent=1) + "\n")]
