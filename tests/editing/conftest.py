"""Fixtures of the editing tests: the scripted pipeline, a click refiner on its SAM2, and its truck result."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from grounded_sam.models.sam2.refiner import Sam2Refiner


@pytest.fixture(scope="module")
def pipe(scripted_pipe: Any) -> Any:
    return scripted_pipe


@pytest.fixture(scope="module")
def refiner(pipe: Any) -> Sam2Refiner:
    return Sam2Refiner(pipe.segmenter)


@pytest.fixture(scope="module")
def truck_result(pipe: Any, refiner: Sam2Refiner, truck_rgb: np.ndarray) -> Any:
    """The automatic result on the truck photo (after the refiner is attached, so its embedding is cached)."""
    return pipe(truck_rgb, "truck, tire")
