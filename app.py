"""Grounded SAM 2 web app (Gradio). UI wiring only: every model step is the package's.

Run with ``python app.py`` (serves on 127.0.0.1:7860; ``GRADIO_SERVER_NAME`` and
``GRADIO_SERVER_PORT`` override). Models load on first use, not at start.
"""

from __future__ import annotations

import json
import os
from typing import Any

import gradio as gr
import numpy as np

from grounded_sam.annotate import OverlayAnnotator
from grounded_sam.errors import GroundedSamError
from grounded_sam.export import detections_to_record
from grounded_sam.registry import DEFAULT_DETECTOR, DEFAULT_SEGMENTER


def segment(image: np.ndarray | None, categories: str, min_score: float = 0.0) -> tuple[np.ndarray, dict[str, Any]]:
    """Labels one uploaded image: returns the overlay (RGB) and the detections as JSON."""
    from grounded_sam.pipeline import GroundedSAM2

    if image is None:
        raise gr.Error("Upload an image first.")
    pipe = GroundedSAM2(
        os.environ.get("GROUNDED_SAM_DETECTOR", DEFAULT_DETECTOR),
        os.environ.get("GROUNDED_SAM_SEGMENTER", DEFAULT_SEGMENTER),
        os.environ.get("GROUNDED_SAM_DEVICE", "auto"),
        min_score=min_score,
    )
    try:
        detections = pipe(image, categories)
    except GroundedSamError as exc:
        raise gr.Error(str(exc)) from exc
    overlay = OverlayAnnotator().annotate(image, detections)
    height, width = image.shape[:2]
    record = detections_to_record(detections, (width, height), detections.metadata["class_names"])
    return overlay, json.loads(json.dumps(record))


def build_demo() -> gr.Blocks:
    """The app's Blocks, built without loading any model."""
    with gr.Blocks(title="Grounded SAM 2") as demo:
        gr.Markdown("# Grounded SAM 2\nType categories, get masks: Florence-2 finds boxes, SAM2 draws masks.")
        with gr.Row():
            with gr.Column():
                image = gr.Image(type="numpy", label="Image", image_mode="RGB")
                categories = gr.Textbox(label="Categories", placeholder="person, helmet, yellow hard hat: helmet")
                min_score = gr.Slider(0.0, 1.0, value=0.0, step=0.01, label="Minimum score (SAM2 predicted IoU)")
                run = gr.Button("Run", variant="primary")
            with gr.Column():
                overlay = gr.Image(type="numpy", label="Overlay")
                labels = gr.JSON(label="Detections")
        run.click(segment, [image, categories, min_score], [overlay, labels], api_name="segment")
    return demo


if __name__ == "__main__":
    build_demo().queue(default_concurrency_limit=1, max_size=16).launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
    )
