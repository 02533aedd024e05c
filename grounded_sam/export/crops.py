"""Training-ready cut-outs: one PNG per detected object, background removed.

Layout::

    <out_dir>/crops/<class>/<stem>_<n>.png

``<class>`` is the class name made file-system safe (see :func:`grounded_sam.naming.class_folder_names`), ``<stem>``
the image's output name and ``<n>`` the object's index in that image's detections, counted from
0: the same index as in ``labels/<stem>.json``'s ``"detections"`` list, so every crop can be
traced back to its label. When objects are filtered out (``largest_only``, ``min_area``) the
numbers of the dropped ones are simply missing.

Each crop is the object's box grown by a margin (a fraction of the box's width and height on
each side, clipped to the image). Pixels outside the mask become transparent (RGBA PNG) or a
fill colour (RGB PNG). With ``size`` the crop is scaled, up or down, to fit a ``size`` x
``size`` square, keeping its aspect ratio, and centred on padding of the background.

Relabeling an image into the same folder replaces its crops: ones an earlier run wrote for that
image and this run did not (other filter settings, fewer objects) are deleted.
"""

from __future__ import annotations

import logging
import math
import numbers
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import supervision as sv

from grounded_sam.errors import OptionError
from grounded_sam.export.base import ImageRecord, LabeledImage
from grounded_sam.export.files import atomic_write_bytes
from grounded_sam.export.overlay import encode_png
from grounded_sam.naming import class_folder_names, sanitize_class_name

logger = logging.getLogger(__name__)

RGB = tuple[int, int, int]

_NAMED_COLOURS: dict[str, RGB] = {
    "white": (255, 255, 255),
    "black": (0, 0, 0),
    "gray": (128, 128, 128),
    "grey": (128, 128, 128),
}
_TRANSPARENT_WORDS = ("transparent", "none", "alpha")
_HEX_COLOUR = re.compile(r"#?([0-9a-fA-F]{6})")
_MAX_MARGIN = 10.0
_MAX_SIZE = 8192
# "<stem>_<n>.png": n is digits only, so the last "_<digits>" splits any name unambiguously.
_CROP_NAME = re.compile(r"(.+)_(\d+)\.png")


def parse_background(text: str) -> RGB | None:
    """Reads a background setting as the CLI and the app take it.

    Args:
        text: ``"transparent"`` (also ``"none"``, ``"alpha"``), a colour name (``white``,
            ``black``, ``gray``/``grey``), ``"#rrggbb"`` or ``"r,g,b"`` with values 0-255.

    Returns:
        ``None`` for a transparent background, else the (r, g, b) fill colour.

    Raises:
        OptionError: The text is none of those forms.
    """
    value = text.strip().lower()
    if value in _TRANSPARENT_WORDS:
        return None
    if value in _NAMED_COLOURS:
        return _NAMED_COLOURS[value]
    hex_match = _HEX_COLOUR.fullmatch(value)
    if hex_match:
        digits = hex_match.group(1)
        return (int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16))
    parts = [p.strip() for p in value.split(",")]
    if len(parts) == 3 and all(p.isdigit() for p in parts):
        colour = tuple(int(p) for p in parts)
        if all(0 <= c <= 255 for c in colour):
            return colour  # type: ignore[return-value]
    raise OptionError(
        f"Unknown crop background {text!r}: expected 'transparent', one of {', '.join(_NAMED_COLOURS)}, "
        "'#rrggbb' (e.g. '#ffffff') or 'r,g,b' with values 0-255 (e.g. '255,255,255')."
    )


def object_areas(detections: sv.Detections) -> np.ndarray:
    """Each object's area in pixels: its mask's pixel count, or its box's area when there are no masks.

    Returns:
        (N,) float64.
    """
    if detections.mask is not None:
        return detections.mask.sum(axis=(1, 2), dtype=np.float64)
    xyxy = detections.xyxy.astype(np.float64)
    return np.clip(xyxy[:, 2] - xyxy[:, 0], 0, None) * np.clip(xyxy[:, 3] - xyxy[:, 1], 0, None)


