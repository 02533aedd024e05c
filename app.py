"""Grounded SAM 2 web app (Gradio): an image tab, a batch tab and two named API endpoints.

UI wiring only: every model step, file format and safety check is the ``grounded_sam`` package's.

On the image tab, after Run, the result can be fixed by clicking on the overlay (see
:mod:`grounded_sam.editing.editor`): select an object, grow or shrink its mask with + and − points (SAM2's
mask decoder only, on the cached image embedding), add objects from a point or a box, delete,
relabel, undo, redo, reset; the downloads follow every edit. Each browser session has its own
editor, released when the session ends.

Run with ``python app.py``: it serves on 127.0.0.1:7860 (``GRADIO_SERVER_NAME`` and
``GRADIO_SERVER_PORT`` override). Settings come from ``GROUNDED_SAM_*`` environment variables
(see :mod:`grounded_sam.app.settings`). The page renders before any model loads; models load on
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
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

import gradio as gr

from grounded_sam.app.settings import AppSettings, load_settings
from grounded_sam.categories import Categories, parse_categories
from grounded_sam.errors import GroundedSamError, ImageLoadError, InputError, OptionError
from grounded_sam.pipeline.postprocess import NMS_MODES

if TYPE_CHECKING:
    from grounded_sam.caching import DetectionCache
    from grounded_sam.editing.editor import Editor
    from grounded_sam.editing.view import OverlayStyle
    from grounded_sam.pipeline import GroundedSAM2

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
#: ZeroGPU time asked for one click (one or two mask-decoder passes).
CLICK_GPU_S = 10
#: Edits that run no model (select, delete, undo...) share this group, apart from the model queue.
EDIT_QUEUE = "edits"
#: An editor left untouched this long is released (closed tabs are released at once, on unload).
EDITOR_TTL_S = 2 * 3600

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
    from grounded_sam.app.jobs import stream_label_images

    yield from stream_label_images(pipe, images, categories, writers, settings=settings)


def click_gpu_seconds(pipe: Any, image: Any, key: str, prompts: dict[str, Any]) -> int:
    """ZeroGPU seconds for one click: SAM2's mask decoder on a cached embedding."""
    return CLICK_GPU_S


@on_gpu(click_gpu_seconds)
def _decode_on_gpu(pipe: Any, image: Any, key: str, prompts: dict[str, Any]) -> Any:
    # Takes the (picklable) pipeline, not the refiner: on ZeroGPU the call may run in another process.
    return attach_refiner(pipe).predict(image, key, **prompts)


class GpuDecoder:
    """Stands in for a :class:`~grounded_sam.editing.session.Sam2Refiner`: every decoder pass of a click goes
    through the GPU wrapper (a label session only calls ``predict``).

    Args:
        pipe: The :class:`~grounded_sam.pipeline.GroundedSAM2` whose segmenter ran the automatic result.
    """

    def __init__(self, pipe: Any) -> None:
        self.pipe = pipe

    def predict(self, image: Any, key: str, **prompts: Any) -> Any:
        return _decode_on_gpu(self.pipe, image, key, prompts)


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


def _run_settings(pipe: GroundedSAM2, categories: Categories) -> dict[str, Any]:
    return {"categories": categories.to_spec(), **pipe.settings().as_dict(short_model_names=True)}


def _user_error(exc: GroundedSamError, duration: float = 30) -> gr.Error:
    logger.info("Request refused: %s", exc)
    # By default long enough to read a message that lists where weights were looked for.
    return gr.Error(str(exc), duration=duration, print_exception=False)


# ---------------------------------------------------------------------------------------------
# Image tab


