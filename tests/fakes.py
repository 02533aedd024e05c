"""Test doubles: a pipeline and images made in code, and a constraint that makes Florence-2 write a known text."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import supervision as sv
from PIL import Image

from grounded_sam.detections import empty_detections
from tests.factories import make_detections


def shapes(height: int, width: int, shift: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Three object masks at realistic sizes, scaled to the image: (masks (3, H, W) bool, class ids, scores).

    0: an ellipse (class 0); 1: a ring with a hole, overlapping the ellipse (class 1, higher score);
    2: a mask in two parts (class 1, lowest score).
    """
    yy, xx = np.mgrid[:height, :width]
    s = min(height, width)
    cy, cx = height * 0.5, width * 0.35 + shift
    ellipse = ((yy - cy) / (0.3 * s)) ** 2 + ((xx - cx) / (0.4 * s)) ** 2 < 1
    ring_distance = (yy - 0.4 * height) ** 2 + (xx - (0.6 * width + shift)) ** 2
    ring = (ring_distance < (0.25 * s) ** 2) & (ring_distance >= (0.1 * s) ** 2)
    parts = np.zeros((height, width), dtype=bool)
    parts[int(0.75 * height): int(0.95 * height), int(0.05 * width): int(0.25 * width)] = True
    parts[int(0.8 * height): int(0.95 * height), int(0.75 * width): int(0.95 * width)] = True
    return np.stack([ellipse, ring, parts]), np.array([0, 1, 1]), np.array([0.8, 0.9, 0.6], dtype=np.float32)


def image_key(rgb: np.ndarray) -> int:
    """The value :func:`write_image` put in the image's corners."""
    return round(float(rgb[:4, :4, 0].mean()))


class ShapesPipe:
    """Stands in for GroundedSAM2: the :func:`shapes` masks for every image (shifted by its key).

    Args:
        fail_on: Image keys (:func:`image_key`) on which it raises RuntimeError.
        empty_on: Image keys on which it finds nothing.
    """

    def __init__(self, fail_on: tuple[int, ...] = (), empty_on: tuple[int, ...] = ()) -> None:
        self.fail_on, self.empty_on = fail_on, empty_on
        self.calls = 0

    def __call__(self, rgb: np.ndarray, categories) -> sv.Detections:
        self.calls += 1
        key = image_key(rgb)
        if key in self.fail_on:
            raise RuntimeError(f"model failure on image {key}")
        height, width = rgb.shape[:2]
        if key in self.empty_on:
            return empty_detections((width, height))
        from grounded_sam.categories import parse_categories

        class_names = parse_categories(categories).class_names
        masks, class_ids, scores = shapes(height, width, shift=key % 7)
        class_ids = class_ids % len(class_names)
        names = np.array([class_names[c] for c in class_ids])
        boxes = np.array([sv.mask_to_xyxy(m[None])[0] for m in masks], dtype=np.float32)
        return make_detections(boxes, mask=masks, confidence=scores, class_id=class_ids, class_name=names)


def write_image(path: Path, key: int, size: tuple[int, int] = (320, 240), exif_orientation: int | None = None) -> Path:
    """A random RGB image whose corners hold ``key`` (what :class:`ShapesPipe` keys on); JPEG or PNG by suffix."""
    width, height = size
    rng = np.random.default_rng(key)
    pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    for rows in (slice(0, 8), slice(-8, None)):  # flat corners survive JPEG and any EXIF rotation
        for columns in (slice(0, 8), slice(-8, None)):
            pixels[rows, columns] = key
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(pixels)
    kwargs = {}
    if exif_orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        kwargs["exif"] = exif.tobytes()
    image.save(path, quality=95, **kwargs) if path.suffix.lower() in (".jpg", ".jpeg") else image.save(path, **kwargs)
    return path


def forced_output(tokenizer: Any, texts: list[str]) -> Callable[[int, Any], list[int]]:
    """A ``prefix_allowed_tokens_fn`` making generation for batch row ``i`` emit ``<s>texts[i]</s>``.

    With beams, rows are ``i * num_beams + beam``: callers pass one text per prompt and greedy decoding.
    """
    targets = [[tokenizer.bos_token_id, *tokenizer(t, add_special_tokens=False)["input_ids"], tokenizer.eos_token_id] for t in texts]

    def allowed(batch_id: int, input_ids: Any) -> list[int]:
        target = targets[batch_id % len(targets)]
        step = input_ids.shape[-1] - 1  # the decoder starts from one decoder_start token
        return [target[step]] if step < len(target) else [tokenizer.eos_token_id]

    return allowed
