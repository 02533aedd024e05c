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


def write_clip(path: Path, frames: list[np.ndarray], fps: int = 10, codec: str = "mpeg4") -> Path:
    """Encodes (H, W, 3) uint8 RGB frames (even sides) into a clip with PyAV; ``mpeg4`` is lossy but fast."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        for rgb in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


class MovingSquares:
    """A synthetic scene: squares that move, one entering at ``enter_at`` and one leaving at ``leave_at``.

    Object 0 (class 0) moves right the whole clip; object 1 (class 1) is present until ``leave_at``;
    object 2 (class 0) appears at ``enter_at``. :meth:`masks` gives each frame's ground truth.
    """

    def __init__(self, frames: int = 40, size: tuple[int, int] = (96, 64), enter_at: int = 20, leave_at: int = 30) -> None:
        self.frames, self.size, self.enter_at, self.leave_at = frames, size, enter_at, leave_at

    def masks(self, index: int) -> dict[int, np.ndarray]:
        """Object number -> (H, W) bool mask of the objects present on frame ``index``."""
        width, height = self.size
        boxes = {0: (4 + index, 6, 20 + index, 22)}
        if index < self.leave_at:
            boxes[1] = (60, 30 - index // 4, 76, 46 - index // 4)
        if index >= self.enter_at:
            boxes[2] = (30, 44, 44, 58)
        masks = {}
        for number, (x1, y1, x2, y2) in boxes.items():
            mask = np.zeros((height, width), bool)
            mask[y1:y2, x1:x2] = True
            masks[number] = mask
        return masks

    def frame(self, index: int) -> np.ndarray:
        """(H, W, 3) uint8 RGB: the index is written in the corner pixel, so a test double can read it back."""
        width, height = self.size
        rgb = np.full((height, width, 3), 30, np.uint8)
        for number, mask in self.masks(index).items():
            rgb[mask] = (200, 60 + 60 * number, 40)
        rgb[0, 0] = (index, index, index)
        return rgb

    def class_of(self, number: int) -> int:
        return 1 if number == 1 else 0

    def detect(self, rgb: np.ndarray) -> sv.Detections:
        """A perfect detector: the ground-truth objects of the frame (read from its corner pixel)."""
        masks = self.masks(int(rgb[0, 0, 0]))
        numbers = sorted(masks)
        return make_detections([mask_xyxy(masks[n]) for n in numbers], mask=[masks[n] for n in numbers],
                               class_id=[self.class_of(n) for n in numbers], confidence=[0.9] * len(numbers),
                               class_name=[("square", "bar")[self.class_of(n)] for n in numbers])

    def propagate(self, frames: list[np.ndarray], prompts: dict[int, np.ndarray]):
        """A perfect propagator: each prompted object follows the ground-truth object it overlaps most."""
        start = self.masks(int(frames[0][0, 0, 0]))
        follows = {}
        for obj_id, prompt in prompts.items():
            overlaps = {n: np.count_nonzero(prompt & m) for n, m in start.items()}
            follows[obj_id] = max(overlaps, key=overlaps.get) if overlaps and max(overlaps.values()) else None
        for rgb in frames:
            truth = self.masks(int(rgb[0, 0, 0]))
            height, width = rgb.shape[:2]
            yield {obj_id: truth.get(n, np.zeros((height, width), bool)) if n is not None else np.zeros((height, width), bool)
                   for obj_id, n in follows.items()}


def mask_xyxy(mask: np.ndarray) -> list[int]:
    from grounded_sam.detections import mask_box

    return mask_box(mask)


def write_squares_clip(path: Path, frames: int, **scene: Any) -> Path:
    """Writes ``frames`` frames of :class:`MovingSquares` (``scene``: its other arguments) to a clip at ``path``."""
    squares = MovingSquares(frames=frames, **scene)
    return write_clip(path, [squares.frame(i) for i in range(frames)])
