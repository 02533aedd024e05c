"""Writing labels: per-image JSON and overlays now; dataset formats slot in as more writers.

Every writer implements :class:`~grounded_sam.export.base.OutputWriter`: ``write`` one labeled
image as soon as it is done, ``finalize`` at the end of a run for dataset-level files.
"""

from grounded_sam.export.base import LabeledImage, OutputWriter
from grounded_sam.export.files import atomic_write_bytes, atomic_write_text
from grounded_sam.export.labels_json import JsonLabelWriter, detections_to_record, record_to_detections
from grounded_sam.export.overlay import OverlayWriter
from grounded_sam.export.rle import decode_rle, encode_mask

__all__ = [
    "JsonLabelWriter", "LabeledImage", "OutputWriter", "OverlayWriter", "atomic_write_bytes", "atomic_write_text",
    "decode_rle", "detections_to_record", "encode_mask", "record_to_detections",
]
