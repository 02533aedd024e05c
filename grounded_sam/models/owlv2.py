"""OWLv2 as an open-vocabulary box detector (transformers' ``Owlv2ForObjectDetection``).

Every category text is one query of the same forward pass, so the image is encoded once whatever
the number of categories. OWLv2 predicts one box per image patch with a score for each query; a box
goes to the prompt it scores highest for. The processor pads the image to a square (bottom and
right) before resizing, so boxes are fractions of the longer side.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import supervision as sv

from grounded_sam.categories import Categories
from grounded_sam.models.devices import inference_context
from grounded_sam.models.native import NativeDetector, best_class, cxcywh_to_xyxy, scored_detections

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

#: The threshold transformers' OWLv2 examples use; ``min_score`` raises it.
DEFAULT_BOX_THRESHOLD = 0.1


def owlv2_to_detections(
    logits: np.ndarray, boxes: np.ndarray, prompt_class_ids: Sequence[int], image_size: tuple[int, int],
    threshold: float, class_names: Sequence[str],
) -> sv.Detections:
    """Turns OWLv2's raw output for one image into Detections (a pure function: tested with literal arrays).

    Args:
        logits: (P, Q) logits of P patch boxes for Q prompts (``outputs.logits[0]``).
        boxes: (P, 4) ``cx, cy, w, h`` as fractions of the padded square image (``outputs.pred_boxes[0]``).
        prompt_class_ids: (Q,) the class id of each prompt.
        image_size: ``(width, height)`` of the image in pixels (before padding).
        threshold: Least detector score a box keeps.
        class_names: Every class name, in class-id order.

    Returns:
        Detections with ``xyxy`` float32 pixels, ``class_id``, ``data["class_name"]`` and
        ``data["detector_score"]`` (float32); ``confidence`` None.
    """
    logits = np.asarray(logits, dtype=np.float64)
    scores = 1.0 / (1.0 + np.exp(-np.clip(logits, -80, 80)))
    rows, class_id, score = best_class(scores, prompt_class_ids, threshold)
    side = float(max(image_size))
    return scored_detections(cxcywh_to_xyxy(np.asarray(boxes)[rows], (side, side)), class_id, score, class_names)


class Owlv2Detector(NativeDetector):
    """Finds scored boxes for category prompts with OWLv2.

    Args:
        model: An ``Owlv2ForObjectDetection`` in eval mode on ``device``.
        processor: The matching ``Owlv2Processor``.
        device: Where the model lives.
        box_threshold: Least detector score a box keeps (``min_score`` raises it per call).
    """

    model_class_name = "Owlv2ForObjectDetection"
    label = "OWLv2"
    family = "owlv2"

    def __init__(self, model: Any, processor: Any, device: torch.device, *,
                 box_threshold: float = DEFAULT_BOX_THRESHOLD) -> None:
        if not 0.0 <= box_threshold <= 1.0:
            raise ValueError(f"box_threshold must be within [0, 1], but got {box_threshold}")
        super().__init__(model, processor, device)
        self.box_threshold = box_threshold
        self.max_text_len = int(model.config.text_config.max_position_embeddings)

    def detect(self, image: np.ndarray, categories: Categories, *, min_score: float = 0.0) -> sv.Detections:
        """Finds boxes for every prompt of ``categories`` in one image, all prompts in one forward pass.

        Args:
            image: (H, W, 3) uint8 RGB.
            categories: Parsed prompts; each box gets the ``class_id`` of the prompt it scores highest for.
            min_score: Least detector score for this call (the detector's ``box_threshold`` when higher).

        Returns:
            As :meth:`GroundingDinoDetector.detect <grounded_sam.models.grounding_dino.GroundingDinoDetector.detect>`.
        """
        height, width = image.shape[:2]
        texts = [p.text for p in categories.prompts]
        text = self.processor.tokenizer(texts, padding="max_length", truncation=True, max_length=self.max_text_len,
                                        return_tensors="pt")
        pixel_values = self.processor.image_processor(images=image, return_tensors="pt")["pixel_values"]
        with inference_context(self.device):
            outputs = self.model(input_ids=text["input_ids"].to(self.device),
                                 attention_mask=text["attention_mask"].to(self.device),
                                 pixel_values=pixel_values.to(self.device))
        detections = owlv2_to_detections(
            outputs.logits[0].float().cpu().numpy(), outputs.pred_boxes[0].float().cpu().numpy(),
            [p.class_id for p in categories.prompts], (width, height), max(self.box_threshold, min_score),
            categories.class_names,
        )
        logger.debug("OWLv2: %d prompts -> %d boxes", len(texts), len(detections))
        return detections
