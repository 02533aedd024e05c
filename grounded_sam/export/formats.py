"""Which dataset formats a run writes, and the writers that write them, in the order they must run."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

from grounded_sam.annotate import OverlayAnnotator
from grounded_sam.errors import OptionError
from grounded_sam.export.base import OutputWriter
from grounded_sam.export.coco import CocoWriter
from grounded_sam.export.dataset_images import DatasetImageWriter
from grounded_sam.export.labels_json import JsonLabelWriter
from grounded_sam.export.masks import MaskPngWriter
from grounded_sam.export.overlay import OverlayWriter
from grounded_sam.export.voc import VocWriter
from grounded_sam.export.yolo import YoloWriter

#: Dataset formats, in the order they are written.
FORMATS: tuple[str, ...] = ("coco", "yolo", "voc", "masks")


def parse_formats(formats: str | Iterable[str] | None) -> tuple[str, ...]:
    """Dataset formats from ``"coco,yolo"``, a list, or ``"all"``; in :data:`FORMATS` order, no repeats.

    Raises:
        OptionError: An unknown format; the message lists the valid ones.
    """
    if formats is None:
        return ()
    items = formats.split(",") if isinstance(formats, str) else list(formats)
    wanted = {str(item).strip().lower() for item in items if str(item).strip()}
    if "all" in wanted:
        wanted = (wanted - {"all"}) | set(FORMATS)
    unknown = sorted(wanted - set(FORMATS))
    if unknown:
        raise OptionError(
            f"Unknown format {', '.join(unknown)}: expected a comma-separated list of {', '.join(FORMATS)} (or all)."
        )
    return tuple(f for f in FORMATS if f in wanted)


def build_writers(
    out_dir: str | os.PathLike[str], class_names: Sequence[str], formats: Sequence[str], *, plot: bool = False,
    overlap: str = "auto", coco_masks: str = "rle", annotator: OverlayAnnotator | None = None,
) -> list[OutputWriter]:
    """The writers of a run, in the order they must run (the per-image JSON first, then the image copy)."""
    writers: list[OutputWriter] = [JsonLabelWriter(out_dir)]
    if formats:
        writers.append(DatasetImageWriter(out_dir))
    if "coco" in formats:
        writers.append(CocoWriter(out_dir, class_names, masks=coco_masks, overlap=overlap))
    if "yolo" in formats:
        writers.append(YoloWriter(out_dir, class_names, task="detect", overlap=overlap))
        writers.append(YoloWriter(out_dir, class_names, task="segment", overlap=overlap))
    if "voc" in formats:
        writers.append(VocWriter(out_dir, class_names, overlap=overlap))
    if "masks" in formats:
        writers.append(MaskPngWriter(out_dir, class_names, overlap=overlap))
    if plot:
        writers.append(OverlayWriter(out_dir, annotator))
    return writers
