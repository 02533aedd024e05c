"""What every click refiner offers: one object's mask from its prompts, on an image encoded once.

Editing (:mod:`grounded_sam.editing`) talks to a :class:`ClickRefiner` only, so the model behind the
clicks is chosen in one place (:func:`grounded_sam.editing.refiners.refiner_for`): SAM2's mask decoder
(:class:`~grounded_sam.models.sam2.refiner.Sam2Refiner`) after a detector + SAM2 run, SAM 3's tracker
(:class:`~grounded_sam.models.sam3_tracker.Sam3TrackerRefiner`) after a SAM 3 run. Each keeps its image
embeddings in a byte-bounded cache keyed by :func:`~grounded_sam.caching.image_key`, so a click costs a
decoder pass, never an image encoding, once the image is encoded.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np


class ClickRefiner(Protocol):
    """Predicts one mask from prompts on an image's cached embedding."""

    def predict(
        self,
        image: np.ndarray,
        key: str,
        *,
        box: np.ndarray | None = None,
        points: np.ndarray | None = None,
        labels: np.ndarray | None = None,
        mask_logits: np.ndarray | None = None,
    ) -> tuple[np.ndarray, float, np.ndarray]:
        """Predicts one mask from prompts.

        Args:
            image: (H, W, 3) uint8 RGB.
            key: :func:`~grounded_sam.caching.image_key` of ``image`` (the embedding cache's key).
            box: (4,) xyxy pixels, or None.
            points: (K, 2) xy pixels, or None.
            labels: (K,) 1 for positive, 0 for negative clicks.
            mask_logits: (1, h, w) low-resolution logits of the previous mask, as this refiner returned
                them, or None.

        Returns:
            ``(mask, score, logits)``: (H, W) bool, the model's predicted IoU, (1, h, w) float32
            low-resolution logits (h = w = 256 for SAM2; four times the embedding's side for SAM 3).
        """
        ...


def tensor_nbytes(value: Any) -> int:
    """Bytes of the tensors in ``value`` (a tensor, or lists, tuples and dicts of them); other values count 0."""
    if isinstance(value, (list, tuple)):
        return sum(tensor_nbytes(v) for v in value)
    if isinstance(value, dict):
        return sum(tensor_nbytes(v) for v in value.values())
    return int(value.numel() * value.element_size()) if hasattr(value, "numel") else 0
