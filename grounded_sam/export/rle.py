"""Binary masks <-> COCO run-length encoding (compressed RLE, as pycocotools writes it)."""

from __future__ import annotations

from typing import Any

import numpy as np


def encode_mask(mask: np.ndarray) -> dict[str, Any]:
    """Encodes one mask as COCO compressed RLE.

    Args:
        mask: (H, W) bool or 0/1 array.

    Returns:
        ``{"size": [H, W], "counts": str}``, JSON-serialisable.
    """
    from pycocotools import mask as mask_utils

    encoded = mask_utils.encode(np.asfortranarray(np.asarray(mask, dtype=np.uint8)))
    return {"size": [int(encoded["size"][0]), int(encoded["size"][1])], "counts": encoded["counts"].decode("ascii")}


def decode_rle(rle: dict[str, Any]) -> np.ndarray:
    """Decodes COCO RLE (compressed string or uncompressed list counts) to an (H, W) bool mask."""
    from pycocotools import mask as mask_utils

    height, width = rle["size"]
    counts = rle["counts"]
    if isinstance(counts, list):
        compressed = mask_utils.frPyObjects({"size": [height, width], "counts": counts}, height, width)
    else:
        compressed = {"size": [height, width], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    return mask_utils.decode(compressed).astype(bool)


def mask_area(rle: dict[str, Any]) -> int:
    """Pixel count of an RLE mask (without decoding it)."""
    from pycocotools import mask as mask_utils

    counts = rle["counts"]
    compressed = {"size": rle["size"], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    return int(mask_utils.area(compressed))


def _compressed(rle: dict[str, Any]) -> dict[str, Any]:
    counts = rle["counts"]
    return {"size": list(rle["size"]), "counts": counts.encode("ascii") if isinstance(counts, str) else counts}


def rle_bbox_xywh(rle: dict[str, Any]) -> list[int]:
    """Tight box ``[x, y, width, height]`` (pixels, COCO's box) of an RLE mask; zeros when it is empty."""
    from pycocotools import mask as mask_utils

    return [int(v) for v in mask_utils.toBbox(_compressed(rle))]
