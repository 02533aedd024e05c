"""Scaling of the Ray engine: images/s with 1 and 2 Ray workers against the local engine, the same models and inputs.

Builds the tiny test models (random weights; Florence-2's decoder scripted to find two boxes for every prompt, so
SAM2 makes real masks) and synthetic 640x480 PNGs (:mod:`scripts.bench_memory`'s), then labels the folder:

* ``local``: the local engine in this process, ``--threads`` torch threads;
* ``ray xN``: the Ray engine with N workers of ``--threads`` torch threads each, on one local Ray
  (``ray.init(num_cpus=os.cpu_count())``), or the cluster at ``--ray-address``.

Each run writes the per-image JSON only (``--format`` adds datasets), into a fresh folder. Two rates per run:
*steady* images/s, from the first image written to the last (what a long run gets: the workers' start-up, about
10-20 s on a 2-core CPU, is paid once per run), and *overall*, from the call to the end. Every run must give the
same labels as the local one (checked, byte for byte), and the table says how many images each worker labeled.

    .venv/bin/python -m scripts.bench_ray                         # 24 images: local, ray x1, ray x2 (CPU)
    .venv/bin/python -m scripts.bench_ray --images 8 --workers 2   # a quicker look
    .venv/bin/python -m scripts.bench_ray --device cuda --workers 1 2 4 --gpus-per-worker 1   # one worker per GPU

Run it from the repository root (``-m`` puts the root on the import path), on a quiet machine.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from scripts.bench_memory import build_models, draw_images


@dataclass
class Rate:
    """One run's figures."""

    name: str
    images: int
    overall_s: float
    first_s: float  # call -> first image written
    last_s: float  # call -> last image written
    per_worker: dict[str, int] = field(default_factory=dict)

    @property
    def steady(self) -> float:
        """Images/s from the first image written to the last (the start-up left out)."""
        span = self.last_s - self.first_s
        return (self.images - 1) / span if span > 0 and self.images > 1 else float("nan")

    @property
    def overall(self) -> float:
        return self.images / self.overall_s


def label_folder(pipe: object, folder: Path, out: Path, formats: str, engine: object = None) -> Rate:
    """Labels ``folder`` into ``out`` and times it."""
    from grounded_sam.runs.batch import run_labeling

    stamps: list[float] = []
    started = time.perf_counter()
    summary = run_labeling(pipe, [folder], "shape, thing", out, formats=formats, engine=engine,
                           on_progress=lambda done, total, outcome: stamps.append(time.perf_counter() - started))
    overall = time.perf_counter() - started
    if summary.failed or len(summary.labeled) != len(stamps):
        raise SystemExit(f"{out}: {len(summary.failed)} images failed:\n{summary.as_text()}")
    name = "local" if engine is None else f"ray x{engine.workers}"
    return Rate(name, len(stamps), overall, stamps[0], stamps[-1], summary.per_worker)


def same_labels(out: Path, reference: Path) -> bool:
    """Whether two runs wrote the same ``labels/`` bytes."""
    files = sorted(p.name for p in (reference / "labels").iterdir())
    return files == sorted(p.name for p in (out / "labels").iterdir()) and all(
        (out / "labels" / name).read_bytes() == (reference / "labels" / name).read_bytes() for name in files)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=24, help="Synthetic 640x480 images to label (default 24).")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="Ray pool sizes to run (default 1 2).")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the local run and of each worker.")
    parser.add_argument("--device", default="cpu", help="The pipeline's device (default cpu).")
    parser.add_argument("--gpus-per-worker", type=float, default=None, help="GPUs per Ray worker (default: 0 on cpu).")
    parser.add_argument("--ray-address", default=None, help="A running cluster (default: a local Ray).")
    parser.add_argument("--format", default="", help="Datasets to write too (default: only the per-image JSON).")
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="Where models, inputs and outputs go (default: a temporary folder, removed after).")
    args = parser.parse_args(argv)

    import torch

    from grounded_sam.pipeline import GroundedSAM2
    from grounded_sam.runs.ray_engine import RayEngine

    work = args.work_dir or Path(tempfile.mkdtemp(prefix="bench-ray-"))
    try:
        florence, sam2 = build_models(work / "models")
        folder = work / "images"
        draw_images(folder, args.images)
        pipe = GroundedSAM2(florence, sam2, device=args.device, nms="none")
        torch.set_num_threads(args.threads)
        gpus = args.gpus_per_worker if args.gpus_per_worker is not None else (0 if args.device == "cpu" else None)
        print(f"{args.images} images 640x480, tiny models, device {args.device}, {args.threads} torch thread(s) "
              f"per run/worker, {os.cpu_count()} CPUs", flush=True)
        reference = work / "out-local"
        shutil.rmtree(reference, ignore_errors=True)
        rates = [label_folder(pipe, folder, reference, args.format)]
        print(f"  local done in {rates[0].overall_s:.1f} s", flush=True)
        import ray

        local_ray = {} if args.ray_address else {"num_cpus": os.cpu_count(), "include_dashboard": False}
        ray.init(address=args.ray_address, log_to_driver=False, **local_ray)
        try:
            for workers in args.workers:
                out = work / f"out-ray{workers}"
                shutil.rmtree(out, ignore_errors=True)
                engine = RayEngine(workers=workers, gpus_per_worker=gpus, threads_per_worker=args.threads)
                rates.append(label_folder(pipe, folder, out, args.format, engine))
                print(f"  ray x{workers} done in {rates[-1].overall_s:.1f} s", flush=True)
                if not same_labels(out, reference):
                    print(f"error: ray x{workers} labels differ from the local engine's", file=sys.stderr)
                    return 1
        finally:
            ray.shutdown()
    finally:
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)

    local = rates[0].steady
    print("\n| run | steady images/s | vs local | overall images/s (with start-up) | images per worker |")
    print("|---|---|---|---|---|")
    for rate in rates:
        workers = ", ".join(str(count) for count in rate.per_worker.values()) or "-"
        print(f"| {rate.name} | {rate.steady:.3f} | {rate.steady / local:.2f}x | {rate.overall:.3f} | {workers} |")
    print("\nLabels identical to the local engine's in every Ray run.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