def segment_image(settings: AppSettings, image: Any, categories: str, detector: str | None, segmenter: str | None,
                  min_score: float, nms: str, nms_iou: float, show_masks: bool, show_boxes: bool,
                  show_labels: bool, opacity: float, cache: DetectionCache | None = None) -> tuple[str, dict[str, Any]]:
    """Labels one image: returns the overlay PNG's path and the detections record.

    The record is :func:`grounded_sam.export.labels_json.detections_to_record`'s: image size,
    classes, and per detection ``class_id``, ``class_name``, ``score``, ``bbox_xyxy`` (pixels),
    ``area`` and ``mask`` (COCO compressed RLE).

    The image's SAM2 embedding is remembered (see :mod:`grounded_sam.editing.session`), so clicks that
    fix the result afterwards run the mask decoder only; with ``cache``, the same image with the
    same categories and settings is not run again.

    Raises:
        GroundedSamError: Any user-fixable problem (no image, no categories, bad options,
            unreadable or oversized image, weights not available).
    """
    from grounded_sam.app.jobs import new_job_dir, upload_path
    from grounded_sam.export import detections_to_record
    from grounded_sam.export.files import atomic_write_bytes
    from grounded_sam.export.overlay import encode_png
    from grounded_sam.inputs.images import load_image
    from grounded_sam.naming import sanitize_stem

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
    attach_refiner(pipe)
    detections = _detect_cached(pipe, rgb, parsed, cache)
    height, width = rgb.shape[:2]
    stem = sanitize_stem(PurePath(name))
    overlay = atomic_write_bytes(new_job_dir() / f"{stem}_overlay.png", encode_png(annotator.annotate(rgb, detections)))
    record = detections_to_record(detections, (width, height), parsed.class_names, source=name,
                                  settings=_run_settings(pipe, parsed))
    return str(overlay), record


def attach_refiner(pipe: Any) -> Any:
    """The click refiner of the pipeline's segmenter; from now on it remembers every image it encodes."""
    from grounded_sam.models.sam2.refiner import Sam2Refiner

    return Sam2Refiner(pipe.segmenter)


def _detect_cached(pipe: Any, rgb: Any, categories: Categories, cache: DetectionCache | None) -> Any:
    if cache is None:
        return _detect_and_segment(pipe, rgb, categories)
    from grounded_sam.caching import detection_key

    detections, cached = cache.get_or_run(detection_key(rgb, categories, pipe),
                                          lambda: _detect_and_segment(pipe, rgb, categories))
    if cached:
        logger.debug("Reused the cached result for these categories and settings")
    return detections


def redraw_overlay(image: Any, record: dict[str, Any] | None, show_masks: bool, show_boxes: bool, show_labels: bool,
                   opacity: float) -> str | None:
    """The last result drawn again with other overlay options, without running the models.

    Returns:
        The new overlay PNG's path, or None when there is no result for the image now in the
        input (nothing run yet, or another image uploaded since).
    """
    from grounded_sam.app.jobs import new_job_dir, upload_path
    from grounded_sam.export.files import atomic_write_bytes
    from grounded_sam.export.labels_json import record_to_detections
    from grounded_sam.export.overlay import encode_png
    from grounded_sam.inputs.images import load_image
    from grounded_sam.naming import sanitize_stem

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


def legend_markup(class_names: list[str], counts: list[int], total: int) -> str:
    """The legend: how many objects, and a colour chip with a count per class."""
    from grounded_sam.annotate import legend

    chips = "".join(
        f'<span style="display:inline-flex;align-items:center;gap:6px;margin:2px 14px 2px 0">'
        f'<span style="width:14px;height:14px;border-radius:3px;background:{colour}"></span>'
        f"{html.escape(name)} <b>{count}</b></span>"
        for (name, colour), count in zip(legend(class_names), counts)
    )
    found = f"{total} object{'s' if total != 1 else ''} found" if total else (
        "Nothing found for these categories. Try other wording, or lower the minimum score.")
    return f'<div id="legend"><div style="margin-bottom:4px">{found}</div>{chips}</div>'


