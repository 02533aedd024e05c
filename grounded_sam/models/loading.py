"""Loading models once per (weights, device) and sharing them.

Loading a detector (Florence-2, Grounding DINO, OWLv2) or SAM2 takes seconds; every front-end (CLI, app, Python API) goes through
these functions so a model is built once per process for each (resolved weights, device).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from grounded_sam.models.devices import resolve_device
from grounded_sam.models.weights import detector_family_of, resolve_detector, resolve_segmenter

logger = logging.getLogger(__name__)

_cache: dict[tuple[str, str, str], Any] = {}
_lock = threading.Lock()


def load_detector(
    name_or_path: str | os.PathLike[str], device: str = "auto", *, models_dir: Path | None = None
) -> Any:
    """Returns the shared detector for these weights and device, of the weights' family.

    A :class:`~grounded_sam.models.florence.detector.FlorenceDetector`, a
    :class:`~grounded_sam.models.grounding_dino.GroundingDinoDetector` or an
    :class:`~grounded_sam.models.owlv2.Owlv2Detector`: each has ``detect(rgb, categories, ...) -> sv.Detections``;
    or a :class:`~grounded_sam.models.sam3.Sam3Segmenter`, whose ``segment_text`` gives masks directly.

    Raises:
        ModelNotFoundError: No weights found (see :func:`grounded_sam.models.weights.resolve_detector`).
        ModelLoadError: Weights found but unusable.
        UnknownModelError: A local folder holds no detector family this package runs.
        DeviceError: The device is not available.
    """
    torch_device = resolve_device(device)
    weights = resolve_detector(name_or_path, models_dir=models_dir)
    detector_class = detector_class_of(weights.family or detector_family_of(weights.path))
    key = ("detector", str(weights.path.resolve()), str(torch_device))
    return _load_once(key, lambda: detector_class.from_pretrained(weights.path, torch_device), weights.name)


def detector_class_of(family: str) -> Any:
    """The detector class of a family (imported only when asked for)."""
    if family == "grounding-dino":
        from grounded_sam.models.grounding_dino import GroundingDinoDetector

        return GroundingDinoDetector
    if family == "owlv2":
        from grounded_sam.models.owlv2 import Owlv2Detector

        return Owlv2Detector
    if family == "florence2":
        from grounded_sam.models.florence.detector import FlorenceDetector

        return FlorenceDetector
    if family == "sam3":
        from grounded_sam.models.sam3 import Sam3Segmenter

        return Sam3Segmenter
    raise ValueError(f"family must be florence2, grounding-dino, owlv2 or sam3, but got {family!r}")


def load_segmenter(
    name_or_path: str | os.PathLike[str], device: str = "auto", *, models_dir: Path | None = None
) -> Any:
    """Returns the shared :class:`~grounded_sam.models.sam2.segmenter.Sam2Segmenter` for these weights and device.

    Raises:
        ModelNotFoundError: No weights found (see :func:`grounded_sam.models.weights.resolve_segmenter`).
        ModelLoadError: Weights found but unusable.
        DeviceError: The device is not available.
    """
    from grounded_sam.models.sam2.segmenter import Sam2Segmenter

    torch_device = resolve_device(device)
    weights = resolve_segmenter(name_or_path, models_dir=models_dir)
    key = ("segmenter", f"{weights.checkpoint.resolve()}|{weights.config.resolve()}", str(torch_device))
    return _load_once(
        key, lambda: Sam2Segmenter.from_checkpoint(weights.checkpoint, weights.config, torch_device), weights.name
    )


def load_sam3_tracker(
    name_or_path: str | os.PathLike[str], device: str = "auto", *, models_dir: Path | None = None
) -> Any:
    """Returns the shared :class:`~grounded_sam.models.sam3_tracker.Sam3TrackerRefiner` of a SAM 3 checkpoint.

    The same weights as :func:`load_detector` for that name (``facebook/sam3`` holds both models); the
    tracker shares the loaded detector's ViT instead of holding a second copy.

    Raises:
        ModelNotFoundError, ModelLoadError, DeviceError: As :func:`load_detector`.
    """
    from grounded_sam.models.sam3_tracker import Sam3TrackerRefiner

    torch_device = resolve_device(device)
    weights = resolve_detector(name_or_path, models_dir=models_dir)
    key = ("sam3-tracker", str(weights.path.resolve()), str(torch_device))
    # Loaded first, outside _load_once's lock (which is not reentrant).
    detector = load_detector(name_or_path, device, models_dir=models_dir)
    backbone = detector.model.vision_encoder.backbone
    return _load_once(
        key, lambda: Sam3TrackerRefiner.from_pretrained(weights.path, torch_device, vision_backbone=backbone), weights.name
    )


def load_video_propagator(
    name_or_path: str | os.PathLike[str], device: str = "auto", *, models_dir: Path | None = None
) -> Any:
    """Returns the shared :class:`~grounded_sam.models.sam2.video.Sam2VideoPropagator` for these SAM2 weights and device.

    The same checkpoint as :func:`load_segmenter`, built as sam2's video predictor.

    Raises:
        ModelNotFoundError, ModelLoadError, DeviceError: As :func:`load_segmenter`.
    """
    from grounded_sam.models.sam2.video import Sam2VideoPropagator

    torch_device = resolve_device(device)
    weights = resolve_segmenter(name_or_path, models_dir=models_dir)
    key = ("video", f"{weights.checkpoint.resolve()}|{weights.config.resolve()}", str(torch_device))
    return _load_once(
        key, lambda: Sam2VideoPropagator.from_checkpoint(weights.checkpoint, weights.config, torch_device), weights.name
    )


def _load_once(key: tuple[str, str, str], build: Any, name: str) -> Any:
    with _lock:
        if key not in _cache:
            started = time.perf_counter()
            _cache[key] = build()
            logger.info("Loaded %s %s on %s in %.1f s", key[0], name, key[2], time.perf_counter() - started)
        return _cache[key]


def clear_model_cache() -> None:
    """Forgets every loaded model (their memory is freed once nothing else holds them)."""
    with _lock:
        _cache.clear()
