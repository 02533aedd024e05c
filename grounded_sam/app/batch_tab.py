"""The batch tab: many images, a zip or a server folder, labeled one by one into one results zip.

The tab streams a :class:`BatchUpdate` after every image (progress bar, overlays, summary); the
named API endpoint ``/label_batch`` does the same work and returns only the zip and the summary.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import gradio as gr
from gradio.components import Component

from grounded_sam.app import gpu
from grounded_sam.app.errors import user_errors
from grounded_sam.app.markup import BATCH_STOPPED, progress_bar_html
from grounded_sam.app.options import LabelOptions, load_models, run_settings
from grounded_sam.app.options_panel import OptionsPanel
from grounded_sam.app.queues import JOB_EVENT
from grounded_sam.app.settings import AppSettings
from grounded_sam.categories import parse_categories
from grounded_sam.errors import InputError

if TYPE_CHECKING:
    from pathlib import Path

    from grounded_sam.app.jobs import BatchInputs
    from grounded_sam.runs.batch import BatchSummary

__all__ = ["BatchHandlers", "BatchTab", "BatchUpdate", "build_batch_tab", "run_batch"]


class BatchUpdate(NamedTuple):
    """What the batch tab shows after each image: progress bar (HTML), overlays, results zip, summary."""

    progress_html: str
    gallery: list[tuple[str, str]]
    results: str | None
    summary: str


def run_batch(settings: AppSettings, files: Any, options: LabelOptions, server_folder: str | None = None,
              progress: Callable[..., Any] | None = None, formats: Any = None) -> Iterator[BatchUpdate]:
    """Labels a batch: yields a :class:`BatchUpdate` before the models load, after every image, and at the end.

    Args:
        files: Uploaded files as Gradio hands them over (images and/or .zip archives).
        server_folder: A folder under the operator's allowed roots, or empty.
        progress: ``gr.Progress`` (its updates reach API clients); None in tests.
        formats: Dataset formats to add to the results zip (``coco``, ``yolo``, ``voc``, ``masks``).

    Raises:
        GroundedSamError: A user-fixable problem with the inputs or options (nothing was labeled).
    """
    from grounded_sam.app.jobs import (
        DisplayNameWriter,
        format_seconds,
        gather_inputs,
        job_summary_text,
        new_job_dir,
        seconds_left,
        upload_path,
    )
    from grounded_sam.export import OverlayWriter
    from grounded_sam.export.formats import build_writers, parse_formats
    from grounded_sam.runs.batch import BatchSummary

    parsed = parse_categories(options.categories)
    dataset_formats = parse_formats(",".join(formats) if isinstance(formats, (list, tuple)) else (formats or ""))
    annotator = options.overlay.annotator()
    pipe = options.models.pipeline(settings)
    uploads = [u for u in (upload_path(f) for f in (files or [])) if u is not None]
    if not uploads and not (server_folder or "").strip():
        raise InputError("No input: upload images or one .zip of images"
                         + (", or name a server folder." if settings.batch_roots else "."))
    job = new_job_dir()
    inputs = gather_inputs(uploads, server_folder or "", settings, job / "input")
    out = job / "results"
    overlay_writer = OverlayWriter(out, annotator)
    # The per-image JSON, the chosen dataset formats, then the overlays; each gets every image, then finalize().
    writers = [DisplayNameWriter(w, inputs.names)
               for w in (*build_writers(out, parsed.class_names, dataset_formats), overlay_writer)]
    total = len(inputs.images)
    report = progress or (lambda *args, **kwargs: None)
    run_info = run_settings(pipe, parsed)
    if settings.ray_address:
        # The operator's Ray cluster labels the job (its workers load the models); this process writes the files.
        from grounded_sam.app.jobs import stream_label_images
        from grounded_sam.runs.ray_engine import RayEngine

        engine = RayEngine(settings.ray_address)
        report((0, total), desc="Starting the Ray workers", unit="images")
        yield BatchUpdate(progress_bar_html(0, total, "starting the Ray workers"), [], None,
                          job_summary_text(None, inputs, 0))
        events = stream_label_images(pipe, inputs.images, parsed, writers, settings=run_info, engine=engine)
    else:
        report((0, total), desc="Loading models", unit="images")
        yield BatchUpdate(progress_bar_html(0, total, "loading models"), [], None, job_summary_text(None, inputs, 0))
        load_models(pipe)
        yield BatchUpdate(progress_bar_html(0, total, "labeling"), [], None, job_summary_text(None, inputs, 0))
        events = gpu.label_on_gpu(pipe, inputs.images, parsed, writers, run_info)
    gallery: list[tuple[str, str]] = []
    started = time.perf_counter()
    summary = None
    for event in events:
        if isinstance(event, BatchSummary):
            summary = event
            break  # ends the GPU call before the zip is written
        outcome = event.outcome
        if outcome.ok:
            name = inputs.names.get(outcome.source, outcome.source)
            objects = f"{outcome.num_detections} object{'s' if outcome.num_detections != 1 else ''}"
            gallery.append((str(overlay_writer.folder / f"{outcome.stem}.png"), f"{name} · {objects}"))
        left = format_seconds(seconds_left(event.done, event.total, time.perf_counter() - started))
        report((event.done, event.total), desc=f"Labeled {event.done}/{event.total} images, {left}", unit="images")
        yield BatchUpdate(progress_bar_html(event.done, event.total, left), list(gallery), None,
                          job_summary_text(None, inputs, event.done))
    if summary is None:  # the run was stopped
        return
    yield _finish(summary, inputs, job, run_info, gallery, started)


def _finish(summary: BatchSummary, inputs: BatchInputs, job: Path, run_info: dict[str, Any],
            gallery: list[tuple[str, str]], started: float) -> BatchUpdate:
    """Writes ``summary.json`` and zips the results: the last update, with the zip."""
    from grounded_sam.app.jobs import job_summary_text, write_job_summary
    from grounded_sam.inputs.archive import write_zip

    out = job / "results"
    write_job_summary(out / "summary.json", summary, inputs, run_info)
    results = write_zip(out, job / f"grounded-sam-results-{time.strftime('%Y%m%d-%H%M%S')}.zip")
    total = len(inputs.images)
    done_note = f"done in {time.perf_counter() - started:.0f} s"
    return BatchUpdate(progress_bar_html(total, total, done_note), list(gallery), str(results),
                       job_summary_text(summary, inputs))


@dataclass(frozen=True)
class BatchTab:
    """The tab's inputs (besides the options column) and what shows a run's progress and results."""

    files: gr.File
    server_folder: gr.Textbox
    formats: gr.CheckboxGroup
    progress: gr.HTML
    gallery: gr.Gallery
    results: gr.File
    summary: gr.Textbox

    def show(self, update: BatchUpdate) -> dict[Component, Any]:
        """An update as the answer of a streaming event."""
        return {self.progress: update.progress_html, self.gallery: update.gallery, self.results: update.results,
                self.summary: update.summary}


class BatchHandlers:
    """The tab's streaming run, and the ``/label_batch`` endpoint."""

    def __init__(self, settings: AppSettings, options: OptionsPanel, tab: BatchTab) -> None:
        self.settings = settings
        self.options = options
        self.tab = tab

    @user_errors()
    def label_batch_stream(self, values: dict[Component, Any],
                           progress: gr.Progress = gr.Progress()) -> Iterator[dict[Component, Any]]:  # noqa: B008
        tab = self.tab
        for update in run_batch(self.settings, values[tab.files], self.options.read(values),
                                values[tab.server_folder], progress, values[tab.formats]):
            yield tab.show(update)

    @user_errors()
    def label_batch(self, files: Any, categories: str, detector: str | None = None, segmenter: str | None = None,
                    min_score: float = 0.0, nms: str = "class", nms_iou: float = 0.7, show_masks: bool = True,
                    show_boxes: bool = True, show_labels: bool = True, opacity: float = 0.5,
                    server_folder: str | None = None, formats: list[str] | None = None,
                    progress: gr.Progress = gr.Progress()) -> tuple[str | None, str]:  # noqa: B008 (Gradio's way)
        """Labels several images or a zip: returns the results zip (labels JSON, overlays, chosen datasets) and a summary."""
        # The parameters are the API's (names, order, defaults); LabelOptions takes its own by name.
        options = LabelOptions.from_flat(locals())
        last = BatchUpdate("", [], None, "")
        for update in run_batch(self.settings, files, options, server_folder, progress, formats):
            last = update
        return last.results, last.summary


