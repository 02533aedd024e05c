"""Pascal VOC: XML boxes plus ``SegmentationClass`` and ``SegmentationObject`` palette PNGs::

    <out>/voc/Annotations/<stem>.xml
    <out>/voc/JPEGImages/<stem>.<ext>            hard links to <out>/images/ (copies where links fail)
    <out>/voc/SegmentationClass/<stem>.png       palette PNG: 0 background, class k -> k + 1
    <out>/voc/SegmentationObject/<stem>.png      palette PNG: 0 background, object i -> i + 1 (XML order)
    <out>/voc/ImageSets/Main/trainval.txt        every stem (also ImageSets/Segmentation/trainval.txt)
    <out>/voc/labelmap.txt                       class names and their palette colours (CVAT's layout)

Each detection is one ``<object>`` (supervision's writer would split a multi-part mask into several),
its ``<bndbox>`` the tight box of its mask in VOC's 1-based inclusive pixel indices. Each object also
carries its outline as ``<polygon>`` elements (CVAT's extension, read by supervision's
``from_pascal_voc``; other readers ignore it), 1-based, one per part, holes cut in. The palette is
VOC's own, so the PNGs look like the original dataset's; 255 (VOC's "void") marks objects past the
254th of an image, which a palette PNG cannot number.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from grounded_sam.detections import mask_box
from grounded_sam.export.base import ImageRecord, LabeledImage
from grounded_sam.export.dataset_images import IMAGES_DIR, dataset_image_name
from grounded_sam.export.files import atomic_link_or_copy, atomic_write_bytes, atomic_write_text
from grounded_sam.export.overlap import check_overlap_mode, instance_masks, semantic_owner_map, with_masks
from grounded_sam.export.polygons import mask_to_polygons

logger = logging.getLogger(__name__)

_VOID = 255


def voc_palette() -> list[int]:
    """VOC's 256-colour palette, flat ``[r0, g0, b0, r1, ...]`` (index 0 black, 1 maroon, 2 green, ...)."""
    palette = []
    for index in range(256):
        r = g = b = 0
        c = index
        for shift in range(7, -1, -1):
            r |= (c & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        palette.extend((r, g, b))
    return palette


_PALETTE = voc_palette()


def palette_png(indices: np.ndarray) -> bytes:
    """PNG bytes of an (H, W) uint8 index image with VOC's palette."""
    from PIL import Image

    image = Image.fromarray(indices.astype(np.uint8))
    image.putpalette(_PALETTE)  # turns the gray image into a palette one
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False, compress_level=6)
    return buffer.getvalue()


def annotation_xml(
    image_name: str, image_size: tuple[int, int], objects: Sequence[tuple[str, list[int], list[np.ndarray]]]
) -> str:
    """A VOC ``<annotation>`` document.

    Args:
        image_name: The image file name (in ``JPEGImages``).
        image_size: ``(width, height)``.
        objects: ``(class name, [x1, y1, x2, y2] tight box, polygons)`` per object; box corners are
            0-based with ``x2``/``y2`` one past the last pixel, polygons 0-based pixel-centre
            coordinates; both are written 1-based.
    """
    from xml.sax.saxutils import escape

    width, height = image_size
    lines = [
        "<annotation>", "  <folder>JPEGImages</folder>", f"  <filename>{escape(image_name)}</filename>",
        "  <source>", "    <database>grounded_sam</database>", "  </source>",
        "  <size>", f"    <width>{int(width)}</width>", f"    <height>{int(height)}</height>", "    <depth>3</depth>",
        "  </size>", "  <segmented>1</segmented>",
    ]
    for name, (x1, y1, x2, y2), polygons in objects:
        lines += [
            "  <object>", f"    <name>{escape(name)}</name>", "    <pose>Unspecified</pose>",
            "    <truncated>0</truncated>", "    <difficult>0</difficult>", "    <bndbox>",
            # 1-based inclusive: the first pixel's index + 1, and the last pixel's index + 1 (= x2).
            f"      <xmin>{int(x1) + 1}</xmin>", f"      <ymin>{int(y1) + 1}</ymin>",
            f"      <xmax>{int(x2)}</xmax>", f"      <ymax>{int(y2)}</ymax>", "    </bndbox>",
        ]
        for polygon in polygons:
            # Written as text directly: an outline of speckle noise has tens of thousands of vertices.
            points = "".join(
                f"<x{k}>{_coordinate(x)}</x{k}><y{k}>{_coordinate(y)}</y{k}>"
                for k, (x, y) in enumerate((polygon + 1.0).tolist(), start=1)
            )
            lines.append(f"    <polygon>{points}</polygon>")
        lines.append("  </object>")
    lines.append("</annotation>")
    return "\n".join(lines) + "\n"


