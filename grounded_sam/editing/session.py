"""Click refinement: fix, add, delete and relabel objects after an automatic run.

A :class:`LabelSession` holds one image's editable objects with undo/redo. Every click runs a
mask decoder only, through a :class:`~grounded_sam.models.refiner.ClickRefiner` on the image's cached
embedding (SAM2's decoder, or SAM 3's tracker after a SAM 3 run: see
:func:`grounded_sam.editing.refiners.refiner_for`), so a click never re-encodes the image.

Clicks are binding: after the model predicts, the clicked pixel (and a small disk around it) is put
on the side the click asked for, so a negative click always removes what was clicked and a
positive click always keeps it, whatever the model does near the edge.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import supervision as sv

from grounded_sam.caching import image_key
from grounded_sam.detections import class_names_of, empty_detections, mask_box
from grounded_sam.errors import EditError
from grounded_sam.models.refiner import ClickRefiner

logger = logging.getLogger(__name__)

CLICK_RADIUS = 2  # pixels forced to the click's side around each click
MAX_HISTORY = 50  # undo steps kept per session; each can hold a full-size mask


@dataclass(frozen=True, eq=False)  # numpy fields: identity, not element-wise, comparison
class EditableObject:
    """One object of a session. Immutable: edits make new objects, so undo snapshots are cheap.

    Attributes:
        mask: (H, W) bool.
        box: (4,) float32 xyxy pixels: the prompt box (detector box, drawn box, or the mask's box).
        class_name: Its class.
        score: The predicted IoU of the current mask (SAM2's, or SAM 3's score before a click).
        points: (K, 2) float32 click positions, xy pixels.
        labels: (K,) int32, 1 positive / 0 negative.
        logits: (1, h, w) float32 low-resolution logits of the current mask as the session's refiner gave
            them, or None.
        edited: False for an untouched automatic object (its detector box is kept in outputs);
            True once its mask came from a click or a drawn box (outputs use the mask's box).
        detector_score: The detector's score of its box (Grounding DINO, OWLv2), kept through edits;
            None for an object added by hand or from a detector that gives none (Florence-2).
    """

    mask: np.ndarray
    box: np.ndarray
    class_name: str
    score: float
    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))
    labels: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int32))
    logits: np.ndarray | None = None
    edited: bool = False
    detector_score: float | None = None


def output_box(obj: EditableObject) -> np.ndarray:
    """(4,) float32 xyxy: the tight box of an edited mask, else the prompt box (what every output writes)."""
    if obj.edited and obj.mask.any():
        return np.array(mask_box(obj.mask), np.float32)
    return np.asarray(obj.box, np.float32)


def objects_to_detections(objects: Sequence[EditableObject], class_names: Sequence[str],
                          image_size: tuple[int, int] | None = None) -> sv.Detections:
    """Detections of a session's objects: :func:`output_box` boxes, masks, scores and classes.

    Args:
        objects: The objects, in table order.
        class_names: Every class, in class-id order (each object's class must be in it).
        image_size: ``(width, height)``, for the mask shape of an empty result (no mask without it).
    """
    if not objects:
        return empty_detections(image_size)
    data = {"class_name": np.array([o.class_name for o in objects])}
    if any(o.detector_score is not None for o in objects):  # NaN for objects added by hand
        data["detector_score"] = np.array([np.nan if o.detector_score is None else o.detector_score for o in objects],
                                          np.float32)
    return sv.Detections(
        xyxy=np.stack([output_box(o) for o in objects]).astype(np.float32),
        mask=np.stack([o.mask for o in objects]),
        confidence=np.array([o.score for o in objects], np.float32),
        class_id=np.array([list(class_names).index(o.class_name) for o in objects], int),
        data=data,
    )


def _force_clicks(mask: np.ndarray, points: np.ndarray, labels: np.ndarray, radius: int = CLICK_RADIUS) -> np.ndarray:
    """Makes the clicks binding: each click's disk goes to the side its label asks for (latest click wins)."""
    if len(points) == 0:
        return mask
    mask = mask.copy()
    height, width = mask.shape
    for (x, y), label in zip(points, labels):
        cx, cy = int(round(float(x))), int(round(float(y)))
        y0, y1 = max(0, cy - radius), min(height, cy + radius + 1)
        x0, x1 = max(0, cx - radius), min(width, cx + radius + 1)
        yy, xx = np.ogrid[y0:y1, x0:x1]
        disk = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
        mask[y0:y1, x0:x1][disk] = bool(label)
    return mask


class LabelSession:
    """One image's objects, editable with clicks, with undo, redo and reset.

    Args:
        refiner: Shared :class:`~grounded_sam.models.refiner.ClickRefiner`.
        image: (H, W, 3) uint8 RGB.
        detections: The automatic result (masks, boxes, class names, scores).
        class_names: Every class of the run, in order; new classes are appended when used.
    """

    def __init__(self, refiner: ClickRefiner, image: np.ndarray, detections: sv.Detections, class_names: Sequence[str]) -> None:
        self.refiner = refiner
        self.image = image
        self.key = image_key(image)
        self.class_names = list(class_names)
        names = class_names_of(detections, self.class_names)
        detector_scores = detections.data.get("detector_score")
        objects = []
        for i in range(len(detections)):
            objects.append(EditableObject(
                mask=detections.mask[i],
                box=detections.xyxy[i].astype(np.float32),
                class_name=names[i],
                score=float(detections.confidence[i]) if detections.confidence is not None else 1.0,
                detector_score=None if detector_scores is None or np.isnan(detector_scores[i])
                else float(detector_scores[i]),
            ))
        self.objects: list[EditableObject] = objects
        self._initial = list(objects)
        self._initial_classes = list(self.class_names)
        self._undo: list[tuple[list[EditableObject], list[str]]] = []
        self._redo: list[tuple[list[EditableObject], list[str]]] = []

    @classmethod
    def from_objects(cls, refiner: ClickRefiner, image: np.ndarray, objects: Sequence[EditableObject],
                     class_names: Sequence[str], *, initial: Sequence[EditableObject] | None = None,
                     initial_classes: Sequence[str] | None = None) -> LabelSession:
        """A session of objects saved before (:mod:`grounded_sam.editing.store`); runs no model, history empty.

        Args:
            refiner: As for the constructor (used by later clicks only).
            image: (H, W, 3) uint8 RGB.
            objects: The objects now, in table order; masks (H, W) bool.
            class_names: Every class now, in class-id order.
            initial: What Reset returns to (the automatic result); ``objects`` when None.
            initial_classes: The classes of ``initial``; ``class_names`` when None.

        Raises:
            EditError: A mask is not the image's size, or an object's class is not in its class list.
        """
        height, width = image.shape[:2]
        initial = list(objects if initial is None else initial)
        initial_classes = list(class_names if initial_classes is None else initial_classes)
        for group, names in ((objects, class_names), (initial, initial_classes)):
            for obj in group:
                if obj.mask.shape != (height, width):
                    raise EditError(f"A saved mask is {obj.mask.shape[1]}x{obj.mask.shape[0]}, but the image is "
                                    f"{width}x{height}: run the image again.")
                if obj.class_name not in names:
                    raise EditError(f"A saved object's class {obj.class_name!r} is not among {list(names)}: "
                                    "run the image again.")
        session = cls(refiner, image, empty_detections((width, height)), class_names)
        session.objects = list(objects)
        session._initial, session._initial_classes = initial, initial_classes
        return session

    @property
    def initial(self) -> tuple[list[EditableObject], list[str]]:
        """The automatic result Reset returns to: its objects and classes."""
        return list(self._initial), list(self._initial_classes)

    def nbytes(self) -> int:
        """Bytes this session holds: the image and every distinct mask (now, the automatic result, undo and redo)."""
        masks: dict[int, int] = {}
        groups = [self.objects, self._initial, *(objects for objects, _ in self._undo),
                  *(objects for objects, _ in self._redo)]
        for group in groups:
            for obj in group:
                masks[id(obj.mask)] = obj.mask.nbytes
        return self.image.nbytes + sum(masks.values())

    # ------------------------------------------------------------------ history

    def _checkpoint(self) -> None:
        self._undo.append((list(self.objects), list(self.class_names)))
        del self._undo[:-MAX_HISTORY]
        self._redo.clear()

    def undo(self) -> bool:
        """Steps back one edit. Returns False when there is nothing to undo."""
        if not self._undo:
            return False
        self._redo.append((list(self.objects), list(self.class_names)))
        self.objects, self.class_names = self._undo.pop()
        return True

    def redo(self) -> bool:
        """Re-applies the last undone edit. Returns False when there is nothing to redo."""
        if not self._redo:
            return False
        self._undo.append((list(self.objects), list(self.class_names)))
        self.objects, self.class_names = self._redo.pop()
        return True

    def reset(self) -> None:
        """Back to the automatic result (itself undoable)."""
        self._checkpoint()
        self.objects, self.class_names = list(self._initial), list(self._initial_classes)

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    # ------------------------------------------------------------------ queries

    def _check_index(self, index: int) -> EditableObject:
        if not 0 <= index < len(self.objects):
            raise EditError(f"No object #{index}: this image has {len(self.objects)} objects (0..{len(self.objects) - 1}).")
        return self.objects[index]

    def _check_point(self, x: float, y: float) -> None:
        height, width = self.image.shape[:2]
        if not (0 <= x < width and 0 <= y < height):
            raise EditError(f"Point ({x:.0f}, {y:.0f}) is outside the {width}x{height} image.")

    def object_at(self, x: float, y: float) -> int | None:
        """Index of the object whose mask covers pixel (x, y); the smallest one when several do."""
        self._check_point(x, y)
        hits = [(int(o.mask.sum()), i) for i, o in enumerate(self.objects) if o.mask[int(y), int(x)]]
        return min(hits)[1] if hits else None

    # ------------------------------------------------------------------ edits

    def refine(self, index: int, x: float, y: float, positive: bool = True) -> EditableObject:
        """Adds a click to an object and re-predicts its mask (mask decoder only).

        The object's box, every earlier click and its previous low-resolution logits go to the refiner
        together, as in SAM2's interactive demos.
        """
        obj = self._check_index(index)
        self._check_point(x, y)
        points = np.concatenate([obj.points, np.array([[x, y]], np.float32)])
        labels = np.concatenate([obj.labels, np.array([1 if positive else 0], np.int32)])
        logits = obj.logits
        if logits is None:
            # First click on an automatic object: its logits come from one decoder pass on its box.
            _, _, logits = self.refiner.predict(self.image, self.key, box=obj.box)
        mask, score, new_logits = self.refiner.predict(
            self.image, self.key, box=obj.box, points=points, labels=labels, mask_logits=logits
        )
        mask = _force_clicks(mask, points, labels)
        updated = replace(obj, mask=mask, score=score, points=points, labels=labels, logits=new_logits, edited=True)
        self._checkpoint()
        self.objects[index] = updated
        return updated

    def add_object(self, class_name: str, *, box: Sequence[float] | None = None, point: Sequence[float] | None = None) -> int:
        """Adds an object from a drawn box or one positive click. Returns its index."""
        class_name = self._class(class_name)
        if box is None and point is None:
            raise EditError("To add an object, draw a box or click a point on it.")
        prompt_box = None
        if box is not None:
            x1, y1, x2, y2 = (float(v) for v in box)
            prompt_box = np.array([min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)], np.float32)
            height, width = self.image.shape[:2]
            prompt_box = np.clip(prompt_box, 0, [width, height, width, height]).astype(np.float32)
            if prompt_box[2] - prompt_box[0] < 1 or prompt_box[3] - prompt_box[1] < 1:
                raise EditError(f"The box {list(box)} is empty inside the image: draw a larger one.")
        points = np.zeros((0, 2), np.float32)
        labels = np.zeros((0,), np.int32)
        if point is not None:
            self._check_point(*point)
            points, labels = np.array([point], np.float32), np.array([1], np.int32)
        mask, score, logits = self.refiner.predict(
            self.image, self.key, box=prompt_box, points=points if len(points) else None,
            labels=labels if len(labels) else None,
        )
        mask = _force_clicks(mask, points, labels)
        obj = EditableObject(mask=mask, box=prompt_box if prompt_box is not None else np.array(mask_box(mask), np.float32),
                             class_name=class_name, score=score, points=points, labels=labels, logits=logits,
                             edited=True)
        self._checkpoint()
        self._use_class(class_name)
        self.objects.append(obj)
        return len(self.objects) - 1

    def delete(self, index: int) -> None:
        """Removes an object."""
        self._check_index(index)
        self._checkpoint()
        del self.objects[index]

    def relabel(self, index: int, class_name: str) -> None:
        """Changes an object's class (a new class name is added to the class list)."""
        obj = self._check_index(index)
        class_name = self._class(class_name)
        self._checkpoint()
        self._use_class(class_name)
        self.objects[index] = replace(obj, class_name=class_name)

    def _class(self, class_name: str) -> str:
        """The class list's spelling of ``class_name``, or the cleaned new name (not added yet)."""
        name = " ".join(str(class_name).split())
        if not name:
            raise EditError("A class name is needed: pick one of the categories or type a new one.")
        for existing in self.class_names:
            if existing.casefold() == name.casefold():
                return existing
        return name

    def _use_class(self, name: str) -> None:
        """Adds a new class after the edit's checkpoint, so undo forgets it too."""
        if name not in self.class_names:
            self.class_names.append(name)

    # ------------------------------------------------------------------ output

    def to_detections(self) -> sv.Detections:
        """The current objects as Detections (``metadata["class_names"]`` = every class, in order)."""
        height, width = self.image.shape[:2]
        detections = objects_to_detections(self.objects, self.class_names, (width, height))
        detections.metadata["class_names"] = list(self.class_names)
        detections.metadata["image_size"] = (width, height)
        return detections
