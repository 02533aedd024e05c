"""Checks that load a run's datasets with readers nobody here wrote and compare them with its labels.

The per-image JSON records (``labels/<stem>.json``, SAM2's masks as RLE) are the reference; each
check loads one format with pycocotools or supervision and asserts the same classes, boxes (the
tight box of each mask) and masks: exact where the format stores pixels, IoU >= ``min_iou`` where
it stores polygons.
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


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def tight_xyxy(mask: np.ndarray) -> list[int]:
    rows, columns = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return [int(columns[0]), int(rows[0]), int(columns[-1]) + 1, int(rows[-1]) + 1]


def owner(masks: np.ndarray, priority: np.ndarray) -> np.ndarray:
    """Reference for non-overlapping masks: each pixel to the covering mask of highest priority, -1 for none."""
    claims = np.where(masks, priority[:, None, None], -np.inf)
    return np.where(masks.any(axis=0), claims.argmax(axis=0), -1)


def records(out: Path) -> dict[str, sv.Detections]:
    """Stem -> the per-image record as Detections."""
    return {p.stem: record_to_detections(json.loads(p.read_text())) for p in (out / "labels").glob("*.json")}


def _by_stem(annotations: dict[str, sv.Detections]) -> dict[str, sv.Detections]:
    return {Path(path).stem: detections for path, detections in annotations.items()}


def check_coco(out: Path, classes: list[str], *, min_iou: float | None = None) -> None:
    """pycocotools loads it and COCOeval of the labels against themselves is AP 1.0; supervision reads the
    same masks (exactly for RLE; ``min_iou`` for polygons) and boxes."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    path = out / "coco" / "annotations.json"
    data = json.loads(path.read_text())
    assert [(c["id"], c["name"]) for c in data["categories"]] == [(i + 1, n) for i, n in enumerate(classes)]
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(path))
        for kind in ("segm", "bbox"):
            evaluation = COCOeval(coco, coco.loadRes([dict(a) for a in data["annotations"]]), kind)
            evaluation.evaluate()
            evaluation.accumulate()
            evaluation.summarize()
            assert evaluation.stats[0] == pytest.approx(1.0), kind
    for annotation in data["annotations"]:
        mask = coco.annToMask(annotation).astype(bool)
        assert annotation["iscrowd"] == 0 and annotation["area"] == mask.sum()
        x, y, w, h = annotation["bbox"]
        assert [x, y, x + w, y + h] == tight_xyxy(mask)

    dataset = sv.DetectionDataset.from_coco(str(out / "images"), str(path), force_masks=True)
    assert dataset.classes == classes
    loaded, expected_all = _by_stem(dataset.annotations), records(out)
    assert sorted(loaded) == sorted(expected_all)
    for stem, expected in expected_all.items():
        got = loaded[stem]
        assert got.class_id.tolist() == expected.class_id.tolist()
        for i, mask in enumerate(expected.mask):
            if min_iou is None:
                np.testing.assert_array_equal(got.mask[i], mask)
                assert got.xyxy[i].tolist() == tight_xyxy(mask)
            else:
                assert iou(got.mask[i], mask) >= min_iou, (stem, i, iou(got.mask[i], mask))


def check_yolo(out: Path, classes: list[str], task: str, *, min_iou: float = 0.98) -> None:
    """supervision's ``from_yolo`` reads the classes, the boxes (detect) or masks (segment, IoU >= ``min_iou``)."""
    root = out / "yolo" / task
    assert "train: images" in (root / "data.yaml").read_text()
    dataset = sv.DetectionDataset.from_yolo(
        str(root / "images"), str(root / "labels"), str(root / "data.yaml"), force_masks=task == "segment"
    )
    assert dataset.classes == classes
    loaded = _by_stem(dataset.annotations)
    for stem, expected in records(out).items():
        got = loaded[stem]
        assert got.class_id.tolist() == expected.class_id.tolist()
        for i, mask in enumerate(expected.mask):
            if task == "detect":
                np.testing.assert_allclose(got.xyxy[i], tight_xyxy(mask), atol=0.01)
            else:
                assert iou(got.mask[i], mask) >= min_iou, (stem, i, iou(got.mask[i], mask))


