"""SAM2's video predictor over one window of frames: prompt masks on the first frame, masks on every frame.

:class:`Sam2VideoPropagator` runs sam2's ``SAM2VideoPredictor`` (built by
:func:`~grounded_sam.models.sam2.segmenter.load_sam2_model` with ``video=True``, the settings of
sam2's ``build_sam2_video_predictor``) on a short window: each object's mask on the window's first
frame is its prompt, and the predictor's memory carries it to the window's last frame. A window's
frames are written as JPEG files to a temporary folder (the frame source sam2 reads) and deleted
after it, so memory and disk hold one window, never the clip.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from grounded_sam.models.devices import inference_context

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

#: JPEG quality of the window's frame files (sam2 reads JPEG folders); high, so masks follow the real pixels.
FRAME_JPEG_QUALITY = 95


class Sam2VideoPropagator:
    """Propagates object masks through a window of frames with SAM2's video predictor.

    Args:
        predictor: A loaded ``SAM2VideoPredictor`` on ``device``, in eval mode.
        device: Where it lives.
    """

    def __init__(self, predictor: Any, device: torch.device) -> None:
        self.predictor = predictor
        self.device = device
        # The predictor's state is per call, but one model serves one window at a time.
        self.lock = threading.RLock()

    @classmethod
    def from_checkpoint(cls, checkpoint: str | os.PathLike[str], config: str | os.PathLike[str],
                        device: torch.device) -> Sam2VideoPropagator:
        """Builds and loads the video predictor (see :func:`~grounded_sam.models.sam2.segmenter.load_sam2_model`)."""
        from grounded_sam.models.sam2.segmenter import load_sam2_model

        return cls(load_sam2_model(checkpoint, config, device, video=True), device)

    def propagate(self, frames: Sequence[np.ndarray], prompts: Mapping[int, np.ndarray]) -> Iterator[dict[int, np.ndarray]]:
        """Tracks every prompted object from the first frame to the last.

        Args:
            frames: The window: (H, W, 3) uint8 RGB arrays of one size, in order.
            prompts: Object id -> (H, W) bool mask on ``frames[0]``.

        Yields:
            For each frame in order, object id -> (H, W) bool mask (empty where SAM2 lost the object).
        """
        if not prompts:
            for _ in frames:
                yield {}
            return
        from PIL import Image

        with self.lock, tempfile.TemporaryDirectory(prefix="grounded-sam-window-") as folder:
            for k, rgb in enumerate(frames):
                Image.fromarray(rgb).save(Path(folder) / f"{k:05d}.jpg", quality=FRAME_JPEG_QUALITY)
            with inference_context(self.device):
                state = self.predictor.init_state(folder, offload_video_to_cpu=True)
                for obj_id, mask in prompts.items():
                    self.predictor.add_new_mask(state, frame_idx=0, obj_id=int(obj_id), mask=np.asarray(mask, bool))
                for _, obj_ids, mask_logits in self.predictor.propagate_in_video(state):
                    masks = (mask_logits[:, 0] > 0).cpu().numpy()
                    yield {int(obj_id): masks[i] for i, obj_id in enumerate(obj_ids)}
                self.predictor.reset_state(state)
