"""The image files datasets point to: ``<out>/images/<stem>.<ext>``, one per labeled image.

Labels are in upright (EXIF-applied) pixel coordinates, so the image beside them must be upright
too, whatever reads it. A file that needs no rotation is copied byte for byte (no re-encoding
loss); one with an EXIF rotation or mirror, transparency, an unusual colour mode or a format
training tools do not read is written as a PNG of exactly the pixels the models saw. COCO refers
to this folder; the YOLO and VOC trees hard-link these files (see
:func:`grounded_sam.export.files.atomic_link_or_copy`), so every image is stored once.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from grounded_sam.export.base import ImageRecord, LabeledImage
from grounded_sam.export.files import atomic_copy, atomic_write_bytes
from grounded_sam.export.overlay import encode_png

logger = logging.getLogger(__name__)

#: Suffixes that Ultralytics, OpenCV, PIL and the VOC/COCO tools all read.
COPYABLE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
_EXIF_ORIENTATION = 0x0112
_COPYABLE_MODES = frozenset({"RGB", "L"})

IMAGES_DIR = "images"


def can_copy_bytes(source_path: str | os.PathLike[str] | None) -> bool:
    """Whether the file's own bytes show exactly the upright RGB pixels the labels refer to.

    True for a readable, single-frame RGB or gray file with a :data:`COPYABLE_SUFFIXES` suffix, no
    transparency and no EXIF orientation other than 1 (upright). Only the header is read.
    """
    if source_path is None:
        return False
    path = Path(source_path)
    if path.suffix.lower() not in COPYABLE_SUFFIXES:
        return False
    from PIL import Image

    try:
        with Image.open(path) as image:
            if image.mode not in _COPYABLE_MODES or "transparency" in image.info:
                return False
            if getattr(image, "n_frames", 1) != 1:
                return False
            return image.getexif().get(_EXIF_ORIENTATION, 1) == 1
    except Exception:  # noqa: BLE001 - anything unreadable here is simply re-encoded
        return False


def dataset_image_name(source_path: str | os.PathLike[str] | None, stem: str) -> str:
    """The file name of an image's dataset copy: ``<stem>`` plus the source's suffix (lower case), or ``.png``."""
    if can_copy_bytes(source_path):
        return stem + Path(source_path).suffix.lower()  # type: ignore[arg-type]
    return stem + ".png"


class DatasetImageWriter:
    """Writes ``<out_dir>/images/<stem>.<ext>`` for every image (see the module docstring).

    List it before the YOLO and VOC writers: they link to its files.
    """

    name = "images"

    def __init__(self, out_dir: str | os.PathLike[str], subdir: str = IMAGES_DIR) -> None:
        self.folder = Path(out_dir) / subdir

    def write(self, item: LabeledImage) -> list[Path]:
        target = self.folder / dataset_image_name(item.source_path, item.stem)
        if target.suffix != ".png" or can_copy_bytes(item.source_path):
            return [atomic_copy(item.source_path, target)]  # type: ignore[arg-type]
        logger.debug("Writing the upright pixels of %s as %s", item.source, target.name)
        return [atomic_write_bytes(target, encode_png(item.image))]

    def finalize(self, records: Sequence[ImageRecord] = ()) -> list[Path]:
        return []
