"""One image's result, without Gradio: the run, its overlay drawn again, its details, and an editor of it.

A result travels between the page's events as the detections record of
:func:`grounded_sam.export.labels_json.detections_to_record`; an image travels as whatever Gradio
hands over for an upload (see :func:`grounded_sam.app.jobs.upload_path`).
"""

from __future__ import annotations

import logging
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any

from grounded_sam.app import gpu
from grounded_sam.app.markup import legend_markup
from grounded_sam.app.options import LabelOptions, ModelOptions, OverlayOptions, load_models, run_settings
from grounded_sam.app.settings import AppSettings
from grounded_sam.categories import Categories, parse_categories
from grounded_sam.errors import ImageLoadError, InputError

if TYPE_CHECKING:
    import numpy as np

    from grounded_sam.caching import DetectionCache
    from grounded_sam.editing.editor import Editor
    from grounded_sam.editing.view import OverlayStyle
    from grounded_sam.pipeline import GroundedSAM2

__all__ = ["image_details", "open_editor", "redraw_overlay", "segment_image"]

logger = logging.getLogger(__name__)


def segment_image(settings: AppSettings, image: Any, options: LabelOptions,
                  cache: DetectionCache | None = None) -> tuple[str, dict[str, Any]]:
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

    parsed = parse_categories(options.categories)
    upload = upload_path(image)
    if upload is None:
        raise InputError("No image: upload one (or pick an example) before clicking Run.")
    path, name = upload
    annotator = options.overlay.annotator()
    pipe = options.models.pipeline(settings)
    try:
        rgb = load_image(path)
    except ImageLoadError as exc:  # name the file as the user knows it, not by its temp path
        raise ImageLoadError(str(exc).replace(str(path), name)) from exc
    load_models(pipe)
    gpu.attach_refiner(pipe)
    detections = _detect_cached(pipe, rgb, parsed, cache)
    height, width = rgb.shape[:2]
    stem = sanitize_stem(PurePath(name))
    overlay = atomic_write_bytes(new_job_dir() / f"{stem}_overlay.png", encode_png(annotator.annotate(rgb, detections)))
    record = detections_to_record(detections, (width, height), parsed.class_names, source=name,
                                  settings=run_settings(pipe, parsed))
    return str(overlay), record


def _detect_cached(pipe: GroundedSAM2, rgb: np.ndarray, categories: Categories, cache: DetectionCache | None) -> Any:
    if cache is None:
        return gpu.detect_and_segment(pipe, rgb, categories)
    from grounded_sam.caching import detection_key

    detections, cached = cache.get_or_run(detection_key(rgb, categories, pipe),
                                          lambda: gpu.detect_and_segment(pipe, rgb, categories))
    if cached:
        logger.debug("Reused the cached result for these categories and settings")
    return detections


def _image_of(image: Any, record: dict[str, Any] | None) -> tuple[Path, str, np.ndarray] | None:
    """``(file, name, RGB)`` of the input when it is the image the record was made from (same name and
    size), else None (nothing run yet, or another image uploaded since)."""
    from grounded_sam.app.jobs import upload_path
    from grounded_sam.inputs.images import load_image

    upload = upload_path(image)
    if upload is None or not record or "detections" not in record or record["image"].get("file_name") != upload[1]:
        return None
    rgb = load_image(upload[0])
    if (rgb.shape[1], rgb.shape[0]) != (record["image"]["width"], record["image"]["height"]):
        return None
    return (*upload, rgb)


def redraw_overlay(image: Any, record: dict[str, Any] | None, overlay: OverlayOptions) -> str | None:
    """The last result drawn again with other overlay options, without running the models.

    Returns:
        The new overlay PNG's path, or None when there is no result for the image now in the
        input (nothing run yet, or another image uploaded since).
    """
    from grounded_sam.app.jobs import new_job_dir
    from grounded_sam.export.files import atomic_write_bytes
    from grounded_sam.export.labels_json import record_to_detections
    from grounded_sam.export.overlay import encode_png
    from grounded_sam.naming import sanitize_stem

    found = _image_of(image, record)
    if found is None:
        return None
    _, name, rgb = found
    drawn = overlay.annotator().annotate(rgb, record_to_detections(record))
    stem = sanitize_stem(PurePath(name))
    return str(atomic_write_bytes(new_job_dir() / f"{stem}_overlay.png", encode_png(drawn)))


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


def open_editor(settings: AppSettings, image: Any, record: dict[str, Any] | None, segmenter: str | None,
                style: OverlayStyle, detector: str | None = None) -> Editor | None:
    """An editor of the last run's result, or None when the input no longer holds the image it was run on
    (another name or size, as :func:`redraw_overlay` checks).

    Runs no model: the segmenter is the one the run loaded, and the run left the image's
    embedding in its cache. ``detector`` (the run's) chooses the click refiner: SAM 3's tracker after
    ``sam3``, else SAM2 (:func:`~grounded_sam.editing.refiners.refiner_for`).
    """
    from grounded_sam.app.jobs import new_job_dir
    from grounded_sam.editing.editor import Editor
    from grounded_sam.editing.session import LabelSession
    from grounded_sam.export.labels_json import record_to_detections
    from grounded_sam.naming import sanitize_stem

    found = _image_of(image, record)
    if found is None:
        return None
    path, name, rgb = found
    pipe = ModelOptions(detector=detector, segmenter=segmenter).pipeline(settings)  # the detector picks the refiner
    session = LabelSession(gpu.GpuDecoder(pipe), rgb, record_to_detections(record), list(record["categories"]))
    return Editor(session, new_job_dir(), name, sanitize_stem(PurePath(name)), source_path=path, style=style,
                  settings=record.get("settings") or {})
