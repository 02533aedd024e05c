"""``python -m grounded_sam label``: files and folders in, labels and datasets out (see :mod:`grounded_sam.runs`)."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import Any

from grounded_sam.cli.common import EXIT_INTERRUPTED, EXIT_OK, EXIT_SOME_FAILED
from grounded_sam.models.devices import DEVICE_CHOICES, PRECISION_CHOICES
from grounded_sam.models.registry import DEFAULT_DETECTOR, DEFAULT_SEGMENTER, DETECTORS, SEGMENTERS
from grounded_sam.pipeline.postprocess import NMS_MODES


def add_parser(commands: Any) -> None:
    """Adds the ``label`` command to ``commands`` (an argparse subparsers object)."""
    label = commands.add_parser("label", help="Label image files and folders.", description=(
        "Label images: for each one, writes labels/<name>.json (classes, boxes, scores, COCO RLE masks) as soon "
        "as it is done, plus the datasets asked with --format and, with --plot, overlays/<name>.png. "
        "Running the same command again resumes; a manifest.jsonl in the output folder records every image. "
        "Exits 1 if any image failed (after writing the rest), 2 on a usage error, 130 when interrupted."))
    add_label_arguments(label)
    label.set_defaults(run=run_label)


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The models, device and pipeline options every labeling command takes (``label``, ``track``)."""
    models = parser.add_argument_group("models")
    models.add_argument("--detector-model", default=DEFAULT_DETECTOR, metavar="NAME_OR_PATH",
                        help=f"Detector: {', '.join(DETECTORS)}, or a local save_pretrained folder of a Florence-2, "
                             f"Grounding DINO, OWLv2 or SAM 3 model (default {DEFAULT_DETECTOR}). SAM 3 makes the "
                             "masks itself: --segmenter-model is then not used.")
    models.add_argument("--segmenter-model", default=DEFAULT_SEGMENTER, metavar="NAME_OR_PATH",
                        help=f"SAM2: {', '.join(SEGMENTERS)} or a local .pt (default {DEFAULT_SEGMENTER}).")
    models.add_argument("--device", default="auto", help=f"{', '.join(DEVICE_CHOICES)} or cuda:N (default auto).")
    models.add_argument("--precision", choices=PRECISION_CHOICES, default="auto",
                        help="auto (default): bf16 autocast on CUDA GPUs with bf16 and on CPUs with AMX or AVX-512 BF16 "
                             "(see `doctor`), fp32 elsewhere; fp32 or bf16 force one. Recorded in the manifest: a run "
                             "resumes only with the same precision.")
    pipeline = parser.add_argument_group("pipeline")
    pipeline.add_argument("--min-score", type=float, default=0.0,
                          help="Drop masks whose SAM2 predicted IoU is below this (default 0: keep all); with "
                               "Grounding DINO or OWLv2 also boxes whose detector score is below it.")
    pipeline.add_argument("--nms", choices=NMS_MODES, default="class",
                          help="Suppress overlapping detections within a class (default), across all classes, or not "
                               "at all.")
    pipeline.add_argument("--nms-iou", type=float, default=0.7,
                          help="Overlap above which NMS drops a detection (default 0.7).")
    pipeline.add_argument("--num-beams", type=int, default=1, help="Florence-2 beams; 1 = greedy, fastest (default 1).")
    pipeline.add_argument("--max-new-tokens", type=int, default=512,
                          help="Florence-2 token budget per category (default 512).")
    pipeline.add_argument("--box-chunk-size", type=int, default=None,
                          help="Boxes per SAM2 decoder call (default: chosen for the device).")


def pipeline_from_args(args: argparse.Namespace) -> Any:
    """The :class:`~grounded_sam.pipeline.GroundedSAM2` the options of :func:`add_model_arguments` ask for.

    Raises:
        OptionError: An option is out of range (reported like every usage error: exit 2).
    """
    from grounded_sam.pipeline import GroundedSAM2

    return GroundedSAM2(
        args.detector_model, args.segmenter_model, args.device, min_score=args.min_score, nms=args.nms,
        nms_iou=args.nms_iou, num_beams=args.num_beams, max_new_tokens=args.max_new_tokens,
        box_chunk_size=args.box_chunk_size, precision=args.precision,
    )


