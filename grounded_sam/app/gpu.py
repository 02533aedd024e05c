"""The ZeroGPU shim: every model call of the app, wrapped in ``spaces.GPU`` where that package is importable.

On Hugging Face ZeroGPU Spaces a GPU is lent per call, for the seconds the call asks for; the
duration functions here size that by the work (prompts, images, frames). Elsewhere ``spaces`` is absent
(or present and a no-op) and the calls run as they are. ``app.py`` imports ``spaces`` before
anything imports torch; the import here finds that module (or its absence).

Callers reach the wrapped calls as attributes of this module (``gpu.detect_and_segment(...)``), so
that reloading it (the tests do, with and without ``spaces``) changes what every caller runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

try:
    import spaces
except ImportError:
    spaces = None

from grounded_sam.categories import Categories

if TYPE_CHECKING:
    from grounded_sam.models.sam2.refiner import Sam2Refiner

__all__ = [
    "GpuDecoder", "attach_refiner", "batch_gpu_seconds", "click_gpu_seconds", "decode_on_gpu",
    "detect_and_segment", "label_on_gpu", "on_gpu", "segment_gpu_seconds", "track_gpu_seconds", "track_on_gpu",
]

#: ZeroGPU time asked for: a base (model loading, transfers) plus a share per unit of work.
SEGMENT_GPU_S, SEGMENT_GPU_PER_PROMPT_S = 60, 5
BATCH_GPU_S, BATCH_GPU_PER_IMAGE_S = 60, 10
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


def segment_gpu_seconds(pipe: Any, rgb: Any, categories: Categories) -> int:
    """ZeroGPU seconds for one image: grows with the number of prompts (one decoding each)."""
    return SEGMENT_GPU_S + SEGMENT_GPU_PER_PROMPT_S * len(categories.prompts)


def batch_gpu_seconds(pipe: Any, images: list[Any], categories: Categories, writers: list[Any], settings: dict) -> int:
    """ZeroGPU seconds for a batch: grows with the number of images."""
    return BATCH_GPU_S + BATCH_GPU_PER_IMAGE_S * len(images)


def track_gpu_seconds(pipe: Any, video: Any, categories: Categories, out_dir: Any, frames: int,
                      run: dict[str, Any]) -> int:
    """ZeroGPU seconds for a clip: grows with the number of frames to track."""
    return int(TRACK_GPU_S + TRACK_GPU_PER_FRAME_S * frames)


def click_gpu_seconds(pipe: Any, image: Any, key: str, prompts: dict[str, Any]) -> int:
    """ZeroGPU seconds for one click: SAM2's mask decoder on a cached embedding."""
    return CLICK_GPU_S


@on_gpu(segment_gpu_seconds)
def detect_and_segment(pipe: Any, rgb: Any, categories: Categories) -> Any:
    """The pipeline on one image: its Detections."""
    return pipe(rgb, categories)


@on_gpu(batch_gpu_seconds)
def label_on_gpu(
    pipe: Any, images: list[Any], categories: Categories, writers: list[Any], settings: dict
) -> Iterator[Any]:
    """:func:`grounded_sam.app.jobs.stream_label_images` under one GPU lease for the whole batch."""
    from grounded_sam.app.jobs import stream_label_images

    yield from stream_label_images(pipe, images, categories, writers, settings=settings)


@on_gpu(track_gpu_seconds)
def track_on_gpu(
    pipe: Any, video: Any, categories: Categories, out_dir: Any, frames: int, run: dict[str, Any]
) -> Iterator[Any]:
    """:func:`grounded_sam.app.video_job.stream_tracking` under one GPU lease for the whole clip.

    ``frames`` (at most the server's cap) only sizes the lease; ``run`` holds the keyword arguments of
    :func:`~grounded_sam.runs.track.run_tracking`.
    """
    from grounded_sam.app.video_job import stream_tracking

    yield from stream_tracking(pipe, video, categories, out_dir, **run)


@on_gpu(click_gpu_seconds)
def decode_on_gpu(pipe: Any, image: Any, key: str, prompts: dict[str, Any]) -> Any:
    """One pass of SAM2's mask decoder for a click's prompts, on the image's cached embedding."""
    # Takes the (picklable) pipeline, not the refiner: on ZeroGPU the call may run in another process.
    return attach_refiner(pipe).predict(image, key, **prompts)


def attach_refiner(pipe: Any) -> Sam2Refiner:
    """The click refiner of the pipeline's segmenter; from now on it remembers every image it encodes."""
    from grounded_sam.models.sam2.refiner import Sam2Refiner

    return Sam2Refiner(pipe.segmenter)


class GpuDecoder:
    """Stands in for a :class:`~grounded_sam.editing.session.Sam2Refiner`: every decoder pass of a click goes
    through the GPU wrapper (a label session only calls ``predict``).

    Args:
        pipe: The :class:`~grounded_sam.pipeline.GroundedSAM2` whose segmenter ran the automatic result.
    """

    def __init__(self, pipe: Any) -> None:
        self.pipe = pipe

    def predict(self, image: Any, key: str, **prompts: Any) -> Any:
        return decode_on_gpu(self.pipe, image, key, prompts)