def image_details(record: dict[str, Any] | None) -> tuple[str, list[list[Any]], list[str] | None]:
    """From a detections record: the legend (HTML), the table rows, and the download files."""
    from grounded_sam.app.jobs import new_job_dir
    from grounded_sam.editing.view import table_rows
    from grounded_sam.export.labels_json import record_to_detections
    from grounded_sam.export.single_image import coco_for_image, write_coco_json, write_mask_zip
    from grounded_sam.naming import sanitize_stem

    if not record or "detections" not in record:
        return "", [], None
    detections = record_to_detections(record)
    class_names = list(record["categories"])
    counts = [int((detections.class_id == i).sum()) if len(detections) else 0 for i in range(len(class_names))]
    rows = table_rows(detections)
    image = record["image"]
    file_name = image.get("file_name") or "image.png"
    stem = sanitize_stem(PurePath(file_name))
    job = new_job_dir()
    coco = write_coco_json(job / f"{stem}_coco.json",
                           coco_for_image(detections, (image["width"], image["height"]), class_names, file_name))
    masks = write_mask_zip(job / f"{stem}_masks.zip", detections, stem)
    return legend_markup(class_names, counts, len(detections)), rows, [str(coco), str(masks)]


# ---------------------------------------------------------------------------------------------
# Fixing the result with clicks (one editor per browser session)


def open_editor(settings: AppSettings, image: Any, record: dict[str, Any] | None, segmenter: str | None,
                style: OverlayStyle) -> Editor | None:
    """An editor of the last run's result, or None when the input no longer holds the image it was run on
    (another name or size, as :func:`redraw_overlay` checks).

    Runs no model: the segmenter is the one the run loaded, and the run left the image's
    embedding in its cache.
    """
    from grounded_sam.app.jobs import new_job_dir, upload_path
    from grounded_sam.editing.editor import Editor
    from grounded_sam.editing.session import LabelSession
    from grounded_sam.export.labels_json import record_to_detections
    from grounded_sam.inputs.images import load_image
    from grounded_sam.naming import sanitize_stem

    upload = upload_path(image)
    if upload is None or not record or "detections" not in record or record["image"].get("file_name") != upload[1]:
        return None
    path, name = upload
    rgb = load_image(path)
    if (rgb.shape[1], rgb.shape[0]) != (record["image"]["width"], record["image"]["height"]):
        return None
    pipe = _pipeline(settings, None, segmenter, 0.0, "class", 0.7)
    session = LabelSession(GpuDecoder(pipe), rgb, record_to_detections(record), list(record["categories"]))
    return Editor(session, new_job_dir(), name, sanitize_stem(PurePath(name)), source_path=path, style=style,
                  settings=record.get("settings") or {})


def overlay_style(show_masks: Any, show_boxes: Any, show_labels: Any, opacity: Any) -> OverlayStyle:
    """The overlay options as an :class:`~grounded_sam.editing.view.OverlayStyle`."""
    from grounded_sam.editing.view import OverlayStyle

    try:
        return OverlayStyle(bool(show_masks), bool(show_boxes), bool(show_labels), float(opacity))
    except (TypeError, ValueError) as exc:
        raise OptionError(f"Invalid overlay option: {exc}.") from exc


EDIT_IDLE = "After Run, click on the overlay to select an object and fix it."
EDIT_READY = ("Click an object on the overlay (or its row in the table) to select it; then fix its mask with "
              "+ point / − point clicks, or Delete / Relabel it. Add missed objects with a point or a box.")


def _status_html(text: str) -> str:
    return f'<div id="edit-status-text" style="padding:2px 4px">{html.escape(text)}</div>'


def _labels_of(editor: Editor) -> tuple[list[Any], tuple[str, ...]]:
    """What the downloads are made of: the objects (immutable, compared by identity) and the classes."""
    session = editor.session
    return list(session.objects), tuple(session.class_names)


def _same_labels(a: tuple[list[Any], tuple[str, ...]] | None, b: tuple[list[Any], tuple[str, ...]]) -> bool:
    return (a is not None and a[1] == b[1] and len(a[0]) == len(b[0])
            and all(x is y for x, y in zip(a[0], b[0])))


