"""The ZeroGPU shim and the model gate: every model call of the app, wrapped in ``spaces.GPU`` where that package
is importable, and passing :data:`~grounded_sam.app.gate.MODEL_GATE`.

On Hugging Face ZeroGPU Spaces a GPU is lent per call, for the seconds the call asks for; the
duration functions here size that by the work (prompts, frames), capped at :data:`ZEROGPU_MAX_S` so no call
asks for more than the platform grants. A batch asks per image, not for the whole batch: a batch of any size
fits the platform's limit, and the GPU is free for a click between two images. Elsewhere ``spaces`` is absent
(or present and a no-op) and the calls run as they are. ``app.py`` imports ``spaces`` before anything imports
torch; the import here finds that module (or its absence).

The gate is taken outside the GPU call, so time spent waiting for another request's model call is never
counted against a ZeroGPU lease.

Callers reach the wrapped calls as attributes of this module (``gpu.detect_and_segment(...)``), so
that reloading it (the tests do, with and without ``spaces``) changes what every caller runs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

try:
    import spaces
except ImportError:
    spaces = None

from grounded_sam.app.gate import MODEL_GATE
from grounded_sam.categories import Categories

if TYPE_CHECKING:
    from grounded_sam.models.refiner import ClickRefiner

__all__ = [
    "ZEROGPU_MAX_S", "GpuDecoder", "attach_refiner", "batch_image_gpu_seconds", "click_gpu_seconds", "decode_on_gpu",
    "detect_and_segment", "label_on_gpu", "on_gpu", "retrack_gpu_seconds", "retrack_on_gpu", "segment_gpu_seconds",
    "track_gpu_seconds", "track_on_gpu",
]

logger = logging.getLogger(__name__)

#: The most one call asks ZeroGPU for. The platform's maximum is not documented; its staff have given about
#: five minutes, and shorter requests are scheduled sooner.
ZEROGPU_MAX_S = 240
#: ZeroGPU time asked for: a base (first use of the models on the GPU, transfers) plus a share per unit of work.
SEGMENT_GPU_S, SEGMENT_GPU_PER_PROMPT_S = 60, 5
#: A clip: SAM2's propagation on every frame, the detector on every N-th, each frame's files (not measured on
#: ZeroGPU yet: an estimate that leaves room for writing each frame's overlay PNG on the CPU).
TRACK_GPU_S, TRACK_GPU_PER_FRAME_S = 60, 0.5
#: ZeroGPU time asked for one click (one or two mask-decoder passes).
CLICK_GPU_S = 10

F = TypeVar("F", bound=Callable[..., Any])


def on_gpu(duration: Callable[..., int]) -> Callable[[F], F]:
    """``spaces.GPU(duration=duration)`` where the ``spaces`` package is importable, else no wrapping.

    ``duration`` receives the wrapped function's arguments and returns seconds, so a bigger job
    asks ZeroGPU for more time. Outside ZeroGPU, ``spaces.GPU`` itself returns the function as is.
    """
    if spaces is None:
        return lambda fn: fn
    return spaces.GPU(duration=duration)


def _capped(seconds: float, what: str) -> int:
    if seconds > ZEROGPU_MAX_S:
        logger.warning("%s would need about %.0f s of GPU; asking ZeroGPU for its maximum, %d s", what, seconds,
                       ZEROGPU_MAX_S)
    return int(min(seconds, ZEROGPU_MAX_S))


def segment_gpu_seconds(pipe: Any, rgb: Any, categories: Categories) -> int:
    """ZeroGPU seconds for one image: grows with the number of prompts (one decoding each)."""
    return _capped(SEGMENT_GPU_S + SEGMENT_GPU_PER_PROMPT_S * len(categories.prompts), "One image")


def batch_image_gpu_seconds(pipe: Any, rgb: Any, categories: Categories) -> int:
    """ZeroGPU seconds for one image of a batch: as :func:`segment_gpu_seconds`."""
    return segment_gpu_seconds(pipe, rgb, categories)


def track_gpu_seconds(pipe: Any, video: Any, categories: Categories, out_dir: Any, frames: int,
                      run: dict[str, Any]) -> int:
    """ZeroGPU seconds for a clip: grows with the number of frames to track, up to :data:`ZEROGPU_MAX_S`."""
    return _capped(TRACK_GPU_S + TRACK_GPU_PER_FRAME_S * frames, f"A clip of {frames} frames")


def retrack_gpu_seconds(pipe: Any, out_dir: Any, frames: int, edit: dict[str, Any], annotator: Any) -> int:
    """ZeroGPU seconds for an edit of a clip: as for tracking the frames it re-tracks."""
    return _capped(TRACK_GPU_S + TRACK_GPU_PER_FRAME_S * frames, f"An edit re-tracking {frames} frames")


def click_gpu_seconds(pipe: Any, image: Any, key: str, prompts: dict[str, Any]) -> int:
    """ZeroGPU seconds for one click: SAM2's mask decoder on a cached embedding."""
    return CLICK_GPU_S


