"""Grounded SAM 2 web app (Gradio): an image tab, a batch tab and two named API endpoints.

UI wiring only: every model step, file format and safety check is the ``grounded_sam`` package's.

Run with ``python app.py``: it serves on 127.0.0.1:7860 (``GRADIO_SERVER_NAME`` and
``GRADIO_SERVER_PORT`` override). Settings come from ``GROUNDED_SAM_*`` environment variables
(see :mod:`grounded_sam.app_settings`). The page renders before any model loads; models load on
first use and are shared by every request. All model work goes through one queue, one request
at a time.

API (``gradio_client``)::

    from gradio_client import Client, handle_file
    client = Client("http://127.0.0.1:7860/")
    overlay_png, detections = client.predict(handle_file("truck.jpg"), "truck, tire", api_name="/segment")
    results_zip, summary = client.predict([handle_file("photos.zip")], "truck, tire", api_name="/label_batch")
"""

from __future__ import annotations

# On Hugging Face ZeroGPU Spaces, `spaces` must be imported before anything imports torch (it
# patches CUDA initialisation); everywhere else it is absent, or present and a no-op.
try:
    import spaces
except ImportError:
    spaces = None

import html
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path, PurePath
from typing import Any, NamedTuple, TypeVar

import gradio as gr

from grounded_sam.app_settings import AppSettings, load_settings
from grounded_sam.categories import Categories, parse_categories
from grounded_sam.errors import GroundedSamError, ImageLoadError, InputError, OptionError
from grounded_sam.postprocess import NMS_MODES

logger = logging.getLogger("grounded_sam.app")

EXAMPLES_DIR = Path(__file__).resolve().parent / "examples"
EXAMPLES = [
    ["truck.jpg", "truck, tire"],
    ["groceries.jpg", "paper bag: bag, tail light, car"],
    ["cars.jpg", "car, headlight, wheel"],
]
#: Every event that runs a model joins this concurrency group, limited to one at a time.
MODEL_QUEUE = "models"
TABLE_HEADERS = ["#", "class", "score", "box x1, y1, x2, y2 (px)", "area (px)"]
#: ZeroGPU time asked for: a base (model loading, transfers) plus a share per unit of work.
SEGMENT_GPU_S, SEGMENT_GPU_PER_PROMPT_S = 60, 5
BATCH_GPU_S, BATCH_GPU_PER_IMAGE_S = 60, 10

F = TypeVar("F", bound=Callable[..., Any])


def on_gpu(duration: Callable[..., int]) -> Callable[[F], F]:
    """``spaces.GPU(duration=duration)`` where the ``spaces`` package is importable, else no wrapping.

    ``duration`` receives the wrapped function's arguments and returns seconds, so a bigger job
    asks ZeroGPU for more time. Outside ZeroGPU, ``spaces.GPU`` itself returns the function as is.
    """
    if spaces is None:
        return lambda fn: fn
    return spaces.GPU(duration=duration)


def segment_gpu_seconds(pipe: Any, rgb: Any, categories: Categories) -> int:
    """ZeroGPU seconds for one image: grows with the number of prompts (one decoding each)."""
    return SEGMENT_GPU_S + SEGMENT_GPU_PER_PROMPT_S * len(categories.prompts)


def batch_gpu_seconds(pipe: Any, images: list[Any], categories: Categories, writers: list[Any], settings: dict) -> int:
    """ZeroGPU seconds for a batch: grows with the number of images."""
    return BATCH_GPU_S + BATCH_GPU_PER_IMAGE_S * len(images)


@on_gpu(segment_gpu_seconds)
def _detect_and_segment(pipe: Any, rgb: Any, categories: Categories) -> Any:
    return pipe(rgb, categories)


@on_gpu(batch_gpu_seconds)
def _label_on_gpu(
    pipe: Any, images: list[Any], categories: Categories, writers: list[Any], settings: dict
) -> Iterator[Any]:
    from grounded_sam.jobs import stream_label_images

    yield from stream_label_images(pipe, images, categories, writers, settings=settings)


# ---------------------------------------------------------------------------------------------
# Request parsing: Gradio hands raw values (preprocessing is off for the model events, so that a
# bad upload reaches the package's loader and comes back as a clear message).


