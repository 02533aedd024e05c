"""The options column beside the tabs: the categories, the models and the overlay options both tabs use.

The detector menu lists the detectors that need a segmenter first, then the one-model pipelines
(SAM 3, which makes the masks itself); choosing one of those greys out the segmenter menu and says why.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import gradio as gr

from grounded_sam.app.options import LabelOptions
from grounded_sam.app.settings import AppSettings
from grounded_sam.errors import GroundedSamError
from grounded_sam.pipeline.postprocess import NMS_MODES

__all__ = ["OptionsPanel", "build_options_panel", "detector_choices", "segmenter_state", "segments_by_itself"]

#: The groups of the detector menu, as the start of each entry's label.
WITH_SEGMENTER = "Detector + segmenter"
ONE_MODEL = "One model, no segmenter"
SEGMENTER_INFO = "SAM2 turns each box into a mask. One-model pipelines (sam3) make the masks themselves and ignore it."


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


def segments_by_itself(detector: str | None) -> bool:
    """True when the detector (a registry name or a local folder) makes the masks itself, as ``sam3`` does.

    Reads at most the folder's ``config.json``; a detector that cannot be identified counts as needing a segmenter
    (its error comes when it is run).
    """
    from grounded_sam.models.weights import detector_family

    if not detector:
        return False
    try:
        return detector_family(detector) == "sam3"
    except GroundedSamError:
        return False


def detector_choices(settings: AppSettings) -> list[tuple[str, str]]:
    """The detector menu's ``(label, value)`` pairs, grouped: detectors that need the segmenter, then one-model
    pipelines; each label starts with its group's name. Values are :meth:`AppSettings.model_choices`' (same order
    within a group)."""
    choices = settings.model_choices("detector")
    grouped = sorted(choices, key=lambda choice: segments_by_itself(choice[1]))  # stable: keeps the order within
    return [(f"{ONE_MODEL if segments_by_itself(value) else WITH_SEGMENTER} · {label}", value)
            for label, value in grouped]


def segmenter_state(detector: str | None) -> Any:
    """The segmenter menu for a chosen detector: greyed out, saying it is ignored, when the detector segments by itself."""
    if segments_by_itself(detector):
        return gr.update(interactive=False, info=f"Not used: {Path(str(detector)).name} makes the masks itself.")
    return gr.update(interactive=True, info=SEGMENTER_INFO)


def build_options_panel(settings: AppSettings) -> OptionsPanel:
    """Creates the column, with the server's default models selected."""
    with gr.Column(scale=1, min_width=300):
        categories = gr.Textbox(
            label="Categories", placeholder="truck, tire", lines=2, elem_id="categories",
            info="Separate with commas. 'prompt: class' looks for the prompt and names the class, "
                 "e.g. 'yellow hard hat: helmet, person'.",
        )
        detector = gr.Dropdown(detector_choices(settings), value=settings.detector, label="Detector (boxes)",
                               elem_id="detector")
        one_model = segments_by_itself(settings.detector)
        segmenter = gr.Dropdown(settings.model_choices("segmenter"), value=settings.segmenter,
                                label="Segmenter (masks)", interactive=not one_model,
                                info=segmenter_state(settings.detector)["info"])
        min_score = gr.Slider(0.0, 1.0, value=0.0, step=0.01, label="Minimum score",
                              info="Drops masks scoring under it: SAM2's predicted IoU (or SAM 3's score), and the "
                                   "detector's score where it gives one; 0 keeps all.")
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
    detector.change(segmenter_state, detector, segmenter, queue=False, api_visibility="private",
                    show_progress="hidden")
    return OptionsPanel(categories, detector, segmenter, min_score, nms, nms_iou, show_masks, show_boxes,
                        show_labels, opacity)

