"""The image tab: one photo, Run, the overlay with its legend, table and downloads, and the edit panel.

Run clears the last result, labels the image (the named API endpoint ``/segment``), then opens an
editor of the result; a change of an overlay option redraws the last result (with its edits)
without running the models.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio as gr
from gradio.components import Component

from grounded_sam.app.edit_panel import (
    EditHandlers,
    ResultView,
    build_edit_panel,
    build_resume_row,
    editor_state,
    wire_edit_panel,
)
from grounded_sam.app.errors import user_errors
from grounded_sam.app.image_result import redraw_overlay, segment_image
from grounded_sam.app.options import LabelOptions
from grounded_sam.app.options_panel import OptionsPanel
from grounded_sam.app.queues import EDIT_GROUP, MODEL_EVENT
from grounded_sam.app.settings import AppSettings

if TYPE_CHECKING:
    from grounded_sam.caching import DetectionCache
    from grounded_sam.editing.editor import EditorRegistry
    from grounded_sam.editing.store import EditStore

__all__ = ["EXAMPLES", "TABLE_HEADERS", "ImageHandlers", "build_image_tab"]

#: The example photos of the repository (examples/ATTRIBUTION.md), with categories that suit them.
EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples"
EXAMPLES = [
    ["truck.jpg", "truck, tire"],
    ["groceries.jpg", "paper bag: bag, tail light, car"],
    ["cars.jpg", "car, headlight, wheel"],
]
TABLE_HEADERS = ["#", "class", "score", "box x1, y1, x2, y2 (px)", "area (px)"]


class ImageHandlers:
    """Run's labeling (the ``/segment`` endpoint) and the redraw on an overlay option's change."""

    def __init__(self, settings: AppSettings, options: OptionsPanel, view: ResultView,
                 cache: DetectionCache | None) -> None:
        self.settings = settings
        self.options = options
        self.view = view
        self.cache = cache

    @user_errors()
    def segment(self, image: Any, categories: str, detector: str | None = None, segmenter: str | None = None,
                min_score: float = 0.0, nms: str = "class", nms_iou: float = 0.7, show_masks: bool = True,
                show_boxes: bool = True, show_labels: bool = True, opacity: float = 0.5) -> tuple[str, dict[str, Any]]:
        """Labels one image: returns the overlay (PNG, the input's size) and the detections as JSON."""
        # The parameters are the API's (names, order, defaults); LabelOptions takes them by name.
        options = LabelOptions.from_flat(locals())
        return segment_image(self.settings, image, options, cache=self.cache)

    @user_errors()
    def redraw(self, values: dict[Component, Any]) -> Any:
        """The overlay drawn again with the options now set: of the editor's labels, else of the run's."""
        view = self.view
        overlay = self.options.read(values).overlay
        editor = values[view.state]
        if editor is not None and not editor.released:  # the edited labels, not the run's
            editor.set_style(overlay.style())
            return str(editor.write_overlay())
        drawn = redraw_overlay(values[view.image], values[view.record], overlay)
        return gr.skip() if drawn is None else drawn


def build_image_tab(settings: AppSettings, options: OptionsPanel, cache: DetectionCache | None,
                    editors: EditorRegistry, store: EditStore | None = None) -> EditHandlers:
    """Creates the tab and wires Run, the overlay options and the edit panel; with ``store``, every edit is saved
    and the tab offers to resume saved edits (wired on page load by :func:`~grounded_sam.app.edit_panel.wire_resume`).
    """
    with gr.Tab("Image", id="image-tab"):
        resume = build_resume_row() if store is not None else None
        with gr.Row():
            image = gr.Image(type="filepath", label="Image", sources=["upload", "clipboard"],
                             height=480, scale=2, elem_id="input-image")
            overlay = gr.Image(type="filepath", format="png", label="Overlay · click to fix",
                               interactive=False, height=480, scale=3, elem_id="overlay")
        run = gr.Button("Run", variant="primary", elem_id="run")
        panel = build_edit_panel()
        legend = gr.HTML(elem_id="legend-box")
        table = gr.Dataframe(headers=TABLE_HEADERS, value=[], interactive=False, wrap=True,
                             label="Detections (click a row to select it)", elem_id="detections-table")
        downloads = gr.File(label="Labels of this image, with your edits: COCO JSON (RLE masks), mask PNGs (zip)",
                            file_count="multiple", interactive=False, elem_id="downloads")
        dataset_button = gr.Button("Add the dataset formats to the downloads (COCO, YOLO, VOC, masks: one zip)",
                                   size="sm", elem_id="dataset-button")
        state = editor_state(editors)
        with gr.Accordion("Detections JSON (what the API returns)", open=False):
            record = gr.JSON(label="Detections")
        gr.Examples([[str(EXAMPLES_DIR / f), c] for f, c in EXAMPLES], [image, options.categories],
                    label="Examples (photos: facebookresearch/sam2, Apache-2.0)", cache_examples=False)
    view = ResultView(image, overlay, record, legend, table, downloads, state)
    edits = EditHandlers(settings, editors, options, panel, view, store, resume)
    _wire_run(run, ImageHandlers(settings, options, view, cache), edits)
    wire_edit_panel(edits, dataset_button)
    return edits


def _wire_run(run: gr.Button, images: ImageHandlers, edits: EditHandlers) -> None:
    options, view = images.options, images.view
    run.click(
        edits.clear_result, None,
        [view.overlay, view.legend, view.table, view.downloads, view.record, view.state, edits.panel.status],
        queue=False, api_visibility="private",
    ).then(
        images.segment, [view.image, *options.components], [view.overlay, view.record], api_name="segment",
        **MODEL_EVENT,
    ).success(
        edits.start_editing, {view.image, view.record, options.detector, options.segmenter, *options.overlay,
                              *([edits.resume_row.owner] if edits.resume_row else [])},  # the key edits are saved under
        [*edits.outputs, view.downloads], api_visibility="private", **EDIT_GROUP,
    )
    # Overlay options redraw the last result (with its edits) at once; only Run runs the models.
    gr.on(
        [component.change for component in options.overlay], images.redraw,
        {view.image, view.record, view.state, *options.overlay}, view.overlay,
        api_visibility="private", preprocess=False, trigger_mode="always_last", show_progress="hidden",
    )
