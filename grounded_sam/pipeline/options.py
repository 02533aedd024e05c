"""The settings of a labeling run: the options (:class:`PipelineOptions`), the models and device with them
(:class:`PipelineSettings`, what manifests, the app and caches record), and the time each stage took
(:class:`StageTimes`)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grounded_sam.errors import OptionError
from grounded_sam.pipeline.postprocess import NMS_MODES, NmsMode


@dataclass(frozen=True)
class PipelineOptions:
    """Settings of one labeling run.

    Attributes:
        min_score: Drop masks whose SAM2 predicted IoU is below this (0 keeps all), and, with a detector
            that scores its boxes (Grounding DINO, OWLv2), boxes whose detector score is below this too.
        nms: ``"class"`` (default) suppresses overlapping detections of one class, ``"all"``
            across classes, ``"none"`` keeps every detection.
        nms_iou: Overlap (mask IoU) above which the lower-scoring detection is dropped.
        num_beams: Florence-2 beams; 1 is greedy decoding (fastest). Other detectors ignore it.
        max_new_tokens: Florence-2 generation budget per category. Other detectors ignore it.
        box_chunk_size: Boxes per SAM2 decoder call; ``None`` picks one for the device.
        min_box_side: Boxes thinner than this many pixels after clipping are dropped.
        precision: ``"auto"`` (bf16 autocast where the device runs it natively and faster: CUDA GPUs with
            bf16, CPUs with AMX or AVX-512 BF16; see :func:`~grounded_sam.models.devices.auto_precision`),
            ``"fp32"`` or ``"bf16"``. Outputs keep their types whatever it is (masks bool, scores float32).
    """

    min_score: float = 0.0
    nms: NmsMode = "class"
    nms_iou: float = 0.7
    num_beams: int = 1
    max_new_tokens: int = 512
    box_chunk_size: int | None = None
    min_box_side: float = 1.0
    precision: str = "auto"

    def __post_init__(self) -> None:
        from grounded_sam.models.devices import check_precision

        # Recorded as given in manifests and caches: normalise so "BF16" and "bf16" are one setting.
        object.__setattr__(self, "precision", check_precision(self.precision))
        if not 0.0 <= self.min_score <= 1.0:
            raise OptionError(f"min_score must be within [0, 1], but got {self.min_score}")
        if self.nms not in NMS_MODES:
            raise OptionError(f"nms must be one of {', '.join(NMS_MODES)}, but got {self.nms!r}")
        if not 0.0 < self.nms_iou <= 1.0:
            raise OptionError(f"nms_iou must be within (0, 1], but got {self.nms_iou}")
        if self.num_beams < 1 or self.max_new_tokens < 1:
            raise OptionError(f"num_beams and max_new_tokens must be >= 1, but got {self.num_beams}, {self.max_new_tokens}")
        if self.box_chunk_size is not None and self.box_chunk_size < 1:
            raise OptionError(f"box_chunk_size must be >= 1 or None, but got {self.box_chunk_size}")

    def as_dict(self) -> dict[str, Any]:
        """The settings as plain values (for manifests and JSON outputs)."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass
class StageTimes:
    """Seconds spent in each stage of the last call."""

    load_image: float = 0.0
    detect: float = 0.0
    segment: float = 0.0
    postprocess: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, float]:
        return {"load_image": self.load_image, "detect": self.detect, "segment": self.segment,
                "postprocess": self.postprocess, **self.extra}


@dataclass(frozen=True)
class PipelineSettings:
    """Everything that decides a pipeline's result: its models, its device and its options.

    Attributes:
        detector: Registry name or local path of the detector, as given.
        segmenter: Registry name or local path of the segmenter, as given.
        device: The device asked for (``"auto"``, ``"cpu"``, ``"cuda:0"``...).
        options: The :class:`PipelineOptions`.
    """

    detector: str
    segmenter: str
    device: str
    options: PipelineOptions

    def as_dict(self, *, device: bool = False, short_model_names: bool = False) -> dict[str, Any]:
        """The settings as plain values: ``detector``, ``segmenter`` (and ``device``), then every option.

        Args:
            device: Include the device. Run manifests leave it out (a run may resume on another
                device); caches keep it.
            short_model_names: A local path becomes its last part, so records shown to users (the
                app's JSON) do not reveal server folders.
        """
        names = {"detector": self.detector, "segmenter": self.segmenter}
        if short_model_names:
            names = {key: _short_name(value) for key, value in names.items()}
        return {**names, **({"device": self.device} if device else {}), **self.options.as_dict()}


def _short_name(value: str) -> str:
    return Path(value).name if os.sep in value or "/" in value else value