def _coordinate(value: float) -> str:
    return str(int(value)) if value.is_integer() else f"{value:.2f}".rstrip("0")


def labelmap(class_names: Sequence[str]) -> str:
    """CVAT's ``labelmap.txt``: ``name:r,g,b::`` per palette index, background first."""
    lines = ["# label:color_rgb:parts:actions"]
    for index, name in enumerate(["background", *class_names]):
        r, g, b = _PALETTE[3 * index: 3 * index + 3]
        lines.append(f"{name}:{r},{g},{b}::")
    return "\n".join(lines) + "\n"


class VocWriter:
    """Writes the ``<out_dir>/voc/`` tree (see the module docstring).

    Args:
        out_dir: The run's output folder; images are linked from ``<out_dir>/images/``, written by
            :class:`~grounded_sam.export.dataset_images.DatasetImageWriter` before this writer runs.
        class_names: Every class, in class-id order.
        overlap: See :mod:`grounded_sam.export.overlap`.
    """

    name = "voc"

    def __init__(
        self, out_dir: str | os.PathLike[str], class_names: Sequence[str], *, overlap: str = "auto", subdir: str = "voc",
    ) -> None:
        self.out_dir = Path(out_dir)
        self.class_names = tuple(class_names)
        self.overlap = check_overlap_mode(overlap)
        self.root = self.out_dir / subdir

    def write(self, item: LabeledImage) -> list[Path]:
        image_name = dataset_image_name(item.source_path, item.stem)
        height, width = item.image.shape[:2]
        detections = with_masks(item.detections, height, width)
        instances = instance_masks(detections, self.overlap)

        objects, object_index = [], np.zeros(len(detections) + 1, dtype=np.int64)
        for i in range(len(detections)):
            box = mask_box(instances.mask[i])
            if box[2] <= box[0]:
                continue  # emptied by overlap resolution
            objects.append((self.class_names[_class_ids(detections)[i]], box, mask_to_polygons(instances.mask[i], "pixel_centers")))
            object_index[i + 1] = len(objects)
        if len(objects) >= _VOID:
            logger.warning("%s has %d objects; SegmentationObject numbers the first 254 and marks the rest 255",
                           item.stem, len(objects))
        owner = semantic_owner_map(detections, self.overlap) + 1  # 0 = background
        object_png = np.minimum(object_index[owner], _VOID)
        class_png = np.concatenate([[0], _class_ids(detections) + 1])[owner]

        return [
            atomic_link_or_copy(self.out_dir / IMAGES_DIR / image_name, self.root / "JPEGImages" / image_name),
            atomic_write_text(self.root / "Annotations" / f"{item.stem}.xml",
                              annotation_xml(image_name, (width, height), objects)),
            atomic_write_bytes(self.root / "SegmentationClass" / f"{item.stem}.png", palette_png(class_png)),
            atomic_write_bytes(self.root / "SegmentationObject" / f"{item.stem}.png", palette_png(object_png)),
        ]

    def finalize(self, records: Sequence[ImageRecord] = ()) -> list[Path]:
        stems = "".join(f"{r.stem}\n" for r in records if r.ok)
        return [
            atomic_write_text(self.root / "ImageSets" / "Main" / "trainval.txt", stems),
            atomic_write_text(self.root / "ImageSets" / "Segmentation" / "trainval.txt", stems),
            atomic_write_text(self.root / "labelmap.txt", labelmap(self.class_names)),
        ]


def _class_ids(detections) -> np.ndarray:
    if detections.class_id is None:
        return np.zeros(len(detections), dtype=np.int64)
    return detections.class_id.astype(np.int64)
