"""The overlay video of a tracked clip: ``<out>/overlay.mp4``, assembled at the end of a run.

Each frame's overlay PNG (``overlays/<stem>.png``, written as the frame is done, so a resumed run
keeps them) is read back one at a time and encoded with PyAV: H.264 in yuv420p where the FFmpeg
build has an H.264 encoder (browsers play it), else MPEG-4 Part 2. Frames are padded by one pixel
where a side is odd (yuv420p needs even sizes).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np

from grounded_sam.export.base import ImageRecord, LabeledImage
from grounded_sam.export.files import atomic_open

logger = logging.getLogger(__name__)

OVERLAY_VIDEO_PATH = "overlay.mp4"
#: Encoders tried in order; the first this FFmpeg build has is used.
ENCODERS = ("libx264", "libopenh264", "h264", "mpeg4")


def pick_encoder() -> str:
    """The first of :data:`ENCODERS` that PyAV's FFmpeg can encode with."""
    import av

    for name in ENCODERS:
        try:
            av.codec.Codec(name, "w")
            return name
        except Exception:  # noqa: BLE001, S112 - PyAV raises several types for a missing encoder
            continue
    raise RuntimeError(f"None of the video encoders {', '.join(ENCODERS)} is in this PyAV build.")


class OverlayVideoWriter:
    """Writes ``<out_dir>/overlay.mp4`` from the overlay PNGs at the end of a run.

    Args:
        out_dir: The run's output folder (the overlays are in ``overlays/``; list an OverlayWriter first).
        fps: The clip's frame rate.
    """

    name = "overlay_video"

    def __init__(self, out_dir: str | os.PathLike[str], fps: float, overlays: str = "overlays") -> None:
        self.out_dir = Path(out_dir)
        self.path = self.out_dir / OVERLAY_VIDEO_PATH
        self.overlays = self.out_dir / overlays
        self.fps = Fraction(fps).limit_denominator(1001)

    def write(self, item: LabeledImage) -> list[Path]:
        return []

    def finalize(self, records: Sequence[ImageRecord] = ()) -> list[Path]:
        frames = [r for r in sorted(records, key=lambda r: (r.frame is None, r.frame or 0, r.stem)) if r.ok]
        if not frames:
            return []
        import av
        from PIL import Image

        encoder = pick_encoder()
        with atomic_open(self.path, "wb") as handle:
            with av.open(handle, mode="w", format="mp4") as container:
                stream = None
                for record in frames:
                    with Image.open(self.overlays / f"{record.stem}.png") as image:
                        rgb = np.asarray(image.convert("RGB"))
                    if stream is None:
                        stream = container.add_stream(encoder, rate=self.fps)
                        stream.width, stream.height = rgb.shape[1] + rgb.shape[1] % 2, rgb.shape[0] + rgb.shape[0] % 2
                        stream.pix_fmt = "yuv420p"
                    padded = np.pad(rgb, ((0, stream.height - rgb.shape[0]), (0, stream.width - rgb.shape[1]), (0, 0)),
                                    mode="edge")
                    for packet in stream.encode(av.VideoFrame.from_ndarray(padded, format="rgb24")):
                        container.mux(packet)
                for packet in stream.encode():
                    container.mux(packet)
        logger.info("Wrote %s: %d frames with %s", self.path, len(frames), encoder)
        return [self.path]
