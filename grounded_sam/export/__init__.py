"""Writing labels: the per-image JSON, overlays, and the dataset formats (COCO, YOLO, VOC, masks).

Every writer implements :class:`~grounded_sam.export.base.OutputWriter`: ``write`` one labeled
image as soon as it is done, ``finalize(records)`` at the end of a run for dataset-level files,
assembled from the per-image records one image at a time. Layout of an output folder::

    labels/<stem>.json                 per-image record (source of truth: classes, boxes, scores, RLE masks)
    images/<stem>.<ext>                the upright image the datasets point to (with any format)
    coco/annotations.json              COCO instance segmentation
    yolo/detect/, yolo/segment/        Ultralytics trees with data.yaml
    voc/                               Pascal VOC XML, SegmentationClass, SegmentationObject
    masks/                             instance-id PNGs and binary PNGs per class
    overlays/<stem>.png                with --plot
    manifest.jsonl                     the run's settings and one line per finished image
"""

from grounded_sam.export.base import ImageRecord, LabeledImage, OutputWriter
from grounded_sam.export.coco import CocoWriter
from grounded_sam.export.dataset_images import DatasetImageWriter
from grounded_sam.export.files import atomic_write_bytes, atomic_write_text
from grounded_sam.export.labels_json import JsonLabelWriter, detections_to_record, record_to_detections
from grounded_sam.export.masks import MaskPngWriter
from grounded_sam.export.overlay import OverlayWriter
from grounded_sam.export.rle import decode_rle, encode_mask
from grounded_sam.export.voc import VocWriter
from grounded_sam.export.yolo import YoloWriter

__all__ = [
    "CocoWriter", "DatasetImageWriter", "ImageRecord", "JsonLabelWriter", "LabeledImage", "MaskPngWriter",
    "OutputWriter", "OverlayWriter", "VocWriter", "YoloWriter", "atomic_write_bytes", "atomic_write_text",
    "decode_rle", "detections_to_record", "encode_mask", "record_to_detections",
]