def select_objects(
    detections: sv.Detections,
    image_size: tuple[int, int],
    largest_only: bool = False,
    min_area_fraction: float = 0.0,
) -> sv.Detections:
    """Picks the objects worth a crop.

    Objects with an empty mask are always dropped (they would give a fully transparent crop).
    Then objects smaller than ``min_area_fraction`` of the image are dropped, and with
    ``largest_only`` only the largest remaining one is kept, across all classes (ties go to the
    earlier detection). Areas are mask pixel counts, or box areas when there are no masks.

    Args:
        detections: One image's detections (``xyxy`` pixels, optional ``mask`` (N, H, W) bool).
        image_size: ``(width, height)`` of the image.
        largest_only: Keep at most one object: the largest.
        min_area_fraction: Keep objects whose area is at least this fraction of the image, in [0, 1].

    Returns:
        The kept detections, in their original order, with ``data["source_index"]`` (N,) int: each
        one's index in ``detections``.

    Raises:
        OptionError: ``min_area_fraction`` is outside [0, 1] or ``image_size`` is not positive.
    """
    _check_fraction(min_area_fraction)
    width, height = image_size
    if width <= 0 or height <= 0:
        raise OptionError(f"image_size must be a positive (width, height), but got {image_size}.")
    areas = object_areas(detections)
    keep = areas > 0
    keep &= areas >= min_area_fraction * float(width) * float(height)
    indices = np.flatnonzero(keep)
    if largest_only and len(indices) > 1:
        # argmax returns the first of equal maxima, so ties go to the earlier detection.
        indices = indices[[int(np.argmax(areas[indices]))]]
    selected = detections[indices]
    selected.data["source_index"] = indices.astype(int)
    return selected


def make_crop(
    image_rgb: np.ndarray,
    mask: np.ndarray | None,
    box_xyxy: Sequence[float] | np.ndarray,
    margin: float = 0.1,
    background: RGB | None = None,
    size: int | None = None,
) -> np.ndarray:
    """Cuts one object out of an image.

    The crop spans the box grown by ``margin`` times the box's width (left and right) and height
    (top and bottom), rounded outwards to whole pixels and clipped to the image. Mask pixels
    outside that region are lost; the box itself is never clipped smaller than one pixel.

    Args:
        image_rgb: (H, W, 3) uint8 RGB.
        mask: (H, W) bool, the object's mask; ``None`` keeps the whole region (a plain box crop).
        box_xyxy: (x1, y1, x2, y2) in pixels; pixel column ``i`` spans ``[i, i + 1)``.
        margin: Fraction of the box size added on each side, >= 0.
        background: ``None`` for transparent, else the (r, g, b) colour put outside the mask.
        size: When given, scale the crop to fit a ``size`` x ``size`` square (keeping its aspect
            ratio; small crops are scaled up) and pad it, centred, with the background.

    Returns:
        With a transparent background, (h, w, 4) uint8 RGBA whose alpha is 255 on the mask and
        0 off it; colour channels are 0 where alpha is 0, so a loader that drops alpha sees
        black rather than the original scene. With a fill colour, (h, w, 3) uint8 RGB. After
        resizing, alpha is soft (0-255) along the mask's edge.

    Raises:
        OptionError: A setting is out of range, or the shapes do not match.
    """
    image_rgb = np.asarray(image_rgb)
    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3 or image_rgb.dtype != np.uint8:
        raise OptionError(f"image_rgb must be an (H, W, 3) uint8 array, but got {image_rgb.shape} {image_rgb.dtype}.")
    _check_margin(margin)
    background = _check_background(background)
    _check_size(size)
    height, width = image_rgb.shape[:2]
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != (height, width):
            raise OptionError(f"mask must have the image's shape {(height, width)}, but got {mask.shape}.")
    left, top, right, bottom = crop_region(box_xyxy, (width, height), margin)

    region = image_rgb[top:bottom, left:right]
    inside = np.ones(region.shape[:2], dtype=bool) if mask is None else mask[top:bottom, left:right]
    if background is None:
        crop = np.zeros((*region.shape[:2], 4), dtype=np.uint8)
        crop[..., :3] = np.where(inside[..., None], region, 0)
        crop[..., 3] = np.where(inside, 255, 0)
    else:
        crop = np.where(inside[..., None], region, np.array(background, dtype=np.uint8)).astype(np.uint8)
    if size is not None:
        crop = fit_square(crop, size, background)
    return crop