def _pipeline(settings: AppSettings, detector: str | None, segmenter: str | None, min_score: Any, nms: Any,
              nms_iou: Any) -> Any:
    from grounded_sam.pipeline import GroundedSAM2

    detector = settings.check_model("detector", detector)
    segmenter = settings.check_model("segmenter", segmenter)
    try:
        return GroundedSAM2(detector, segmenter, settings.device, min_score=float(min_score),
                            nms=str(nms), nms_iou=float(nms_iou))
    except (TypeError, ValueError) as exc:
        raise OptionError(f"Invalid option: {exc}.") from exc


def _annotator(show_masks: Any, show_boxes: Any, show_labels: Any, opacity: Any) -> Any:
    from grounded_sam.annotate import OverlayAnnotator

    try:
        return OverlayAnnotator(masks=bool(show_masks), boxes=bool(show_boxes), labels=bool(show_labels),
                                opacity=float(opacity))
    except (TypeError, ValueError) as exc:
        raise OptionError(f"Invalid overlay option: {exc}.") from exc


def _load_models(pipe: Any) -> None:
    # Loaded before the GPU-wrapped call: on ZeroGPU that keeps them in the main process across
    # calls; elsewhere it simply makes missing weights fail before any work starts.
    pipe.detector, pipe.segmenter  # noqa: B018


def _model_label(value: str) -> str:
    return Path(value).name if os.sep in value or "/" in value else value


def _run_settings(pipe: Any, categories: Categories) -> dict[str, Any]:
    return {"categories": categories.to_spec(), "detector": _model_label(str(pipe.detector_name)),
            "segmenter": _model_label(str(pipe.segmenter_name)), **pipe.options.as_dict()}


def _user_error(exc: GroundedSamError) -> gr.Error:
    logger.info("Request refused: %s", exc)
    # Long enough to read a message that lists where weights were looked for.
    return gr.Error(str(exc), duration=30, print_exception=False)


# ---------------------------------------------------------------------------------------------
# Image tab


def segment_image(settings: AppSettings, image: Any, categories: str, detector: str | None, segmenter: str | None,
                  min_score: float, nms: str, nms_iou: float, show_masks: bool, show_boxes: bool,
                  show_labels: bool, opacity: float) -> tuple[str, dict[str, Any]]:
    """Labels one image: returns the overlay PNG's path and the detections record.

    The record is :func:`grounded_sam.export.labels_json.detections_to_record`'s: image size,
    classes, and per detection ``class_id``, ``class_name``, ``score``, ``bbox_xyxy`` (pixels),
    ``area`` and ``mask`` (COCO compressed RLE).

    Raises:
        GroundedSamError: Any user-fixable problem (no image, no categories, bad options,
            unreadable or oversized image, weights not available).
    """
    from grounded_sam.batch import sanitize_stem
    from grounded_sam.export import detections_to_record
    from grounded_sam.export.files import atomic_write_bytes
    from grounded_sam.export.overlay import encode_png
    from grounded_sam.images import load_image
    from grounded_sam.jobs import new_job_dir, upload_path

    parsed = parse_categories(categories or "")
    upload = upload_path(image)
    if upload is None:
        raise InputError("No image: upload one (or pick an example) before clicking Run.")
    path, name = upload
    annotator = _annotator(show_masks, show_boxes, show_labels, opacity)
    pipe = _pipeline(settings, detector, segmenter, min_score, nms, nms_iou)
    try:
        rgb = load_image(path)
    except ImageLoadError as exc:  # name the file as the user knows it, not by its temp path
        raise ImageLoadError(str(exc).replace(str(path), name)) from exc
    _load_models(pipe)
    detections = _detect_and_segment(pipe, rgb, parsed)
    height, width = rgb.shape[:2]
    stem = sanitize_stem(PurePath(name))
    overlay = atomic_write_bytes(new_job_dir() / f"{stem}_overlay.png", encode_png(annotator.annotate(rgb, detections)))
    record = detections_to_record(detections, (width, height), parsed.class_names, source=name,
                                  settings=_run_settings(pipe, parsed))
    return str(overlay), record