def build_batch_tab(settings: AppSettings, options: OptionsPanel) -> None:
    """Creates the tab and wires Label all, Stop and the ``/label_batch`` endpoint."""
    tab, run, stop, api_trigger = _batch_components(settings)
    handlers = BatchHandlers(settings, options, tab)
    inputs = [tab.files, *options.components, tab.server_folder, tab.formats]
    batch_event = run.click(
        handlers.label_batch_stream, set(inputs), [tab.progress, tab.gallery, tab.results, tab.summary],
        api_visibility="private", show_progress_on=[tab.results], **JOB_EVENT,
    )
    stop.click(lambda: BATCH_STOPPED, None, tab.progress, cancels=[batch_event], queue=False,
               api_visibility="private")
    api_trigger.click(handlers.label_batch, inputs, [tab.results, tab.summary], api_name="label_batch",
                      **JOB_EVENT)


def _batch_components(settings: AppSettings) -> tuple[BatchTab, gr.Button, gr.Button, gr.Button]:
    with gr.Tab("Batch", id="batch-tab"):
        gr.Markdown(
            "Label many images with the categories and options on the left. The results zip holds "
            "`labels/<name>.json` (boxes, scores, RLE masks) and `overlays/<name>.png` per image, "
            "the dataset formats you tick, and `summary.json`."
        )
        files = gr.File(label="Images, or a .zip of images", file_count="multiple",
                        file_types=["image", ".zip"], elem_id="batch-files")
        roots = ", ".join(str(r) for r in settings.batch_roots)
        server_folder = gr.Textbox(
            label="Or a folder on this server", visible=bool(settings.batch_roots),
            placeholder="a folder inside the allowed roots", info=f"Allowed roots: {roots}",
        )
        formats = gr.CheckboxGroup(
            [("COCO", "coco"), ("YOLO", "yolo"), ("Pascal VOC", "voc"), ("Mask PNGs", "masks")],
            value=[], label="Dataset formats in the results zip", elem_id="batch-formats",
            info="Boxes in datasets are the tight boxes of the masks; see the README for the layout.",
        )
        with gr.Row():
            run = gr.Button("Label all", variant="primary", elem_id="run-batch")
            stop = gr.Button("Stop", variant="stop")
        progress = gr.HTML(elem_id="batch-progress")
        summary = gr.Textbox(label="Summary", lines=4, max_lines=20, interactive=False, elem_id="batch-summary")
        results = gr.File(label="Results zip", interactive=False, elem_id="batch-results")
        gallery = gr.Gallery(label="Overlays", columns=4, height="auto", fit_columns=False,
                             object_fit="contain", preview=False, elem_id="batch-gallery")
        # The API endpoint: same work, returning only the zip and the summary.
        api_trigger = gr.Button(visible=False)
    return BatchTab(files, server_folder, formats, progress, gallery, results, summary), run, stop, api_trigger
