"""The LRU of automatic results: keys that change with everything that changes a result, a byte bound."""

from __future__ import annotations

import numpy as np
import pytest
import supervision as sv

from grounded_sam.caching import DetectionCache, detection_key, detections_nbytes
from grounded_sam.categories import parse_categories
from grounded_sam.pipeline import GroundedSAM2
from tests.factories import make_detections


def FakePipe(detector: str = "florence", segmenter: str = "sam2", device: str = "cpu", **options) -> GroundedSAM2:  # noqa: N802
    """A real pipeline (building one loads no model): its settings are what the key is made of."""
    return GroundedSAM2(detector, segmenter, device, **options)


def result(n: int, size: int = 10) -> sv.Detections:
    return make_detections(np.zeros((n, 4)), mask=np.zeros((n, size, size), bool), confidence=np.ones(n))


IMAGE = np.zeros((4, 5, 3), np.uint8)


@pytest.mark.parametrize(
    ("image", "categories", "pipe"),
    [
        (IMAGE + 1, "truck, tire", FakePipe()),  # other pixels
        (np.zeros((5, 4, 3), np.uint8), "truck, tire", FakePipe()),  # same bytes, other shape
        (IMAGE, "tire, truck", FakePipe()),  # other order: other class ids
        (IMAGE, "lorry: truck, tire", FakePipe()),  # other prompt for the same class
        (IMAGE, "truck, tire", FakePipe(detector="florence-large")),
        (IMAGE, "truck, tire", FakePipe(segmenter="sam2-large")),
        (IMAGE, "truck, tire", FakePipe(device="cuda")),
        (IMAGE, "truck, tire", FakePipe(min_score=0.5)),
        (IMAGE, "truck, tire", FakePipe(nms="none")),
    ],
)
def test_the_key_changes_with_anything_that_changes_the_result(image, categories, pipe) -> None:
    reference = detection_key(IMAGE, parse_categories("truck, tire"), FakePipe())
    assert detection_key(image, parse_categories(categories), pipe) != reference


def test_the_key_is_the_same_for_the_same_request() -> None:
    one = detection_key(IMAGE, parse_categories("truck,  tire"), FakePipe())
    assert one == detection_key(IMAGE.copy(), parse_categories("truck, tire"), FakePipe())


def test_least_recently_used_results_go_first_within_the_byte_bound() -> None:
    size = detections_nbytes(result(1))
    cache = DetectionCache(max_bytes=2 * size)
    cache.put("a", result(1))
    cache.put("b", result(1))
    assert cache.get("a") is not None  # "b" is now the least recently used
    cache.put("c", result(1))

    assert cache.get("b") is None
    assert cache.get("a") is not None and cache.get("c") is not None
    assert len(cache) == 2 and cache.nbytes == 2 * size


def test_a_result_larger_than_the_bound_is_returned_but_not_kept() -> None:
    cache = DetectionCache(max_bytes=100)
    big = result(2)
    assert cache.put("big", big) is big
    assert cache.get("big") is None and cache.nbytes == 0


def test_get_or_run_runs_once_per_key() -> None:
    cache = DetectionCache()
    calls = []

    def run() -> sv.Detections:
        calls.append(1)
        return result(3)

    first, cached_first = cache.get_or_run("k", run)
    second, cached_second = cache.get_or_run("k", run)
    assert (cached_first, cached_second) == (False, True)
    assert second is first and len(calls) == 1
    assert (cache.hits, cache.misses) == (1, 1)


def test_a_negative_bound_is_refused() -> None:
    with pytest.raises(ValueError, match="max_bytes must be >= 0"):
        DetectionCache(max_bytes=-1)
