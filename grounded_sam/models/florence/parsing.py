"""Parsing Florence-2's generated text into pixel boxes.

Florence-2 writes boxes as four location tokens ``<loc_x1><loc_y1><loc_x2><loc_y2>``, each a bin
in 0..999 of the image width or height, after the phrase they belong to:
``"truck<loc_12><loc_40><loc_800><loc_910>tire<loc_...>..."``. These functions are pure, so they
are tested with literal strings and no model.
"""

from __future__ import annotations

import re

import numpy as np

LOCATION_BINS = 1000
_LOC_RUN = re.compile(r"((?:<loc_\d+>)+)")
_LOC = re.compile(r"<loc_(\d+)>")
_SPECIAL = re.compile(r"</?s>|<pad>|<unk>|<mask>")
_TAGS = re.compile(r"</?(?:od|grounding|poly|and|sep)>")


def dequantize_bins(bins: np.ndarray, image_size: tuple[int, int], num_bins: int = LOCATION_BINS) -> np.ndarray:
    """Maps location bins to pixel coordinates at the centre of each bin.

    Args:
        bins: (N, 4) integer bins ``x1, y1, x2, y2``.
        image_size: ``(width, height)`` of the image in pixels.
        num_bins: Bins per axis (1000 for Florence-2).

    Returns:
        (N, 4) float32 xyxy boxes in pixels.
    """
    width, height = image_size
    bins = np.clip(np.asarray(bins, dtype=np.float64).reshape(-1, 4), 0, num_bins - 1)
    scale = np.array([width, height, width, height], dtype=np.float64) / num_bins
    return ((bins + 0.5) * scale).astype(np.float32)


def parse_grounding(text: str, image_size: tuple[int, int]) -> tuple[list[str], np.ndarray]:
    """Parses phrase grounding or open-vocabulary detection output.

    Args:
        text: Decoded generation, special tokens kept (``skip_special_tokens=False``).
        image_size: ``(width, height)`` of the image in pixels.

    Returns:
        ``(phrases, boxes)``: one phrase per box (the text before its run of location tokens; a run
        with no text before it reuses the previous phrase) and (N, 4) float32 xyxy pixel boxes.
        Leftover location tokens that do not make a full box of four are ignored.
    """
    cleaned = _TAGS.sub("", _SPECIAL.sub("", text))
    phrases: list[str] = []
    bins: list[list[int]] = []
    last_phrase = ""
    position = 0
    for match in _LOC_RUN.finditer(cleaned):
        phrase = cleaned[position : match.start()].strip()
        position = match.end()
        if phrase:
            last_phrase = phrase
        values = [int(v) for v in _LOC.findall(match.group(1))]
        for start in range(0, len(values) - 3, 4):
            bins.append(values[start : start + 4])
            phrases.append(last_phrase)
    if not bins:
        return [], np.zeros((0, 4), dtype=np.float32)
    return phrases, dequantize_bins(np.array(bins), image_size)
