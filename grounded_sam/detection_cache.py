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
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np
import supervision as sv

from grounded_sam.categories import Categories
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
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, but got {max_bytes}")
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, tuple[sv.Detections, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def nbytes(self) -> int:
        """Bytes held now."""
        return self._bytes

    def get(self, key: str) -> sv.Detections | None:
        """The result stored under ``key`` (now the most recently used), or None."""
        with self._lock:
            item = self._items.get(key)
            if item is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return item[0]

    def put(self, key: str, detections: sv.Detections) -> sv.Detections:
        """Stores a result (dropping the least recently used ones over the bound); returns it."""
        size = detections_nbytes(detections)
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            if size > self.max_bytes:
                logger.debug("Not caching a %d-byte result: over the cache's %d bytes", size, self.max_bytes)
                return detections
            self._items[key] = (detections, size)
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, (_, dropped) = self._items.popitem(last=False)
                self._bytes -= dropped
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
        with self._lock:
            self._items.clear()
            self._bytes = 0
