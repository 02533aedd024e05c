"""What the detectors that come as transformers' native classes share: strict loading and scored results.

Florence-2, Grounding DINO and OWLv2 load through their own transformers classes (never
``trust_remote_code``). :func:`load_native` loads a model and its processor strictly (missing or
mismatched weights are an error), and :class:`NativeDetector` gives each detector class its
``from_pretrained``. Grounding DINO and OWLv2 give a score per box; :func:`scored_detections` builds the
result every scoring detector returns.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import numpy as np
import supervision as sv

from grounded_sam.detections import empty_detections
from grounded_sam.errors import ModelLoadError

if TYPE_CHECKING:
    import torch

#: The key of ``Detections.data`` that keeps the detector's own score once SAM2's predicted IoU is the ``confidence``.
DETECTOR_SCORE = "detector_score"


def load_native(model_class_name: str, path: str | os.PathLike[str], label: str, *,
                processor_class_name: str = "AutoProcessor",
                processor_parts: Sequence[str] = ("image_processor", "tokenizer")) -> tuple[Any, Any]:
    """Loads a transformers model (by class name) and its processor from a ``save_pretrained`` folder, strictly.

    Args:
        model_class_name: A class of ``transformers`` (``"GroundingDinoForObjectDetection"``).
        path: The folder.
        label: The model's name in error messages (``"Grounding DINO"``).
        processor_class_name: The processor class (``"AutoProcessor"``: the one the folder names).
        processor_parts: Attributes the processor must have.

    Returns:
        ``(model, processor)``: the model in fp32 eval mode on the CPU, and its processor.

    Raises:
        ModelLoadError: The files are unreadable, weights are missing or mismatched, or there is no processor.
    """
    import torch
    import transformers

    path = Path(path)
    model_class = getattr(transformers, model_class_name)
    try:
        model, info = model_class.from_pretrained(path, dtype=torch.float32, output_loading_info=True)
        processor = getattr(transformers, processor_class_name).from_pretrained(path)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(f"Could not load a {label} model from {path}: {exc}") from exc
    problems = {k: v for k, v in info.items() if k in ("missing_keys", "mismatched_keys") and v}
    if problems:
        raise ModelLoadError(
            f"The {label} weights in {path} do not match its config.json: {problems}. "
            "Re-download the model or re-save it with save_pretrained."
        )
    if not all(hasattr(processor, part) for part in processor_parts):
        raise ModelLoadError(f"{path} holds no {label} processor (expected processor and tokenizer files).")
    return model.eval(), processor


DetectorT = TypeVar("DetectorT", bound="NativeDetector")


class NativeDetector:
    """Base of the detector classes: ``from_pretrained`` through :func:`load_native`.

    A subclass names its transformers class (``model_class_name``), its name in messages (``label``) and
    its registry family, and takes ``(model, processor, device, **options)`` in ``__init__``.
    """

    model_class_name: ClassVar[str]
    label: ClassVar[str]
    family: ClassVar[str]
    #: The processor class; ``AutoProcessor`` takes the one the folder's processor config names.
    processor_class_name: ClassVar[str] = "AutoProcessor"

    def __init__(self, model: Any, processor: Any, device: torch.device, **options: Any) -> None:
        self.model = model
        self.processor = processor
        self.device = device

    @classmethod
    def from_pretrained(cls: type[DetectorT], path: str | os.PathLike[str], device: torch.device,
                        **options: Any) -> DetectorT:
        """Loads model and processor from a ``save_pretrained`` folder, strictly, onto ``device``.

        Raises:
            ModelLoadError: Missing or mismatched weights, or no processor.
        """
        model, processor = load_native(cls.model_class_name, path, cls.label,
                                       processor_class_name=cls.processor_class_name)
        return cls(model.to(device), processor, device, **options)


def cxcywh_to_xyxy(boxes: np.ndarray, scale: tuple[float, float]) -> np.ndarray:
    """Normalised (cx, cy, w, h) boxes to pixel xyxy.

    Args:
        boxes: (N, 4) centre, width and height as fractions.
        scale: ``(sx, sy)`` pixels per unit along x and y.

    Returns:
        (N, 4) float32 ``x1, y1, x2, y2`` pixels.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    sx, sy = scale
    cx, cy, w, h = boxes[:, 0] * sx, boxes[:, 1] * sy, boxes[:, 2] * sx, boxes[:, 3] * sy
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1).astype(np.float32)


def best_class(scores: np.ndarray, prompt_class_ids: Sequence[int], threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gives each box the prompt it scores highest for, and keeps the boxes at or above ``threshold``.

    Args:
        scores: (N, P) probabilities of N boxes for P prompts.
        prompt_class_ids: (P,) the class id of each prompt.
        threshold: Least score a box keeps.

    Returns:
        ``(rows, class_id, score)``: indices of the kept boxes, their class ids (int) and scores (float32).
        A tie goes to the earlier prompt.
    """
    scores = np.asarray(scores, dtype=np.float32)
    if scores.ndim != 2 or scores.shape[1] != len(prompt_class_ids):
        raise ValueError(f"Expected scores (N, {len(prompt_class_ids)}), but got shape {scores.shape}")
    if scores.shape[0] == 0 or scores.shape[1] == 0:
        return np.zeros((0,), int), np.zeros((0,), int), np.zeros((0,), np.float32)
    best = scores.argmax(axis=1)
    best_score = scores[np.arange(len(scores)), best]
    rows = np.flatnonzero(best_score >= threshold)
    return rows, np.asarray(prompt_class_ids, dtype=int)[best[rows]], best_score[rows].astype(np.float32)


def scored_detections(
    xyxy: np.ndarray, class_id: np.ndarray, scores: np.ndarray, class_names: Sequence[str]
) -> sv.Detections:
    """The result of a scoring detector: boxes, classes, ``data["class_name"]`` and ``data["detector_score"]``.

    ``confidence`` stays None: after segmentation it is SAM2's predicted IoU, and the detector's
    score travels in ``data["detector_score"]`` (float32).
    """
    if len(xyxy) == 0:
        return empty_detections()
    class_id = np.asarray(class_id, dtype=int)
    return sv.Detections(
        xyxy=np.asarray(xyxy, dtype=np.float32).reshape(-1, 4),
        class_id=class_id,
        data={"class_name": np.array([class_names[i] for i in class_id]),
              DETECTOR_SCORE: np.asarray(scores, dtype=np.float32)},
    )
