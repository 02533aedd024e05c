"""``python -m grounded_sam.bench``: prints the benchmark table and writes the JSON report.

With ``--detectors``, it compares detectors instead (:mod:`grounded_sam.bench.detectors`).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from grounded_sam.bench.detectors import parse_detectors
from grounded_sam.bench.models import PRESETS, WEIGHTS_CHOICES, default_work_dir
from grounded_sam.bench.scenarios import parse_scenarios
from grounded_sam.models.devices import PRECISION_CHOICES

logger = logging.getLogger("grounded_sam.bench")


def _detectors(text: str) -> list[str]:
    try:
        return parse_detectors(text)
    except ValueError as exc:  # argparse shows an ArgumentTypeError's own words
        raise argparse.ArgumentTypeError(str(exc)) from exc


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m grounded_sam.bench",
        description=(
            "Per-image latency of our pipeline against the demo-style Florence-2 + SAM2 reference (same models, "
            "same images, alternating in one process), the models' own floor and our overhead over it, a folder "
            "run, and refinement. Prints a table and writes JSON."
        ),
    )
    parser.add_argument("--detectors", type=_detectors, default=None, metavar="NAMES",
                        help="Compare these detectors instead (comma-separated registry names, or 'all'): seconds "
                             "per image of each (+ SAM2 where it needs one) on the same image, side by side. The "
                             "folder run and refinement are not part of it.")
    parser.add_argument("--precision-check", action="store_true",
                        help="Measure bf16 autocast against fp32 instead: seconds of Florence-2 and SAM2 each, and how "
                             "far their outputs move (encoder relative error, mask IoU, score change), on the first "
                             "scenario and image. What `--precision auto` picks rests on these figures.")
    parser.add_argument("--precision", choices=PRECISION_CHOICES, default="auto",
                        help="Our pipeline's precision (default auto: bf16 autocast on GPUs with bf16 and on CPUs with "
                             "AMX or AVX-512 BF16). The reference runs fp32 on a CPU; the floor is measured at ours, "
                             "and at fp32 too when ours is not fp32.")
    parser.add_argument("--preset", choices=PRESETS, default="base",
                        help="base: Florence-2-base + SAM2.1 hiera-base-plus sizes (default); tiny: seconds, for CI smoke runs.")
    parser.add_argument("--scenarios", default="5x4,10x2", type=parse_scenarios,
                        help="Comma-separated CATEGORIESxBOXES (default 5x4,10x2).")
    parser.add_argument("--repeats", type=int, default=3, help="Timed rounds after one warm-up (default 3).")
    parser.add_argument("--device", default="cpu",
                        help="cpu (default), cuda, cuda:N, mps or auto. On a GPU the run adds the GPU table: a folder "
                             "run at --gpu-folder-side px with 3 categories, written to --gpu-table.")
    parser.add_argument("--gpu-folder-side", type=int, default=1024,
                        help="Long side in pixels of the GPU table's folder-run images (default 1024; 0 skips it).")
    parser.add_argument("--gpu-table", type=Path, default=None,
                        help="Markdown file for the GPU table (default: beside --out, as <out>-gpu.md).")
    parser.add_argument("--image", dest="images", action="append", type=Path, default=None, metavar="PATH",
                        help="Image to label; repeat for several (default examples/truck.jpg in the repository).")
    parser.add_argument("--weights", choices=WEIGHTS_CHOICES, default="auto",
                        help="auto: real weights when on disk (base preset), else random (default).")
    parser.add_argument("--folder-images", type=int, default=6, help="Images in the folder run; 0 skips it (default 6).")
    parser.add_argument("--refinement-clicks", type=int, default=3, help="Clicks timed for refinement; 0 skips it.")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice).")
    parser.add_argument("--work-dir", type=Path, default=None,
                        help=f"Cache of the random models (about 2.1 GB for base) and scratch (default {default_work_dir()}).")
    parser.add_argument("--out", type=Path, default=Path("bench.json"), help="JSON report path (default bench.json).")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="Progress logs (-vv for debug).")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Progress of our own modules only: sam2 logs every set_image on the root logger.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    if args.verbose:
        logging.getLogger("grounded_sam").setLevel(logging.INFO if args.verbose == 1 else logging.DEBUG)

    from grounded_sam.bench.detectors import format_detector_table, run_detector_benchmark
    from grounded_sam.bench.report import format_table, write_gpu_table, write_report
    from grounded_sam.bench.runner import DEFAULT_IMAGE, BenchConfig, run_benchmark
    from grounded_sam.errors import GroundedSamError

    try:
        config = BenchConfig(
            preset=args.preset, scenarios=tuple(args.scenarios), images=tuple(args.images or [DEFAULT_IMAGE]),
            repeats=args.repeats, device=args.device, weights=args.weights,
            work_dir=args.work_dir or default_work_dir(), folder_images=args.folder_images, threads=args.threads,
            refinement_clicks=args.refinement_clicks, precision=args.precision, gpu_folder_side=args.gpu_folder_side,
        )
        if args.precision_check:
            return _precision_check(config, args.out)

        def save(partial: dict) -> None:  # after each scenario: an interrupted run keeps what it measured
            write_report(partial, args.out)

        if args.detectors:
            report = run_detector_benchmark(config, args.detectors, on_scenario=save)
        else:
            report = run_benchmark(config, on_scenario=save)
    except (GroundedSamError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_detector_table(report) if args.detectors else format_table(report))
    path = write_report(report, args.out)
    print(f"\nWrote {path}")
    gpu_table = None if args.detectors else write_gpu_table(report, args.gpu_table or args.out.with_name(f"{args.out.stem}-gpu.md"))
    if gpu_table is not None:
        print(f"Wrote {gpu_table}")
    return 0


def _precision_check(config, out: Path) -> int:
    """``--precision-check``: bf16 against fp32 for each model (see :mod:`grounded_sam.bench.precision`)."""
    import json

    import torch

    from grounded_sam.bench.models import prepare_models
    from grounded_sam.bench.precision import PrecisionConfig, format_precision_table, run_precision_check
    from grounded_sam.export.files import atomic_write_text

    if config.threads:
        torch.set_num_threads(config.threads)
    scenario = config.scenarios[0]
    models = prepare_models(config.preset, scenario.boxes_per_category, config.work_dir, config.weights)  # type: ignore[arg-type]
    report = run_precision_check(PrecisionConfig(models.detector, models.segmenter, models.description,
                                                 Path(config.images[0]), scenario, config.device, config.repeats))
    print(format_precision_table(report))
    path = atomic_write_text(out, json.dumps(report, indent=1))
    print(f"\nWrote {path}")
    return 0
