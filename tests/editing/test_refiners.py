"""Which model refines clicks (grounded_sam.editing.refiners): SAM2 after a detector + SAM2 run, SAM 3's tracker
after a SAM 3 run, each encoding the image once; editing works the same with either."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from grounded_sam.editing.editor import GROW, Editor
from grounded_sam.editing.refiners import refiner_for
from grounded_sam.editing.session import LabelSession
from grounded_sam.models.sam2.refiner import Sam2Refiner
from grounded_sam.models.sam3_tracker import Sam3TrackerRefiner
from grounded_sam.pipeline import GroundedSAM2


@pytest.fixture(scope="module")
def sam3_pipe(tiny_models, tmp_path_factory) -> GroundedSAM2:
    # No SAM2 weights at all: a SAM 3 result is refined by SAM 3's own tracker.
    missing = tmp_path_factory.mktemp("no-sam2") / "absent.pt"
    return GroundedSAM2(tiny_models["sam3_scripted"], missing, device="cpu", nms="none")


@pytest.fixture(scope="module")
def small_rgb(truck_rgb: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(truck_rgb[::8, ::8])


@pytest.fixture
def sam3_session(sam3_pipe, small_rgb) -> LabelSession:
    detections = sam3_pipe(small_rgb, "truck, tire")
    assert len(detections) > 0
    return LabelSession(refiner_for(sam3_pipe), small_rgb, detections, detections.metadata["class_names"])


def test_a_detector_with_sam2_refines_with_sam2(scripted_pipe) -> None:
    refiner = refiner_for(scripted_pipe)
    assert isinstance(refiner, Sam2Refiner) and refiner.segmenter is scripted_pipe.segmenter


def test_a_sam3_pipeline_refines_with_the_tracker_of_its_own_checkpoint(sam3_pipe) -> None:
    refiner = refiner_for(sam3_pipe)
    assert isinstance(refiner, Sam3TrackerRefiner)
    assert refiner.model.vision_encoder.backbone is sam3_pipe.detector.model.vision_encoder.backbone
    assert refiner_for(sam3_pipe) is refiner


def test_sam3_clicks_change_the_mask_and_encode_the_image_once(sam3_session, count_calls) -> None:
    refiner = sam3_session.refiner
    vision = count_calls(refiner.model.vision_encoder)
    decoder = count_calls(refiner.model.mask_decoder)
    before = sam3_session.objects[0].mask
    ys, xs = np.nonzero(~before)
    x, y = int(xs[len(xs) // 2]), int(ys[len(ys) // 2])
    first = sam3_session.refine(0, x, y, positive=True)
    assert first.mask[y, x] and first.edited and (first.mask != before).any()
    assert first.logits is not None and first.logits.ndim == 3
    ys, xs = np.nonzero(first.mask)
    second = sam3_session.refine(0, int(xs[0]), int(ys[0]), positive=False)
    assert not second.mask[int(ys[0]), int(xs[0])] and len(second.points) == 2
    assert vision.calls == 1  # two clicks (three decoder passes), one encoding
    assert decoder.calls == 3
    assert sam3_session.undo() and sam3_session.objects[0] is first


def test_the_editor_adds_an_object_with_the_sam3_tracker(sam3_session, tmp_path: Path) -> None:
    editor = Editor(sam3_session, tmp_path, "truck.jpg", "truck")
    count = len(sam3_session.objects)
    editor.select(0)
    assert "1 + / 0 − points" in editor.click(3, 3, GROW)
    assert editor.session.objects[0].mask[3, 3]
    index = sam3_session.add_object("wheel", box=(5, 5, 60, 40))
    assert index == count and sam3_session.objects[index].mask.any()
    assert sam3_session.to_detections().data["class_name"].tolist()[-1] == "wheel"
