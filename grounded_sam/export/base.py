"""The contract between a labeling run and the files it writes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

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
        source_path: The file it was read from, when there is one; dataset formats copy its bytes
            instead of re-encoding the pixels when it needs no rotation.
    """

    source: str
    stem: str
    image: np.ndarray
    detections: sv.Detections
    class_names: tuple[str, ...]
    settings: dict[str, Any] = field(default_factory=dict)
    source_path: Path | None = None


@dataclass(frozen=True)
class ImageRecord:
    """One image of a run as the manifest keeps it, and as dataset-level writers read it at the end.

    Paths in ``labels``, ``image_file`` and ``outputs`` are relative to the output folder, with ``/``.

    Attributes:
        source: The input file (absolute path).
        stem: Its output name.
        status: ``"ok"`` or ``"failed"``.
        sha256: Hex digest of the input file's bytes (None if it could not be read).
        error: Why it failed.
        width: Upright width in pixels.
        height: Upright height in pixels.
        detections: Number of objects found.
        labels: The per-image JSON record (``labels/<stem>.json``): the source of truth.
        image_file: The image copy the datasets point to (``images/<stem>.<ext>``), if any.
        outputs: Every file written for this image.
        seconds: Time it took.
        frame: The frame's index in its clip, for a tracked video's frames (None for images, and
            then left out of :meth:`to_dict`, so image manifests are as they always were).
    """

    source: str
    stem: str
    status: Literal["ok", "failed"] = "ok"
    sha256: str | None = None
    error: str | None = None
    width: int | None = None
    height: int | None = None
    detections: int = 0
    labels: str | None = None
    image_file: str | None = None
    outputs: tuple[str, ...] = ()
    seconds: float = 0.0
    frame: int | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        data = {**asdict(self), "outputs": list(self.outputs)}
        if data["frame"] is None:
            del data["frame"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ImageRecord:
        """Reads :meth:`to_dict`'s output; unknown keys (from newer versions) are ignored."""
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        known["outputs"] = tuple(known.get("outputs") or ())
        if known.get("status") not in ("ok", "failed"):
            raise ValueError(f"status must be 'ok' or 'failed', but got {known.get('status')!r}")
        return cls(**known)


class OutputWriter(Protocol):
    """Writes one kind of output. Files must be written atomically (see :mod:`grounded_sam.export.files`).

    ``write`` is called once per labeled image, as soon as it is done; ``finalize`` once at the end
    of a run (and again when a run resumes) with the records of every image the output folder
    holds, sorted by stem, to assemble dataset-level files (COCO JSON, ``data.yaml``) one image at
    a time. Writers without dataset-level files return ``[]``.
    """

    name: str

    def write(self, item: LabeledImage) -> list[Path]:
        """Writes this image's outputs now and returns their paths."""
        ...

    def finalize(self, records: Sequence[ImageRecord]) -> list[Path]:
        """Writes dataset-level files after the last image; returns their paths."""
        ...
