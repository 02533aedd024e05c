"""Checks with the real published weights: skipped where they are not on disk (as in CI)."""

from __future__ import annotations

import pytest

from grounded_sam.errors import ModelNotFoundError
from grounded_sam.models.weights import resolve_detector, resolve_segmenter

pytestmark = pytest.mark.real_weights


def _require(resolve, name: str) -> None:
    try:
        resolve(name, allow_download=False)
    except ModelNotFoundError:
        pytest.skip(f"real weights for {name} are not in models/ or the Hugging Face cache "
                    f"(python -m grounded_sam download {name})")


def test_real_models_find_the_truck(photos):
    _require(resolve_detector, "florence-2-base")
    _require(resolve_segmenter, "sam2.1-hiera-tiny")
    from grounded_sam.pipeline import GroundedSAM2

    detections = GroundedSAM2("florence-2-base", "sam2.1-hiera-tiny")(photos / "truck.jpg", "truck, tire")
    names = detections.data["class_name"].tolist()
    assert "truck" in names
    truck = detections[detections.data["class_name"] == "truck"]
    # The truck fills much of the photo; its mask should too.
    assert truck.mask.sum(axis=(1, 2)).max() > 0.1 * truck.mask.shape[1] * truck.mask.shape[2]
