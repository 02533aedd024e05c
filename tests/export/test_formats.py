"""Dataset formats read back by readers nobody here wrote: pycocotools and supervision's loaders.

The pipeline is a stand-in (:class:`tests.fakes.ShapesPipe`) with realistic masks (an ellipse, a
ring with a hole overlapping it, a two-part mask), so these tests check the formats, not the models.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import supervision as sv
from PIL import Image

from grounded_sam.export.labels_json import record_to_detections
from grounded_sam.runs.batch import run_labeling
from tests.fakes import ShapesPipe, write_image
from tests.readers import check_coco, check_masks, check_voc, check_yolo, owner, records

CLASSES = ["truck", "tire"]


@pytest.fixture(scope="module")
def labeled(tmp_path_factory) -> dict[str, Path]:
    """One run per COCO mask mode over 640x480 JPEG/PNG images, an EXIF-rotated one and an empty one."""
    root = tmp_path_factory.mktemp("formats")
    inputs = root / "in"
    write_image(inputs / "a.jpg", 11, (640, 480))
    write_image(inputs / "sub" / "a.jpg", 12, (640, 480))  # same name, other folder
    write_image(inputs / "b.png", 13, (480, 640))
    write_image(inputs / "rotated.jpg", 14, (640, 480), exif_orientation=6)  # upright: 480 wide, 640 high
    write_image(inputs / "empty.png", 15, (320, 240))
    outs = {}
    for masks in ("rle", "polygon"):
        out = root / f"out-{masks}"
        summary = run_labeling(ShapesPipe(empty_on=(15,)), [inputs], "truck, tire", out, formats="all", coco_masks=masks)
        assert not summary.failed and len(summary.labeled) == 5
        outs[masks] = out
    return outs


def test_layout_and_images(labeled):
    out = labeled["rle"]
    stems = ["a", "b", "empty", "rotated", "sub__a"]
    assert sorted(p.stem for p in (out / "images").iterdir()) == stems
    # Bytes copied where no rotation is needed; the EXIF-rotated JPEG written upright as PNG.
    assert (out / "images" / "a.jpg").read_bytes() == (out.parent / "in" / "a.jpg").read_bytes()
    assert Image.open(out / "images" / "rotated.png").size == (480, 640)
    for tree in ("yolo/detect/images", "yolo/segment/images", "voc/JPEGImages"):
        assert sorted(p.name for p in (out / tree).iterdir()) == sorted(p.name for p in (out / "images").iterdir())
        assert (out / tree / "a.jpg").read_bytes() == (out / "images" / "a.jpg").read_bytes()
    assert (out / "voc" / "ImageSets" / "Main" / "trainval.txt").read_text().split() == stems
    assert not list(out.rglob(".*.tmp"))


@pytest.mark.parametrize("masks", ["rle", "polygon"])
def test_coco_loads_in_pycocotools_and_supervision(labeled, masks):
    out = labeled[masks]
    check_coco(out, CLASSES, min_iou=None if masks == "rle" else 0.98)
    sizes = {Path(i["file_name"]).stem: (i["width"], i["height"])
             for i in json.loads((out / "coco" / "annotations.json").read_text())["images"]}
    assert sizes["rotated"] == (480, 640) and sizes["b"] == (480, 640) and sizes["a"] == (640, 480)


def test_coco_polygons_rasterize_back_exactly_in_pycocotools(labeled):
    from pycocotools.coco import COCO

    out = labeled["polygon"]
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(out / "coco" / "annotations.json"))
    expected_all = records(out)
    for image in coco.dataset["images"]:
        expected = expected_all[Path(image["file_name"]).stem]
        annotations = coco.loadAnns(coco.getAnnIds(imgIds=[image["id"]]))
        assert all(isinstance(a["segmentation"], list) for a in annotations)
        for annotation, mask in zip(annotations, expected.mask):
            # Traced on the pixel grid, simplified only where no pixel changes: exact in COCO's own rasterizer.
            np.testing.assert_array_equal(coco.annToMask(annotation).astype(bool), mask)


@pytest.mark.parametrize("task", ["detect", "segment"])
def test_yolo_loads_in_supervision(labeled, task):
    check_yolo(labeled["rle"], CLASSES, task)
    assert (labeled["rle"] / "yolo" / task / "labels" / "empty.txt").read_text() == ""


def test_voc_loads_in_supervision_and_its_pngs_match(labeled):
    check_voc(labeled["rle"], CLASSES)


def test_mask_pngs_match(labeled):
    check_masks(labeled["rle"], CLASSES)


@pytest.mark.parametrize("overlap", ["score", "order"])
def test_explicit_overlap_makes_every_format_non_overlapping(tmp_path, overlap):
    write_image(tmp_path / "in" / "a.png", 21, (640, 480))
    out = tmp_path / "out"
    run_labeling(ShapesPipe(), [tmp_path / "in"], "truck, tire", out, formats="coco,voc,masks", overlap=overlap)
    record = json.loads((out / "labels" / "a.json").read_text())
    original = record_to_detections(record)
    assert (original.mask.sum(axis=0) > 1).any()  # the per-image JSON keeps SAM2's overlapping masks
    priority = original.confidence if overlap == "score" else -original.class_id + original.confidence / 10
    owners = owner(original.mask, priority)
    dataset = sv.DetectionDataset.from_coco(str(out / "images"), str(out / "coco" / "annotations.json"), force_masks=True)
    [coco] = dataset.annotations.values()
    assert coco.mask.sum(axis=0).max() == 1
    for i in range(len(original)):
        np.testing.assert_array_equal(coco.mask[i], owners == i)
    np.testing.assert_array_equal(np.array(Image.open(out / "masks" / "instances" / "a.png")), owners + 1)
