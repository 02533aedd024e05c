"""SAM2 segmenter: output shapes normalised, one image encode per image, strict checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import supervision as sv
import torch

from grounded_sam.errors import ModelLoadError
from grounded_sam.models.sam2.segmenter import Sam2Segmenter, load_sam2_model, normalize_sam2_output
from tests.factories import make_detections

H, W = 6, 8


def _masks(*shape: int) -> np.ndarray:
    return np.random.default_rng(0).random(shape) > 0.5


@pytest.mark.parametrize(
    ("masks", "scores", "num_boxes", "best"),
    [
        (_masks(1, H, W), np.array([0.7]), 1, [0]),  # one box, one mask: SAM2 drops the box axis
        (_masks(3, 1, H, W), np.array([[0.1], [0.9], [0.5]]), 3, [0, 0, 0]),  # many boxes
        (_masks(3, H, W), np.array([0.2, 0.8, 0.5]), 1, [1]),  # one box, multimask: best kept
        (_masks(2, 3, H, W), np.array([[0.2, 0.1, 0.9], [0.6, 0.3, 0.1]]), 2, [2, 0]),
    ],
)
def test_normalize_gives_n_masks_and_n_scores(masks, scores, num_boxes, best):
    out_masks, out_scores = normalize_sam2_output(masks, scores, num_boxes)
    assert out_masks.shape == (num_boxes, H, W) and out_masks.dtype == bool
    assert out_scores.shape == (num_boxes,) and out_scores.dtype == np.float32
    full_masks = masks if masks.ndim == 4 else masks[None]
    full_scores = scores if scores.ndim == 2 else scores[None]
    for i, k in enumerate(best):
        np.testing.assert_array_equal(out_masks[i], full_masks[i, k])
        assert out_scores[i] == pytest.approx(full_scores[i, k])


def test_normalize_thresholds_float_masks_at_zero():
    masks = np.array([[[-1.0, 0.0, 0.5]]])
    out, _ = normalize_sam2_output(masks, np.array([0.5]), 1)
    assert out.tolist() == [[[False, False, True]]]


@pytest.mark.parametrize(
    ("masks", "scores", "num_boxes"),
    [(_masks(2, 1, H, W), np.array([[0.5], [0.5]]), 3), (_masks(2, 1, H, W), np.array([0.5, 0.5, 0.5]), 2)],
)
def test_normalize_rejects_mismatched_shapes(masks, scores, num_boxes):
    with pytest.raises(ValueError, match="Expected SAM2 masks"):
        normalize_sam2_output(masks, scores, num_boxes)


@pytest.fixture(scope="module")
def segmenter(tiny_models) -> Sam2Segmenter:
    return Sam2Segmenter.from_checkpoint(tiny_models["sam2"], tiny_models["sam2"].with_suffix(".yaml"), torch.device("cpu"))


def _boxes(n: int, width: int, height: int) -> sv.Detections:
    rng = np.random.default_rng(n)
    x1 = rng.uniform(0, width / 2, n)
    y1 = rng.uniform(0, height / 2, n)
    xyxy = np.stack([x1, y1, x1 + rng.uniform(10, width / 2, n), y1 + rng.uniform(10, height / 2, n)], axis=1)
    return make_detections(xyxy, class_id=np.arange(n) % 2, class_name=(["a", "b"] * n)[:n])


@pytest.mark.parametrize(("num_boxes", "chunk"), [(0, 4), (1, 4), (5, 2), (7, 64)])
def test_image_encoder_runs_once_per_image_whatever_the_boxes(segmenter, count_calls, num_boxes, chunk):
    encoder = count_calls(segmenter.model.image_encoder)
    image = np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    result = segmenter.segment(image, _boxes(num_boxes, 320, 240), box_chunk_size=chunk)
    assert encoder.calls == (1 if num_boxes else 0)
    assert result.mask.shape == (num_boxes, 240, 320) and result.mask.dtype == bool
    assert result.confidence.shape == (num_boxes,) and result.confidence.dtype == np.float32
    assert result.class_id.tolist() == (np.arange(num_boxes) % 2).tolist()
    assert len(result.data["class_name"]) == num_boxes


def test_chunk_size_does_not_change_the_masks(segmenter):
    image = np.random.default_rng(3).integers(0, 255, (200, 300, 3), dtype=np.uint8)
    boxes = _boxes(6, 300, 200)
    one_by_one = segmenter.segment(image, boxes, box_chunk_size=1)
    all_at_once = segmenter.segment(image, boxes, box_chunk_size=6)
    agreement = (one_by_one.mask == all_at_once.mask).mean()
    assert agreement > 0.999
    np.testing.assert_allclose(one_by_one.confidence, all_at_once.confidence, atol=1e-4)


class _PublicOnly:
    """SAM2's predictor without its internals, as a later sam2 might have it."""

    def __init__(self, predictor) -> None:
        self.set_image, self.predict, self.reset_predictor = predictor.set_image, predictor.predict, predictor.reset_predictor


