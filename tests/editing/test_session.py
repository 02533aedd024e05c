"""Click refinement: decoder-only clicks, binding clicks, undo/redo, sessions kept apart."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from grounded_sam.editing.session import LabelSession
from grounded_sam.errors import EditError
from grounded_sam.models.sam2.refiner import EmbeddingCache, ImageEmbedding, Sam2Refiner


@pytest.fixture
def session(pipe, refiner, truck_rgb) -> LabelSession:
    detections = pipe(truck_rgb, "truck, tire")
    return LabelSession(refiner, truck_rgb, detections, detections.metadata["class_names"])


def _point_outside(mask: np.ndarray) -> tuple[int, int]:
    ys, xs = np.nonzero(~mask)
    return int(xs[len(xs) // 2]), int(ys[len(ys) // 2])


def _point_inside(mask: np.ndarray) -> tuple[int, int]:
    ys, xs = np.nonzero(mask)
    return int(xs[len(xs) // 2]), int(ys[len(ys) // 2])


def test_a_positive_click_keeps_the_clicked_pixel(session):
    before = session.objects[0].mask
    x, y = _point_outside(before)
    after = session.refine(0, x, y, positive=True).mask
    assert after[y, x]
    assert after.shape == before.shape and after.dtype == bool


def test_a_negative_click_removes_the_clicked_pixel(session):
    x, y = _point_inside(session.objects[1].mask)
    after = session.refine(1, x, y, positive=False).mask
    assert not after[y, x]


def test_clicks_never_reencode_the_image(pipe, refiner, truck_rgb, count_calls):
    encoder = count_calls(pipe.segmenter.model.image_encoder)
    detections = pipe(truck_rgb, "truck")  # the automatic run encodes once and fills the cache
    session = LabelSession(refiner, truck_rgb, detections, ["truck"])
    decoder = count_calls(pipe.segmenter.model.sam_mask_decoder)
    for i in range(6):
        session.refine(i % len(session.objects), 100 + 50 * i, 200 + 30 * i, positive=bool(i % 2))
    session.add_object("tire", box=(10, 10, 300, 300))
    session.add_object("wheel", point=(700, 800))
    assert encoder.calls == 1
    assert decoder.calls >= 8


def test_clicks_carry_the_box_earlier_clicks_and_previous_logits(session, monkeypatch):
    seen = []
    original = session.refiner.predict

    def spy(image, key, **prompts):
        seen.append(prompts)
        return original(image, key, **prompts)

    monkeypatch.setattr(session.refiner, "predict", spy)
    session.refine(0, 50, 60, positive=True)
    session.refine(0, 70, 80, positive=False)
    last = seen[-1]
    np.testing.assert_allclose(last["box"], session.objects[0].box)
    assert last["points"].tolist() == [[50, 60], [70, 80]] and last["labels"].tolist() == [1, 0]
    assert last["mask_logits"].shape == (1, 256, 256)


def test_undo_restores_the_exact_previous_mask_and_redo_reapplies(session):
    original = session.objects[0].mask.copy()
    refined = session.refine(0, *_point_outside(original), positive=True).mask.copy()
    assert session.undo()
    np.testing.assert_array_equal(session.objects[0].mask, original)
    assert session.redo()
    np.testing.assert_array_equal(session.objects[0].mask, refined)
    assert not session.redo()


def test_delete_relabel_add_and_reset(session):
    count = len(session.objects)
    session.delete(0)
    assert len(session.objects) == count - 1
    session.relabel(0, "forklift")
    assert session.objects[0].class_name == "forklift"
    assert session.class_names == ["truck", "tire", "forklift"]
    index = session.add_object("Truck", box=(400, 300, 100, 50))  # inverted corners are sorted
    assert session.objects[index].class_name == "truck"  # matched case-insensitively
    detections = session.to_detections()
    assert len(detections) == count
    assert detections.metadata["class_names"] == ["truck", "tire", "forklift"]
    assert detections.class_id.tolist()[-1] == 0
    session.reset()
    assert len(session.objects) == count and session.class_names == ["truck", "tire"]
    assert session.undo()  # reset itself can be undone
    assert len(session.objects) == count


def test_undo_forgets_a_class_added_by_the_edit(session):
    session.relabel(0, "crane")
    session.undo()
    assert session.class_names == ["truck", "tire"]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: s.refine(99, 1, 1), "No object #99"),
        (lambda s: s.refine(0, -5, 1), "outside"),
        (lambda s: s.relabel(0, "   "), "class name is needed"),
        (lambda s: s.add_object("x"), "draw a box or click"),
        (lambda s: s.add_object("x", box=(5, 5, 5, 90)), "empty"),
    ],
)
def test_bad_edits_are_clear_errors(session, edit, message):
    with pytest.raises(EditError, match=message):
        edit(session)


def test_object_at_picks_the_smallest_covering_mask(session):
    mask = session.objects[0].mask
    x, y = _point_inside(mask)
    index = session.object_at(x, y)
    assert index is not None and session.objects[index].mask[y, x]


def test_two_sessions_stay_apart(pipe, refiner, truck_rgb, photos):
    from grounded_sam.inputs.images import load_image

    cars = load_image(photos / "cars.jpg")
    first = LabelSession(refiner, truck_rgb, pipe(truck_rgb, "truck"), ["truck"])
    second = LabelSession(refiner, cars, pipe(cars, "car"), ["car"])
    first_masks = [o.mask.copy() for o in first.objects]
    errors = []

    def click_many(session, label):
        try:
            for i in range(4):
                session.refine(0, 20 + 10 * i, 30 + 10 * i, positive=True)
                session.relabel(0, label)
        except Exception as exc:  # noqa: BLE001 - surfaced in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=click_many, args=(second, "vehicle")) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert [o.class_name for o in first.objects] == ["truck", "truck"]
    for before, obj in zip(first_masks, first.objects):
        np.testing.assert_array_equal(before, obj.mask)
    assert second.objects[0].mask.shape == cars.shape[:2]
    assert second.objects[0].class_name == "vehicle"


def test_embedding_cache_evicts_least_recently_used_by_bytes():
    cache = EmbeddingCache(max_bytes=250)
    for key in "abc":
        cache.put(key, ImageEmbedding({}, [(1, 1)], 100))
    assert cache.get("a") is None and cache.get("b") is not None and len(cache) == 2
    cache.put("d", ImageEmbedding({}, [(1, 1)], 100))
    assert cache.get("c") is None and cache.get("b") is not None


def test_click_time_against_a_full_run(pipe, refiner, truck_rgb, capsys):
    """Prints the figures behind the refinement target (a click vs a fresh run); asserts nothing about time."""
    started = time.perf_counter()
    detections = pipe(truck_rgb, "truck, tire")
    full_run = time.perf_counter() - started
    session = LabelSession(refiner, truck_rgb, detections, ["truck", "tire"])
    session.refine(0, 100, 100)  # first click on an object also decodes its box once
    clicks = []
    for i in range(5):
        started = time.perf_counter()
        session.refine(0, 120 + 10 * i, 140, positive=bool(i % 2))
        clicks.append(time.perf_counter() - started)
    with capsys.disabled():
        print(f"\n[refine] full run {full_run * 1000:.0f} ms, click median {np.median(clicks) * 1000:.0f} ms "
              f"({np.median(clicks) / full_run:.1%} of a run), tiny models, CPU")


def test_undo_history_is_bounded(session, monkeypatch):
    import grounded_sam.editing.session as refine

    monkeypatch.setattr(refine, "MAX_HISTORY", 3)
    for name in ["a", "b", "c", "d", "e"]:
        session.relabel(0, name)
    undone = 0
    while session.undo():
        undone += 1
    assert undone == 3
    assert session.objects[0].class_name == "b"


def test_a_refiner_made_before_the_run_shares_the_empty_cache(pipe):
    from grounded_sam.models.sam2.refiner import EmbeddingCache

    pipe.segmenter.embedding_cache = EmbeddingCache()
    early = Sam2Refiner(pipe.segmenter)
    assert early.cache is pipe.segmenter.embedding_cache


def test_detector_scores_survive_edits_and_an_added_object_has_none(pipe, refiner, truck_rgb):
    from grounded_sam.export.labels_json import detections_to_record, record_to_detections
    from grounded_sam.pipeline.postprocess import filter_min_score

    detections = pipe(truck_rgb, "truck, tire")
    scores = np.linspace(0.9, 0.5, len(detections)).astype(np.float32)
    detections.data["detector_score"] = scores  # as Grounding DINO or OWLv2 would give them
    session = LabelSession(refiner, truck_rgb, detections, detections.metadata["class_names"])
    x, y = _point_outside(session.objects[0].mask)
    session.refine(0, x, y, positive=True)
    session.add_object("tire", point=(10, 10))
    edited = session.to_detections()
    np.testing.assert_allclose(edited.data["detector_score"][:-1], scores, atol=1e-6)
    assert np.isnan(edited.data["detector_score"][-1])
    record = detections_to_record(edited, (truck_rgb.shape[1], truck_rgb.shape[0]), session.class_names)
    assert record["detections"][-1]["detector_score"] is None
    assert np.isnan(record_to_detections(record).data["detector_score"][-1])
    assert len(filter_min_score(edited, 0.01)) == len(edited)  # no detector score is no reason to drop
