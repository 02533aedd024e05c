"""Drawing detections on images with supervision's annotators.

Colours come from ``class_id`` through one palette, so a class keeps its colour across images,
runs and front-ends. Images in and out are (H, W, 3) uint8 RGB arrays.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import supervision as sv
from PIL import Image

from grounded_sam.detections import class_names_of

PALETTE = sv.ColorPalette.DEFAULT


def class_color(class_id: int) -> sv.Color:
    """The colour of a class, as used in every overlay."""
    return PALETTE.by_idx(int(class_id))


def legend(class_names: Sequence[str]) -> list[tuple[str, str]]:
    """``(class name, "#rrggbb")`` for every class, in class-id order (for a legend in a UI)."""
    return [(name, class_color(i).as_hex()) for i, name in enumerate(class_names)]


class OverlayAnnotator:
    """Draws masks, boxes and labels in one colour per class.

    Args:
        masks: Fill each mask with its class colour.
        boxes: Outline each box.
        labels: Write ``class score`` above each box.
        opacity: Mask fill opacity in [0, 1].
        thickness: Box outline width in pixels; ``None`` scales with the image size.
    """

    def __init__(
        self, *, masks: bool = True, boxes: bool = True, labels: bool = True, opacity: float = 0.5,
        thickness: int | None = None,
    ) -> None:
        if not 0.0 <= opacity <= 1.0:
            raise ValueError(f"opacity must be within [0, 1], but got {opacity}")
        self.masks, self.boxes, self.labels = masks, boxes, labels
        self.opacity = opacity
        self.thickness = thickness

    def annotate(self, image: np.ndarray, detections: sv.Detections) -> np.ndarray:
        """Returns a copy of ``image`` with the detections drawn.

        Args:
            image: (H, W, 3) uint8 RGB.
            detections: With ``class_id``; ``mask`` and ``data["class_name"]`` are used when present.

        Returns:
            (H, W, 3) uint8 RGB overlay of the same size.
        """
        # supervision converts PIL (RGB) scenes itself, so colours come out as the palette says.
        scene = Image.fromarray(np.ascontiguousarray(image))
        if len(detections) == 0:
            return np.asarray(scene).copy()
        height, width = image.shape[:2]
        thickness = self.thickness or max(1, round(max(height, width) / 400))
        if self.masks and detections.mask is not None:
            scene = sv.MaskAnnotator(color=PALETTE, opacity=self.opacity).annotate(scene, detections)
        if self.boxes:
            scene = sv.BoxAnnotator(color=PALETTE, thickness=thickness).annotate(scene, detections)
        if self.labels:
            text_scale = max(0.4, max(height, width) / 1600)
            label_annotator = sv.LabelAnnotator(
                color=PALETTE, text_scale=text_scale, text_thickness=max(1, thickness // 2), smart_position=True
            )
            scene = label_annotator.annotate(scene, detections, labels=detection_labels(detections))
        return np.asarray(scene).copy()


def detection_labels(detections: sv.Detections) -> list[str]:
    """``"class 0.87"`` for each detection (class name, then SAM2's predicted IoU when known)."""
    labels = []
    for i, name in enumerate(class_names_of(detections)):
        if detections.confidence is not None:
            name = f"{name} {float(detections.confidence[i]):.2f}"
        labels.append(name)
    return labels
