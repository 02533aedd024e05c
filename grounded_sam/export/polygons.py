"""Binary masks -> polygons that training tools rasterize back into the same pixels.

Readers disagree on what a polygon vertex means. pycocotools (COCO's own rasterizer, used by
Detectron2, MMDetection and COCO evaluation) fills the area inside the outline, pixel ``j`` being
the square ``[j, j+1)``; OpenCV's ``fillPoly`` (Ultralytics, supervision's YOLO and VOC readers)
rounds vertices to pixel centres and fills the outline's pixels too. A contour through pixel centres
(what ``cv2.findContours`` gives) therefore loses half a pixel all round in pycocotools. So the
outline is traced on a 2x-upsampled mask, whose contour runs a quarter pixel outside the pixel
centres, and shifted per reader:

* ``"coco"``: edges at ``x0`` and ``x1 + 0.5`` for a run of pixels ``x0..x1``: pycocotools gives
  back exactly those pixels; ``fillPoly`` readers get at most one extra pixel on the right and
  bottom edges.
* ``"pixel_centers"``: edges at ``x0 - 0.25`` and ``x1 + 0.25``: rounded to centres, ``fillPoly``
  gives back exactly those pixels (YOLO and VOC polygons).

Holes are joined to their outline by zero-width cuts (between nearest vertices, there and back), so
they survive in formats whose polygons cannot list holes; both rasterizers leave the hole empty
(``fillPoly`` draws the one-pixel cut itself). :func:`merge_polygons` joins the parts of a
multi-part mask the same way, as Ultralytics' own converters do, for formats with one polygon per
object. Cuts chain each hole or part to its nearest neighbour rather than all to one outline, so
they stay short and seldom cross another hole, even in a mask of thousands of specks. Outlines are
simplified (Douglas-Peucker) with a tolerance of a quarter pixel by default, which drops only the
vertices that change no pixel: ``"coco"`` polygons then rasterize back exactly in pycocotools, and
``"pixel_centers"`` polygons exactly in ``fillPoly`` (but for the cuts joining separate parts).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

PolygonConvention = Literal["coco", "pixel_centers"]
_OFFSETS = {"coco": 0.0, "pixel_centers": -0.25}


def mask_to_polygons(
    mask: np.ndarray, convention: PolygonConvention = "coco", tolerance: float = 0.25
) -> list[np.ndarray]:
    """Outlines of a mask, one polygon per connected part, holes cut in.

    Args:
        mask: (H, W) bool or 0/1 array.
        convention: ``"coco"`` or ``"pixel_centers"``; see the module docstring.
        tolerance: Largest distance, in pixels, a simplified outline may stray from the traced one
            (Douglas-Peucker); 0 keeps every corner. Above 0.25 outlines get shorter but no longer
            rasterize back exactly.

    Returns:
        Polygons as (K, 2) float64 arrays of ``(x, y)`` pixel coordinates, K >= 3, not closed (the
        first vertex is not repeated); empty for an empty mask.
    """
    import cv2

    if convention not in _OFFSETS:
        raise ValueError(f"convention must be one of {', '.join(_OFFSETS)}, but got {convention!r}")
    mask = np.asarray(mask, dtype=bool)
    rows, columns = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return []
    # Trace only the mask's box (with a free border) so that a small object in a big photo stays cheap.
    top, left = max(int(rows[0]) - 1, 0), max(int(columns[0]) - 1, 0)
    crop = mask[top: int(rows[-1]) + 2, left: int(columns[-1]) + 2]
    doubled = np.repeat(np.repeat(crop.astype(np.uint8), 2, axis=0), 2, axis=1)
    contours, hierarchy = cv2.findContours(doubled, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return []
    hierarchy = hierarchy[0]
    shift = np.array([left, top], dtype=np.float64) + _OFFSETS[convention]

    def points(contour: np.ndarray) -> np.ndarray | None:
        if tolerance > 0:
            simplified = cv2.approxPolyDP(contour, 2 * tolerance, True)
            if len(simplified) >= 3:
                contour = simplified
        if len(contour) < 3:
            return None
        return contour.reshape(-1, 2).astype(np.float64) / 2.0 + shift

    polygons = []
    for index, contour in enumerate(contours):
        if hierarchy[index][3] != -1:  # a hole: cut into its outline below
            continue
        outline = points(contour)
        if outline is None:
            continue
        holes, child = [], hierarchy[index][2]
        while child != -1:
            hole = points(contours[child])
            if hole is not None:
                holes.append(hole)
            child = hierarchy[child][0]
        polygons.append(merge_polygons([outline, *holes], first=0))  # type: ignore[arg-type]
    return polygons


def merge_polygons(polygons: list[np.ndarray], first: int | None = None) -> np.ndarray | None:
    """Joins several polygons into one outline by zero-width cuts; None if there are none.

    The parts are chained, each to the nearest part not yet visited (by their centres), starting
    from ``first`` (default: the largest), and each cut runs between the nearest vertices of two
    consecutive parts, so the cuts stay short even for a mask in thousands of specks. The outline
    walks down the chain and back: part 0 to its cut, part 1 from its entry to its cut, ..., the
    last part all round, then each part from its cut back round to its entry.
    """
    if not polygons:
        return None
    if len(polygons) == 1:
        return polygons[0]
    if first is None:
        first = int(np.argmax([abs(polygon_area(p)) for p in polygons]))
    chain = [polygons[k] for k in _chain_order(polygons, first)]
    # Rotate every part to start at its entry vertex (where the cut from the previous part lands).
    rotated, exits = [chain[0]], []
    for k in range(len(chain) - 1):
        i, j = _nearest_pair(rotated[k], chain[k + 1])
        exits.append(i)
        rotated.append(np.concatenate([chain[k + 1][j:], chain[k + 1][:j]]))
    down = [part[: exit + 1] for part, exit in zip(rotated, exits)]
    last = rotated[-1]
    turn = [np.concatenate([last, last[:1]])]
    # Back up the chain: from the cut round to the entry (the first part needs no closing vertex).
    up = [np.concatenate([part[exit:], part[:1]]) for part, exit in zip(rotated[1:-1], exits[1:])][::-1]
    return np.concatenate([*down, *turn, *up, rotated[0][exits[0]:]])


def _chain_order(polygons: list[np.ndarray], first: int) -> list[int]:
    """Greedy nearest-neighbour order of the parts' centres from ``first``.

    Each centre's 16 nearest neighbours come from one KD-tree query up front; only when all of
    them are visited does a step look at every remaining part.
    """
    from scipy.spatial import cKDTree

    centres = np.array([p.mean(axis=0) for p in polygons])
    _, neighbours = cKDTree(centres).query(centres, k=min(16, len(polygons)))
    neighbours = np.asarray(neighbours).reshape(len(polygons), -1).tolist()
    left = [True] * len(polygons)
    order, current = [first], first
    left[first] = False
    for _ in range(len(polygons) - 1):
        nearest = next((c for c in neighbours[current] if left[c]), None)
        if nearest is None:
            remaining = np.flatnonzero(left)
            nearest = int(remaining[np.argmin(((centres[remaining] - centres[current]) ** 2).sum(axis=1))])
        current = nearest
        order.append(current)
        left[current] = False
    return order


def _nearest_pair(a: np.ndarray, b: np.ndarray) -> tuple[int, int]:
    """Indices ``(i, j)`` of the closest vertices ``a[i]``, ``b[j]``."""
    if len(a) * len(b) <= 65536:
        distances = ((a[:, None, :] - b[None, :, :]) ** 2).sum(axis=-1)
        i, j = divmod(int(distances.argmin()), len(b))
        return i, j
    from scipy.spatial import cKDTree

    distances, nearest = cKDTree(a).query(b)
    j = int(np.argmin(distances))
    return int(nearest[j]), j


def polygon_area(polygon: np.ndarray) -> float:
    """Signed area (shoelace) of a (K, 2) polygon."""
    import cv2

    return float(cv2.contourArea(np.ascontiguousarray(polygon, dtype=np.float32), oriented=True))


def flatten(polygon: np.ndarray, decimals: int = 2) -> list[float]:
    """``[x1, y1, x2, y2, ...]`` as JSON-friendly floats (COCO's polygon layout)."""
    return [round(float(v), decimals) for v in polygon.reshape(-1)]
