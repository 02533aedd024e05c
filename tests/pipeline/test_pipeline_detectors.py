"""The pipeline with the detectors that score their boxes (Grounding DINO, OWLv2) and the tiny SAM2: the
detector's score kept beside SAM2's, ``min_score`` on both, registry names, and the labels JSON."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from grounded_sam.errors import OptionError
from grounded_sam.export.labels_json import detections_to_record, record_to_detections
from grounded_sam.models.testing import SCRIPTED_OWLV2_LOGIT
from grounded_sam.pipeline import GroundedSAM2

SCRIPTED_SCORE = float(1 / (1 + np.exp(-SCRIPTED_OWLV2_LOGIT)))


@pytest.fixture(scope="module")
def owl_pipe(tiny_models) -> GroundedSAM2:
    return GroundedSAM2(tiny_models["owlv2_scripted"], tiny_models["sam2"], device="cpu", nms="none")


@pytest.fixture(scope="module")
def small_rgb(truck_rgb: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(truck_rgb[::8, ::8])  # 225 x 150: the tiny OWLv2's resize stays cheap


def test_owlv2_boxes_become_masks_with_both_scores(owl_pipe, small_rgb) -> None:
    detections = owl_pipe(small_rgb, "truck, tire")
    assert owl_pipe.detector.family == "owlv2" and len(detections) > 0
    np.testing.assert_allclose(detections.data["detector_score"], SCRIPTED_SCORE, atol=1e-6)
    assert detections.data["detector_score"].dtype == np.float32
    assert detections.confidence.dtype == np.float32  # SAM2's predicted IoU, not the detector's score
    assert not np.allclose(detections.confidence, SCRIPTED_SCORE)
    assert detections.class_id.tolist() == [0] * len(detections)
    assert detections.mask.shape == (len(detections), *small_rgb.shape[:2])


def test_min_score_drops_boxes_under_the_detector_score_before_sam2(owl_pipe, small_rgb, count_calls) -> None:
    decoder = count_calls(owl_pipe.segmenter.model.sam_mask_decoder)
    assert len(owl_pipe(small_rgb, "truck", min_score=SCRIPTED_SCORE + 0.01)) == 0
    assert decoder.calls == 0


def test_the_labels_record_gains_detector_score_only_from_scoring_detectors(owl_pipe, scripted_pipe, small_rgb) -> None:
    size = (small_rgb.shape[1], small_rgb.shape[0])
    scored = detections_to_record(owl_pipe(small_rgb, "truck"), size, ["truck"])
    first = scored["detections"][0]
    assert list(first)[:5] == ["class_id", "class_name", "score", "detector_score", "bbox_xyxy"]
    assert first["detector_score"] == round(SCRIPTED_SCORE, 5)
    np.testing.assert_allclose(record_to_detections(scored).data["detector_score"], round(SCRIPTED_SCORE, 5))
    florence = detections_to_record(scripted_pipe(small_rgb, "truck"), size, ["truck"])
    assert florence["detections"] and all("detector_score" not in item for item in florence["detections"])


def test_grounding_dino_by_registry_name_labels_a_photo(tiny_models, truck_rgb, tmp_path: Path) -> None:
    shutil.copytree(tiny_models["grounding_dino"], tmp_path / "grounding-dino-tiny")
    pipe = GroundedSAM2("grounding-dino-tiny", tiny_models["sam2"], device="cpu", models_dir=tmp_path)
    assert pipe.settings().detector == "grounding-dino-tiny"
    detections = pipe(truck_rgb, "truck, tire, person")
    assert pipe.detector.family == "grounding-dino"
    assert len(detections) > 0  # the seeded tiny model scores some boxes over its 0.35 threshold
    assert set(detections.class_id.tolist()) <= {0, 1, 2}
    assert (detections.data["detector_score"] >= 0.35).all()
    assert detections.data["class_name"].tolist() == [["truck", "tire", "person"][i] for i in detections.class_id]
    with pytest.raises(OptionError, match="constrains Florence-2 only"):
        pipe(truck_rgb, "truck", prefix_allowed_tokens_fn=lambda batch, ids: [0])


def test_sam3_is_a_one_model_pipeline_that_never_loads_the_segmenter(tiny_models, small_rgb, tmp_path: Path) -> None:
    from grounded_sam.models.testing import SCRIPTED_SAM3_SCORE

    pipe = GroundedSAM2(tiny_models["sam3_scripted"], tmp_path / "no-such-sam2.pt", device="cpu", nms="none")
    detections = pipe(small_rgb, "truck, tire")  # a missing segmenter is no error: SAM 3 makes the masks
    assert pipe.detector.family == "sam3" and len(detections) > 0
    assert detections.mask.shape[1:] == small_rgb.shape[:2]
    np.testing.assert_allclose(detections.confidence, SCRIPTED_SAM3_SCORE, atol=1e-5)
    assert set(detections.class_id.tolist()) <= {0, 1} and "detector_score" not in detections.data
    assert len(pipe(small_rgb, "truck", min_score=0.95)) == 0
