"""Tests for grounded_sam.models.owlv2: the output adapter with literal arrays, then the tiny OWLv2 (random and
scripted) through the real loader."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from grounded_sam.categories import parse_categories
from grounded_sam.models.native import best_class
from grounded_sam.models.owlv2 import Owlv2Detector, owlv2_to_detections
from grounded_sam.models.testing import SCRIPTED_OWLV2_LOGIT


def _logit(p: float) -> float:
    return float(np.log(p / (1 - p)))


@pytest.mark.parametrize(
    ("scores", "class_ids", "threshold", "expected"),
    [
        ([[0.2, 0.7], [0.9, 0.1]], [0, 1], 0.5, ([0, 1], [1, 0], [0.7, 0.9])),
        ([[0.6, 0.6]], [3, 1], 0.5, ([0], [3], [0.6])),  # a tie goes to the earlier prompt
        ([[0.2, 0.3]], [0, 1], 0.5, ([], [], [])),
        (np.zeros((0, 2)), [0, 1], 0.5, ([], [], [])),
    ],
)
def test_best_class(scores, class_ids, threshold, expected) -> None:
    rows, class_id, score = best_class(np.array(scores, dtype=np.float32), class_ids, threshold)
    assert rows.tolist() == expected[0] and class_id.tolist() == expected[1]
    np.testing.assert_allclose(score, expected[2], atol=1e-6)


def test_best_class_checks_the_prompt_count() -> None:
    with pytest.raises(ValueError, match=r"Expected scores \(N, 3\), but got shape \(1, 2\)"):
        best_class(np.zeros((1, 2)), [0, 1, 2], 0.5)


def test_adapter_scales_boxes_by_the_padded_square_and_maps_prompts_to_classes() -> None:
    logits = np.array([[_logit(0.9), _logit(0.2)], [_logit(0.05), _logit(0.08)], [_logit(0.3), _logit(0.6)]])
    boxes = np.array([[0.5, 0.25, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0], [0.25, 0.25, 0.5, 0.5]], dtype=np.float32)
    # A 200 x 100 image is padded to 200 x 200 (bottom) before resizing: fractions are of 200 both ways.
    detections = owlv2_to_detections(logits, boxes, [1, 0], (200, 100), 0.1, ("helmet", "person"))
    np.testing.assert_allclose(detections.xyxy, [[50, 0, 150, 100], [0, 0, 100, 100]], atol=1e-4)
    assert detections.class_id.tolist() == [1, 0]
    assert detections.data["class_name"].tolist() == ["person", "helmet"]
    np.testing.assert_allclose(detections.data["detector_score"], [0.9, 0.6], atol=1e-6)
    assert detections.data["detector_score"].dtype == np.float32 and detections.confidence is None


def test_scripted_tiny_model_gives_its_known_boxes_and_scores_with_one_vision_pass(tiny_models, count_calls) -> None:
    detector = Owlv2Detector.from_pretrained(tiny_models["owlv2_scripted"], torch.device("cpu"))
    vision = count_calls(detector.model.owlv2.vision_model)
    image = np.zeros((48, 64, 3), np.uint8)  # padded to 64 x 64: box fractions are of 64 both ways
    detections = detector.detect(image, parse_categories("truck, tire, person"))
    assert vision.calls == 1
    expected = torch.sigmoid(detector.model.box_bias).numpy() * 64  # the box head adds nothing to its grid bias
    cx, cy, w, h = expected.T
    np.testing.assert_allclose(detections.xyxy, np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1), atol=1e-3)
    assert detections.class_id.tolist() == [0] * 16  # every prompt ties, so the first wins
    np.testing.assert_allclose(detections.data["detector_score"], 1 / (1 + np.exp(-SCRIPTED_OWLV2_LOGIT)), atol=1e-6)
    assert len(detector.detect(image, parse_categories("truck"), min_score=0.9)) == 0


def test_random_tiny_model_keeps_every_class_id_in_range(tiny_models) -> None:
    detector = Owlv2Detector.from_pretrained(tiny_models["owlv2"], torch.device("cpu"), box_threshold=0.0)
    categories = parse_categories("truck, tire, yellow hard hat: helmet")
    detections = detector.detect(np.zeros((64, 64, 3), np.uint8), categories)
    assert len(detections) == 16 and set(detections.class_id.tolist()) <= {0, 1, 2}
    assert detections.data["class_name"].tolist() == [categories.class_names[i] for i in detections.class_id]
