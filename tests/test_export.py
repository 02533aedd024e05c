"""Per-image JSON labels, RLE masks, atomic writes and overlays."""

from __future__ import annotations

import json

import numpy as np
import pytest
import supervision as sv
from PIL import Image

from grounded_sam.annotate import OverlayAnnotator, class_color, legend
from grounded_sam.export import (
    JsonLabelWriter,
    LabeledImage,
    OverlayWriter,
    atomic_write_text,
    decode_rle,
    detections_to_record,
    encode_mask,
    record_to_detections,
)
from grounded_sam.export.rle import mask_area


def _detections(height: int = 40, width: int = 60) -> sv.Detections:
    masks = np.zeros((2, height, width), dtype=bool)
    masks[0, 5:20, 5:30] = True
    masks[1, 25:38, 35:58] = True
    masks[1, 0, 0] = True  # a stray pixel, to check RLE keeps it
    return sv.Detections(
        xyxy=np.array([[5, 5, 30, 20], [35, 25, 58, 38]], dtype=np.float32),
        mask=masks,
        confidence=np.array([0.9, 0.4], dtype=np.float32),
        class_id=np.array([0, 1]),
        data={"class_name": np.array(["truck", "tire"])},
    )


@pytest.mark.parametrize("shape", [(1, 1), (7, 3), (40, 60)])
def test_rle_round_trip_is_exact(shape):
    mask = np.random.default_rng(sum(shape)).random(shape) > 0.5
    rle = encode_mask(mask)
    assert rle["size"] == list(shape) and isinstance(rle["counts"], str)
    np.testing.assert_array_equal(decode_rle(rle), mask)
    assert mask_area(rle) == mask.sum()


def test_record_round_trip(tmp_path):
    detections = _detections()
    record = detections_to_record(detections, (60, 40), ["truck", "tire"], source="/x/img.jpg", settings={"a": 1})
    record = json.loads(json.dumps(record))
    assert record["image"] == {"source": "/x/img.jpg", "file_name": "img.jpg", "width": 60, "height": 40}
    assert record["categories"] == ["truck", "tire"]
    assert [d["area"] for d in record["detections"]] == [15 * 25, 13 * 23 + 1]
    back = record_to_detections(record)
    np.testing.assert_array_equal(back.mask, detections.mask)
    np.testing.assert_allclose(back.xyxy, detections.xyxy)
    np.testing.assert_allclose(back.confidence, detections.confidence, atol=1e-5)
    assert back.data["class_name"].tolist() == ["truck", "tire"]


def test_empty_record_round_trip():
    empty = sv.Detections.empty()
    record = detections_to_record(empty, (10, 8), ["truck"])
    assert record["detections"] == []
    assert record_to_detections(record).mask.shape == (0, 8, 10)


def test_atomic_write_leaves_no_temporary_files(tmp_path):
    target = atomic_write_text(tmp_path / "sub" / "a.json", "{}")
    atomic_write_text(target, '{"b": 2}')
    assert json.loads(target.read_text()) == {"b": 2}
    assert sorted(p.name for p in target.parent.iterdir()) == ["a.json"]


def test_atomic_write_failure_keeps_the_old_file(tmp_path, monkeypatch):
    import os

    target = atomic_write_text(tmp_path / "a.json", "old")

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError):
        atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_writers_write_json_and_png(tmp_path):
    image = np.full((40, 60, 3), 200, dtype=np.uint8)
    item = LabeledImage("/in/img.jpg", "img", image, _detections(), ("truck", "tire"), {"k": "v"})
    json_paths = JsonLabelWriter(tmp_path).write(item)
    png_paths = OverlayWriter(tmp_path).write(item)
    assert [p.relative_to(tmp_path).as_posix() for p in json_paths + png_paths] == ["labels/img.json", "overlays/img.png"]
    assert json.loads(json_paths[0].read_text())["settings"] == {"k": "v"}
    assert Image.open(png_paths[0]).size == (60, 40)


def test_overlay_colours_each_class_with_its_palette_colour():
    image = np.zeros((40, 60, 3), dtype=np.uint8)
    overlay = OverlayAnnotator(boxes=False, labels=False, opacity=1.0).annotate(image, _detections())
    assert overlay.shape == image.shape and overlay.dtype == np.uint8
    assert tuple(overlay[10, 10]) == class_color(0).as_rgb()
    assert tuple(overlay[30, 45]) == class_color(1).as_rgb()
    assert tuple(overlay[39, 0]) == (0, 0, 0)
    assert image.sum() == 0  # the input is left alone


def test_overlay_with_boxes_and_labels_keeps_the_size():
    image = np.full((400, 600, 3), 90, dtype=np.uint8)
    overlay = OverlayAnnotator().annotate(image, _detections(400, 600))
    assert overlay.shape == image.shape
    assert not np.array_equal(overlay, image)


def test_legend_lists_classes_with_stable_colours():
    assert legend(["truck", "tire"]) == [("truck", class_color(0).as_hex()), ("tire", class_color(1).as_hex())]
