"""SAM 3 as a one-model pipeline: category texts straight to masks and scores (transformers' ``Sam3Model``).

SAM 3 finds and segments every instance of a text concept itself, so with it the pipeline's SAM2
segmenter is not used. The image's vision features are computed once (``get_vision_features``) and
each category prompt then runs the text encoder, the DETR encoder/decoder and the mask decoder on
them. A mask's score is SAM 3's own (query score times the prompt's presence score); it becomes the
result's ``confidence``, as SAM2's predicted IoU is for the other detectors.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import supervision as sv

from grounded_sam.categories import Categories
from grounded_sam.detections import empty_detections
from grounded_sam.models.devices import inference_context
from grounded_sam.models.native import NativeDetector

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

#: The score threshold transformers' SAM 3 examples use; ``min_score`` raises it.
DEFAULT_SCORE_THRESHOLD = 0.5


def sam3_to_detections(
    per_prompt: Sequence[tuple[int, np.ndarray, np.ndarray, np.ndarray]], class_names: Sequence[str],
    image_size: tuple[int, int],
) -> sv.Detections:
    """Joins SAM 3's kept instances of every prompt into one result (a pure function: tested with literal arrays).

    Args:
        per_prompt: For each prompt, ``(class_id, scores (K,), boxes (K, 4) xyxy pixels, masks (K, H, W) bool)``.
        class_names: Every class name, in class-id order.
        image_size: ``(width, height)``, for the mask shape of an empty result.

    Returns:
        Detections with ``xyxy`` float32, ``mask`` (N, H, W) bool, ``confidence`` (N,) float32 (SAM 3's
        score), ``class_id`` and ``data["class_name"]``.
    """
    rows = [(class_id, np.asarray(s, np.float32), np.asarray(b, np.float32).reshape(-1, 4), np.asarray(m, bool))
            for class_id, s, b, m in per_prompt if len(s)]
    if not rows:
        return empty_detections(image_size)
    class_id = np.concatenate([np.full(len(s), c, dtype=int) for c, s, _, _ in rows])
    return sv.Detections(
        xyxy=np.concatenate([b for _, _, b, _ in rows]),
        mask=np.concatenate([m for _, _, _, m in rows]),
        confidence=np.concatenate([s for _, s, _, _ in rows]),
        class_id=class_id,
        data={"class_name": np.array([class_names[i] for i in class_id])},
    )


class Sam3Segmenter(NativeDetector):
    """Finds and segments every instance of each category prompt with SAM 3.

    Args:
        model: A ``Sam3Model`` in eval mode on ``device``.
        processor: The matching ``Sam3Processor``.
        device: Where the model lives.
        score_threshold: Least SAM 3 score an instance keeps (``min_score`` raises it per call).
        mask_threshold: Probability above which a pixel is in the mask.
        max_instances: Most instances a prompt keeps, its best-scoring ones (None: every one over the
            threshold); the others' masks are never resized to the image.
    """

    model_class_name = "Sam3Model"
    label = "SAM 3"
    family = "sam3"
    # facebook/sam3's processor config names the video pipeline's processor, which has no
    # post_process_instance_segmentation; the image processor and tokenizer are the same files.
    processor_class_name = "Sam3Processor"

    def __init__(self, model: Any, processor: Any, device: torch.device, *,
                 score_threshold: float = DEFAULT_SCORE_THRESHOLD, mask_threshold: float = 0.5,
                 max_instances: int | None = None) -> None:
        if not (0.0 <= score_threshold <= 1.0 and 0.0 < mask_threshold < 1.0):
            raise ValueError(f"score_threshold must be within [0, 1] and mask_threshold within (0, 1), but got "
                             f"{score_threshold}, {mask_threshold}")
        if max_instances is not None and max_instances < 1:
            raise ValueError(f"max_instances must be None or >= 1, but got {max_instances}")
        super().__init__(model, processor, device)
        self.score_threshold = score_threshold
        self.mask_threshold = mask_threshold
        self.max_instances = max_instances

    def segment_text(self, image: np.ndarray, categories: Categories, *, min_score: float = 0.0) -> sv.Detections:
        """Masks of every instance of every prompt of ``categories`` in one image.

        Args:
            image: (H, W, 3) uint8 RGB.
            categories: Parsed prompts; each instance gets its prompt's ``class_id``.
            min_score: Least SAM 3 score for this call (the segmenter's ``score_threshold`` when higher).

        Returns:
            As :func:`sam3_to_detections`: masks already at the image's size, no SAM2 needed.
        """
        height, width = image.shape[:2]
        threshold = max(self.score_threshold, min_score)
        pixel_values = self.processor.image_processor(images=image, return_tensors="pt")["pixel_values"]
        per_prompt = []
        with inference_context(self.device):
            vision = self.model.get_vision_features(pixel_values=pixel_values.to(self.device))
            for prompt in categories.prompts:
                text = self.processor.tokenizer(prompt.text, padding="max_length", truncation=True,
                                                max_length=self.model.config.text_config.max_position_embeddings,
                                                return_tensors="pt")
                outputs = self._best_queries(self.model(
                    vision_embeds=vision, input_ids=text["input_ids"].to(self.device),
                    attention_mask=text["attention_mask"].to(self.device)))
                [kept] = self.processor.post_process_instance_segmentation(
                    outputs, threshold=threshold, mask_threshold=self.mask_threshold, target_sizes=[(height, width)])
                per_prompt.append((prompt.class_id, kept["scores"].float().cpu().numpy(),
                                   kept["boxes"].float().cpu().numpy(), kept["masks"].cpu().numpy().astype(bool)))
        detections = sam3_to_detections(per_prompt, categories.class_names, (width, height))
        logger.debug("SAM 3: %d prompts -> %d masks", len(categories.prompts), len(detections))
        return detections

    def _best_queries(self, outputs: Any) -> Any:
        """One prompt's outputs cut to its :attr:`max_instances` best queries (all of them when None)."""
        if self.max_instances is None or outputs.pred_logits.shape[1] <= self.max_instances:
            return outputs
        # A query's score is sigmoid(its logit) x the prompt's presence score: the best logits are the best scores.
        best = outputs.pred_logits[0].topk(self.max_instances).indices
        return type(outputs)(pred_logits=outputs.pred_logits[:, best], pred_boxes=outputs.pred_boxes[:, best],
                             pred_masks=outputs.pred_masks[:, best], presence_logits=outputs.presence_logits)
