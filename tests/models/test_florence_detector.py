"""Florence-2 detector: one vision pass per image, batched decoding faithful to the plain path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from grounded_sam.categories import parse_categories
from grounded_sam.errors import ModelLoadError
from grounded_sam.models.florence.detector import FlorenceDetector
from tests.fakes import forced_output


@pytest.fixture(scope="module")
def detector(tiny_models) -> FlorenceDetector:
    return FlorenceDetector.from_pretrained(tiny_models["florence"], torch.device("cpu"))


@pytest.mark.parametrize("num_categories", [1, 3, 10])
def test_vision_tower_runs_once_whatever_the_number_of_categories(detector, count_calls, num_categories):
    vision = count_calls(detector.model.model.vision_tower)
    categories = parse_categories([f"thing {i}" for i in range(num_categories)])
    image = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    detector.detect(image, categories)
    assert vision.calls == 1


def test_vision_tower_runs_once_across_several_prompt_batches(tiny_models, count_calls):
    detector = FlorenceDetector.from_pretrained(tiny_models["florence"], torch.device("cpu"), prompt_batch_size=2)
    vision = count_calls(detector.model.model.vision_tower)
    texts = detector.generate_texts(detector.encode_image(np.zeros((50, 50, 3), np.uint8)), ["a", "b", "c", "d", "e"])
    assert len(texts) == 5
    assert vision.calls == 1


@pytest.mark.parametrize("num_beams", [1, 3])
def test_shared_features_decode_like_the_plain_processor_path(detector, num_beams):
    """Scattering one image's features into a batch of prompts must equal the usual per-prompt call."""
    image = np.random.default_rng(1).integers(0, 255, (90, 130, 3), dtype=np.uint8)
    prompts = ["truck", "big tire", "a person wearing a yellow hard hat"]
    options = {"min_new_tokens": 12, "max_new_tokens": 12, "num_beams": num_beams}
    ours = detector.generate_texts(detector.encode_image(image), prompts, **options)

    processor, model = detector.processor, detector.model
    inputs = processor(
        text=[f"<CAPTION_TO_PHRASE_GROUNDING>{p}" for p in prompts], images=[image] * len(prompts),
        return_tensors="pt", padding=True,
    )
    with torch.inference_mode():
        reference = model.generate(**inputs, do_sample=False, **options)
    expected = processor.tokenizer.batch_decode(reference, skip_special_tokens=False)
    assert ours == expected


def test_forced_generation_gives_known_pixel_boxes(detector):
    image = np.zeros((200, 400, 3), np.uint8)
    categories = parse_categories("truck, tire")
    texts = [
        "truck<loc_100><loc_200><loc_300><loc_400>",
        "tire<loc_0><loc_0><loc_999><loc_999>tire<loc_500><loc_500><loc_600><loc_600>",
    ]
    detections = detector.detect(image, categories, prefix_allowed_tokens_fn=forced_output(detector.processor.tokenizer, texts))
    np.testing.assert_allclose(
        detections.xyxy,
        [[40.2, 40.1, 120.2, 80.1], [0.2, 0.1, 399.8, 199.9], [200.2, 100.1, 240.2, 120.1]],
        atol=1e-3,
    )
    assert detections.class_id.tolist() == [0, 1, 1]
    assert detections.data["class_name"].tolist() == ["truck", "tire", "tire"]
    assert detections.confidence is None


def test_no_boxes_gives_empty_detections_with_class_names(detector):
    categories = parse_categories("truck")
    allowed = forced_output(detector.processor.tokenizer, ["nothing here"])
    detections = detector.detect(np.zeros((32, 32, 3), np.uint8), categories, prefix_allowed_tokens_fn=allowed)
    assert len(detections) == 0
    assert "class_name" in detections.data


def test_prompts_use_the_task_template(detector):
    assert detector.build_prompt("truck") == "Locate the phrases in the caption: truck"


def test_scripted_model_emits_its_boxes_for_every_prompt(tiny_models):
    from grounded_sam.models.testing import SCRIPTED_BINS

    detector = FlorenceDetector.from_pretrained(tiny_models["florence_scripted"], torch.device("cpu"))
    detections = detector.detect(np.zeros((1000, 1000, 3), np.uint8), parse_categories("a, b, c"), num_beams=3)
    assert detections.class_id.tolist() == [0, 0, 1, 1, 2, 2]
    expected = np.array(SCRIPTED_BINS * 3, dtype=np.float32) + 0.5
    np.testing.assert_allclose(detections.xyxy, expected, atol=1e-3)


def test_missing_weight_is_a_load_error(tiny_models, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    broken = tmp_path / "broken"
    shutil.copytree(tiny_models["florence"], broken)
    weights = load_file(broken / "model.safetensors")
    dropped = next(k for k in weights if "vision_tower" in k)
    del weights[dropped]
    save_file(weights, broken / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ModelLoadError, match="do not match"):
        FlorenceDetector.from_pretrained(broken, torch.device("cpu"))


def test_folder_without_processor_is_a_load_error(tiny_models, tmp_path):
    import shutil

    partial = tmp_path / "partial"
    partial.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(tiny_models["florence"] / name, partial / name)
    with pytest.raises(ModelLoadError):
        FlorenceDetector.from_pretrained(partial, torch.device("cpu"))
