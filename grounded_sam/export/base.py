"""The contract between a labeling run and the files it writes."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import supervision as sv


@dataclass(frozen=True)
class LabeledImage:
    """One finished image, as every writer receives it.

    Attributes:
        source: Where the image came from (a path, or a name for uploads).
        stem: Unique, sanitised output name for this image (no suffix).
        image: (H, W, 3) uint8 RGB, upright (EXIF applied).
        detections: The pipeline's result for it.
        class_names: Every class of the run, in class-id order.
        settings: The run's settings, recorded with the labels.
    """

    source: str
    stem: str
    image: np.ndarray
    detections: sv.Detections
    class_names: tuple[str, ...]
    settings: dict[str, Any] = field(default_factory=dict)


class OutputWriter(Protocol):
    """Writes one kind of output. Files must be written atomically (see :mod:`grounded_sam.export.files`)."""

    name: str

    def write(self, item: LabeledImage) -> list[Path]:
        """Writes this image's outputs now and returns their paths."""
        ...

    def finalize(self) -> list[Path]:
        """Writes dataset-level files after the last image; returns their paths."""
        ...
