"""Overlay redraws and downloads of an editing session, on hand-made objects (no model)."""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from grounded_sam.annotate import OverlayAnnotator, class_color
from grounded_sam.editing.downloads import LabelFiles
from grounded_sam.editing.session import EditableObject, objects_to_detections
from grounded_sam.editing.view import (
    OverlayRenderer,
    OverlayStyle,
    encode_jpeg,
    object_rows,
    table_rows,
)
from grounded_sam.export.single_image import coco_for_image, mask_png_files

H, W = 60, 80
CLASSES = ["truck", "tire"]


def rect(x1: int, y1: int, x2: int, y2: int) -> np.ndarray:
    mask = np.zeros((H, W), bool)
    mask[y1:y2, x1:x2] = True
    return mask


@pytest.fixture
def image() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (H, W, 3), dtype=np.uint8)


@pytest.fixture
def objects() -> list[EditableObject]:
    return [
        EditableObject(rect(5, 5, 30, 25), np.array([4, 4, 31, 26], np.float32), "truck", 0.9),
        EditableObject(rect(40, 30, 70, 55), np.array([39, 29, 71, 56], np.float32), "tire", 0.8),
    ]


def test_without_a_selection_the_overlay_is_the_automatic_runs(image, objects) -> None:
    renderer = OverlayRenderer(image)
    expected = OverlayAnnotator().annotate(image, objects_to_detections(objects, CLASSES))
    np.testing.assert_array_equal(renderer.render(objects, CLASSES), expected)


def test_the_selected_object_is_highlighted_and_nothing_outside_its_region_changes(image, objects) -> None:
    renderer = OverlayRenderer(image, OverlayStyle(boxes=False, labels=False))
    plain = renderer.render(objects, CLASSES)
    selected = renderer.render(objects, CLASSES, selected=1)

    changed = np.any(selected != plain, axis=2)
    ys, xs = np.nonzero(changed)
    pad = 3 * renderer.thickness + 2
    assert xs.min() >= 40 - pad and xs.max() < 70 + pad and ys.min() >= 30 - pad and ys.max() < 55 + pad
    # A stronger fill inside, a white ring just outside.
    colour = np.array(class_color(1).as_rgb(), float)
    inside = (slice(35, 50), slice(45, 65))
    assert (np.abs(selected[inside] - colour).mean() < np.abs(plain[inside].astype(float) - colour).mean())
    assert (selected[30:55, 70 + renderer.thickness - 1] == 255).all()


def test_clicks_on_the_selected_object_do_not_redraw_the_others(image, objects) -> None:
    renderer = OverlayRenderer(image)
    renderer.render(objects, CLASSES, selected=0)
    for step in range(3):  # each click replaces the selected object only
        objects[0] = replace(objects[0], mask=rect(5, 5, 31 + step, 25), edited=True,
                             points=np.array([[30 + step, 10]], np.float32), labels=np.array([1], np.int32))
        renderer.render(objects, CLASSES, selected=0)
    assert renderer.base_renders == 1

    renderer.render(objects, CLASSES, selected=1)  # another selection: the others are others now
    renderer.style = OverlayStyle(opacity=0.9)  # another style
    renderer.render(objects, CLASSES, selected=1)
    assert renderer.base_renders == 3


def test_clicks_and_a_pending_corner_are_drawn(image, objects) -> None:
    renderer = OverlayRenderer(image, OverlayStyle(masks=False, boxes=False, labels=False))
    objects[0] = replace(objects[0], points=np.array([[10, 10], [20, 20]], np.float32),
                         labels=np.array([1, 0], np.int32))
    drawn = renderer.render(objects, CLASSES, selected=0, marker=(60.0, 10.0))
    assert tuple(drawn[10, 10]) == (40, 200, 60)  # positive: green
    assert tuple(drawn[20, 20]) == (235, 50, 50)  # negative: red
    assert tuple(drawn[10, 60]) == (255, 255, 255)  # the corner's cross


def test_boxes_and_rows_follow_what_the_session_exports(objects) -> None:
    edited = replace(objects[0], mask=rect(8, 6, 20, 16), edited=True)
    detections = objects_to_detections([edited, objects[1]], CLASSES)
    np.testing.assert_array_equal(detections.xyxy, [[8, 6, 20, 16], [39, 29, 71, 56]])  # edited: the mask's box
    rows = [[0, "truck", "0.900", "8, 6, 20, 16", 120], [1, "tire", "0.800", "39, 29, 71, 56", 750]]
    assert table_rows(detections) == rows
    assert object_rows([edited, objects[1]]) == rows


def test_the_display_overlay_is_a_jpeg_of_the_full_size(image) -> None:
    with Image.open(io.BytesIO(encode_jpeg(image))) as decoded:
        assert decoded.format == "JPEG" and decoded.size == (W, H)


def png_pixels(data: bytes) -> tuple[str, np.ndarray]:
    with Image.open(io.BytesIO(data)) as image:
        return image.mode, np.asarray(image)


def test_label_files_hold_what_the_single_image_downloads_hold(tmp_path, objects) -> None:
    files = LabelFiles(tmp_path, "site", "site.jpg")
    objects[1] = replace(objects[1], class_name="wheel nut/bolt", edited=True)
    classes = [*CLASSES, "wheel nut/bolt"]
    coco_path, zip_path = files.write(objects, classes, (W, H))

    detections = objects_to_detections(objects, classes)
    assert json.loads(coco_path.read_text()) == coco_for_image(detections, (W, H), classes, "site.jpg")
    expected = mask_png_files(detections, "site")
    with zipfile.ZipFile(zip_path) as archive:
        assert archive.namelist() == [name for name, _ in expected]
        for name, data in expected:  # same pixels (written with a faster zlib level)
            mode, pixels = png_pixels(archive.read(name))
            assert mode == "L"
            np.testing.assert_array_equal(pixels, png_pixels(data)[1])
    assert [p.name for p in (coco_path, zip_path)] == ["site_coco.json", "site_masks.zip"]
    assert not list(tmp_path.glob(".*.tmp"))


def test_label_files_encode_only_the_masks_that_changed(tmp_path, objects) -> None:
    files = LabelFiles(tmp_path, "site", "site.jpg")
    files.write(objects, CLASSES, (W, H))
    assert files.encoded == 2
    objects[1] = replace(objects[1], class_name="truck")  # relabel: same mask
    files.write(objects, CLASSES, (W, H))
    assert files.encoded == 2
    objects[0] = replace(objects[0], mask=rect(5, 5, 20, 20), edited=True)  # a click: one new mask
    files.write(objects, CLASSES, (W, H))
    assert files.encoded == 3
    coco = json.loads((tmp_path / "site_coco.json").read_text())
    assert [a["area"] for a in coco["annotations"]] == [225, 750]
    assert [a["category_id"] for a in coco["annotations"]] == [1, 1]


def test_label_files_with_no_objects(tmp_path) -> None:
    coco_path, zip_path = LabelFiles(tmp_path, "site", "site.jpg").write([], CLASSES, (W, H))
    assert json.loads(coco_path.read_text())["annotations"] == []
    with zipfile.ZipFile(zip_path) as archive:
        assert archive.namelist() == []


def test_an_opacity_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match="opacity must be within"):
        OverlayStyle(opacity=1.5)
