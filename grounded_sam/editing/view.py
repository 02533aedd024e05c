"""Cheap redraws of an editing session's overlay, with the selected object highlighted.

While someone clicks on one object, only that object changes. :class:`OverlayRenderer` keeps the
overlay of every *other* object (drawn once, by :class:`~grounded_sam.annotate.OverlayAnnotator`,
so it looks like the automatic run's overlay) and paints the selected object on a copy of it,
inside the object's bounding region only. A click therefore costs one copy of the image and a
repaint of one object's region, not a redraw of every mask.

Images are (H, W, 3) uint8 RGB; positions are xy pixels of the full-resolution image, so the
browser's click positions on the displayed overlay map one to one.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import supervision as sv
from PIL import Image

from grounded_sam.annotate import OverlayAnnotator, class_color
from grounded_sam.detections import class_names_of
from grounded_sam.editing.session import EditableObject, objects_to_detections, output_box

POSITIVE_RGB = (40, 200, 60)
NEGATIVE_RGB = (235, 50, 50)
MARKER_RGB = (255, 255, 255)
OUTLINE_RGB = (255, 255, 255)
SHADOW_RGB = (0, 0, 0)
#: Extra fill opacity of the selected object's mask over the others'.
HIGHLIGHT_EXTRA_OPACITY = 0.2


@dataclass(frozen=True)
class OverlayStyle:
    """What the overlay shows (the app's overlay options).

    Attributes:
        masks: Fill masks with their class colour.
        boxes: Outline boxes.
        labels: Write ``class score`` on each object.
        opacity: Mask fill opacity in [0, 1].
    """

    masks: bool = True
    boxes: bool = True
    labels: bool = True
    opacity: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 <= self.opacity <= 1.0:
            raise ValueError(f"opacity must be within [0, 1], but got {self.opacity}")


def table_row(index: int, class_name: str, score: float | None, box_xyxy: Sequence[float], area: int | None) -> list[Any]:
    """One row of the app's table: ``[#, class, score, "x1, y1, x2, y2", area]`` (score and area blank when unknown)."""
    box = ", ".join(f"{round(float(v), 2):.0f}" for v in box_xyxy)
    shown_score = "" if score is None else f"{round(float(np.float32(score)), 5):.3f}"
    return [index, class_name, shown_score, box, "" if area is None else area]


def table_rows(detections: sv.Detections) -> list[list[Any]]:
    """:func:`table_row` per detection.

    Args:
        detections: With ``mask`` (N, H, W) bool; ``confidence`` and ``data["class_name"]`` when known.
    """
    names = class_names_of(detections)
    return [
        table_row(i, names[i], None if detections.confidence is None else detections.confidence[i], detections.xyxy[i],
                  None if detections.mask is None else int(detections.mask[i].sum()))
        for i in range(len(detections))
    ]


def object_rows(objects: Sequence[EditableObject]) -> list[list[Any]]:
    """:func:`table_row` per object of a session, without stacking their masks."""
    return [table_row(i, obj.class_name, obj.score, output_box(obj), int(np.count_nonzero(obj.mask)))
            for i, obj in enumerate(objects)]


def encode_jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    """JPEG bytes of an (H, W, 3) uint8 RGB array: the display overlay (tens of times faster than PNG)."""
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _disk(radius: int) -> np.ndarray:
    import cv2

    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


class OverlayRenderer:
    """Draws one image's objects, the selected one highlighted, repainting only what changed.

    Args:
        image: (H, W, 3) uint8 RGB.
        style: What to show.

    Attributes:
        base_renders: How many times the overlay of the unselected objects was drawn from scratch
            (for tests and timing: clicks on the selected object leave it unchanged).
    """

    def __init__(self, image: np.ndarray, style: OverlayStyle | None = None) -> None:
        self.image = image
        self._style = style or OverlayStyle()
        self._base: np.ndarray | None = None
        self._base_key: tuple[Any, ...] | None = None
        self._base_objects: list[EditableObject] = []
        self.base_renders = 0
        height, width = image.shape[:2]
        self.thickness = max(2, round(max(height, width) / 400))

    @property
    def style(self) -> OverlayStyle:
        return self._style

    @style.setter
    def style(self, style: OverlayStyle) -> None:
        if style != self._style:
            self._style = style
            self._base = None

    def render(
        self,
        objects: Sequence[EditableObject],
        class_names: Sequence[str],
        selected: int | None = None,
        marker: tuple[float, float] | None = None,
    ) -> np.ndarray:
        """The overlay of ``objects`` with ``objects[selected]`` highlighted.

        Args:
            objects: The session's objects, in table order.
            class_names: Every class, in class-id order (colours follow the class id).
            selected: Index of the highlighted object: drawn last, with a stronger fill, a white
                outline, its number, and its clicks (green positive, red negative).
            marker: A pending point (the first corner of a box being drawn), or None.

        Returns:
            (H, W, 3) uint8 RGB, the image's size.
        """
        if selected is not None and not 0 <= selected < len(objects):
            selected = None
        others = [o for i, o in enumerate(objects) if i != selected]
        canvas = self._base_for(others, class_names).copy()
        if selected is not None:
            obj = objects[selected]
            self._paint_selected(canvas, obj, selected, list(class_names).index(obj.class_name))
        if marker is not None:
            self._paint_marker(canvas, marker)
        return canvas

    # ------------------------------------------------------------------ the unselected objects

    def _base_for(self, others: list[EditableObject], class_names: Sequence[str]) -> np.ndarray:
        names = list(class_names)
        key = (self._style, tuple(names.index(o.class_name) for o in others))
        same = (
            self._base is not None and key == self._base_key and len(others) == len(self._base_objects)
            and all(a is b for a, b in zip(others, self._base_objects))
        )
        if not same:
            annotator = OverlayAnnotator(masks=self._style.masks, boxes=self._style.boxes,
                                         labels=self._style.labels, opacity=self._style.opacity)
            height, width = self.image.shape[:2]
            self._base = annotator.annotate(self.image, objects_to_detections(others, names, (width, height)))
            self._base_key, self._base_objects = key, list(others)
            self.base_renders += 1
        return self._base

    # ------------------------------------------------------------------ the selected object

    def _paint_selected(self, canvas: np.ndarray, obj: EditableObject, index: int, class_id: int) -> None:
        import cv2

        height, width = canvas.shape[:2]
        colour = np.array(class_color(class_id).as_rgb(), np.float32)
        t = self.thickness
        box = output_box(obj)
        ys, xs = np.nonzero(obj.mask.any(axis=1))[0], np.nonzero(obj.mask.any(axis=0))[0]
        x0, y0, x1, y1 = (int(box[0]), int(box[1]), int(np.ceil(box[2])), int(np.ceil(box[3])))
        if len(xs):
            x0, y0, x1, y1 = min(x0, xs[0]), min(y0, ys[0]), max(x1, xs[-1] + 1), max(y1, ys[-1] + 1)
        pad = 3 * t + 2
        x0, y0 = max(0, x0 - pad), max(0, y0 - pad)
        x1, y1 = min(width, x1 + pad), min(height, y1 + pad)
        if x1 > x0 and y1 > y0:
            # OpenCV's masked copies work in place on the region's view, without numpy's boolean
            # indexing (tens of times slower on a large mask).
            region = canvas[y0:y1, x0:x1]
            mask = np.asarray(obj.mask, bool)[y0:y1, x0:x1].view(np.uint8)
            solid = np.empty_like(region)  # one colour at a time (cv2 fills it far faster than numpy)
            corner = (solid.shape[1] - 1, solid.shape[0] - 1)
            if self._style.masks:
                alpha = min(1.0, self._style.opacity + HIGHLIGHT_EXTRA_OPACITY)
                cv2.rectangle(solid, (0, 0), corner, tuple(int(c) for c in colour), -1)
                cv2.copyTo(cv2.addWeighted(region, 1 - alpha, solid, alpha, 0), mask, region)
            # The outline is a ring around the mask (morphology: its cost does not grow with the
            # number of contours, which a noisy mask has thousands of).
            inner = cv2.dilate(mask, _disk(t))
            outer = cv2.dilate(mask, _disk(t + 2))
            cv2.rectangle(solid, (0, 0), corner, SHADOW_RGB, -1)
            cv2.copyTo(solid, outer - inner, region)
            cv2.rectangle(solid, (0, 0), corner, OUTLINE_RGB, -1)
            cv2.copyTo(solid, inner - mask, region)
        bx0, by0, bx1, by1 = (int(round(float(v))) for v in box)
        if self._style.boxes:
            cv2.rectangle(canvas, (bx0, by0), (bx1, by1), tuple(int(c) for c in colour), t + 1)
        if self._style.labels:
            self._paint_label(canvas, f"#{index} {obj.class_name} {obj.score:.2f}", (bx0, by0), colour)
        radius = max(4, round(max(height, width) / 180))
        for (x, y), label in zip(obj.points, obj.labels):
            centre = (int(round(float(x))), int(round(float(y))))
            cv2.circle(canvas, centre, radius + 2, OUTLINE_RGB, -1, lineType=cv2.LINE_AA)
            cv2.circle(canvas, centre, radius, POSITIVE_RGB if label else NEGATIVE_RGB, -1, lineType=cv2.LINE_AA)

    def _paint_label(self, canvas: np.ndarray, text: str, corner: tuple[int, int], colour: np.ndarray) -> None:
        import cv2

        height, width = canvas.shape[:2]
        scale = max(0.5, max(height, width) / 1400)
        weight = max(1, round(scale * 1.5))
        (text_w, text_h), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, weight)
        pad = max(3, text_h // 3)
        x = min(max(0, corner[0]), max(0, width - text_w - 2 * pad))
        y = corner[1] - text_h - baseline - 2 * pad
        if y < 0:  # no room above the box: inside it
            y = max(0, corner[1])
        cv2.rectangle(canvas, (x, y), (x + text_w + 2 * pad, y + text_h + baseline + 2 * pad),
                      tuple(int(c) for c in colour), -1)
        luminance = 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]
        ink = (0, 0, 0) if luminance > 150 else (255, 255, 255)
        cv2.putText(canvas, text, (x + pad, y + pad + text_h), cv2.FONT_HERSHEY_SIMPLEX, scale, ink, weight,
                    lineType=cv2.LINE_AA)

    def _paint_marker(self, canvas: np.ndarray, marker: tuple[float, float]) -> None:
        import cv2

        height, width = canvas.shape[:2]
        x, y = int(round(marker[0])), int(round(marker[1]))
        arm = max(12, round(max(height, width) / 60))
        for colour, weight in ((SHADOW_RGB, self.thickness + 2), (MARKER_RGB, self.thickness)):
            cv2.line(canvas, (x - arm, y), (x + arm, y), colour, weight, lineType=cv2.LINE_AA)
            cv2.line(canvas, (x, y - arm), (x, y + arm), colour, weight, lineType=cv2.LINE_AA)
