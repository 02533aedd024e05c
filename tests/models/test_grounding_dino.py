"""Tests for grounded_sam.models.grounding_dino: query packing and output adapters with literal arrays, then
the tiny random Grounding DINO through the real loader."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from grounded_sam.categories import parse_categories
from grounded_sam.errors import ModelLoadError
from grounded_sam.models.grounding_dino import (
    GroundingDinoDetector,
    TextQuery,
    build_queries,
    grounding_dino_to_detections,
    prompt_scores,
)

CLS, SEP, DOT = 101, 102, 1012
NAMES = ("truck", "tire", "person")


def _logit(p: float) -> float:
    return float(np.log(p / (1 - p)))


@pytest.mark.parametrize(
    ("prompt_ids", "max_len", "expected"),
    [
        # all prompts fit: one query, spans after [CLS] and between the dots
        ([[7], [8, 9], [5]], 256, [((CLS, 7, DOT, 8, 9, DOT, 5, DOT, SEP), ((1, 2), (3, 5), (6, 7)), (0, 1, 2))]),
        # 8 tokens at most: the third prompt starts a second query
        ([[7], [8, 9], [5]], 8, [((CLS, 7, DOT, 8, 9, DOT, SEP), ((1, 2), (3, 5)), (0, 1)),
                                 ((CLS, 5, DOT, SEP), ((1, 2),), (2,))]),
        # a prompt longer than a query holds is cut to max_len - 3 tokens
        ([[1, 2, 3, 4, 5, 6]], 6, [((CLS, 1, 2, 3, DOT, SEP), ((1, 4),), (0,))]),
    ],
)
def test_build_queries_packs_prompts_and_records_their_spans(prompt_ids, max_len, expected) -> None:
    queries = build_queries(prompt_ids, range(len(prompt_ids)), cls_id=CLS, sep_id=SEP, dot_id=DOT, max_len=max_len)
    assert [(q.input_ids, q.spans, q.class_ids) for q in queries] == expected
    assert all(len(q.input_ids) <= max_len for q in queries)


def test_prompt_scores_take_the_best_token_of_each_prompt() -> None:
    logits = np.full((2, 8), -np.inf)
    logits[0, 1], logits[0, 3], logits[0, 4] = _logit(0.9), _logit(0.2), _logit(0.4)
    logits[1, 3] = _logit(0.7)
    scores = prompt_scores(logits, [(1, 2), (3, 5)])
    np.testing.assert_allclose(scores, [[0.9, 0.4], [0.0, 0.7]], atol=1e-6)


def test_adapter_maps_each_box_to_its_best_prompt_and_keeps_the_detector_score() -> None:
    query = TextQuery((CLS, 7, DOT, 8, DOT, 9, DOT, SEP), ((1, 2), (3, 4), (5, 6)), (0, 1, 0))
    logits = np.full((3, 256), -np.inf, dtype=np.float32)
    logits[0, [1, 3, 5]] = [_logit(0.3), _logit(0.8), _logit(0.1)]   # tire, 0.8
    logits[1, [1, 3, 5]] = [_logit(0.2), _logit(0.1), _logit(0.6)]   # third prompt feeds class 0: truck, 0.6
    logits[2, [1, 3, 5]] = [_logit(0.2), _logit(0.1), _logit(0.25)]  # under the threshold
    boxes = np.array([[0.5, 0.5, 0.2, 0.4], [0.25, 0.5, 0.5, 1.0], [0.5, 0.5, 1.0, 1.0]], dtype=np.float32)
    detections = grounding_dino_to_detections(logits, boxes, query, (200, 100), 0.35, ("truck", "tire"))
    np.testing.assert_allclose(detections.xyxy, [[80, 30, 120, 70], [0, 0, 100, 100]], atol=1e-4)
    assert detections.xyxy.dtype == np.float32
    assert detections.class_id.tolist() == [1, 0]
    assert detections.data["class_name"].tolist() == ["tire", "truck"]
    np.testing.assert_allclose(detections.data["detector_score"], [0.8, 0.6], atol=1e-6)
    assert detections.data["detector_score"].dtype == np.float32
    assert detections.confidence is None


def test_adapter_with_nothing_over_the_threshold_is_empty() -> None:
    query = TextQuery((CLS, 7, DOT, SEP), ((1, 2),), (0,))
    detections = grounding_dino_to_detections(np.full((2, 256), -5.0), np.full((2, 4), 0.5), query, (10, 10), 0.35, ("a",))
    assert len(detections) == 0 and detections.xyxy.shape == (0, 4)


# ------------------------------------------------------------------------------------ the tiny model


@pytest.fixture(scope="module")
def detector(tiny_models) -> GroundingDinoDetector:
    return GroundingDinoDetector.from_pretrained(tiny_models["grounding_dino"], torch.device("cpu"), box_threshold=0.0)


def test_tiny_model_gives_the_detect_contract_with_the_image_encoded_once(detector, count_calls) -> None:
    swin = count_calls(detector.model.model.backbone.conv_encoder)
    categories = parse_categories("truck, tire, person, yellow hard hat: helmet")
    detections = detector.detect(np.zeros((60, 90, 3), np.uint8), categories)
    assert swin.calls == 1
    assert len(detections) == detector.model.config.num_queries  # box_threshold 0 keeps every query's box
    assert detections.xyxy.dtype == np.float32 and detections.xyxy.shape == (len(detections), 4)
    assert set(detections.class_id.tolist()) <= {0, 1, 2, 3}
    assert detections.data["class_name"].tolist() == [categories.class_names[i] for i in detections.class_id]
    scores = detections.data["detector_score"]
    assert scores.dtype == np.float32 and ((scores >= 0) & (scores <= 1)).all()


def test_categories_over_the_text_limit_are_split_into_queries_run_as_one_batch(detector, count_calls, monkeypatch) -> None:
    monkeypatch.setattr(detector, "max_text_len", 6)  # room for two one-token prompts per query
    categories = parse_categories("truck, tire, person, dog, car")
    assert [q.class_ids for q in detector.build_queries(categories)] == [(0, 1), (2, 3), (4,)]
    forwards = count_calls(detector.model)
    swin = count_calls(detector.model.model.backbone.conv_encoder)
    detections = detector.detect(np.zeros((60, 90, 3), np.uint8), categories)
    assert forwards.calls == 1 and swin.calls == 1  # one batched forward, the image encoded once for the 3 queries
    assert len(detections) == 3 * detector.model.config.num_queries


def test_the_image_backbone_runs_once_however_the_queries_are_batched(detector, count_calls, monkeypatch, truck_rgb) -> None:
    monkeypatch.setattr(detector, "max_text_len", 6)
    image = np.ascontiguousarray(truck_rgb[::8, ::8])
    categories = parse_categories("truck, tire, person, dog, car")
    results = {}
    for batch_size in (1, 2, 4):
        monkeypatch.setattr(detector, "query_batch_size", batch_size)
        forwards = count_calls(detector.model)
        swin = count_calls(detector.model.model.backbone.conv_encoder)
        results[batch_size] = detector.detect(image, categories)
        assert forwards.calls == -(-3 // batch_size) and swin.calls == 1
    for batch_size in (2, 4):
        np.testing.assert_allclose(results[batch_size].xyxy, results[1].xyxy, atol=1e-3)
        np.testing.assert_allclose(results[batch_size].data["detector_score"], results[1].data["detector_score"],
                                   atol=1e-5)
        assert results[batch_size].class_id.tolist() == results[1].class_id.tolist()


def test_the_shared_backbone_gives_what_transformers_own_forward_gives(detector, truck_rgb) -> None:
    image = np.ascontiguousarray(truck_rgb[::8, ::8])
    query = detector.build_queries(parse_categories("truck, tire"))[0]
    pixels = detector.processor.image_processor(images=image, return_tensors="pt")
    input_ids = torch.tensor([query.input_ids] * 2)
    with torch.inference_mode():
        plain = detector.model(pixel_values=pixels["pixel_values"].expand(2, -1, -1, -1),
                               pixel_mask=pixels["pixel_mask"].expand(2, -1, -1), input_ids=input_ids)
        with detector.model.model.backbone.encoded(pixels["pixel_values"], pixels["pixel_mask"]):
            shared = detector.model(pixel_values=pixels["pixel_values"].expand(2, -1, -1, -1),
                                    pixel_mask=pixels["pixel_mask"].expand(2, -1, -1), input_ids=input_ids)
    torch.testing.assert_close(shared.logits, plain.logits, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(shared.pred_boxes, plain.pred_boxes, atol=1e-5, rtol=1e-4)


def test_min_score_raises_the_threshold(detector) -> None:
    image = np.zeros((60, 90, 3), np.uint8)
    categories = parse_categories("truck, tire")
    every = detector.detect(image, categories).data["detector_score"]
    median = float(np.median(every))
    kept = detector.detect(image, categories, min_score=median).data["detector_score"]
    assert len(kept) == int((every >= median).sum()) and (kept >= median).all()


def test_missing_weights_are_a_load_error(tiny_models, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    partial = tmp_path / "partial"
    shutil.copytree(tiny_models["grounding_dino"], partial)
    state = load_file(partial / "model.safetensors")
    dropped = next(k for k in state if "bbox_embed" in k)
    save_file({k: v for k, v in state.items() if k != dropped}, partial / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ModelLoadError, match="do not match its config.json"):
        GroundingDinoDetector.from_pretrained(partial, torch.device("cpu"))
    assert json.loads((partial / "config.json").read_text())["model_type"] == "grounding-dino"