def test_masks_equal_those_of_sam2s_public_predict(segmenter, monkeypatch):
    """The bool fast path (SAM2's ``_predict``) gives exactly what ``predict`` gives, and ``predict`` is the fallback."""
    image = np.random.default_rng(5).integers(0, 255, (200, 300, 3), dtype=np.uint8)
    boxes = _boxes(5, 300, 200)
    fast = segmenter.segment(image, boxes, box_chunk_size=2)

    segmenter.predictor.set_image(image)
    public_masks, public_scores, _ = segmenter.predictor.predict(box=boxes.xyxy.astype(np.float32), multimask_output=False)
    segmenter.predictor.reset_predictor()
    public_masks, public_scores = normalize_sam2_output(public_masks, public_scores, 5)
    np.testing.assert_array_equal(fast.mask, public_masks)
    np.testing.assert_allclose(fast.confidence, public_scores, atol=1e-5)  # chunks of 2 against one call of 5
    assert fast.mask.dtype == bool and fast.mask.any()

    monkeypatch.setattr(segmenter, "predictor", _PublicOnly(segmenter.predictor))
    fallback = segmenter.segment(image, boxes, box_chunk_size=2)
    np.testing.assert_array_equal(fallback.mask, fast.mask)
    np.testing.assert_array_equal(fallback.confidence, fast.confidence)


def _tiny_state(tiny_models) -> dict:
    return torch.load(tiny_models["sam2"], map_location="cpu", weights_only=True)


def test_checkpoint_missing_a_key_is_a_load_error(tiny_models, tmp_path):
    state = _tiny_state(tiny_models)
    state["model"].pop(next(iter(state["model"])))
    broken = tmp_path / "broken.pt"
    torch.save(state, broken)
    with pytest.raises(ModelLoadError, match="does not match"):
        load_sam2_model(broken, tiny_models["sam2"].with_suffix(".yaml"), torch.device("cpu"))


def test_checkpoint_without_model_key_is_a_load_error(tiny_models, tmp_path):
    bare = tmp_path / "bare.pt"
    torch.save(_tiny_state(tiny_models)["model"], bare)
    with pytest.raises(ModelLoadError, match=r"\{'model': state_dict\}"):
        load_sam2_model(bare, tiny_models["sam2"].with_suffix(".yaml"), torch.device("cpu"))


def test_checkpoint_for_another_config_is_a_load_error(tiny_models):
    from grounded_sam.models.weights import sam2_package_config

    with pytest.raises(ModelLoadError, match="does not match"):
        load_sam2_model(tiny_models["sam2"], sam2_package_config("configs/sam2.1/sam2.1_hiera_t.yaml"), torch.device("cpu"))


def test_unreadable_checkpoint_is_a_load_error(tiny_models, tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelLoadError, match="Could not read"):
        load_sam2_model(junk, tiny_models["sam2"].with_suffix(".yaml"), torch.device("cpu"))
