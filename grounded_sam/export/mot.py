"""MOTChallenge tracking results: ``<out>/mot.txt``, one line per object per frame of a tracked clip::

    <frame>,<id>,<x>,<y>,<w>,<h>,<score>,-1,-1,-1

``frame`` counts from 1 (the clip's frame index + 1), ``id`` is the track id, the box is the tight
box of the object's mask in pixels with MOTChallenge's 1-based corner (``x = left + 1``,
``y = top + 1``, then width and height), and
``score`` SAM2's predicted IoU at the track's latest detection. Lines are sorted by frame, then
id. Written at the end of a run from the per-frame JSON records, one frame at a time.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from grounded_sam.export.base import ImageRecord, LabeledImage
from grounded_sam.export.files import atomic_open

MOT_PATH = "mot.txt"


class MotWriter:
    """Writes ``<out_dir>/mot.txt`` at the end of a tracking run (nothing per frame)."""

    name = "mot"

    def __init__(self, out_dir: str | os.PathLike[str], path: str = MOT_PATH) -> None:
        self.out_dir = Path(out_dir)
        self.path = self.out_dir / path

    def write(self, item: LabeledImage) -> list[Path]:
        return []

    def finalize(self, records: Sequence[ImageRecord] = ()) -> list[Path]:
        frames = sorted((r for r in records if r.ok and r.labels and r.frame is not None), key=lambda r: r.frame)
        with atomic_open(self.path, "w") as handle:
            for record in frames:
                data = json.loads((self.out_dir / record.labels).read_text(encoding="utf-8"))  # type: ignore[operator]
                rows = sorted((item for item in data["detections"] if "track_id" in item), key=lambda i: i["track_id"])
                for item in rows:
                    x1, y1, x2, y2 = item.get("mask_bbox_xyxy") or item["bbox_xyxy"]
                    score = item.get("score")
                    handle.write(f"{record.frame + 1},{item['track_id']},{_n(x1 + 1)},{_n(y1 + 1)},{_n(x2 - x1)},{_n(y2 - y1)},"
                                 f"{-1 if score is None else score},-1,-1,-1\n")
        return [self.path]


def _n(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.2f}"