@on_gpu(segment_gpu_seconds)
def _segment_on_gpu(pipe: Any, rgb: Any, categories: Categories) -> Any:
    return pipe(rgb, categories)


@on_gpu(batch_image_gpu_seconds)
def _batch_image_on_gpu(pipe: Any, rgb: Any, categories: Categories) -> Any:
    return pipe(rgb, categories)


def detect_and_segment(pipe: Any, rgb: Any, categories: Categories) -> Any:
    """The pipeline on one image (Run, ``/segment``): its Detections, ahead of any waiting batch image."""
    with MODEL_GATE.interactive():
        return _segment_on_gpu(pipe, rgb, categories)


class BatchImagePipe:
    """The pipeline as a batch run calls it (``pipe(rgb, categories)``): each image passes the gate as background
    work and gets its own GPU lease.

    Args:
        pipe: The :class:`~grounded_sam.pipeline.GroundedSAM2`; its other attributes (``settings``, the models)
            are reached through this object.
    """

    def __init__(self, pipe: Any) -> None:
        self.pipe = pipe

    def __call__(self, rgb: Any, categories: Categories) -> Any:
        with MODEL_GATE.background():
            return _batch_image_on_gpu(self.pipe, rgb, categories)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.pipe, name)


def label_on_gpu(
    pipe: Any, images: list[Any], categories: Categories, writers: list[Any], settings: dict
) -> Iterator[Any]:
    """:func:`grounded_sam.app.jobs.stream_label_images`, each image under its own gate hold and GPU lease."""
    from grounded_sam.app.jobs import stream_label_images

    yield from stream_label_images(BatchImagePipe(pipe), images, categories, writers, settings=settings)


@on_gpu(track_gpu_seconds)
def _track_on_gpu(
    pipe: Any, video: Any, categories: Categories, out_dir: Any, frames: int, run: dict[str, Any]
) -> Iterator[Any]:
    from grounded_sam.app.video_job import stream_tracking

    yield from stream_tracking(pipe, video, categories, out_dir, **run)


def track_on_gpu(
    pipe: Any, video: Any, categories: Categories, out_dir: Any, frames: int, run: dict[str, Any]
) -> Iterator[Any]:
    """:func:`grounded_sam.app.video_job.stream_tracking` under one gate hold and one GPU lease for the whole clip.

    ``frames`` (at most the server's cap) only sizes the lease; ``run`` holds the keyword arguments of
    :func:`~grounded_sam.runs.track.run_tracking`. SAM2's video state spans the clip, so the clip is one hold:
    a click waits for it.
    """
    with MODEL_GATE.background():
        yield from _track_on_gpu(pipe, video, categories, out_dir, frames, run)


@on_gpu(retrack_gpu_seconds)
def _retrack_on_gpu(pipe: Any, out_dir: Any, frames: int, edit: dict[str, Any], annotator: Any) -> Iterator[Any]:
    from grounded_sam.app.video_job import stream_retrack

    yield from stream_retrack(pipe, out_dir, edit, annotator)


def retrack_on_gpu(pipe: Any, out_dir: Any, frames: int, edit: dict[str, Any], annotator: Any) -> Iterator[Any]:
    """:func:`grounded_sam.app.video_job.stream_retrack` (a click that fixes a track on a frame, then the clip tracked
    again from there) under one gate hold and one GPU lease, as a clip is; ``frames`` (those tracked again) only
    sizes the lease."""
    with MODEL_GATE.background():
        yield from _retrack_on_gpu(pipe, out_dir, frames, edit, annotator)


@on_gpu(click_gpu_seconds)
def _decode_on_gpu(pipe: Any, image: Any, key: str, prompts: dict[str, Any]) -> Any:
    # Takes the (picklable) pipeline, not the refiner: on ZeroGPU the call may run in another process.
    return attach_refiner(pipe).predict(image, key, **prompts)


def decode_on_gpu(pipe: Any, image: Any, key: str, prompts: dict[str, Any]) -> Any:
    """One pass of the click refiner's mask decoder for a click's prompts, on the image's cached embedding (interactive)."""
    with MODEL_GATE.interactive():
        return _decode_on_gpu(pipe, image, key, prompts)


def attach_refiner(pipe: Any) -> ClickRefiner:
    """The click refiner of the pipeline's results (:func:`~grounded_sam.editing.refiners.refiner_for`): SAM2's
    decoder, from now on remembering every image the segmenter encodes, or SAM 3's tracker after SAM 3."""
    from grounded_sam.editing.refiners import refiner_for

    return refiner_for(pipe)


class GpuDecoder:
    """Stands in for a :class:`~grounded_sam.models.refiner.ClickRefiner`: every decoder pass of a click goes
    through the GPU wrapper (a label session only calls ``predict``).

    Args:
        pipe: The :class:`~grounded_sam.pipeline.GroundedSAM2` that ran the automatic result.
    """

    def __init__(self, pipe: Any) -> None:
        self.pipe = pipe

    def predict(self, image: Any, key: str, **prompts: Any) -> Any:
        return decode_on_gpu(self.pipe, image, key, prompts)
