"""The per-image downloads of the app: COCO JSON with RLE masks, and mask PNGs."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import supervision as sv
from PIL import Image

from grounded_sam.export.single_image import coco_for_image, mask_png_files, write_coco_json, write_mask_zip
from tests.factories import make_detections


@pytest.fixture
def detections() -> sv.Detections:
    masks = np.zeros((2, 20, 30), dtype=bool)
    masks[0, 2:10, 3:12] = True   # 8 x 9 = 72 pixels
    masks[1, 5:20, 20:30] = True  # 15 x 10 = 150 pixels
    return make_detections([[3, 2, 12, 10], [20.5, 5, 30, 20]], mask=masks, confidence=[0.91, 0.5], class_id=[1, 0],
                           class_name=["hard hat", "person"])


def test_coco_document_for_one_image(detections: sv.Detections) -> None:
    document = coco_for_image(detections, (30, 20), ["person", "hard hat"], "site.jpg")

    assert document["images"] == [{"id": 1, "file_name": "site.jpg", "width": 30, "height": 20}]
    assert document["categories"] == [
        {"id": 1, "name": "person", "supercategory": ""}, {"id": 2, "name": "hard hat", "supercategory": ""},
    ]
    first, second = document["annotations"]
    assert (first["id"], first["image_id"], first["category_id"]) == (1, 1, 2)
    assert second["category_id"] == 1
    assert first["bbox"] == [3.0, 2.0, 9.0, 8.0]  # x, y, w, h
    assert second["bbox"] == [20.5, 5.0, 9.5, 15.0]
    assert (first["area"], second["area"]) == (72, 150)
    assert first["score"] == pytest.approx(0.91) and first["iscrowd"] == 0
    json.dumps(document)  # serialisable as is


def test_coco_document_loads_in_pycocotools(detections: sv.Detections, tmp_path: Path) -> None:
    from pycocotools.coco import COCO

    document = coco_for_image(detections, (30, 20), ["person", "hard hat"], "a.jpg")
    path = write_coco_json(tmp_path / "site_coco.json", document)
    coco = COCO(str(path))

    assert coco.getCatIds() == [1, 2]
    for ann_id, mask in zip(coco.getAnnIds(), detections.mask):
        np.testing.assert_array_equal(coco.annToMask(coco.loadAnns(ann_id)[0]).astype(bool), mask)


def test_coco_without_detections_and_without_masks(detections: sv.Detections) -> None:
    empty = coco_for_image(sv.Detections.empty(), (4, 3), ["a"], "x.png")
    assert empty["annotations"] == [] and empty["categories"][0]["name"] == "a"

    detections.mask = None
    with pytest.raises(ValueError, match="needs detections with masks"):
        coco_for_image(detections, (30, 20), ["person", "hard hat"], "x.png")


def test_mask_pngs_are_binary_images_named_in_detection_order(detections: sv.Detections) -> None:
    files = mask_png_files(detections, "site")

    assert [name for name, _ in files] == ["site_000_hard_hat.png", "site_001_person.png"]
    for (_, data), mask in zip(files, detections.mask):
        image = Image.open(io.BytesIO(data))
        assert image.mode == "L" and image.size == (30, 20)
        np.testing.assert_array_equal(np.asarray(image), mask.astype(np.uint8) * 255)
    assert mask_png_files(sv.Detections.empty(), "x") == []


def test_mask_zip_holds_every_png(detections: sv.Detections, tmp_path: Path) -> None:
    path = write_mask_zip(tmp_path / "site_masks.zip", detections, "site")
    with zipfile.ZipFile(path) as archive:
        assert archive.namelist() == ["site_000_hard_hat.png", "site_001_person.png"]
