"""Refinement: one click's time against a fresh full run on the same image.

The hook of the benchmark for click refinement (:mod:`grounded_sam.editing.session`). Where that module
is not there yet, or its API differs from the one used here, the row says "not available yet"
and why, and the rest of the benchmark runs on.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

NOT_AVAILABLE = "not available yet"


def measure_refinement(
    pipe: Any, rgb: np.ndarray, categories: Sequence[str], fresh_run_s: float, *, clicks: int = 3
) -> dict[str, Any]:
    """Times ``clicks`` positive clicks, each on another object, after one automatic run.

    Args:
        pipe: The :class:`~grounded_sam.pipeline.GroundedSAM2` of the scenario.
        rgb: The image.
        categories: The scenario's prompts.
        fresh_run_s: Median seconds of a fresh full run on this image (end to end).
        clicks: Clicks to time; the median is reported.

    Returns:
        ``{"status": "ok", "click_s", "first_click_s", "fresh_run_s", "fraction"}``, or
        ``{"status": "not available yet", "reason"}``.
    """
    try:
        from grounded_sam.editing.refiners import refiner_for
        from grounded_sam.editing.session import LabelSession
    except ImportError as exc:
        return {"status": NOT_AVAILABLE, "reason": f"grounded_sam.editing.session cannot be imported ({exc})"}
    try:
        refiner = refiner_for(pipe)  # attached before the run, so the run's image encoding serves the clicks
        detections = pipe(rgb, list(categories))
        if len(detections) == 0:
            return {"status": NOT_AVAILABLE, "reason": "the automatic run found no objects to click on"}
        session = LabelSession(refiner, rgb, detections, detections.metadata["class_names"])
        times = []
        for i in range(clicks):
            index = i % len(session.objects)
            x1, y1, x2, y2 = session.objects[index].box
            started = time.perf_counter()
            session.refine(index, (x1 + x2) / 2, (y1 + y2) / 2, positive=True)
            times.append(time.perf_counter() - started)
    except (AttributeError, TypeError) as exc:
        # The refinement API is still being written; an API mismatch is reported, not raised.
        logger.warning("Refinement could not be measured: %s", exc)
        return {"status": NOT_AVAILABLE, "reason": f"grounded_sam.editing.session API mismatch ({type(exc).__name__}: {exc})"}
    click = statistics.median(times)
    return {
        "status": "ok", "click_s": click, "first_click_s": times[0], "clicks_s": times,
        "fresh_run_s": fresh_run_s, "fraction": click / fresh_run_s if fresh_run_s > 0 else None,
    }
