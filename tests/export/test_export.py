"""Per-image JSON labels, RLE masks, atomic writes, overlays, and the helpers of the dataset formats."""

from __future__ import annotations

import json

import numpy as np
import pytest
import supervision as sv
from PIL import Image

from grounded_sam.annotate import OverlayAnnotator, class_color, legend
from grounded_sam.detections import mask_box as mask_bbox_xyxy
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
from grounded_sam.export.dataset_images import can_copy_bytes, dataset_image_name
from grounded_sam.export.files import atomic_link_or_copy, atomic_open, remove_temporary_files
from grounded_sam.export.overlap import non_overlapping, owner_map, priority_order, semantic_owner_map, with_masks
from grounded_sam.export.polygons import mask_to_polygons, merge_polygons, polygon_area
from grounded_sam.export.rle import mask_area, rle_bbox_xywh
from grounded_sam.export.voc import annotation_xml, voc_palette
from tests.factories import make_detections


def _detections(height: int = 40, width: int = 60) -> sv.Detections:
    masks = np.zeros((2, height, width), dtype=bool)
    masks[0, 5:20, 5:30] = True
    masks[1, 25:38, 35:58] = True
    masks[1, 0, 0] = True  # a stray pixel, to check RLE keeps it
    return make_detections([[5, 5, 30, 20], [35, 25, 58, 38]], mask=masks, confidence=[0.9, 0.4], class_id=[0, 1],
                           class_name=["truck", "tire"])


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


# ------------------------------------------------------------------------------------ dataset helpers



def test_record_keeps_the_detector_box_and_adds_the_mask_box():
    record = detections_to_record(_detections(), (60, 40), ["truck", "tire"])
    assert record["detections"][0]["bbox_xyxy"] == [5, 5, 30, 20]
    assert record["detections"][1]["mask_bbox_xyxy"] == [0, 0, 58, 38]  # the stray pixel at (0, 0) counts


@pytest.mark.parametrize("shape", [(1, 1), (7, 3), (40, 60)])
def test_mask_boxes_agree_with_pycocotools(shape):
    mask = np.random.default_rng(sum(shape)).random(shape) > 0.7
    x, y, w, h = rle_bbox_xywh(encode_mask(mask))
    assert mask_bbox_xyxy(mask) == ([x, y, x + w, y + h] if mask.any() else [0, 0, 0, 0])
    assert mask_bbox_xyxy(np.zeros(shape, bool)) == [0, 0, 0, 0]


def test_atomic_open_streams_and_cleans_up_on_error(tmp_path):
    with atomic_open(tmp_path / "a.txt") as handle:
        handle.write("one ")
        handle.write("two")
    assert (tmp_path / "a.txt").read_text() == "one two"
    with pytest.raises(KeyboardInterrupt), atomic_open(tmp_path / "a.txt") as handle:
        handle.write("half")
        raise KeyboardInterrupt
    assert (tmp_path / "a.txt").read_text() == "one two"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_link_or_copy_links_and_falls_back_to_copying(tmp_path, monkeypatch):
    import os

    source = tmp_path / "src.bin"
    source.write_bytes(b"pixels")
    linked = atomic_link_or_copy(source, tmp_path / "tree" / "a.bin")
    assert linked.read_bytes() == b"pixels" and os.path.samefile(linked, source)

    def no_links(*args, **kwargs):
        raise OSError("links not supported here")

    monkeypatch.setattr(os, "link", no_links)
    copied = atomic_link_or_copy(source, tmp_path / "tree" / "b.bin")
    assert copied.read_bytes() == b"pixels" and not os.path.samefile(copied, source)
    assert sorted(p.name for p in (tmp_path / "tree").iterdir()) == ["a.bin", "b.bin"]


def test_remove_temporary_files_only_removes_ours(tmp_path):
    ours = [tmp_path / ".a.json.k3j.tmp", tmp_path / "sub" / ".b.png.x.tmp"]
    theirs = [tmp_path / "a.tmp", tmp_path / ".hidden", tmp_path / "sub" / "b.png"]
    for path in ours + theirs:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    assert sorted(remove_temporary_files(tmp_path)) == sorted(ours)
    assert all(p.exists() for p in theirs)


def _overlapping() -> sv.Detections:
    masks = np.zeros((3, 4, 6), dtype=bool)
    masks[0, :, :4] = True  # class 1, score 0.5
    masks[1, :, 2:] = True  # class 0, score 0.9
    masks[2, 1:3, 1:5] = True  # class 1, score 0.9 (ties with 1: the earlier detection wins)
    return make_detections(np.zeros((3, 4)), mask=masks, confidence=[0.5, 0.9, 0.9], class_id=[1, 0, 1])


def test_priority_orders():
    detections = _overlapping()
    assert priority_order(detections, "score").tolist() == [1, 2, 0]
    assert priority_order(detections, "order").tolist() == [1, 2, 0]
    detections.class_id = np.array([0, 1, 1])
    assert priority_order(detections, "order").tolist() == [0, 1, 2]


