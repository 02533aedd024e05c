"""Category prompts -> detector boxes (Florence-2, Grounding DINO or OWLv2) -> SAM2 masks, as one call.

>>> pipe = GroundedSAM2(detector="florence-2-base", segmenter="sam2.1-hiera-base-plus", device="auto")
>>> pipe = GroundedSAM2(detector="grounding-dino-tiny")  # scored boxes: data["detector_score"]
>>> detections = pipe("truck.jpg", ["truck", "tire"])  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import supervision as sv

from grounded_sam.categories import Categories, CategoriesLike, parse_categories
from grounded_sam.detections import empty_detections
from grounded_sam.errors import OptionError
from grounded_sam.inputs.images import ImageSource, load_image
from grounded_sam.models.devices import precision_scope
from grounded_sam.models.loading import load_detector, load_segmenter, load_video_propagator
from grounded_sam.models.registry import DEFAULT_DETECTOR, DEFAULT_SEGMENTER
from grounded_sam.pipeline.options import PipelineOptions, PipelineSettings, StageTimes
from grounded_sam.pipeline.postprocess import apply_nms, drop_duplicate_boxes, filter_min_score, sanitize_boxes
from grounded_sam.pipeline.track import DEFAULT_EVERY, DEFAULT_MATCH_IOU, TrackedFrame, TrackingOptions, track_frames

logger = logging.getLogger(__name__)


class GroundedSAM2:
    """Text prompts to instance masks: a detector finds boxes, SAM2 turns each into a mask.

    Models load lazily on first use and are shared per (weights, device) across instances.

    Args:
        detector: Registry name (``florence-2-base``, ``florence-2-large``, ``grounding-dino-tiny``,
            ``grounding-dino-base``, ``owlv2-base``, ``sam3``) or a local ``save_pretrained`` folder of one
            of those families (read from its ``config.json``). ``sam3`` segments the text prompts itself:
            ``segmenter`` is then not used, and ``confidence`` is SAM 3's score.
        segmenter: Registry name (``sam2.1-hiera-*``) or a local ``.pt`` checkpoint.
        device: ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"``.
        models_dir: Where local weights live; defaults to the project's ``models/``.
        **options: Fields of :class:`PipelineOptions` (``min_score``, ``nms``, ``precision``...).
    """

    def __init__(
        self,
        detector: str | os.PathLike[str] = DEFAULT_DETECTOR,
        segmenter: str | os.PathLike[str] = DEFAULT_SEGMENTER,
        device: str = "auto",
        *,
        models_dir: Path | None = None,
        **options: Any,
    ) -> None:
        self.detector_name = detector
        self.segmenter_name = segmenter
        self.device = device
        self.models_dir = models_dir
        self.options = PipelineOptions(**options)
        self.last_times = StageTimes()

    def settings(self) -> PipelineSettings:
        """The models, device and options this pipeline runs with (see :class:`PipelineSettings`)."""
        return PipelineSettings(str(self.detector_name), str(self.segmenter_name), str(self.device), self.options)

    @property
    def detector(self) -> Any:
        """The loaded detector of :func:`~grounded_sam.models.loading.load_detector` (loads on first access)."""
        return load_detector(self.detector_name, self.device, models_dir=self.models_dir)

    @property
    def segmenter(self) -> Any:
        """The loaded :class:`~grounded_sam.models.sam2.segmenter.Sam2Segmenter` (loads on first access)."""
        return load_segmenter(self.segmenter_name, self.device, models_dir=self.models_dir)

    def __call__(self, image: ImageSource, categories: CategoriesLike, **overrides: Any) -> sv.Detections:
        """Labels one image.

        Args:
            image: A path, bytes, file object, PIL image or (H, W, 3) uint8 RGB array.
            categories: ``"person, helmet"``, ``"yellow hard hat: helmet"``, a list or a mapping.
            **overrides: :class:`PipelineOptions` fields for this call only.

        Returns:
            ``sv.Detections`` with ``xyxy`` (N, 4) float32 pixels, ``mask`` (N, H, W) bool,
            ``class_id`` (N,) int in the order of the categories, ``data["class_name"]`` and
            ``confidence`` (N,) float32: SAM2's predicted IoU of the mask. Detectors that score their
            boxes (Grounding DINO, OWLv2) add ``data["detector_score"]`` (N,) float32; Florence-2
            gives no scores, so its results have none.
            ``metadata`` holds ``class_names`` (every class, in order) and ``image_size`` (w, h).

        Raises:
            CategoryError, ImageLoadError, ModelNotFoundError, ModelLoadError, DeviceError, OptionError.
        """
        return self.predict(image, categories, **overrides)

    @property
    def video_propagator(self) -> Any:
        """The loaded :class:`~grounded_sam.models.sam2.video.Sam2VideoPropagator` (the segmenter's weights)."""
        return load_video_propagator(self.segmenter_name, self.device, models_dir=self.models_dir)

    def track(
        self,
        video: str | os.PathLike[str],
        categories: CategoriesLike,
        *,
        every: int = DEFAULT_EVERY,
        match_iou: float = DEFAULT_MATCH_IOU,
        start_s: float | None = None,
        end_s: float | None = None,
        max_frames: int | None = None,
    ) -> Iterator[TrackedFrame]:
        """Tracks every object of every category through a clip, yielding each frame as it is done.

        Florence-2 and SAM2 run on every ``every``-th frame; SAM2's video predictor carries the
        masks in between (the rule is in :mod:`grounded_sam.pipeline.track`).

        Args:
            video: An .mp4/.mov/.webm/.mkv clip or a folder of frames.
            categories: As for :meth:`__call__`.
            every: Frames between detector runs.
            match_iou: Mask IoU at which a detection continues a track.
            start_s: First second of the clip to track.
            end_s: Second to stop before.
            max_frames: Most frames to track.

        Yields:
            :class:`~grounded_sam.pipeline.track.TrackedFrame`: ``index``, ``image`` (H, W, 3) uint8 RGB,
            and ``detections`` with ``tracker_id`` (N,) int, ``mask`` (N, H, W) bool, ``xyxy`` the
            masks' boxes, ``class_id``, ``confidence``, ``metadata["frame_index"]``.

        Raises:
            VideoLoadError, CategoryError, OptionError, ModelNotFoundError, ModelLoadError, DeviceError.
        """
        from grounded_sam.inputs.video import iter_frames

        options = TrackingOptions(every=every, match_iou=match_iou)
        parsed = parse_categories(categories)
        frames = iter_frames(video, start_s=start_s, end_s=end_s, max_frames=max_frames)
        precision = self.options.precision

        def propagate(frames: list[Any], prompts: dict[int, Any]) -> Iterator[dict[int, Any]]:
            return _scoped(self.video_propagator.propagate(frames, prompts), precision)

        yield from track_frames(frames, parsed, lambda rgb: self.predict(rgb, parsed), propagate, options)

    def predict(
        self,
        image: ImageSource,
        categories: CategoriesLike,
        *,
        prefix_allowed_tokens_fn: Any = None,
        **overrides: Any,
    ) -> sv.Detections:
        """Same as calling the pipeline; ``prefix_allowed_tokens_fn`` constrains Florence-2 (tests)."""
        unknown = set(overrides) - set(PipelineOptions.__dataclass_fields__)
        if unknown:
            raise OptionError(
                f"Unknown option(s) {sorted(unknown)}: expected {sorted(PipelineOptions.__dataclass_fields__)}."
            )
        detector = self.detector
        family = getattr(detector, "family", "florence2")
        florence = family == "florence2"
        if prefix_allowed_tokens_fn is not None and not florence:
            raise OptionError(f"prefix_allowed_tokens_fn constrains Florence-2 only, but the detector is {detector.family}.")
        options = replace(self.options, **overrides) if overrides else self.options
        parsed = parse_categories(categories)
        times = StageTimes()

        started = time.perf_counter()
        rgb = load_image(image)
        height, width = rgb.shape[:2]
        times.load_image = time.perf_counter() - started

        # The models are shared by every pipeline on the device: the precision is this call's, not theirs.
        with precision_scope(options.precision):
            detections = self._run_models(detector, rgb, parsed, options, times, prefix_allowed_tokens_fn)
        return self._finish_timed(detections, parsed, options, (width, height), times)

    def _run_models(self, detector: Any, rgb: Any, parsed: Categories, options: PipelineOptions, times: StageTimes,
                    prefix_allowed_tokens_fn: Any) -> sv.Detections:
        """Detector then SAM2 (or SAM 3 alone) on one (H, W, 3) uint8 RGB image, timing each into ``times``."""
        height, width = rgb.shape[:2]
        family = getattr(detector, "family", "florence2")
        if family == "sam3":  # one model: text -> masks and scores, no SAM2
            started = time.perf_counter()
            detections = detector.segment_text(rgb, parsed, min_score=options.min_score)
            times.segment = time.perf_counter() - started
            return detections

        started = time.perf_counter()
        if family == "florence2":
            boxes = detector.detect(
                rgb, parsed, num_beams=options.num_beams, max_new_tokens=options.max_new_tokens,
                prefix_allowed_tokens_fn=prefix_allowed_tokens_fn,
            )
        else:  # scoring detectors drop boxes under min_score before SAM2 spends time on them
            boxes = detector.detect(rgb, parsed, min_score=options.min_score)
        boxes = drop_duplicate_boxes(sanitize_boxes(boxes, (width, height), options.min_box_side))
        times.detect = time.perf_counter() - started

        started = time.perf_counter()
        if len(boxes) == 0:
            detections = empty_detections((width, height))
        else:
            detections = self.segmenter.segment(rgb, boxes, box_chunk_size=options.box_chunk_size)
        times.segment = time.perf_counter() - started
        return detections

    def _finish_timed(self, detections: sv.Detections, categories: Categories, options: PipelineOptions,
                      image_size: tuple[int, int], times: StageTimes) -> sv.Detections:
        started = time.perf_counter()
        detections = _finish(detections, categories, options, image_size)
        times.postprocess = time.perf_counter() - started
        self.last_times = times
        detections.metadata["timings_s"] = times.as_dict()
        return detections


def _scoped(iterator: Iterator[Any], precision: str) -> Iterator[Any]:
    """Runs each step of ``iterator`` (a model's generator) at ``precision``, and nothing between the steps."""
    while True:
        with precision_scope(precision):
            try:
                item = next(iterator)
            except StopIteration:
                return
        yield item


def _finish(
    detections: sv.Detections, categories: Categories, options: PipelineOptions, image_size: tuple[int, int]
) -> sv.Detections:
    """Drops empty masks, applies the score threshold (both scores) and NMS, and attaches metadata."""
    if len(detections):
        non_empty = detections.mask.reshape(len(detections), -1).any(axis=1)
        if not non_empty.all():  # indexing copies every mask (tens of MB): only when something goes
            logger.debug("Dropping %d boxes whose SAM2 mask is empty", int((~non_empty).sum()))
            detections = detections[non_empty]
    detections = filter_min_score(detections, options.min_score)
    detections = apply_nms(detections, options.nms, options.nms_iou)
    detections.metadata["class_names"] = list(categories.class_names)
    detections.metadata["image_size"] = image_size
    return detections


def label_image(image: ImageSource, categories: CategoriesLike, **kwargs: Any) -> sv.Detections:
    """One-shot helper: ``GroundedSAM2(**model_kwargs)(image, categories)``.

    ``detector``, ``segmenter``, ``device`` and ``models_dir`` in ``kwargs`` pick the models;
    the rest are :class:`PipelineOptions` fields.
    """
    model_keys = {"detector", "segmenter", "device", "models_dir"}
    pipe = GroundedSAM2(**{k: v for k, v in kwargs.items() if k in model_keys},
                        **{k: v for k, v in kwargs.items() if k not in model_keys})
    return pipe(image, categories)
