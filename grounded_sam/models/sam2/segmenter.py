"""SAM2 as a box-prompted mask predictor.

The image is encoded once per image (``set_image``); boxes then go to the mask decoder in
chunks whose size suits the device. SAM2's outputs change shape with the number of boxes: one
function, :func:`normalize_sam2_output`, makes them (N, H, W) / (N,) always.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import supervision as sv

from grounded_sam.errors import ModelLoadError
from grounded_sam.models.devices import default_box_chunk_size, inference_context

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

# The settings sam2's own build_sam2 applies for image prediction: fall back to the best of the
# multi-mask outputs when the single mask is unstable.
_POSTPROCESSING_OVERRIDES = {
    "dynamic_multimask_via_stability": True,
    "dynamic_multimask_stability_delta": 0.05,
    "dynamic_multimask_stability_thresh": 0.98,
}


def normalize_sam2_output(
    masks: np.ndarray, scores: np.ndarray, num_boxes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Brings ``SAM2ImagePredictor.predict`` output to one shape whatever the box count.

    SAM2 returns (K, H, W) masks and (K,) scores for a single box, and (N, K, H, W) / (N, K) for
    N boxes, where K is 1, or 3 with ``multimask_output=True``. Where K > 1 the best-scoring mask
    of each box is kept.

    Args:
        masks: Masks as SAM2 returned them (bool, 0/1 floats or logits thresholded at 0).
        scores: Predicted IoU scores as SAM2 returned them.
        num_boxes: Number of boxes in the call.

    Returns:
        ``(masks, scores)``: (N, H, W) bool and (N,) float32.
    """
    masks = np.asarray(masks)
    scores = np.asarray(scores, dtype=np.float32)
    if num_boxes == 0:
        height, width = masks.shape[-2:] if masks.ndim >= 2 else (0, 0)
        return np.zeros((0, height, width), dtype=bool), np.zeros((0,), dtype=np.float32)
    if masks.ndim == 3:
        masks = masks[None]
    if scores.ndim == 1:
        scores = scores[None]
    if masks.ndim != 4 or masks.shape[0] != num_boxes or scores.shape != masks.shape[:2]:
        raise ValueError(
            f"Expected SAM2 masks (N, K, H, W) with scores (N, K) for N={num_boxes} boxes, "
            f"but got masks {masks.shape} and scores {scores.shape}"
        )
    best = scores.argmax(axis=1)
    rows = np.arange(num_boxes)
    chosen = masks[rows, best]
    if chosen.dtype != bool:
        chosen = chosen > 0
    return chosen, scores[rows, best].astype(np.float32)


#: What sam2's own ``build_sam2_video_predictor`` changes for video: the predictor class, clicked masks
#: binarised for the memory encoder, and small holes filled.
_VIDEO_OVERRIDES = {
    "_target_": "sam2.sam2_video_predictor.SAM2VideoPredictor",
    "binarize_mask_from_pts_for_mem_enc": True,
    "fill_hole_area": 8,
}


def load_sam2_model(checkpoint: str | os.PathLike[str], config: str | os.PathLike[str], device: torch.device,
                    *, video: bool = False) -> Any:
    """Builds a SAM2 model from a model config and loads a Meta-format checkpoint strictly.

    Args:
        checkpoint: ``.pt`` holding ``{"model": state_dict}``.
        config: SAM2 model ``.yaml`` (a ``model:`` node with hydra ``_target_`` entries).
        device: Where the model should live.
        video: Build sam2's ``SAM2VideoPredictor`` (with the settings sam2's
            ``build_sam2_video_predictor`` applies) instead of the image model. The same weights serve both.

    Raises:
        ModelLoadError: The config cannot be built, the file is no SAM2 checkpoint, or keys are
            missing or unexpected.
    """
    import torch
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    checkpoint, config = Path(checkpoint), Path(config)
    try:
        cfg = OmegaConf.load(config)
        model_cfg = cfg.model
    except Exception as exc:  # noqa: BLE001 - yaml and omegaconf raise many types
        raise ModelLoadError(f"Could not read the SAM2 model config {config}: {exc}") from exc
    extra = OmegaConf.create({"sam_mask_decoder_extra_args": dict(_POSTPROCESSING_OVERRIDES),
                              **(_VIDEO_OVERRIDES if video else {})})
    model_cfg = OmegaConf.merge(model_cfg, extra)
    OmegaConf.resolve(model_cfg)
    try:
        model = instantiate(model_cfg, _recursive_=True)
    except Exception as exc:  # noqa: BLE001 - hydra wraps constructor errors in its own types
        raise ModelLoadError(f"The SAM2 model config {config} does not build a model: {exc}") from exc
    try:
        payload = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - pickle, zip and torch errors
        raise ModelLoadError(f"Could not read the SAM2 checkpoint {checkpoint}: {exc}") from exc
    if not isinstance(payload, dict) or "model" not in payload:
        found = sorted(payload)[:5] if isinstance(payload, dict) else type(payload).__name__
        raise ModelLoadError(
            f"Expected a SAM2 checkpoint as Meta publishes it ({{'model': state_dict}}) in {checkpoint}, but found {found}."
        )
    try:
        model.load_state_dict(payload["model"], strict=True)
    except RuntimeError as exc:
        raise ModelLoadError(
            f"The SAM2 checkpoint {checkpoint} does not match the model config {config}: {exc}. "
            "Use the config that belongs to this checkpoint (a .yaml with the same stem beside it)."
        ) from exc
    return model.to(device).eval()


