"""An LRU of automatic results, so the same image with the same categories and settings runs once.

A key is the image's content hash with everything that changes the result: the category prompts
(exactly, as ``(prompt, class)`` pairs), the detector and segmenter, the device and the pipeline
options. The cache is bounded by the bytes of the masks it holds; the least recently used results
go first. Results are shared, not copied: callers must not modify what :meth:`DetectionCache.get`
returns (nothing in the package does; edits make new arrays).

>>> cache = DetectionCache(max_bytes=256 * 2**20)
>>> key = detection_key(rgb, categories, pipe)  # doctest: +SKIP
>>> detections = cache.get(key) or cache.put(key, pipe(rgb, categories))  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import supervision as sv

from grounded_sam.categories import Categories
from grounded_sam.lru import ByteLRU
from grounded_sam.refine import image_key

logger = logging.getLogger(__name__)

#: Default bound: about 120 results of ten 1800 x 1200 masks.
DEFAULT_MAX_BYTES = 256 * 2**20


def detection_key(image: np.ndarray | str, categories: Categories, pipe: Any) -> str:
    """The cache key of running ``pipe`` on ``image`` with ``categories``.

    Args:
        image: (H, W, 3) uint8 RGB, or its :func:`~grounded_sam.refine.image_key` when already known.
        categories: The parsed categories.
        pipe: A :class:`~grounded_sam.pipeline.GroundedSAM2`; its detector, segmenter, device and
            options are part of the key.
    """
    content = image if isinstance(image, str) else image_key(image)
    options = pipe.options.as_dict() if hasattr(pipe, "options") else {}
    parts = {
        "image": content,
        "categories": [list(pair) for pair in categories.as_pairs()],
        "detector": str(getattr(pipe, "detector_name", "")),
        "segmenter": str(getattr(pipe, "segmenter_name", "")),
        "device": str(getattr(pipe, "device", "")),
        "options": options,
    }
    return json.dumps(parts, sort_keys=True, default=str)


def detections_nbytes(detections: sv.Detections) -> int:
    """Bytes held by a result's arrays (masks dominate)."""
    total = detections.xyxy.nbytes
    for array in (detections.mask, detections.confidence, detections.class_id):
        if array is not None:
            total += array.nbytes
    return int(total)


class DetectionCache:
    """Automatic results by :func:`detection_key`, least recently used dropped first.

    Args:
        max_bytes: Bound on the bytes of the results held. A single result larger than this is
            not kept.
    """

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self._lru: ByteLRU[sv.Detections] = ByteLRU(max_bytes)

    def __len__(self) -> int:
        return len(self._lru)

    @property
    def max_bytes(self) -> int:
        return self._lru.max_bytes

    @property
    def nbytes(self) -> int:
        """Bytes held now."""
        return self._lru.nbytes

    @property
    def hits(self) -> int:
        return self._lru.hits

    @property
    def misses(self) -> int:
        return self._lru.misses

    def get(self, key: str) -> sv.Detections | None:
        """The result stored under ``key`` (now the most recently used), or None."""
        return self._lru.get(key)

    def put(self, key: str, detections: sv.Detections) -> sv.Detections:
        """Stores a result (dropping the least recently used ones over the bound); returns it."""
        size = detections_nbytes(detections)
        if size > self.max_bytes:
            logger.debug("Not caching a %d-byte result: over the cache's %d bytes", size, self.max_bytes)
            self._lru.discard(key)
            return detections
        self._lru.put(key, detections, size)
        return detections

    def get_or_run(self, key: str, run: Callable[[], sv.Detections]) -> tuple[sv.Detections, bool]:
        """The cached result, or ``run()``'s (then stored). Returns ``(detections, was_cached)``.

        ``run`` is called outside the cache's lock; two requests for one new key may both run.
        """
        cached = self.get(key)
        if cached is not None:
            return cached, True
        return self.put(key, run()), False

    def clear(self) -> None:
        self._lru.clear()
