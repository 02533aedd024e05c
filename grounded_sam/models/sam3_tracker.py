"""SAM 3's tracker as the click refiner of SAM 3 results (transformers' ``Sam3TrackerModel``).

``facebook/sam3`` holds two models over one ViT: the concept detector that
:class:`~grounded_sam.models.sam3.Sam3Segmenter` runs, and a SAM2-style tracker that turns points,
boxes and a previous mask into one mask. :class:`Sam3TrackerRefiner` runs the tracker for clicks: the
image is encoded once (``get_image_embeddings``) into a byte-bounded cache keyed by
:func:`~grounded_sam.caching.image_key`, and every click is then a prompt-encoder and mask-decoder pass
on that embedding. Loaded next to the detector, the tracker uses the detector's ViT module instead of a
second copy of the same weights.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from grounded_sam.caching import ByteLRU
from grounded_sam.errors import ModelLoadError
from grounded_sam.models.devices import inference_context
from grounded_sam.models.native import load_native
from grounded_sam.models.refiner import tensor_nbytes

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

#: Default bound of the embedding cache (a facebook/sam3 tracker embedding is about 21 MB in fp32).
DEFAULT_CACHE_BYTES = 512 * 2**20


@dataclass(frozen=True)
class TrackerEmbedding:
    """The tracker's encoding of one image.

    Attributes:
        features: ``Sam3TrackerModel.get_image_embeddings``' feature maps, finest first, batch of 1.
        original_size: ``(height, width)`` of the image, pixels.
        nbytes: Bytes of ``features``.
    """

    features: list[Any]
    original_size: tuple[int, int]
    nbytes: int


class Sam3TrackerRefiner:
    """Predicts one object's mask from clicks with SAM 3's tracker, encoding each image once (a
    :class:`~grounded_sam.models.refiner.ClickRefiner`).

    Args:
        model: A ``Sam3TrackerModel`` in eval mode on ``device``.
        processor: The matching ``Sam3TrackerProcessor``.
        device: Where the model lives.
        cache: Embeddings by image key; a new one bounded at :data:`DEFAULT_CACHE_BYTES` by default.
        mask_threshold: Logit above which a pixel is in the mask.

    Thread safety: the model holds no per-image state (the embedding is passed to each call), and the
    cache is thread-safe; two first clicks on one image at once may both encode it.
    """

    model_class_name = "Sam3TrackerModel"
    label = "SAM 3 tracker"

    def __init__(self, model: Any, processor: Any, device: torch.device, *, cache: ByteLRU[TrackerEmbedding] | None = None,
                 mask_threshold: float = 0.0) -> None:
        self.model = model
        self.processor = processor
        self.device = device
        self.cache: ByteLRU[TrackerEmbedding] = ByteLRU(DEFAULT_CACHE_BYTES) if cache is None else cache
        self.mask_threshold = mask_threshold

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike[str], device: torch.device, *, vision_backbone: Any = None,
                        **options: Any) -> Sam3TrackerRefiner:
        """Loads the tracker from a SAM 3 folder (``facebook/sam3``'s layout), strictly, onto ``device``.

        Args:
            path: The folder (a ``sam3_video`` checkpoint: detector, tracker and the tracker's neck).
            device: Where to put it.
            vision_backbone: The ViT of the detector loaded from the same folder; given, the tracker uses
                it instead of keeping a second copy of the same weights.
            **options: ``__init__``'s keyword arguments.

        Raises:
            ModelLoadError: No tracker in the folder (a detector-only ``sam3`` checkpoint), or missing or
                mismatched weights.
        """
        _check_has_tracker(Path(path))
        model, processor = load_native(cls.model_class_name, path, cls.label,
                                       processor_class_name="Sam3TrackerProcessor", processor_parts=("image_processor",))
        if vision_backbone is not None:
            model.vision_encoder.backbone = vision_backbone
        return cls(model.to(device), processor, device, **options)

    def embedding(self, image: np.ndarray, key: str) -> TrackerEmbedding:
        """The image's embedding: from the cache, else computed once and cached.

        Args:
            image: (H, W, 3) uint8 RGB.
            key: :func:`~grounded_sam.caching.image_key` of ``image``.
        """
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        pixel_values = self.processor.image_processor(images=image, return_tensors="pt")["pixel_values"]
        with inference_context(self.device):
            features = list(self.model.get_image_embeddings(pixel_values.to(self.device)))
        height, width = image.shape[:2]
        embedding = TrackerEmbedding(features, (height, width), tensor_nbytes(features))
        logger.debug("SAM 3 tracker: encoded a %dx%d image (%.1f MB)", width, height, embedding.nbytes / 2**20)
        return self.cache.put(key, embedding, embedding.nbytes)

    def predict(
        self,
        image: np.ndarray,
        key: str,
        *,
        box: np.ndarray | None = None,
        points: np.ndarray | None = None,
        labels: np.ndarray | None = None,
        mask_logits: np.ndarray | None = None,
    ) -> tuple[np.ndarray, float, np.ndarray]:
        """Predicts one mask from prompts (see :meth:`~grounded_sam.models.refiner.ClickRefiner.predict`).

        Returns:
            ``(mask, score, logits)``: (H, W) bool, the tracker's predicted IoU, (1, h, w) float32
            low-resolution logits (h = w = 4 x the embedding's side: 288 for ``facebook/sam3``).
        """
        import torch

        embedding = self.embedding(image, key)
        prompts: dict[str, Any] = {}
        if points is not None and len(points):
            prompts["input_points"] = [[np.asarray(points, np.float32).reshape(-1, 2).tolist()]]
            prompts["input_labels"] = [[np.asarray(labels, np.int64).reshape(-1).tolist()]]
        if box is not None:
            prompts["input_boxes"] = [[np.asarray(box, np.float32).reshape(4).tolist()]]
        # Points and boxes in pixels of the original image -> the model's input frame.
        inputs = self.processor(original_sizes=[list(embedding.original_size)], return_tensors="pt", **prompts)
        model_inputs = {k: inputs[k].to(self.device) for k in ("input_points", "input_labels", "input_boxes")
                        if k in inputs}
        if mask_logits is not None:
            model_inputs["input_masks"] = torch.as_tensor(np.asarray(mask_logits, np.float32)).reshape(
                1, 1, *np.shape(mask_logits)[-2:]).to(self.device)
        with inference_context(self.device):
            outputs = self.model(image_embeddings=embedding.features, multimask_output=False, **model_inputs)
        low_res = outputs.pred_masks[0, 0].float()  # (1, h, w): one mask for the one object
        [masks] = self.processor.post_process_masks([low_res[None].cpu()], [list(embedding.original_size)],
                                                    mask_threshold=self.mask_threshold)
        mask = masks.reshape(masks.shape[-2:]).numpy().astype(bool)
        return mask, float(outputs.iou_scores[0, 0, 0]), low_res.cpu().numpy().astype(np.float32)


def _check_has_tracker(path: Path) -> None:
    """Refuses a detector-only SAM 3 folder before transformers builds a full-size tracker to fill with nothing."""
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"Could not read {path / 'config.json'}: {exc}") from exc
    if config.get("model_type") != "sam3_tracker" and not config.get("tracker_config"):
        raise ModelLoadError(
            f"{path} holds no SAM 3 tracker (model_type {config.get('model_type')!r}), so clicks cannot be refined "
            "with it: use facebook/sam3's full checkpoint (model_type 'sam3_video': detector and tracker), e.g. "
            "python -m grounded_sam download sam3."
        )