class Sam2Segmenter:
    """Turns boxes into masks with SAM2.

    Args:
        model: A built SAM2 model (``SAM2Base``) on ``device``, in eval mode.
        device: Where the model lives.
        box_chunk_size: Boxes per mask-decoder call; defaults to :func:`default_box_chunk_size`.
    """

    def __init__(self, model: Any, device: torch.device, *, box_chunk_size: int | None = None) -> None:
        from sam2.sam2_image_predictor import SAM2ImagePredictor

        self.model = model
        self.device = device
        self.box_chunk_size = box_chunk_size or default_box_chunk_size(device)
        if self.box_chunk_size < 1:
            raise ValueError(f"box_chunk_size must be >= 1, but got {box_chunk_size}")
        self.predictor = SAM2ImagePredictor(model)
        # SAM2ImagePredictor keeps the current image's features on itself: one image at a time.
        self.lock = threading.RLock()
        # When set (by click refinement), every image this segmenter encodes is remembered here,
        # so later clicks on it reuse the encoding: see grounded_sam.editing.session.
        self.embedding_cache: Any = None

    @classmethod
    def from_checkpoint(
        cls, checkpoint: str | os.PathLike[str], config: str | os.PathLike[str], device: torch.device, **options: Any
    ) -> Sam2Segmenter:
        """Builds, loads and wraps a SAM2 model (see :func:`load_sam2_model`)."""
        return cls(load_sam2_model(checkpoint, config, device), device, **options)

    def segment(
        self, image: np.ndarray, detections: sv.Detections, *, box_chunk_size: int | None = None
    ) -> sv.Detections:
        """Predicts one mask per box.

        Args:
            image: (H, W, 3) uint8 RGB.
            detections: Boxes in ``xyxy`` pixels (float, within the image).
            box_chunk_size: Boxes per decoder call for this call (default: the segmenter's).

        Returns:
            A copy of ``detections`` with ``mask`` (N, H, W) bool and ``confidence`` (N,) float32,
            SAM2's predicted IoU of each mask. With no boxes, SAM2 is not run at all.
        """
        height, width = image.shape[:2]
        num_boxes = len(detections)
        masks = np.zeros((num_boxes, height, width), dtype=bool)
        scores = np.zeros((num_boxes,), dtype=np.float32)
        if num_boxes:
            boxes = detections.xyxy.astype(np.float32)
            chunk_size = box_chunk_size or self.box_chunk_size
            with self.lock, inference_context(self.device):
                self.predictor.set_image(image)
                for start in range(0, num_boxes, chunk_size):
                    chunk = boxes[start : start + chunk_size]
                    masks[start : start + len(chunk)], scores[start : start + len(chunk)] = self._decode_boxes(chunk)
                if self.embedding_cache is not None:
                    self.embedding_cache.remember(image, self.predictor)
                self.predictor.reset_predictor()
        return sv.Detections(
            xyxy=detections.xyxy.copy(),
            mask=masks,
            confidence=scores,
            class_id=None if detections.class_id is None else detections.class_id.copy(),
            data={key: np.asarray(value).copy() for key, value in detections.data.items()},
        )

    def _decode_boxes(self, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One mask-decoder call for ``boxes`` (N, 4) float32 xyxy pixels on the image set: (N, H, W) bool, (N,) float32.

        SAM2's public ``predict`` hands masks back as float32 arrays (four bytes a pixel, 35 MB for four
        boxes on an 1800x1200 photo) that we would threshold back to bool: that conversion and the fresh
        memory it touches cost about 0.4 s an image on a CPU, more than all our post-processing. Its own
        ``_predict`` (the step ``predict`` wraps) already thresholds to bool tensors, which become arrays
        without a copy on the CPU. Should a later sam2 drop those internals, ``predict`` still works.
        """
        predictor = self.predictor
        prepare, decode = getattr(predictor, "_prep_prompts", None), getattr(predictor, "_predict", None)
        if prepare is None or decode is None:
            chunk_masks, chunk_scores, _ = predictor.predict(box=boxes, multimask_output=False)
            return normalize_sam2_output(chunk_masks, chunk_scores, len(boxes))
        _, _, _, transformed = prepare(None, None, boxes, None, True)
        masks, scores, _ = decode(None, None, transformed, None, multimask_output=False)
        # (N, 1, H, W) bool and (N, 1) scores with one mask per box.
        return masks[:, 0].cpu().numpy(), scores[:, 0].float().cpu().numpy()