def check_voc(out: Path, classes: list[str], *, min_iou: float = 0.98) -> None:
    """supervision's ``from_pascal_voc`` reads one object per detection with its exact box and its mask
    (IoU >= ``min_iou``, from the polygons); the segmentation PNGs give each pixel to the higher score."""
    root = out / "voc"
    dataset = sv.DetectionDataset.from_pascal_voc(str(root / "JPEGImages"), str(root / "Annotations"), force_masks=True)
    assert sorted(dataset.classes) == sorted(classes)
    loaded = _by_stem(dataset.annotations)
    for stem, expected in records(out).items():
        got = loaded[stem]
        assert [dataset.classes[c] for c in got.class_id] == [classes[c] for c in expected.class_id]
        for i, mask in enumerate(expected.mask):
            assert got.xyxy[i].tolist() == tight_xyxy(mask)
            assert iou(got.mask[i], mask) >= min_iou, (stem, i, iou(got.mask[i], mask))
        owners = owner(expected.mask, expected.confidence) if len(expected) else -np.ones(expected.mask.shape[1:], int)
        objects = Image.open(root / "SegmentationObject" / f"{stem}.png")
        pixel_classes = Image.open(root / "SegmentationClass" / f"{stem}.png")
        assert objects.mode == pixel_classes.mode == "P"
        np.testing.assert_array_equal(np.array(objects), owners + 1)
        np.testing.assert_array_equal(
            np.array(pixel_classes), np.concatenate([[0], expected.class_id + 1])[owners + 1]
        )


def check_masks(out: Path, classes: list[str]) -> None:
    """The instance PNGs and class PNGs match the labels exactly (each pixel to the higher score)."""
    root = out / "masks"
    listed = json.loads((root / "classes.json").read_text())["classes"]
    assert [c["name"] for c in listed] == classes
    for stem, expected in records(out).items():
        owners = owner(expected.mask, expected.confidence) if len(expected) else -np.ones(expected.mask.shape[1:], int)
        np.testing.assert_array_equal(np.array(Image.open(root / "instances" / f"{stem}.png")), owners + 1)
        pixel_class = np.concatenate([[-1], expected.class_id])[owners + 1]
        for class_id, entry in enumerate(listed):
            binary = np.array(Image.open(root / entry["folder"] / f"{stem}.png"))
            np.testing.assert_array_equal(binary, np.where(pixel_class == class_id, 255, 0))


def check_mot(out: Path) -> float:
    """Loads ``mot.txt`` with motmetrics, checks it against the per-frame records, and returns the MOTA of the
    tracks scored against themselves (1.0 for any well-formed file: every id in every frame matched once)."""
    import motmetrics as mm

    table = mm.io.loadtxt(str(out / "mot.txt"), fmt="mot15-2D")  # converts the 1-based corners back to 0-based
    frames = {json.loads(p.read_text())["frame"]["index"]: json.loads(p.read_text()) for p in (out / "labels").glob("*.json")}
    accumulator = mm.MOTAccumulator(auto_id=False)
    for frame, rows in table.groupby(level=0):
        record = frames[int(frame) - 1]
        expected = {d["track_id"]: d["mask_bbox_xyxy"] for d in record["detections"]}
        ids = [int(i) for i in rows.index.get_level_values(1)]
        boxes = rows[["X", "Y", "Width", "Height"]].to_numpy(float)
        assert ids == sorted(expected)
        for track_id, (x, y, w, h) in zip(ids, boxes):
            assert [x, y, x + w, y + h] == expected[track_id]
        distances = 1 - _box_iou(boxes)
        distances[distances > 0.5] = np.nan
        accumulator.update(ids, ids, distances, frameid=int(frame))
    return float(mm.metrics.create().compute(accumulator, metrics=["mota"], name="run")["mota"].iloc[0])


def _box_iou(boxes: np.ndarray) -> np.ndarray:
    """Pairwise IoU of (N, 4) x, y, w, h boxes (motmetrics' own helper needs NumPy < 2)."""
    x1 = np.maximum(boxes[:, None, 0], boxes[None, :, 0])
    y1 = np.maximum(boxes[:, None, 1], boxes[None, :, 1])
    x2 = np.minimum((boxes[:, 0] + boxes[:, 2])[:, None], (boxes[:, 0] + boxes[:, 2])[None])
    y2 = np.minimum((boxes[:, 1] + boxes[:, 3])[:, None], (boxes[:, 1] + boxes[:, 3])[None])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = boxes[:, 2] * boxes[:, 3]
    return inter / (area[:, None] + area[None] - inter)


def manifest_lines(out: Path) -> list[dict]:
    """A run's ``manifest.jsonl`` lines, without their timings (``seconds``)."""
    lines = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    return [{k: v for k, v in line.items() if k != "seconds"} for line in lines]


def run_files(out: Path) -> dict[str, object]:
    """Every file of a run by relative path, comparable across runs (and engines): the bytes, except the manifest
    as its settings and each source's last record without timings (a resumed run retries its failures, adding
    lines) and ``data.yaml`` without its absolute ``path:`` line."""
    files: dict[str, object] = {}
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        relative = path.relative_to(out).as_posix()
        if path.name == "manifest.jsonl":
            header, *records = manifest_lines(out)
            files[relative] = (header, {record["source"]: record for record in records})
        elif path.name == "data.yaml":
            files[relative] = [line for line in path.read_text().splitlines() if not line.startswith("path:")]
        else:
            files[relative] = path.read_bytes()
    return files
