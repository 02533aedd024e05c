"""The options column beside the tabs: the categories, the models and the overlay options both tabs use."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import gradio as gr

from grounded_sam.app.options import LabelOptions
from grounded_sam.app.settings import AppSettings
from grounded_sam.pipeline.postprocess import NMS_MODES

__all__ = ["OptionsPanel", "build_options_panel"]


@dataclass(frozen=True)
class OptionsPanel:
    """The column's components, one per :class:`~grounded_sam.app.options.LabelOptions` value, in the API's order."""

    categories: gr.Textbox
    detector: gr.Dropdown
    segmenter: gr.Dropdown
    min_score: gr.Slider
    nms: gr.Dropdown
    nms_iou: gr.Slider
    show_masks: gr.Checkbox
    show_boxes: gr.Checkbox
    show_labels: gr.Checkbox
    opacity: gr.Slider

    @property
    def components(self) -> list[gr.components.Component]:
        """Every option, in the order of the named API's parameters (after the image or files)."""
        return [getattr(self, f.name) for f in fields(self)]

    @property
    def overlay(self) -> list[gr.components.Component]:
        """The overlay options: a change redraws the last result."""
        return [self.show_masks, self.show_boxes, self.show_labels, self.opacity]

    def read(self, values: Mapping[Any, Any]) -> LabelOptions:
        """The options among an event's inputs (a dict-input event's values, by component); absent ones keep
        their defaults."""
        return LabelOptions.from_flat({f.name: values[getattr(self, f.name)] for f in fields(self)
                                       if getattr(self, f.name) in values})


def build_options_panel(settings: AppSettings) -> OptionsPanel:
    """Creates the column, with the server's default models selected."""
    with gr.Column(scale=1, min_width=300):
        categories = gr.Textbox(
            label="Categories", placeholder="truck, tire", lines=2, elem_id="categories",
            info="Separate with commas. 'prompt: class' looks for the prompt and names the class, "
                 "e.g. 'yellow hard hat: helmet, person'.",
        )
        detector = gr.Dropdown(settings.model_choices("detector"), value=settings.detector, label="Detector (boxes)",
                               elem_id="detector")
        segmenter = gr.Dropdown(settings.model_choices("segmenter"), value=settings.segmenter,
                                label="Segmenter (masks)")
        min_score = gr.Slider(0.0, 1.0, value=0.0, step=0.01, label="Minimum score",
                              info="SAM2's predicted IoU of each mask; 0 keeps all.")
        with gr.Row():
            nms = gr.Dropdown(list(NMS_MODES), value="class", label="NMS",
                              info="Drop overlaps within a class, across all, or none.")
            nms_iou = gr.Slider(0.05, 1.0, value=0.7, step=0.05, label="NMS overlap (IoU)")
        with gr.Accordion("Overlay", open=True):
            with gr.Row():
                show_masks = gr.Checkbox(value=True, label="Masks", elem_id="show-masks")
                show_boxes = gr.Checkbox(value=True, label="Boxes", elem_id="show-boxes")
                show_labels = gr.Checkbox(value=True, label="Labels", elem_id="show-labels")
            opacity = gr.Slider(0.0, 1.0, value=0.5, step=0.05, label="Mask opacity")
    return OptionsPanel(categories, detector, segmenter, min_score, nms, nms_iou, show_masks, show_boxes,
                        show_labels, opacity)

