"""Tests for grounded_sam.models.sam3: joining per-prompt results with literal arrays, then the scripted tiny SAM 3
through the real loader."""

from __future__ import annotations

import numpy as np
import torch

from grounded_sam.categories import parse_categories
from grounded_sam.models.sam3 import Sam3Segmenter, sam3_to_detections
from grounded_sam.models.testing import SCRIPTED_SAM3_SCORE


def test_sam3_to_detections_joins_prompts_in_order_with_their_classes() -> None:
    mask = np.zeros((1, 4, 6), bool)
    mask[0, 1:3, 2:5] = True
    per_prompt = [
        (1, np.array([0.9]), np.array([[2, 1, 5, 3]]), mask),
        (0, np.zeros(0), np.zeros((0, 4)), np.zeros((0, 4, 6), bool)),  # nothing found for this prompt
        (1, np.array([0.7, 0.6]), np.array([[0, 0, 1, 1], [1, 1, 2, 2]]), np.concatenate([mask, ~mask])),
    ]
    detections = sam3_to_detections(per_prompt, ("truck", "tire"), (6, 4))
    assert detections.class_id.tolist() == [1, 1, 1]
    assert detections.data["class_name"].tolist() == ["tire"] * 3
    np.testing.assert_allclose(detections.confidence, [0.9, 0.7, 0.6])
    assert detections.confidence.dtype == np.float32 and detections.xyxy.dtype == np.float32
    assert detections.mask.shape == (3, 4, 6) and detections.mask.dtype == bool
    assert "detector_score" not in detections.data


def test_sam3_to_detections_with_nothing_found_is_empty_with_a_mask_shape() -> None:
    detections = sam3_to_detections([(0, np.zeros(0), np.zeros((0, 4)), np.zeros((0, 4, 6), bool))], ("a",), (6, 4))
    assert len(detections) == 0 and detections.mask.shape == (0, 4, 6)


def test_scripted_tiny_sam3_encodes_the_image_once_and_scores_every_prompt(tiny_models, count_calls) -> None:
    segmenter = Sam3Segmenter.from_pretrained(tiny_models["sam3_scripted"], torch.device("cpu"))
    vision = count_calls(segmenter.model.vision_encoder)
    detections = segmenter.segment_text(np.zeros((60, 90, 3), np.uint8), parse_categories("truck, tire, person"))
    assert vision.calls == 1
    queries = segmenter.model.config.detr_decoder_config.num_queries
    assert detections.class_id.tolist() == [0] * queries + [1] * queries + [2] * queries
    np.testing.assert_allclose(detections.confidence, SCRIPTED_SAM3_SCORE, atol=1e-5)
    assert detections.mask.shape == (3 * queries, 60, 90)
    assert len(segmenter.segment_text(np.zeros((60, 90, 3), np.uint8), parse_categories("truck"), min_score=0.9)) == 0