def _live(editor: Editor | None) -> Editor:
    from grounded_sam.errors import EditError

    if editor is None:
        raise EditError("Nothing to edit yet: upload an image, type the categories and click Run.")
    editor.session  # noqa: B018 (a released editor says so)
    return editor


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
        write_job_summary,
    )
    from grounded_sam.export import OverlayWriter
    from grounded_sam.export.formats import build_writers, parse_formats
    from grounded_sam.inputs.archive import write_zip
    from grounded_sam.runs.batch import BatchSummary

    parsed = parse_categories(categories or "")
    dataset_formats = parse_formats(",".join(formats) if isinstance(formats, (list, tuple)) else (formats or ""))
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
    # The per-image JSON, the chosen dataset formats, then the overlays; each gets every image, then finalize().
    writers = [DisplayNameWriter(w, inputs.names)
               for w in (*build_writers(out, parsed.class_names, dataset_formats), overlay_writer)]
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
    from grounded_sam.caching import DetectionCache
    from grounded_sam.editing.editor import EDIT_MODES, SELECT, EditorRegistry

    settings = settings or load_settings()
    # Shared by every session: automatic results by (image, categories, models, options), and the
    # live editors by browser session (each released when its session ends).
    detection_cache = DetectionCache()
    editors = EditorRegistry()

    def segment(image: Any, categories: str, detector: str | None = None, segmenter: str | None = None,
                min_score: float = 0.0, nms: str = "class", nms_iou: float = 0.7, show_masks: bool = True,
                show_boxes: bool = True, show_labels: bool = True, opacity: float = 0.5) -> tuple[str, dict[str, Any]]:
        """Labels one image: returns the overlay (PNG, the input's size) and the detections as JSON."""
        try:
            return segment_image(settings, image, categories, detector, segmenter, min_score, nms, nms_iou,
                                 show_masks, show_boxes, show_labels, opacity, cache=detection_cache)
        except GroundedSamError as exc:
            raise _user_error(exc) from exc

    def redraw(image: Any, record: dict[str, Any] | None, editor: Any, show_masks: bool, show_boxes: bool,
               show_labels: bool, opacity: float) -> Any:
        try:
            if editor is not None and not editor.released:  # the edited labels, not the run's
                editor.set_style(overlay_style(show_masks, show_boxes, show_labels, opacity))
                return str(editor.write_overlay())
            drawn = redraw_overlay(image, record, show_masks, show_boxes, show_labels, opacity)
        except GroundedSamError as exc:
            raise _user_error(exc) from exc
        return gr.skip() if drawn is None else drawn

    # ------------------------------------------------------------------ editing
    # Every edit returns edit_outputs (below); what did not change since the last response is sent as
    # gr.skip(), so a click on one object sends its new overlay, its table row and the status line.

    def changed(editor: Editor, key: str, value: Any, update: Callable[[Any], Any] = lambda v: v) -> Any:
        if key in editor.sent and editor.sent[key] == value:
            return gr.skip()
        editor.sent[key] = value
        return update(value)

    def respond(editor: Editor, status: str, *, new_overlay: bool = True) -> tuple[Any, ...]:
        view = editor.view()
        return (
            editor,
            str(editor.write_overlay()) if new_overlay else gr.skip(),
            changed(editor, "legend", legend_markup(view.class_names, view.counts, len(view.rows))),
            changed(editor, "rows", view.rows),
            _status_html(status),
            changed(editor, "classes", view.class_names, lambda names: gr.Dropdown(choices=names)),
            changed(editor, "undo", view.can_undo, lambda on: gr.Button(interactive=on)),
            changed(editor, "redo", view.can_redo, lambda on: gr.Button(interactive=on)),
        )

    def edit(name: str, editor: Any, request: gr.Request | None, action: Callable[[Editor], str],
             *, new_overlay: bool = True) -> tuple[Any, ...]:
        started = time.perf_counter()
        try:
            editor = _live(editor)
            with editor.lock:
                status = action(editor)
                response = respond(editor, status, new_overlay=new_overlay)
        except GroundedSamError as exc:
            raise _user_error(exc, duration=8) from exc
        if request is not None and request.session_hash:
            editors.touch(request.session_hash)
        logger.debug("Edit %r answered in %.0f ms", name, 1000 * (time.perf_counter() - started))
        return response

    def start_editing(image: Any, record: dict[str, Any] | None, segmenter: str | None, show_masks: bool,
                      show_boxes: bool, show_labels: bool, opacity: float,
                      request: gr.Request) -> tuple[Any, ...]:
        try:
            editor = open_editor(settings, image, record, segmenter,
                                 overlay_style(show_masks, show_boxes, show_labels, opacity))
            if editor is None:  # another image was uploaded meanwhile: show the result, without editing
                legend, rows, files = image_details(record)
                return (None, gr.skip(), legend, rows, _status_html(EDIT_IDLE), gr.skip(), gr.skip(), gr.skip(), files)
            if request.session_hash:
                editors.add(request.session_hash, editor)
            with editor.lock:
                files = [str(f) for f in editor.write_downloads()]
                editor.sent["downloads"], editor.sent["files"] = _labels_of(editor), files
                response = respond(editor, EDIT_READY, new_overlay=False)  # the run's overlay is shown
        except GroundedSamError as exc:
            raise _user_error(exc) from exc
        classes = editor.view().class_names
        return (*response[:5], gr.Dropdown(choices=classes, value=classes[0] if classes else None),
                *response[6:], files)

    def refresh_downloads(editor: Any) -> Any:
        if editor is None or editor.released:
            return gr.skip()
        try:
            with editor.lock:
                labels = _labels_of(editor)
                if _same_labels(editor.sent.get("downloads"), labels):
                    return gr.skip()
                # Rewritten files replace the list, so a dataset zip of older labels is no longer offered.
                files = [str(f) for f in editor.write_downloads()]
                editor.sent["downloads"], editor.sent["files"] = labels, files
        except GroundedSamError as exc:
            raise _user_error(exc) from exc
        return files

    def make_dataset(editor: Any) -> list[str]:
        from grounded_sam.app.jobs import new_job_dir

        try:
            editor = _live(editor)
            with editor.lock:
                if not _same_labels(editor.sent.get("downloads"), _labels_of(editor)):
                    editor.sent["files"] = [str(f) for f in editor.write_downloads()]
                    editor.sent["downloads"] = _labels_of(editor)
                dataset = editor.write_dataset(new_job_dir())
                files = [*editor.sent["files"], str(dataset)]
        except GroundedSamError as exc:
            raise _user_error(exc) from exc
        return files

    def click_overlay(editor: Any, mode: str, class_name: str | None, evt: gr.SelectData,
                      request: gr.Request) -> tuple[Any, ...]:
        if not isinstance(evt.index, (list, tuple)) or len(evt.index) != 2:  # beside the image
            return (gr.skip(),) * len(edit_outputs)
        x, y = (float(v) for v in evt.index)
        return edit("click", editor, request, lambda e: e.click(x, y, mode, class_name))

    def select_row(editor: Any, evt: gr.SelectData, request: gr.Request) -> tuple[Any, ...]:
        row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        return edit("select row", editor, request, lambda e: e.select(int(row)))

    def change_mode(editor: Any, mode: str, request: gr.Request) -> tuple[Any, ...]:
        if editor is None or editor.released:
            return (gr.skip(),) * len(edit_outputs)
        pending = editor.corner is not None  # a half-drawn box is dropped: redraw without its marker
        return edit("mode", editor, request, lambda e: e.set_mode(mode), new_overlay=pending)

    def button(name: str, action: Callable[[Editor], str]) -> Callable[..., tuple[Any, ...]]:
        def handler(editor: Any, request: gr.Request) -> tuple[Any, ...]:
            return edit(name, editor, request, action)
        return handler

    def relabel(editor: Any, class_name: str | None, request: gr.Request) -> tuple[Any, ...]:
        return edit("relabel", editor, request, lambda e: e.relabel(class_name))

    def clear_result(request: gr.Request) -> tuple[Any, ...]:
        if request.session_hash:
            editors.release(request.session_hash)
        return None, "", [], None, None, None, _status_html(EDIT_IDLE)

    def release_editor(request: gr.Request) -> None:
        if request.session_hash and editors.release(request.session_hash):
            logger.debug("Released the editor of a closed page")

    def label_batch_stream(files: Any, categories: str, detector: str | None, segmenter: str | None,
                           min_score: float, nms: str, nms_iou: float, show_masks: bool, show_boxes: bool,
                           show_labels: bool, opacity: float, server_folder: str | None = None,
                           formats: list[str] | None = None,
                           progress: gr.Progress = gr.Progress()) -> Iterator[BatchUpdate]:  # noqa: B008 (Gradio's way)
        try:
            yield from run_batch(settings, files, categories, detector, segmenter, min_score, nms, nms_iou,
                                 show_masks, show_boxes, show_labels, opacity, server_folder, progress, formats)
        except GroundedSamError as exc:
            raise _user_error(exc) from exc

    def label_batch(files: Any, categories: str, detector: str | None = None, segmenter: str | None = None,
                    min_score: float = 0.0, nms: str = "class", nms_iou: float = 0.7, show_masks: bool = True,
                    show_boxes: bool = True, show_labels: bool = True, opacity: float = 0.5,
                    server_folder: str | None = None, formats: list[str] | None = None,
                    progress: gr.Progress = gr.Progress()) -> tuple[str | None, str]:  # noqa: B008 (Gradio's way)
        """Labels several images or a zip: returns the results zip (labels JSON, overlays, chosen datasets) and a summary."""
        last = BatchUpdate("", [], None, "")
        try:
            for update in run_batch(settings, files, categories, detector, segmenter, min_score, nms, nms_iou,
                                    show_masks, show_boxes, show_labels, opacity, server_folder, progress, formats):
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
                                             height=480, scale=2, elem_id="input-image")
                            overlay = gr.Image(type="filepath", format="png", label="Overlay · click to fix",
                                               interactive=False, height=480, scale=3, elem_id="overlay")
                        run = gr.Button("Run", variant="primary", elem_id="run")
                        with gr.Group(elem_id="edit-panel"):
                            with gr.Row(equal_height=True):
                                edit_mode = gr.Radio(list(EDIT_MODES), value=SELECT, label="A click on the overlay",
                                                     elem_id="edit-mode", scale=3)
                                edit_class = gr.Dropdown([], value=None, allow_custom_value=True, scale=1,
                                                         label="Class (new object, relabel)", elem_id="edit-class")
                            with gr.Row():
                                delete_button = gr.Button("Delete", size="sm", elem_id="edit-delete")
                                relabel_button = gr.Button("Relabel", size="sm", elem_id="edit-relabel")
                                undo_button = gr.Button("Undo", size="sm", interactive=False, elem_id="edit-undo")
                                redo_button = gr.Button("Redo", size="sm", interactive=False, elem_id="edit-redo")
                                reset_button = gr.Button("Reset", size="sm", elem_id="edit-reset")
                            edit_status = gr.HTML(_status_html(EDIT_IDLE), elem_id="edit-status")
                        legend_html = gr.HTML(elem_id="legend-box")
                        table = gr.Dataframe(headers=TABLE_HEADERS, value=[], interactive=False, wrap=True,
                                             label="Detections (click a row to select it)",
                                             elem_id="detections-table")
                        downloads = gr.File(label="Labels of this image, with your edits: COCO JSON (RLE masks), "
                                                  "mask PNGs (zip)",
                                            file_count="multiple", interactive=False, elem_id="downloads")
                        dataset_button = gr.Button("Add the dataset formats to the downloads (COCO, YOLO, VOC, "
                                                   "masks: one zip)", size="sm", elem_id="dataset-button")
                        # One browser session's editor; released when the session ends or after
                        # EDITOR_TTL_S without an edit.
                        edit_state = gr.State(None, time_to_live=EDITOR_TTL_S,
                                              delete_callback=lambda e: editors.discard(e) if e is not None else None)
                        with gr.Accordion("Detections JSON (what the API returns)", open=False):
                            record = gr.JSON(label="Detections")
                        gr.Examples([[str(EXAMPLES_DIR / f), c] for f, c in EXAMPLES], [image, categories],
                                    label="Examples (photos: facebookresearch/sam2, Apache-2.0)",
                                    cache_examples=False)

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
                        dataset_formats = gr.CheckboxGroup(
                            [("COCO", "coco"), ("YOLO", "yolo"), ("Pascal VOC", "voc"), ("Mask PNGs", "masks")],
                            value=[], label="Dataset formats in the results zip", elem_id="batch-formats",
                            info="Boxes in datasets are the tight boxes of the masks; see the README for the layout.",
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

        edit_outputs = [edit_state, overlay, legend_html, table, edit_status, edit_class, undo_button, redo_button]
        # Edits that may run SAM2's decoder join the model queue; the rest their own group. Clicks
        # are never dropped (trigger_mode "multiple"): each one is an edit.
        decoder_event = {"concurrency_id": MODEL_QUEUE, "concurrency_limit": 1, "api_visibility": "private",
                         "show_progress": "minimal", "show_progress_on": [edit_status], "trigger_mode": "multiple"}
        quick_event = {**decoder_event, "concurrency_id": EDIT_QUEUE, "concurrency_limit": 4}
        downloads_event = {"concurrency_id": EDIT_QUEUE, "concurrency_limit": 4, "api_visibility": "private",
                           "show_progress": "hidden"}

        run.click(
            clear_result, None, [overlay, legend_html, table, downloads, record, edit_state, edit_status],
            queue=False, api_visibility="private",
        ).then(
            segment, [image, *options], [overlay, record], api_name="segment", **model_event,
        ).success(
            start_editing, [image, record, segmenter, show_masks, show_boxes, show_labels, opacity],
            [*edit_outputs, downloads], api_visibility="private", concurrency_id=EDIT_QUEUE, concurrency_limit=4,
        )
        # Overlay options redraw the last result (with its edits) at once; only Run runs the models.
        gr.on(
            [show_masks.change, show_boxes.change, show_labels.change, opacity.change], redraw,
            [image, record, edit_state, show_masks, show_boxes, show_labels, opacity], overlay,
            api_visibility="private", preprocess=False, trigger_mode="always_last", show_progress="hidden",
        )

        for trigger, handler, inputs, settings_ in (
            (overlay.select, click_overlay, [edit_state, edit_mode, edit_class], decoder_event),
            (table.select, select_row, [edit_state], quick_event),
            (edit_mode.change, change_mode, [edit_state, edit_mode], quick_event),
            (delete_button.click, button("delete", lambda e: e.delete()), [edit_state], quick_event),
            (relabel_button.click, relabel, [edit_state, edit_class], quick_event),
            (undo_button.click, button("undo", lambda e: e.undo()), [edit_state], quick_event),
            (redo_button.click, button("redo", lambda e: e.redo()), [edit_state], quick_event),
            (reset_button.click, button("reset", lambda e: e.reset()), [edit_state], quick_event),
        ):
            # The overlay comes back first; the downloads follow in a second, cheaper step.
            trigger(handler, inputs, edit_outputs, **settings_).success(
                refresh_downloads, edit_state, downloads, **downloads_event)
        dataset_button.click(make_dataset, edit_state, downloads, api_visibility="private",
                             concurrency_id=EDIT_QUEUE, concurrency_limit=4)
        demo.unload(release_editor)

        batch_event = run_batch_button.click(
            label_batch_stream, [files, *options, server_folder, dataset_formats], [batch_progress, gallery, results, summary],
            api_visibility="private", show_progress_on=[results], **model_event,
        )
        stop.click(
            lambda: '<div id="batch-progress-bar">Stopped. The images done so far are not zipped; '
                    "click Label all to start again.</div>",
            None, batch_progress, cancels=[batch_event], queue=False, api_visibility="private",
        )
        api_trigger.click(label_batch, [files, *options, server_folder, dataset_formats], [results, summary],
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
