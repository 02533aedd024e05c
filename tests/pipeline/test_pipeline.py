"""The whole pipeline: known boxes in, real SAM2 masks out, every image encoded once per model."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from grounded_sam.errors import CategoryError, ImageLoadError
from grounded_sam.models.testing import SCRIPTED_BINS
from grounded_sam.pipeline import GroundedSAM2
from tests.fakes import forced_output


@pytest.fixture(scope="module")
def pipe(tiny_models) -> GroundedSAM2:
    return GroundedSAM2(tiny_models["florence"], tiny_models["sam2"], device="cpu", nms="none")


def _boxes_text(*boxes: tuple[int, int, int, int], phrase: str = "thing") -> str:
    return phrase + "".join(f"<loc_{v}>" for box in boxes for v in box)


def _force(pipe: GroundedSAM2, texts: list[str]):
    return forced_output(pipe.detector.processor.tokenizer, texts)


@pytest.mark.parametrize(("num_categories", "boxes_per_category"), [(1, 1), (5, 2), (10, 2)])
def test_each_model_encodes_the_image_once(pipe, truck_rgb, count_calls, num_categories, boxes_per_category):
    """The core speed promise: one Florence-2 vision pass and one SAM2 image encode per image."""
    vision = count_calls(pipe.detector.model.model.vision_tower)
    sam_encoder = count_calls(pipe.segmenter.model.image_encoder)
    rng = np.random.default_rng(num_categories)
    texts = []
    for _ in range(num_categories):
        boxes = []
        for _ in range(boxes_per_category):
            x1, y1 = rng.integers(0, 500, 2)
            boxes.append((x1, y1, x1 + rng.integers(50, 400), y1 + rng.integers(50, 400)))
        texts.append(_boxes_text(*boxes))
    categories = [f"category {i}" for i in range(num_categories)]
    detections = pipe(truck_rgb, categories, prefix_allowed_tokens_fn=_force(pipe, texts), box_chunk_size=2)
    assert len(detections) == num_categories * boxes_per_category
    assert vision.calls == 1
    assert sam_encoder.calls == 1


def test_result_is_one_well_formed_detections(scripted_pipe, truck_rgb):
    detections = scripted_pipe(truck_rgb, "truck, tire")
    height, width = truck_rgb.shape[:2]
    assert len(detections) == 4
    assert detections.xyxy.dtype == np.float32 and detections.xyxy.shape == (4, 4)
    assert detections.mask.shape == (4, height, width) and detections.mask.dtype == bool
    assert detections.class_id.tolist() == [0, 0, 1, 1]
    assert detections.data["class_name"].tolist() == ["truck", "truck", "tire", "tire"]
    assert detections.confidence.dtype == np.float32 and ((0 <= detections.confidence) & (detections.confidence <= 1)).all()
    assert detections.metadata["class_names"] == ["truck", "tire"]
    assert detections.metadata["image_size"] == (width, height)
    expected = np.array(SCRIPTED_BINS, dtype=np.float64) + 0.5
    expected *= np.array([width, height, width, height]) / 1000
    np.testing.assert_allclose(detections.xyxy[:2], expected, atol=1e-3)
    assert set(detections.metadata["timings_s"]) >= {"load_image", "detect", "segment", "postprocess"}


def test_class_ids_follow_the_category_order_across_runs(scripted_pipe, truck_rgb):
    first = scripted_pipe(truck_rgb, "tire, truck")
    second = scripted_pipe(truck_rgb, "tire, truck")
    assert first.data["class_name"].tolist() == ["tire", "tire", "truck", "truck"]
    assert first.class_id.tolist() == second.class_id.tolist() == [0, 0, 1, 1]


def test_no_boxes_skips_sam2_and_returns_empty(pipe, truck_rgb, count_calls):
    sam_encoder = count_calls(pipe.segmenter.model.image_encoder)
    detections = pipe(truck_rgb, "truck, tire", prefix_allowed_tokens_fn=_force(pipe, ["none", "none"]))
    assert len(detections) == 0
    assert detections.mask.shape == (0, *truck_rgb.shape[:2])
    assert detections.confidence.shape == (0,) and detections.class_id.shape == (0,)
    assert sam_encoder.calls == 0
    assert detections.metadata["class_names"] == ["truck", "tire"]


def test_inverted_boxes_are_sorted_and_degenerate_ones_dropped(pipe, truck_rgb):
    texts = [_boxes_text((600, 700, 100, 200), (300, 300, 300, 800), (400, 500, 900, 500), (10, 10, 20, 20))]
    detections = pipe(truck_rgb, "truck", prefix_allowed_tokens_fn=_force(pipe, texts))
    height, width = truck_rgb.shape[:2]
    # The inverted box comes back with sorted corners; zero-width and zero-height boxes are gone.
    assert len(detections) == 2
    x1, y1, x2, y2 = detections.xyxy[0]
    assert x1 < x2 and y1 < y2
    assert (x1, y1) == pytest.approx((100.5 * width / 1000, 200.5 * height / 1000))


def test_several_prompts_feed_one_class(pipe, truck_rgb):
    texts = [_boxes_text((100, 100, 400, 400)), _boxes_text((500, 500, 900, 900)), _boxes_text((100, 100, 400, 400))]
    detections = pipe(truck_rgb, "yellow hard hat: helmet, person, hard hat: helmet",
                      prefix_allowed_tokens_fn=_force(pipe, texts))
    assert detections.metadata["class_names"] == ["helmet", "person"]
    # The third prompt repeats the first's box for the same class: decoded once, kept once.
    assert detections.class_id.tolist() == [0, 1]
    assert detections.data["class_name"].tolist() == ["helmet", "person"]


def test_min_score_and_nms_options(scripted_pipe, truck_rgb):
    everything = scripted_pipe(truck_rgb, "truck")
    assert len(scripted_pipe(truck_rgb, "truck", min_score=1.0)) == 0
    threshold = float(np.sort(everything.confidence)[-1])
    assert len(scripted_pipe(truck_rgb, "truck", min_score=threshold)) >= 1
    same_boxes_two_classes = scripted_pipe(truck_rgb, "truck, lorry", nms="all", nms_iou=0.01)
    assert len(same_boxes_two_classes) < len(scripted_pipe(truck_rgb, "truck, lorry", nms="class", nms_iou=0.99))


def test_empty_categories_are_an_error_before_any_model_runs(pipe, truck_rgb):
    with pytest.raises(CategoryError):
        pipe(truck_rgb, " , ")


def test_bad_image_is_an_image_error(pipe, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff garbage")
    with pytest.raises(ImageLoadError, match="bad.jpg"):
        pipe(bad, "truck")


def test_exif_rotated_photo_gives_upright_boxes_and_masks(scripted_pipe, photos, tmp_path):
    """A photo stored sideways with an EXIF orientation tag is labeled as it is seen, upright."""
    upright = Image.open(photos / "truck.jpg").convert("RGB")
    upright_path = tmp_path / "upright.png"
    upright.save(upright_path)
    # Orientation 6 means "rotate 90 degrees clockwise to display": store the pixels turned the other way.
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    rotated_path = tmp_path / "rotated.png"
    stored.save(rotated_path, exif=exif)
    assert stored.size == (upright.height, upright.width)

    reference = scripted_pipe(upright_path, "truck")
    rotated = scripted_pipe(rotated_path, "truck")
    assert rotated.metadata["image_size"] == upright.size
    assert rotated.mask.shape[1:] == (upright.height, upright.width)
    np.testing.assert_allclose(rotated.xyxy, reference.xyxy)
    np.testing.assert_array_equal(rotated.mask, reference.mask)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "CMYK", "I;16"])
def test_any_image_mode_goes_through(scripted_pipe, mode, tmp_path):
    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8))
    image = rgb.convert(mode) if mode != "I;16" else rgb.convert("L").convert("I;16")
    path = tmp_path / f"image.{'tif' if mode in ('CMYK', 'I;16') else 'png'}"
    image.save(path)
    detections = scripted_pipe(path, "thing")
    assert detections.mask.shape[1:] == (60, 80)


@pytest.mark.parametrize(
    ("options", "message"),
    [({"min_score": 1.5}, "min_score"), ({"nms": "sometimes"}, "nms must be one of"), ({"nms_iou": 0}, "nms_iou"),
     ({"num_beams": 0}, "num_beams"), ({"box_chunk_size": 0}, "box_chunk_size"), ({"colour": "red"}, "Unknown option")],
)
def test_bad_options_are_option_errors(pipe, truck_rgb, options, message):
    from grounded_sam.errors import GroundedSamError, OptionError

    with pytest.raises(OptionError, match=message) as info:
        pipe(truck_rgb, "truck", **options)
    assert isinstance(info.value, GroundedSamError)


def test_bf16_keeps_output_types_and_stays_close_to_fp32(tiny_models, truck_rgb):
    # The scripted detector emits the same boxes at any precision; SAM2's masks and scores move a little.
    fp32 = GroundedSAM2(tiny_models["florence_scripted"], tiny_models["sam2"], device="cpu", nms="none", precision="fp32")
    bf16 = GroundedSAM2(tiny_models["florence_scripted"], tiny_models["sam2"], device="cpu", nms="none", precision="bf16")
    a, b = fp32(truck_rgb, "truck, tire"), bf16(truck_rgb, "truck, tire")
    assert b.mask.dtype == bool and b.confidence.dtype == np.float32 and b.xyxy.dtype == np.float32
    assert b.class_id.tolist() == a.class_id.tolist()
    assert np.array_equal(a.xyxy, b.xyxy) or len(a) == len(b)
    assert (a.mask == b.mask).mean() > 0.98
    np.testing.assert_allclose(a.confidence, b.confidence, atol=0.05)
    assert (fp32.settings().as_dict()["precision"], bf16.settings().as_dict()["precision"]) == ("fp32", "bf16")


def test_precision_is_the_calls_own_and_bad_ones_are_option_errors(pipe, truck_rgb):
    from grounded_sam.errors import OptionError
    from grounded_sam.models.devices import current_precision
    from grounded_sam.pipeline.options import PipelineOptions

    assert PipelineOptions(precision="BF16").precision == "bf16"
    assert GroundedSAM2(device="cpu").settings().as_dict()["precision"] == "auto"
    with pytest.raises(OptionError, match="precision must be one of auto, fp32, bf16"):
        GroundedSAM2(device="cpu", precision="fp16")
    with pytest.raises(OptionError, match="precision"):
        pipe(truck_rgb, "truck", precision="int8")
    assert current_precision() == "auto"  # nothing leaks out of a call
