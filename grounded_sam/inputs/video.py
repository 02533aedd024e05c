"""Videos in: a clip file (decoded as a stream with PyAV, whose wheels ship FFmpeg's codecs) or a folder of frames.

Frames come out one at a time as (H, W, 3) uint8 RGB arrays with their index in the clip, so memory
holds only what the caller keeps, whatever the clip's length. Frame ``i`` is at ``i / fps`` seconds.

>>> info = probe_video("clip.mp4")  # doctest: +SKIP
>>> for index, rgb in iter_frames("clip.mp4", start_s=1.0, max_frames=100):  # doctest: +SKIP
...     ...
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from grounded_sam.errors import ImageLoadError, VideoLoadError
from grounded_sam.inputs.images import is_image_path, load_image

#: Clip files taken by suffix (any letter case); a folder of images is a clip too.
VIDEO_EXTENSIONS = frozenset({".mp4", ".mov", ".webm", ".mkv", ".avi", ".m4v"})
#: Frame rate assumed for a folder of frames.
FOLDER_FPS = 30.0


@dataclass(frozen=True)
class VideoInfo:
    """What a clip's header says.

    Attributes:
        path: The clip file or frame folder.
        fps: Frames per second (:data:`FOLDER_FPS` for a folder).
        frame_count: Frames the container declares (exact for a folder), else estimated from its duration
            and frame rate (WebM and Matroska declare none), or None when it says neither.
        width: Frame width in pixels.
        height: Frame height in pixels.
        codec: The video codec's name (``"images"`` for a folder).
    """

    path: Path
    fps: float
    frame_count: int | None
    width: int
    height: int
    codec: str


def is_video_path(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` names a clip file by its suffix (any letter case)."""
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def probe_video(path: str | os.PathLike[str]) -> VideoInfo:
    """Reads a clip's frame rate, size, codec and declared length without decoding it.

    Raises:
        VideoLoadError: The path is missing, not a video, holds no video stream, or no frames.
    """
    path = Path(path)
    if path.is_dir():
        frames = _frame_files(path)
        first = load_image(frames[0])
        return VideoInfo(path, FOLDER_FPS, len(frames), first.shape[1], first.shape[0], "images")

    with _open(path) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else FOLDER_FPS
        return VideoInfo(path, fps, _declared_frames(container, stream, fps), int(stream.codec_context.width),
                         int(stream.codec_context.height), str(stream.codec_context.name))


def frame_range(fps: float, start_s: float | None = None, end_s: float | None = None,
                max_frames: int | None = None) -> tuple[int, int | None]:
    """The frame indices ``[first, stop)`` to decode for a time range and a frame cap (``stop`` None: to the end).

    Frame ``i`` is at ``i / fps`` seconds; it is kept when ``start_s <= i / fps < end_s``.

    Raises:
        VideoLoadError: The range is empty or negative, or ``max_frames`` is below 1.
    """
    if start_s is not None and start_s < 0:
        raise VideoLoadError(f"The start time must be >= 0 seconds, but got {start_s}.")
    if end_s is not None and start_s is not None and end_s <= start_s:
        raise VideoLoadError(f"The end time {end_s} s must come after the start time {start_s} s.")
    if max_frames is not None and max_frames < 1:
        raise VideoLoadError(f"max_frames must be >= 1, but got {max_frames}.")
    first = math.ceil((start_s or 0.0) * fps - 1e-9)
    stop = None if end_s is None else math.ceil(end_s * fps - 1e-9)
    if max_frames is not None:
        stop = first + max_frames if stop is None else min(stop, first + max_frames)
    return first, stop


def frames_to_track(info: VideoInfo, start_s: float | None = None, end_s: float | None = None,
                    max_frames: int | None = None) -> tuple[int, int | None, int | None]:
    """``(first, stop, count)``: :func:`frame_range` for this clip, and how many frames that is (None when unknown).

    Raises:
        VideoLoadError: As :func:`frame_range`.
    """
    first, stop = frame_range(info.fps, start_s, end_s, max_frames)
    end = info.frame_count if stop is None else stop if info.frame_count is None else min(stop, info.frame_count)
    return first, stop, None if end is None else max(0, end - first)