def crop_region(
    box_xyxy: Sequence[float] | np.ndarray, image_size: tuple[int, int], margin: float
) -> tuple[int, int, int, int]:
    """The pixel region ``(left, top, right, bottom)`` (right and bottom exclusive) of a box plus margin.

    Raises:
        OptionError: The box is not four finite numbers, or lies entirely outside the image.
    """
    box = np.asarray(box_xyxy, dtype=np.float64).reshape(-1)
    if box.shape != (4,) or not np.all(np.isfinite(box)):
        raise OptionError(f"box_xyxy must be four finite numbers (x1, y1, x2, y2), but got {box_xyxy!r}.")
    width, height = image_size
    x1, y1, x2, y2 = box
    x1, x2 = min(x1, x2), max(x1, x2)
    y1, y2 = min(y1, y2), max(y1, y2)
    if x2 < 0 or y2 < 0 or x1 > width or y1 > height:
        raise OptionError(f"box {box.tolist()} lies outside the {width}x{height} image; expected a box within it.")
    dx, dy = margin * (x2 - x1), margin * (y2 - y1)
    left = min(max(0, math.floor(x1 - dx)), width - 1)
    top = min(max(0, math.floor(y1 - dy)), height - 1)
    # A box thinner than a pixel, or lying on the far edge, still gives one pixel of crop.
    right = max(min(width, math.ceil(x2 + dx)), left + 1)
    bottom = max(min(height, math.ceil(y2 + dy)), top + 1)
    return left, top, right, bottom


def fit_square(crop: np.ndarray, size: int, background: RGB | None = None) -> np.ndarray:
    """Scales a crop to fit a ``size`` x ``size`` square, keeping its aspect ratio, and pads it.

    Args:
        crop: (h, w, 4) uint8 RGBA or (h, w, 3) uint8 RGB.
        size: Side of the square, in pixels.
        background: Padding colour for RGB crops; RGBA crops are padded with transparent pixels.

    Returns:
        (size, size, C) uint8 with the same channels; the content is centred (odd leftovers go
        to the right and bottom) and its longer side is exactly ``size``.
    """
    from PIL import Image

    _check_size(size)
    height, width, channels = crop.shape
    scale = size / max(height, width)
    new_w = min(size, max(1, round(width * scale)))
    new_h = min(size, max(1, round(height * scale)))
    # Pillow resizes RGBA premultiplied, so transparent pixels do not bleed colour into the edge.
    resized = np.asarray(Image.fromarray(crop).resize((new_w, new_h), Image.Resampling.LANCZOS))
    if channels == 4:
        canvas = np.zeros((size, size, 4), dtype=np.uint8)
    else:
        canvas = np.empty((size, size, 3), dtype=np.uint8)
        canvas[:] = np.array(background or (0, 0, 0), dtype=np.uint8)
    top, left = (size - new_h) // 2, (size - new_w) // 2
    canvas[top : top + new_h, left : left + new_w] = resized
    return canvas