def test_owner_map_gives_each_pixel_to_its_strongest_claim():
    owners = owner_map(_overlapping(), "score")
    assert owners[0].tolist() == [0, 0, 1, 1, 1, 1]
    assert owners[1].tolist() == [0, 2, 1, 1, 1, 1]  # 2 ties with 1 on score: 1 is listed first
    resolved = non_overlapping(_overlapping(), "score")
    assert resolved.mask.sum(axis=0).max() == 1 and (resolved.mask.any(axis=0) == _overlapping().mask.any(axis=0)).all()
    np.testing.assert_array_equal(semantic_owner_map(_overlapping(), "auto"), owners)


def test_with_masks_fills_boxes_for_box_only_detections():
    detections = make_detections([[1, 1, 3, 2]], class_id=[0])
    assert with_masks(detections, 3, 4).mask[0].astype(int).tolist() == [[0, 0, 0, 0], [0, 1, 1, 0], [0, 0, 0, 0]]


def _rasterize_coco(polygons, height, width):
    from pycocotools import mask as mask_utils

    rles = mask_utils.frPyObjects([p.reshape(-1).tolist() for p in polygons], height, width)
    return mask_utils.decode(mask_utils.merge(rles)).astype(bool)


def _rasterize_cv2(polygons, height, width):
    out = np.zeros((height, width), dtype=bool)
    for polygon in polygons:
        out |= sv.polygon_to_mask(np.round(polygon).astype(np.int32), (width, height)).astype(bool)
    return out


def _test_masks() -> dict[str, np.ndarray]:
    yy, xx = np.mgrid[:120, :160]
    distance = (yy - 60) ** 2 + (xx - 80) ** 2
    square = np.zeros((120, 160), bool)
    square[10:60, 20:70] = True
    specks = np.random.default_rng(0).random((120, 160)) > 0.97
    two = np.zeros((120, 160), bool)
    two[5:30, 5:30] = True
    two[80:110, 100:150] = True
    return {"square": square, "disc": distance < 40**2, "ring": (distance < 50**2) & (distance >= 20**2),
            "two parts": two, "specks": specks, "pixel": distance == 0}


@pytest.mark.parametrize("name", ["square", "disc", "ring", "two parts", "specks", "pixel"])
def test_polygons_rasterize_back_exactly_in_the_reader_of_their_convention(name):
    mask = _test_masks()[name]
    np.testing.assert_array_equal(_rasterize_coco(mask_to_polygons(mask, "coco"), *mask.shape), mask)
    np.testing.assert_array_equal(_rasterize_cv2(mask_to_polygons(mask, "pixel_centers"), *mask.shape), mask)


def test_polygons_are_closed_loops_without_repeats_and_empty_for_an_empty_mask():
    [square] = mask_to_polygons(_test_masks()["square"], "coco")
    assert square.tolist() == [[20, 10], [20, 59.5], [69.5, 59.5], [69.5, 10]]
    assert mask_to_polygons(np.zeros((5, 5), bool)) == []


@pytest.mark.parametrize(("name", "extra"), [("ring", 0), ("disc", 0), ("two parts", 70)])
def test_merged_outline_covers_the_mask_plus_only_the_cut_between_parts(name, extra):
    mask = _test_masks()[name]
    merged = merge_polygons(mask_to_polygons(mask, "pixel_centers"))
    back = _rasterize_cv2([merged], *mask.shape)
    assert not (mask & ~back).any()
    # The parts (5..29 and 100..149 wide, 5..29 and 80..109 high) are joined by a cut through
    # max(100 - 29, 80 - 29) - 1 = 70 background pixels: fillPoly draws it.
    assert (back & ~mask).sum() <= extra
    assert abs(polygon_area(merged)) > 0


def test_dataset_images_copy_upright_files_and_re_encode_the_rest(tmp_path):
    from PIL import Image

    plain = tmp_path / "plain.JPG"
    Image.new("RGB", (8, 6)).save(plain, format="JPEG")
    rotated = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (8, 6)).save(rotated, exif=exif.tobytes())
    transparent = tmp_path / "alpha.png"
    Image.new("RGBA", (8, 6)).save(transparent)
    odd = tmp_path / "odd.gif"
    Image.new("P", (8, 6)).save(odd)
    assert dataset_image_name(plain, "a") == "a.jpg" and can_copy_bytes(plain)
    assert [dataset_image_name(p, "a") for p in (rotated, transparent, odd, None)] == ["a.png"] * 4


def test_voc_xml_is_one_based_and_holds_polygons():
    import xml.etree.ElementTree as ET

    polygon = np.array([[0.0, 0.0], [9.0, 0.0], [9.0, 4.0]])
    root = ET.fromstring(annotation_xml("a.jpg", (20, 10), [("truck", [0, 0, 10, 5], [polygon])]))
    box = root.find("object/bndbox")
    assert [int(box.find(t).text) for t in ("xmin", "ymin", "xmax", "ymax")] == [1, 1, 10, 5]
    assert [root.find(f"object/polygon/{t}").text for t in ("x1", "y1", "x2", "y3")] == ["1", "1", "10", "5"]
    assert root.find("size/width").text == "20" and root.find("filename").text == "a.jpg"
    assert voc_palette()[:9] == [0, 0, 0, 128, 0, 0, 0, 128, 0]