def iter_frames(
    path: str | os.PathLike[str], *, start_s: float | None = None, end_s: float | None = None,
    max_frames: int | None = None, max_pixels: int | None = None, first_index: int | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """Decodes a clip (or reads a frame folder, in sorted order) one frame at a time.

    Args:
        path: A clip file or a folder of frame images.
        start_s: First second to keep (default the start).
        end_s: Second to stop before (default the end).
        max_frames: Most frames to yield.
        max_pixels: Refuse frames larger than this (width x height), as for images.
        first_index: Skip to this frame index within the range (a resumed run); ``max_frames``
            still counts from the range's start.

    Yields:
        ``(index, rgb)``: the frame's index in the clip (from 0, counting every decoded frame) and
        (H, W, 3) uint8 RGB.

    Raises:
        VideoLoadError: Not a video, no frames in the range, a corrupt stream, an unsupported codec,
            or a frame over ``max_pixels``. Raised where it happens: frames before a corrupt part
            have been yielded already.
    """
    path = Path(path)
    info = probe_video(path)
    first, stop = frame_range(info.fps, start_s, end_s, max_frames)
    first = max(first, first_index or 0)
    if info.width * info.height > (max_pixels or math.inf):
        raise VideoLoadError(
            f"{path.name} has {info.width}x{info.height} frames, over the limit of {max_pixels} pixels per frame."
        )
    frames = _folder_frames(path, first, stop) if path.is_dir() else _decoded_frames(path, first, stop)
    yielded = 0
    for index, rgb in frames:
        yielded += 1
        yield index, rgb
    if yielded == 0:
        where = "" if first == 0 and stop is None else f" between frames {first} and {stop if stop is not None else 'the end'}"
        raise VideoLoadError(f"{path.name} has no frames{where}: expected a clip with at least one decodable frame.")


def _declared_frames(container: Any, stream: Any, fps: float) -> int | None:
    if stream.frames:
        return int(stream.frames)
    if stream.duration is not None and stream.time_base is not None:
        return round(float(stream.duration * stream.time_base) * fps) or None
    if container.duration:  # microseconds
        return round(container.duration / 1_000_000 * fps) or None
    return None


def _frame_files(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and is_image_path(p))
    if not files:
        raise VideoLoadError(f"The folder {folder} holds no frame images: expected image files named in frame order.")
    return files


def _folder_frames(folder: Path, first: int, stop: int | None) -> Iterator[tuple[int, np.ndarray]]:
    files = _frame_files(folder)
    for index in range(first, len(files) if stop is None else min(stop, len(files))):
        try:
            yield index, load_image(files[index])
        except ImageLoadError as exc:
            raise VideoLoadError(f"Frame {index} of {folder} ({files[index].name}) is unreadable: {exc}") from exc


def _decoded_frames(path: Path, first: int, stop: int | None) -> Iterator[tuple[int, np.ndarray]]:
    import av

    with _open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        index = -1
        try:
            for frame in container.decode(stream):
                index += 1
                if index < first:
                    continue
                if stop is not None and index >= stop:
                    return
                yield index, frame.to_ndarray(format="rgb24")
        except av.FFmpegError as exc:
            raise VideoLoadError(f"{path.name} is corrupt after frame {index}: {exc}") from exc


class _open:  # noqa: N801 - used as a context manager, like open()
    """Opens a clip with PyAV, turning its errors into :class:`VideoLoadError` with the file's name."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.container = None

    def __enter__(self):
        import av

        if not self.path.exists():
            raise VideoLoadError(f"The video {self.path} does not exist.")
        try:
            self.container = av.open(str(self.path))
        except av.FFmpegError as exc:
            raise VideoLoadError(
                f"{self.path.name} is not a video this tool can read ({exc}): expected an .mp4, .mov, .webm or .mkv "
                "clip, or a folder of frames."
            ) from exc
        if not self.container.streams.video:
            self.container.close()
            raise VideoLoadError(f"{self.path.name} holds no video stream (audio only?): expected a video clip.")
        stream = self.container.streams.video[0]
        try:
            av.codec.Codec(stream.codec_context.name, "r")
        except Exception as exc:  # noqa: BLE001 - PyAV raises several types for unknown codecs
            self.container.close()
            raise VideoLoadError(f"{self.path.name} uses the codec {stream.codec_context.name!r}, which this build "
                                 "cannot decode: convert it to H.264 (.mp4).") from exc
        return self.container

    def __exit__(self, *exc_info: object) -> None:
        if self.container is not None:
            self.container.close()
