"""Tests for grounded_sam.models.sam3: joining per-prompt results with literal arrays, then the scripted tiny SAM 3
through the real loader."""

from __future__ import annotations

import numpy as np
import pytest
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


# --------------------------------------------------------------------------- the tracker: clicks on SAM 3 results


def test_the_tracker_loads_from_the_same_folder_and_shares_the_detectors_vit(tiny_models) -> None:
    from grounded_sam.models.loading import load_detector, load_sam3_tracker
    from grounded_sam.models.sam3_tracker import Sam3TrackerRefiner

    tracker = load_sam3_tracker(tiny_models["sam3_scripted"], "cpu")
    detector = load_detector(tiny_models["sam3_scripted"], "cpu")
    assert isinstance(tracker, Sam3TrackerRefiner) and type(tracker.model).__name__ == "Sam3TrackerModel"
    assert tracker.model.vision_encoder.backbone is detector.model.vision_encoder.backbone
    assert load_sam3_tracker(tiny_models["sam3_scripted"], "cpu") is tracker  # loaded once per (weights, device)
    # The shared ViT gives what the tracker's own copy of the checkpoint's weights gives.
    own = Sam3TrackerRefiner.from_pretrained(tiny_models["sam3_scripted"], torch.device("cpu"))
    pixels = torch.rand(1, 3, 56, 56)
    for shared, alone in zip(tracker.model.get_image_embeddings(pixels), own.model.get_image_embeddings(pixels)):
        torch.testing.assert_close(shared, alone)


def test_tracker_clicks_encode_the_image_once_and_follow_the_prompts(tiny_models, count_calls) -> None:
    from grounded_sam.caching import image_key
    from grounded_sam.models.loading import load_sam3_tracker

    tracker = load_sam3_tracker(tiny_models["sam3_scripted"], "cpu")
    vision = count_calls(tracker.model.vision_encoder)
    image = np.random.default_rng(1).integers(0, 255, (60, 90, 3), dtype=np.uint8)
    key = image_key(image)
    mask, score, logits = tracker.predict(image, key, box=np.array([10, 10, 50, 40], np.float32))
    side = 4 * tracker.model.prompt_encoder.image_embedding_size[0]
    assert mask.shape == (60, 90) and mask.dtype == bool
    assert logits.shape == (1, side, side) and logits.dtype == np.float32 and isinstance(score, float)
    clicked, _, _ = tracker.predict(image, key, box=np.array([10, 10, 50, 40], np.float32),
                                    points=np.array([[30, 20], [5, 50]], np.float32), labels=np.array([1, 0]),
                                    mask_logits=logits)
    assert vision.calls == 1  # the second click reused the cached embedding
    assert (clicked != mask).any()  # the clicks and the previous mask reached the decoder
    assert tracker.embedding(image, key).original_size == (60, 90)


def test_a_detector_only_sam3_folder_says_clicks_need_the_full_checkpoint(tiny_models, tmp_path) -> None:
    from transformers import Sam3Model

    from grounded_sam.errors import ModelLoadError
    from grounded_sam.models.sam3_tracker import Sam3TrackerRefiner

    detector_only = tmp_path / "sam3-detector"
    Sam3Model.from_pretrained(tiny_models["sam3_scripted"]).save_pretrained(detector_only)
    with pytest.raises(ModelLoadError, match="no SAM 3 tracker.*facebook/sam3"):
        Sam3TrackerRefiner.from_pretrained(detector_only, torch.device("cpu"))


def test_max_instances_keeps_each_prompts_best_instances(tmp_path) -> None:
    from grounded_sam.models.testing import build_random_sam3

    unscripted = build_random_sam3(tmp_path / "sam3", seed=3)  # random scores, all different
    image = np.random.default_rng(2).integers(0, 255, (60, 90, 3), dtype=np.uint8)
    categories = parse_categories("truck, tire")
    every = Sam3Segmenter.from_pretrained(unscripted, torch.device("cpu"), score_threshold=0.0)
    capped = Sam3Segmenter(every.model, every.processor, torch.device("cpu"), score_threshold=0.0, max_instances=3)
    all_found, best = every.segment_text(image, categories), capped.segment_text(image, categories)
    assert best.class_id.tolist() == [0, 0, 0, 1, 1, 1]
    for class_id in (0, 1):
        scores = np.sort(all_found.confidence[all_found.class_id == class_id])[::-1]
        assert len(scores) == every.model.config.detr_decoder_config.num_queries and scores[2] > scores[3]
        np.testing.assert_allclose(np.sort(best.confidence[best.class_id == class_id])[::-1], scores[:3], atol=1e-6)
    with pytest.raises(ValueError, match="max_instances"):
        Sam3Segmenter(every.model, every.processor, torch.device("cpu"), max_instances=0)
