"""Grounded SAM 2: category prompts -> Florence-2 boxes -> SAM2 masks -> datasets.

Importing the package builds no model and touches no GPU; heavy modules load on first use.

>>> from grounded_sam import GroundedSAM2
>>> pipe = GroundedSAM2(detector="florence-2-base", segmenter="sam2.1-hiera-base-plus", device="auto")
>>> detections = pipe("truck.jpg", ["truck", "tire"])  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from grounded_sam.categories import Categories, Prompt, parse_categories
from grounded_sam.errors import (
    CategoryError,
    DeviceError,
    GroundedSamError,
    ImageLoadError,
    ModelLoadError,
    ModelNotFoundError,
    UnknownModelError,
)
from grounded_sam.models.registry import DEFAULT_DETECTOR, DEFAULT_SEGMENTER, list_models

if TYPE_CHECKING:
    from grounded_sam.inputs.images import load_image
    from grounded_sam.pipeline import GroundedSAM2, PipelineOptions, label_image

__version__ = "0.1.0"

_LAZY = {
    "GroundedSAM2": "grounded_sam.pipeline",
    "PipelineOptions": "grounded_sam.pipeline",
    "label_image": "grounded_sam.pipeline",
    "load_image": "grounded_sam.inputs.images",
}

__all__ = [
    "Categories", "CategoryError", "DEFAULT_DETECTOR", "DEFAULT_SEGMENTER", "DeviceError", "GroundedSAM2",
    "GroundedSamError", "ImageLoadError", "ModelLoadError", "ModelNotFoundError", "PipelineOptions", "Prompt",
    "UnknownModelError", "label_image", "list_models", "load_image", "parse_categories",
]


def __getattr__(name: str) -> Any:
    # Keeps `import grounded_sam` light: supervision and numpy-heavy modules load on first use.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'grounded_sam' has no attribute {name!r}")