class CropWriter:
    """Writes ``<out_dir>/crops/<class>/<stem>_<n>.png`` for every kept object (see the module docstring).

    Args:
        out_dir: The run's output folder.
        margin: Fraction of the box size added on each side, >= 0 (default 0.1, i.e. 10%).
        background: ``None`` for transparent (RGBA PNGs), an (r, g, b) fill colour (RGB PNGs), or
            any text :func:`parse_background` reads.
        size: Scale and pad every crop to a ``size`` x ``size`` square; ``None`` keeps the crop's own size.
        largest_only: Keep only the largest object of each image.
        min_area: Keep objects covering at least this fraction of the image, in [0, 1].
        subdir: Folder under ``out_dir``.

    Raises:
        OptionError: A setting is out of range.
    """

    name = "crops"

    def __init__(
        self,
        out_dir: str | os.PathLike[str],
        *,
        margin: float = 0.1,
        background: RGB | str | None = None,
        size: int | None = None,
        largest_only: bool = False,
        min_area: float = 0.0,
        subdir: str = "crops",
    ) -> None:
        if isinstance(background, str):
            background = parse_background(background)
        self.folder = Path(out_dir) / subdir
        self.margin = _check_margin(margin)
        self.background = _check_background(background)
        self.size = _check_size(size)
        self.largest_only = bool(largest_only)
        self.min_area = _check_fraction(min_area)
        self._earlier: dict[str, list[Path]] | None = None

    def settings(self) -> dict[str, object]:
        """The writer's settings as plain values (for manifests and run settings)."""
        return {
            "margin": self.margin,
            "background": "transparent" if self.background is None else list(self.background),
            "size": self.size,
            "largest_only": self.largest_only,
            "min_area": self.min_area,
        }

    def write(self, item: LabeledImage) -> list[Path]:
        height, width = item.image.shape[:2]
        detections = item.detections
        selected = select_objects(detections, (width, height), self.largest_only, self.min_area)
        folders = class_folder_names(item.class_names)
        names = selected.data.get("class_name")
        written: list[Path] = []
        for row, index in enumerate(selected.data["source_index"]):
            folder = self._folder_for(selected, row, names, folders)
            mask = None if selected.mask is None else selected.mask[row]
            crop = make_crop(item.image, mask, selected.xyxy[row], self.margin, self.background, self.size)
            path = self.folder / folder / f"{item.stem}_{int(index)}.png"
            written.append(atomic_write_bytes(path, encode_png(crop)))
        self._remove_stale(item.stem, written)
        logger.debug("Wrote %d crops of %s (%d objects)", len(written), item.stem, len(detections))
        return written

    def finalize(self, records: Sequence[ImageRecord] = ()) -> list[Path]:
        return []

    def _remove_stale(self, stem: str, written: list[Path]) -> None:
        """Deletes this image's crops left by an earlier run into the same folder.

        Without this, relabeling with other settings (``largest_only``, another ``min_area``)
        would leave the earlier run's extra crops in the dataset. The folder is scanned once per
        writer, not once per image.
        """
        if self._earlier is None:
            self._earlier = {}
            if self.folder.is_dir():
                for path in self.folder.glob("*/*.png"):
                    match = _CROP_NAME.fullmatch(path.name)
                    if match:
                        self._earlier.setdefault(match.group(1), []).append(path)
        keep = set(written)
        for path in self._earlier.pop(stem, []):
            if path not in keep:
                logger.info("Removing %s, a crop of %s from an earlier run", path, stem)
                path.unlink(missing_ok=True)

    @staticmethod
    def _folder_for(selected: sv.Detections, row: int, names: np.ndarray | None, folders: list[str]) -> str:
        class_id = None if selected.class_id is None else int(selected.class_id[row])
        if class_id is not None and 0 <= class_id < len(folders):
            return folders[class_id]
        # A detection outside the run's classes (hand-made Detections): name its folder itself.
        return sanitize_class_name(str(names[row])) if names is not None else "unnamed"


def _check_margin(margin: float) -> float:
    is_number = isinstance(margin, numbers.Real) and not isinstance(margin, bool)
    if not (is_number and math.isfinite(margin) and 0.0 <= margin <= _MAX_MARGIN):
        raise OptionError(
            f"Crop margin must be a fraction of the box size between 0 and {_MAX_MARGIN:g} (0.1 = 10%), "
            f"but got {margin!r}."
        )
    return float(margin)


def _check_fraction(value: float) -> float:
    if not (isinstance(value, numbers.Real) and not isinstance(value, bool) and 0.0 <= value <= 1.0):
        raise OptionError(
            f"Minimum crop area must be a fraction of the image between 0 and 1 (0.05 = 5%), but got {value!r}."
        )
    return float(value)


def _check_size(size: int | None) -> int | None:
    if size is None:
        return None
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not 1 <= size <= _MAX_SIZE:
        raise OptionError(
            f"Crop size must be a whole number of pixels from 1 to {_MAX_SIZE}, or None, but got {size!r}."
        )
    return int(size)


def _check_background(background: RGB | Sequence[int] | None) -> RGB | None:
    if background is None:
        return None
    values = tuple(background)
    is_byte = [isinstance(v, (int, np.integer)) and not isinstance(v, bool) and 0 <= v <= 255 for v in values]
    if len(values) != 3 or not all(is_byte):
        raise OptionError(
            "Crop background must be None (transparent) or an (r, g, b) colour with values 0-255, "
            f"but got {background!r}."
        )
    return (int(values[0]), int(values[1]), int(values[2]))
