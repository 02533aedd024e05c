"""Overlay PNGs: the image with masks, boxes and labels drawn."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from grounded_sam.annotate import OverlayAnnotator
from grounded_sam.export.base import ImageRecord, LabeledImage
from grounded_sam.export.files import atomic_write_bytes


def encode_png(rgb) -> bytes:
    """PNG bytes of an (H, W, 3) uint8 RGB array."""
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG", optimize=False, compress_level=4)
    return buffer.getvalue()


class OverlayWriter:
    """Writes ``<out_dir>/overlays/<stem>.png`` for every image."""

    name = "overlay"

    def __init__(self, out_dir: str | os.PathLike[str], annotator: OverlayAnnotator | None = None, subdir: str = "overlays") -> None:
        self.folder = Path(out_dir) / subdir
        self.annotator = annotator or OverlayAnnotator()

    def write(self, item: LabeledImage) -> list[Path]:
        overlay = self.annotator.annotate(item.image, item.detections)
        return [atomic_write_bytes(self.folder / f"{item.stem}.png", encode_png(overlay))]

    def finalize(self, records: Sequence[ImageRecord] = ()) -> list[Path]:
        return []