def redraw_overlay(image: Any, record: dict[str, Any] | None, show_masks: bool, show_boxes: bool, show_labels: bool,
                   opacity: float) -> str | None:
    """The last result drawn again with other overlay options, without running the models.

    Returns:
        The new overlay PNG's path, or None when there is no result for the image now in the
        input (nothing run yet, or another image uploaded since).
    """
    from grounded_sam.batch import sanitize_stem
    from grounded_sam.export.files import atomic_write_bytes
    from grounded_sam.export.labels_json import record_to_detections
    from grounded_sam.export.overlay import encode_png
    from grounded_sam.images import load_image
    from grounded_sam.jobs import new_job_dir, upload_path

    upload = upload_path(image)
    if upload is None or not record or "detections" not in record or record["image"].get("file_name") != upload[1]:
        return None
    rgb = load_image(upload[0])
    if (rgb.shape[1], rgb.shape[0]) != (record["image"]["width"], record["image"]["height"]):
        return None
    annotator = _annotator(show_masks, show_boxes, show_labels, opacity)
    drawn = annotator.annotate(rgb, record_to_detections(record))
    stem = sanitize_stem(PurePath(upload[1]))
    return str(atomic_write_bytes(new_job_dir() / f"{stem}_overlay.png", encode_png(drawn)))


def image_details(record: dict[str, Any] | None) -> tuple[str, list[list[Any]], list[str] | None]:
    """From a detections record: the legend (HTML), the table rows, and the download files."""
    from grounded_sam.annotate import legend
    from grounded_sam.batch import sanitize_stem
    from grounded_sam.export.labels_json import record_to_detections
    from grounded_sam.export.single_image import coco_for_image, write_coco_json, write_mask_zip
    from grounded_sam.jobs import new_job_dir

    if not record or "detections" not in record:
        return "", [], None
    detections = record_to_detections(record)
    class_names = list(record["categories"])
    counts = [int((detections.class_id == i).sum()) if len(detections) else 0 for i in range(len(class_names))]
    chips = "".join(
        f'<span style="display:inline-flex;align-items:center;gap:6px;margin:2px 14px 2px 0">'
        f'<span style="width:14px;height:14px;border-radius:3px;background:{colour}"></span>'
        f"{html.escape(name)} <b>{count}</b></span>"
        for (name, colour), count in zip(legend(class_names), counts)
    )
    found = f"{len(detections)} object{'s' if len(detections) != 1 else ''} found" if len(detections) else (
        "Nothing found for these categories. Try other wording, or lower the minimum score.")
    legend_html = f'<div id="legend"><div style="margin-bottom:4px">{found}</div>{chips}</div>'
    rows = []
    for i, item in enumerate(record["detections"]):
        box = ", ".join(f"{v:.0f}" for v in item["bbox_xyxy"])
        score = "" if item.get("score") is None else f"{item['score']:.3f}"
        rows.append([i, item["class_name"], score, box, item.get("area", "")])
    image = record["image"]
    file_name = image.get("file_name") or "image.png"
    stem = sanitize_stem(PurePath(file_name))
    job = new_job_dir()
    coco = write_coco_json(job / f"{stem}_coco.json",
                           coco_for_image(detections, (image["width"], image["height"]), class_names, file_name))
    masks = write_mask_zip(job / f"{stem}_masks.zip", detections, stem)
    return legend_html, rows, [str(coco), str(masks)]


# ---------------------------------------------------------------------------------------------
# Batch tab


class BatchUpdate(NamedTuple):
    """What the batch tab shows after each image: progress bar (HTML), overlays, results zip, summary."""

    progress_html: str
    gallery: list[tuple[str, str]]
    results: str | None
    summary: str


def progress_bar_html(done: int, total: int, note: str) -> str:
    """A labelled progress bar counting images, e.g. "Labeled 3 of 8 images · about 12 s left"."""
    text = html.escape(f"Labeled {done} of {total} images" + (f" · {note}" if note else ""))
    percent = 100 * done / max(total, 1)
    return (f'<div id="batch-progress-bar"><div style="margin-bottom:4px">{text}</div>'
            f'<div role="progressbar" aria-valuemin="0" aria-valuemax="{total}" aria-valuenow="{done}" '
            f'style="height:12px;border-radius:6px;overflow:hidden;background:var(--neutral-200,#e5e7eb)">'
            f'<div style="height:100%;width:{percent:.1f}%;background:var(--color-accent,#f97316);'
            f'transition:width .3s"></div></div></div>')


