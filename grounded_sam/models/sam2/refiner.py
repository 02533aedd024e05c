"""SAM2's mask decoder on cached image embeddings: what makes a click cost a decoder pass only.

:class:`Sam2Refiner` runs SAM2's mask decoder for point/box prompts on an image's embedding,
taken from an :class:`EmbeddingCache` (an LRU of embeddings bounded by bytes, keyed by
:func:`~grounded_sam.caching.image_key`) or computed once. SAM2's predictor keeps the current image
on itself, so every use goes through the segmenter's lock. The automatic run fills the same cache
(the segmenter remembers every image it encodes once a refiner is attached), so even the first
click on a fresh result is decoder-only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from grounded_sam.caching import ByteLRU, image_key
from grounded_sam.models.devices import inference_context
from grounded_sam.models.refiner import tensor_nbytes


@dataclass(frozen=True)
class ImageEmbedding:
    """SAM2's encoding of one image: what ``SAM2ImagePredictor.set_image`` computes."""

    features: dict[str, Any]
    orig_hw: list[tuple[int, int]]
    nbytes: int


class EmbeddingCache(ByteLRU[ImageEmbedding]):
    """LRU of image embeddings by :func:`~grounded_sam.caching.image_key`, bounded by total bytes (the newest is always kept).

    Args:
        max_bytes: Total size of cached embeddings (a SAM2 base-plus embedding is about 20 MB).
    """

    def __init__(self, max_bytes: int = 512 * 2**20) -> None:
        super().__init__(max_bytes)

    def put(self, key: str, embedding: ImageEmbedding, size: int | None = None) -> ImageEmbedding:
        """Stores an embedding; its size is its own ``nbytes`` unless given."""
        return super().put(key, embedding, embedding.nbytes if size is None else size)

    def remember(self, image: np.ndarray, predictor: Any) -> None:
        """Stores the embedding a predictor holds for ``image`` (called right after ``set_image``)."""
        self.put(image_key(image), _embedding_of(predictor))


def _embedding_of(predictor: Any) -> ImageEmbedding:
    # SAM2ImagePredictor keeps its encoding in these attributes; holding a reference lets later
    # clicks restore it instead of re-encoding.
    features = predictor._features
    return ImageEmbedding(features, list(predictor._orig_hw), tensor_nbytes(features))


class Sam2Refiner:
    """Runs SAM2's mask decoder for point/box prompts on cached image embeddings (a
    :class:`~grounded_sam.models.refiner.ClickRefiner`).

    Args:
        segmenter: A loaded :class:`~grounded_sam.models.sam2.segmenter.Sam2Segmenter` (shared; its lock is used).
        cache: Embedding cache; by default the segmenter's, or a new one attached to it.
        attach: Make ``cache`` the segmenter's, so that every image it encodes from now on is remembered
            (what an editing session wants). False leaves the segmenter as it is: for a few clicks on one
            image, after which the segmenter should not keep filling a cache.
    """

    def __init__(self, segmenter: Any, cache: EmbeddingCache | None = None, *, attach: bool = True) -> None:
        self.segmenter = segmenter
        if cache is None:
            # `is None`, not truthiness: an attached cache that is still empty has len() == 0.
            cache = segmenter.embedding_cache if segmenter.embedding_cache is not None else EmbeddingCache()
        self.cache = cache
        if attach:
            # The automatic run's encoding lands in the same cache, so the first click is decoder-only too.
            segmenter.embedding_cache = cache

    def _use_image(self, image: np.ndarray, key: str) -> None:
        """Puts the image's embedding into the predictor: from the cache, else by encoding it once."""
        predictor = self.segmenter.predictor
        embedding = self.cache.get(key)
        if embedding is None:
            predictor.set_image(image)
            self.cache.put(key, _embedding_of(predictor))
        else:
            predictor._features = embedding.features
            predictor._orig_hw = list(embedding.orig_hw)
            predictor._is_image_set = True
            predictor._is_batch = False

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
        """Predicts one mask from prompts.

        Args:
            image: (H, W, 3) uint8 RGB.
            key: :func:`image_key` of ``image``.
            box: (4,) xyxy pixels, or None.
            points: (K, 2) xy pixels, or None.
            labels: (K,) 1 for positive, 0 for negative clicks.
            mask_logits: (1, 256, 256) low-resolution logits of the previous mask, or None.

        Returns:
            ``(mask, score, logits)``: (H, W) bool, SAM2's predicted IoU, (1, 256, 256) float32 logits.
        """
        with self.segmenter.lock, inference_context(self.segmenter.device):
            self._use_image(image, key)
            masks, scores, logits = self.segmenter.predictor.predict(
                point_coords=None if points is None else np.asarray(points, dtype=np.float32),
                point_labels=None if labels is None else np.asarray(labels, dtype=np.int32),
                box=None if box is None else np.asarray(box, dtype=np.float32),
                mask_input=mask_logits,
                multimask_output=False,
            )
            self.segmenter.predictor.reset_predictor()
        return np.asarray(masks[0]) > 0, float(scores[0]), np.asarray(logits, dtype=np.float32)[:1]
