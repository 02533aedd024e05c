"""Caches bounded by bytes: the LRU they share, image content keys, and the cache of automatic results.

* :class:`ByteLRU`: a thread-safe least-recently-used map bounded by the bytes of what it holds;
  the detection cache here and SAM2's embedding cache (:mod:`grounded_sam.models.sam2.refiner`)
  both sit on it.
* :func:`image_key`: the content hash every cache keys images by.
* :class:`DetectionCache`: automatic results, so the same image with the same categories and
  settings runs once. A key is the image's content hash with everything that changes the result:
  the category prompts (exactly, as ``(prompt, class)`` pairs) and the pipeline's settings
  (models, device, options). Results are shared, not copied: callers must not modify what
  :meth:`DetectionCache.get` returns (nothing in the package does; edits make new arrays).

>>> cache = DetectionCache(max_bytes=256 * 2**20)
>>> key = detection_key(rgb, categories, pipe)  # doctest: +SKIP
>>> detections = cache.get(key) or cache.put(key, pipe(rgb, categories))  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import numpy as np
import supervision as sv

from grounded_sam.categories import Categories

logger = logging.getLogger(__name__)

V = TypeVar("V")


class ByteLRU(Generic[V]):
    """Values by key; when their total size passes ``max_bytes`` the least recently used go first.

    The newest value is always kept, even alone over the bound: callers that must not hold an
    oversized value check its size before :meth:`put`.

    Args:
        max_bytes: Bound on the summed sizes given to :meth:`put`.
    """

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, but got {max_bytes}")
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, tuple[V, int]] = OrderedDict()
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

    def get(self, key: str) -> V | None:
        """The value under ``key`` (now the most recently used), or None; counts hits and misses."""
        with self._lock:
            item = self._items.get(key)
            if item is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return item[0]

    def put(self, key: str, value: V, size: int) -> V:
        """Stores ``value`` as the most recently used, then drops the oldest while over the bound; returns it."""
        with self._lock:
            self._discard(key)
            self._items[key] = (value, size)
            self._bytes += size
            while self._bytes > self.max_bytes and len(self._items) > 1:
                _, (_, dropped) = self._items.popitem(last=False)
                self._bytes -= dropped
        return value

    def discard(self, key: str) -> None:
        """Forgets ``key`` if present."""
        with self._lock:
            self._discard(key)

    def _discard(self, key: str) -> None:
        old = self._items.pop(key, None)
        if old is not None:
            self._bytes -= old[1]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0


def image_key(image: np.ndarray) -> str:
    """Content hash of an (H, W, 3) uint8 RGB image (shape included): what every cache keys images by."""
    digest = hashlib.sha256()
    digest.update(str(image.shape).encode())
    digest.update(np.ascontiguousarray(image).tobytes())
    return digest.hexdigest()


#: Default bound: about 120 results of ten 1800 x 1200 masks.
DEFAULT_MAX_BYTES = 256 * 2**20


def detection_key(image: np.ndarray | str, categories: Categories, pipe: Any) -> str:
    """The cache key of running ``pipe`` on ``image`` with ``categories``.

    Args:
        image: (H, W, 3) uint8 RGB, or its :func:`image_key` when already known.
        categories: The parsed categories.
        pipe: A :class:`~grounded_sam.pipeline.GroundedSAM2`; its :meth:`settings` (models, device
            and options) are part of the key.
    """
    content = image if isinstance(image, str) else image_key(image)
    settings = pipe.settings().as_dict(device=True)
    parts = {"image": content, "categories": [list(pair) for pair in categories.as_pairs()], **settings}
    return json.dumps(parts, sort_keys=True, default=str)


def detections_nbytes(detections: sv.Detections) -> int:
    """Bytes held by a result's arrays (masks dominate)."""
    total = detections.xyxy.nbytes
    for array in (detections.mask, detections.confidence, detections.class_id):
        if array is not None:
            total += array.nbytes
    return int(total)


class DetectionCache(ByteLRU[sv.Detections]):
    """Automatic results by :func:`detection_key`, least recently used dropped first.

    Args:
        max_bytes: Bound on the bytes of the results held. A single result larger than this is
            not kept.
    """

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        super().__init__(max_bytes)

    def put(self, key: str, detections: sv.Detections, size: int | None = None) -> sv.Detections:
        """Stores a result (dropping the least recently used ones over the bound); returns it.

        Args:
            key: From :func:`detection_key`.
            detections: The result.
            size: Its bytes; :func:`detections_nbytes` by default.
        """
        size = detections_nbytes(detections) if size is None else size
        if size > self.max_bytes:
            logger.debug("Not caching a %d-byte result: over the cache's %d bytes", size, self.max_bytes)
            self.discard(key)
            return detections
        return super().put(key, detections, size)

    def get_or_run(self, key: str, run: Callable[[], sv.Detections]) -> tuple[sv.Detections, bool]:
        """The cached result, or ``run()``'s (then stored). Returns ``(detections, was_cached)``.

        ``run`` is called outside the cache's lock; two requests for one new key may both run.
        """
        cached = self.get(key)
        if cached is not None:
            return cached, True
        return self.put(key, run()), False