def run_batch(settings: AppSettings, files: Any, categories: str, detector: str | None, segmenter: str | None,
              min_score: float, nms: str, nms_iou: float, show_masks: bool, show_boxes: bool, show_labels: bool,
              opacity: float, server_folder: str | None = None,
              progress: Callable[..., Any] | None = None) -> Iterator[BatchUpdate]:
    """Labels a batch: yields a :class:`BatchUpdate` before the models load, after every image, and at the end.

    Args:
        files: Uploaded files as Gradio hands them over (images and/or .zip archives).
        server_folder: A folder under the operator's allowed roots, or empty.
        progress: ``gr.Progress`` (its updates reach API clients); None in tests.

    Raises:
        GroundedSamError: A user-fixable problem with the inputs or options (nothing was labeled).
    """
    from grounded_sam.archive import write_zip
    from grounded_sam.batch import BatchSummary
    from grounded_sam.export import JsonLabelWriter, OverlayWriter
    from grounded_sam.jobs import (
        DisplayNameWriter,
        format_seconds,
        gather_inputs,
        job_summary_text,
        new_job_dir,
        seconds_left,
        upload_path,
        write_job_summary,
    )

    parsed = parse_categories(categories or "")
    annotator = _annotator(show_masks, show_boxes, show_labels, opacity)
    pipe = _pipeline(settings, detector, segmenter, min_score, nms, nms_iou)
    uploads = [u for u in (upload_path(f) for f in (files or [])) if u is not None]
    if not uploads and not (server_folder or "").strip():
        raise InputError("No input: upload images or one .zip of images"
                         + (", or name a server folder." if settings.batch_roots else "."))
    job = new_job_dir()
    inputs = gather_inputs(uploads, server_folder or "", settings, job / "input")
    out = job / "results"
    overlay_writer = OverlayWriter(out, annotator)
    # More writers (dataset formats) go in this list; each gets every image, then finalize().
    writers = [DisplayNameWriter(w, inputs.names) for w in (JsonLabelWriter(out), overlay_writer)]
    total = len(inputs.images)
    report = progress or (lambda *args, **kwargs: None)
    report((0, total), desc="Loading models", unit="images")
    yield BatchUpdate(progress_bar_html(0, total, "loading models"), [], None, job_summary_text(None, inputs, 0))
    _load_models(pipe)
    yield BatchUpdate(progress_bar_html(0, total, "labeling"), [], None, job_summary_text(None, inputs, 0))
    run_settings = _run_settings(pipe, parsed)
    gallery: list[tuple[str, str]] = []
    started = time.perf_counter()
    summary = None
    for event in _label_on_gpu(pipe, inputs.images, parsed, writers, run_settings):
        if isinstance(event, BatchSummary):
            summary = event
            break
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
    write_job_summary(out / "summary.json", summary, inputs, run_settings)
    results = write_zip(out, job / f"grounded-sam-results-{time.strftime('%Y%m%d-%H%M%S')}.zip")
    done_note = f"done in {time.perf_counter() - started:.0f} s"
    yield BatchUpdate(progress_bar_html(total, total, done_note), list(gallery), str(results),
                      job_summary_text(summary, inputs))


# ---------------------------------------------------------------------------------------------
# The page