def add_label_arguments(label: argparse.ArgumentParser) -> None:
    """The ``label`` command's options (one place, so new ones slot in beside these)."""
    from grounded_sam.export.coco import COCO_MASK_MODES
    from grounded_sam.export.formats import FORMATS
    from grounded_sam.export.overlap import OVERLAP_MODES

    label.add_argument("inputs", nargs="+", metavar="INPUT", help="Image files and folders (searched recursively).")
    label.add_argument("--categories", "-c", required=True,
                       help="Comma-separated prompts, e.g. 'truck, tire' or 'yellow hard hat: helmet, person'.")
    label.add_argument("--out", "-o", required=True, type=Path, help="Output folder.")
    output = label.add_argument_group("outputs")
    output.add_argument("--format", "-f", default="", metavar="LIST",
                        help=f"Datasets to write, comma-separated: {', '.join(FORMATS)}, or all (default: only the "
                             "per-image JSON).")
    output.add_argument("--overlap", choices=OVERLAP_MODES, default="auto",
                        help="Pixels claimed by several masks. auto (default): COCO, YOLO and the VOC XML keep "
                             "SAM2's masks, which may overlap; the single-label images (VOC SegmentationClass and "
                             "SegmentationObject, masks/) give each such pixel to the higher score. score or order: "
                             "every dataset format gets non-overlapping masks, the higher score or the earlier "
                             "category winning. The per-image JSON always keeps SAM2's masks.")
    output.add_argument("--coco-masks", choices=COCO_MASK_MODES, default="rle",
                        help="COCO segmentation as compressed RLE (default, exact) or polygons.")
    output.add_argument("--plot", action="store_true", help="Also write an overlay PNG per image.")
    output.add_argument("--force", action="store_true",
                        help="Delete this tool's earlier outputs in --out and start again (needed to change settings).")
    add_model_arguments(label)
    add_engine_arguments(label)
    label.add_argument("--no-progress", action="store_true", help="Hide the progress bar.")
    crops = label.add_argument_group("cut-outs for training (--preprocess)")
    crops.add_argument("--preprocess", action="store_true",
                       help="Also write a cut-out PNG per object: crops/<class>/<name>_<n>.png (background removed).")
    crops.add_argument("--preprocess-margin", type=float, default=0.1, metavar="FRACTION",
                       help="Margin around each box, as a fraction of its size (default 0.1 = 10%%).")
    crops.add_argument("--preprocess-background", default="transparent", metavar="COLOUR",
                       help="transparent (RGBA PNG, default), white, black, gray, #rrggbb or r,g,b.")
    crops.add_argument("--preprocess-size", type=int, default=None, metavar="PIXELS",
                       help="Scale and pad every crop to a PIXELS x PIXELS square, keeping the aspect ratio.")
    crops.add_argument("--preprocess-largest-only", action="store_true",
                       help="Keep only the largest object of each image (one product per photo).")
    crops.add_argument("--preprocess-min-area", type=float, default=0.0, metavar="FRACTION",
                       help="Keep only objects covering at least this fraction of the image (e.g. 0.05).")


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    """Where the models run: this process, or workers on a Ray cluster (``--engine ray``)."""
    engine = parser.add_argument_group("engine")
    engine.add_argument("--engine", choices=("local", "ray"), default="local",
                        help="local (default): the models run in this process. ray: on Ray Data workers (a local Ray, "
                             "or a cluster), this process writing every file; the outputs are the same. Needs "
                             "`pip install -r requirements-ray.txt`.")
    engine.add_argument("--ray-address", default=None, metavar="ADDRESS",
                        help="The Ray cluster: auto (on a node of a running cluster), HOST:PORT, or ray://HOST:10001 "
                             "(Ray Client). Default: RAY_ADDRESS, else a local Ray started for this run.")
    engine.add_argument("--workers", type=int, default=None,
                        help="Ray workers, each loading the models once (default: one per GPU, else one per 2 CPU "
                             "cores).")
    engine.add_argument("--gpus-per-worker", type=float, default=None, metavar="N",
                        help="GPUs each Ray worker takes (default: 1 where the cluster has GPUs, else 0).")


def engine_from_args(args: argparse.Namespace) -> Any:
    """The engine ``--engine`` asks for: None (the local engine) or a :class:`~grounded_sam.runs.ray_engine.RayEngine`.

    Raises:
        OptionError: A Ray option without ``--engine ray``, or a count out of range.
        EngineError: ``--engine ray`` without Ray installed.
    """
    from grounded_sam.errors import OptionError

    if args.engine == "local":
        given = [flag for flag, value in (("--ray-address", args.ray_address), ("--workers", args.workers),
                                          ("--gpus-per-worker", args.gpus_per_worker)) if value is not None]
        if given:
            raise OptionError(f"{', '.join(given)} only apply with --engine ray; add --engine ray or leave them out.")
        return None
    from grounded_sam.runs.ray_engine import RayEngine

    return RayEngine(args.ray_address, workers=args.workers, gpus_per_worker=args.gpus_per_worker)


def run_label(args: argparse.Namespace) -> int:
    from grounded_sam.categories import parse_categories
    from grounded_sam.export.formats import parse_formats
    from grounded_sam.runs.batch import collect_images, run_labeling

    categories = parse_categories(args.categories)
    formats = parse_formats(args.format)
    extra_writers = []
    if args.preprocess:
        from grounded_sam.export.crops import CropWriter

        # Built before the models load, so a bad option fails fast.
        extra_writers.append(CropWriter(
            args.out, margin=args.preprocess_margin, background=args.preprocess_background,
            size=args.preprocess_size, largest_only=args.preprocess_largest_only, min_area=args.preprocess_min_area,
        ))
    engine = engine_from_args(args)  # before the models: a missing Ray or a bad count fails fast
    images = collect_images(args.inputs)
    pipe = pipeline_from_args(args)
    progress = progress_bar(len(images), "img", disable=args.no_progress)
    previous_handler = terminate_like_ctrl_c()
    try:
        summary = run_labeling(
            pipe, images, categories, args.out, formats=formats, plot=args.plot, overlap=args.overlap,
            coco_masks=args.coco_masks, force=args.force, extra_writers=extra_writers, engine=engine,
            on_progress=lambda done, total, outcome: progress.update(1) if progress else None,
        )
    finally:
        signal.signal(signal.SIGTERM, previous_handler)
        if progress:
            progress.close()
    print(summary.as_text(), file=sys.stderr)
    if summary.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_SOME_FAILED if summary.failed else EXIT_OK


def terminate_like_ctrl_c() -> Any:
    """Makes SIGTERM (plain ``kill``) stop a run as Ctrl-C does: dataset files written, summary printed."""

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, interrupt)


def progress_bar(total: int | None, unit: str, disable: bool, desc: str = "Labeling") -> Any:
    """A tqdm bar on stderr, or None when hidden or stderr is no terminal."""
    if disable or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit=unit, desc=desc, file=sys.stderr)