def build_demo(settings: AppSettings | None = None) -> gr.Blocks:
    """The app's Blocks, with its queue configured; builds no model.

    Args:
        settings: The server's settings; read from the environment when None.

    Raises:
        OptionError: An environment variable holds a bad value (only when ``settings`` is None).
    """
    settings = settings or load_settings()

    def segment(image: Any, categories: str, detector: str | None = None, segmenter: str | None = None,
                min_score: float = 0.0, nms: str = "class", nms_iou: float = 0.7, show_masks: bool = True,
                show_boxes: bool = True, show_labels: bool = True, opacity: float = 0.5) -> tuple[str, dict[str, Any]]:
        """Labels one image: returns the overlay (PNG, the input's size) and the detections as JSON."""
        try:
            return segment_image(settings, image, categories, detector, segmenter, min_score, nms, nms_iou,
                                 show_masks, show_boxes, show_labels, opacity)
        except GroundedSamError as exc:
            raise _user_error(exc) from exc

    def details(record: dict[str, Any] | None) -> tuple[str, list[list[Any]], list[str] | None]:
        try:
            return image_details(record)
        except GroundedSamError as exc:
            raise _user_error(exc) from exc

    def redraw(image: Any, record: dict[str, Any] | None, show_masks: bool, show_boxes: bool, show_labels: bool,
               opacity: float) -> Any:
        try:
            drawn = redraw_overlay(image, record, show_masks, show_boxes, show_labels, opacity)
        except GroundedSamError as exc:
            raise _user_error(exc) from exc
        return gr.skip() if drawn is None else drawn

    def label_batch_stream(files: Any, categories: str, detector: str | None, segmenter: str | None,
                           min_score: float, nms: str, nms_iou: float, show_masks: bool, show_boxes: bool,
                           show_labels: bool, opacity: float, server_folder: str | None = None,
                           progress: gr.Progress = gr.Progress()) -> Iterator[BatchUpdate]:  # noqa: B008 (Gradio's way)
        try:
            yield from run_batch(settings, files, categories, detector, segmenter, min_score, nms, nms_iou,
                                 show_masks, show_boxes, show_labels, opacity, server_folder, progress)
        except GroundedSamError as exc:
            raise _user_error(exc) from exc

    def label_batch(files: Any, categories: str, detector: str | None = None, segmenter: str | None = None,
                    min_score: float = 0.0, nms: str = "class", nms_iou: float = 0.7, show_masks: bool = True,
                    show_boxes: bool = True, show_labels: bool = True, opacity: float = 0.5,
                    server_folder: str | None = None,
                    progress: gr.Progress = gr.Progress()) -> tuple[str | None, str]:  # noqa: B008 (Gradio's way)
        """Labels several images or a zip: returns the results zip (labels JSON and overlays) and a summary."""
        last = BatchUpdate("", [], None, "")
        try:
            for update in run_batch(settings, files, categories, detector, segmenter, min_score, nms, nms_iou,
                                    show_masks, show_boxes, show_labels, opacity, server_folder, progress):
                last = update
        except GroundedSamError as exc:
            raise _user_error(exc) from exc
        return last.results, last.summary

    detector_choices = settings.model_choices("detector")
    segmenter_choices = settings.model_choices("segmenter")
    model_event = {"concurrency_id": MODEL_QUEUE, "concurrency_limit": 1, "preprocess": False}

    with gr.Blocks(title="Grounded SAM 2", delete_cache=(3600, 6 * 3600)) as demo:
        gr.Markdown(
            "# Grounded SAM 2\n"
            "Type what to find, get a mask for every object: Florence-2 finds the boxes, SAM2 draws the masks."
        )
        with gr.Row(equal_height=False):
            with gr.Column(scale=1, min_width=300):
                categories = gr.Textbox(
                    label="Categories", placeholder="truck, tire", lines=2, elem_id="categories",
                    info="Separate with commas. 'prompt: class' looks for the prompt and names the class, "
                         "e.g. 'yellow hard hat: helmet, person'.",
                )
                detector = gr.Dropdown(detector_choices, value=settings.detector, label="Detector (boxes)",
                                       elem_id="detector")
                segmenter = gr.Dropdown(segmenter_choices, value=settings.segmenter, label="Segmenter (masks)")
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
            options = [categories, detector, segmenter, min_score, nms, nms_iou, show_masks, show_boxes,
                       show_labels, opacity]

            with gr.Column(scale=3):
                with gr.Tabs():
                    with gr.Tab("Image", id="image-tab"):
                        with gr.Row():
                            image = gr.Image(type="filepath", label="Image", sources=["upload", "clipboard"],
                                             height=420, elem_id="input-image")
                            overlay = gr.Image(type="filepath", format="png", label="Overlay", interactive=False,
                                               height=420, elem_id="overlay")
                        run = gr.Button("Run", variant="primary", elem_id="run")
                        legend_html = gr.HTML(elem_id="legend-box")
                        table = gr.Dataframe(headers=TABLE_HEADERS, value=[], interactive=False, wrap=True,
                                             label="Detections", elem_id="detections-table")
                        downloads = gr.File(label="Labels of this image: COCO JSON (RLE masks), mask PNGs (zip)",
                                            file_count="multiple", interactive=False, elem_id="downloads")
                        with gr.Accordion("Detections JSON (what the API returns)", open=False):
                            record = gr.JSON(label="Detections")
                        gr.Examples([[str(EXAMPLES_DIR / f), c] for f, c in EXAMPLES], [image, categories],
                                    label="Examples (photos: facebookresearch/sam2, Apache-2.0)",
                                    cache_examples=False)

                    with gr.Tab("Batch", id="batch-tab"):
                        gr.Markdown(
                            "Label many images with the categories and options on the left. The results zip holds "
                            "`labels/<name>.json` (boxes, scores, RLE masks) and `overlays/<name>.png` per image, "
                            "and `summary.json`."
                        )
                        files = gr.File(label="Images, or a .zip of images", file_count="multiple",
                                        file_types=["image", ".zip"], elem_id="batch-files")
                        roots = ", ".join(str(r) for r in settings.batch_roots)
                        server_folder = gr.Textbox(
                            label="Or a folder on this server", visible=bool(settings.batch_roots),
                            placeholder="a folder inside the allowed roots", info=f"Allowed roots: {roots}",
                        )
                        with gr.Row():
                            run_batch_button = gr.Button("Label all", variant="primary", elem_id="run-batch")
                            stop = gr.Button("Stop", variant="stop")
                        batch_progress = gr.HTML(elem_id="batch-progress")
                        summary = gr.Textbox(label="Summary", lines=4, max_lines=20, interactive=False,
                                             elem_id="batch-summary")
                        results = gr.File(label="Results zip", interactive=False, elem_id="batch-results")
                        gallery = gr.Gallery(label="Overlays", columns=4, height="auto", fit_columns=False,
                                             object_fit="contain", preview=False, elem_id="batch-gallery")
                        # The API endpoint: same work, returning only the zip and the summary.
                        api_trigger = gr.Button(visible=False)

        run.click(
            lambda: (None, "", [], None, None), None, [overlay, legend_html, table, downloads, record],
            queue=False, api_visibility="private",
        ).then(
            segment, [image, *options], [overlay, record], api_name="segment", **model_event,
        ).success(details, record, [legend_html, table, downloads], api_visibility="private")
        # Overlay options redraw the last result at once; only Run runs the models.
        gr.on(
            [show_masks.change, show_boxes.change, show_labels.change, opacity.change], redraw,
            [image, record, show_masks, show_boxes, show_labels, opacity], overlay,
            api_visibility="private", preprocess=False, trigger_mode="always_last", show_progress="hidden",
        )

        batch_event = run_batch_button.click(
            label_batch_stream, [files, *options, server_folder], [batch_progress, gallery, results, summary],
            api_visibility="private", show_progress_on=[results], **model_event,
        )
        stop.click(
            lambda: '<div id="batch-progress-bar">Stopped. The images done so far are not zipped; '
                    "click Label all to start again.</div>",
            None, batch_progress, cancels=[batch_event], queue=False, api_visibility="private",
        )
        api_trigger.click(label_batch, [files, *options, server_folder], [results, summary],
                          api_name="label_batch", **model_event)

    demo.queue(max_size=settings.queue_size, default_concurrency_limit=2)
    return demo


def main() -> None:
    """Serves the app: ``GRADIO_SERVER_NAME`` (default 127.0.0.1), ``GRADIO_SERVER_PORT`` (default 7860)."""
    # The package's own messages (models loaded, requests refused); not every HTTP request or SAM2 call.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("grounded_sam").setLevel(logging.INFO)
    try:
        settings = load_settings()
    except GroundedSamError as exc:
        raise SystemExit(f"error: {exc}") from None
    build_demo(settings).launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        # Explicit, so a busy port is an error rather than a silent move to the next free one.
        server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
        max_file_size=settings.max_upload_bytes,
    )


if __name__ == "__main__":
    main()
