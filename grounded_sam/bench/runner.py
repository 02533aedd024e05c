"""Runs the benchmark: our pipeline, the demo-style reference and the models' floor, side by side.

For every scenario and image, after one untimed warm-up of each, ``repeats`` rounds run our
pipeline, the reference and the floor measurement in one process, the order rotating each round
so that drifting machine load hits all three alike. Reported figures are medians.
"""

from __future__ import annotations

import gc
import logging
import platform
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from grounded_sam.bench.floor import FloorSample, ModelFloor
from grounded_sam.bench.folder import measure_folder
from grounded_sam.bench.models import BenchModels, prepare_models
from grounded_sam.bench.reference import ReferencePipeline
from grounded_sam.bench.refinement import measure_refinement
from grounded_sam.bench.scenarios import Scenario
from grounded_sam.models.devices import precision_scope

logger = logging.getLogger(__name__)

REPORT_VERSION = 1
#: The example photo in the repository (examples/ATTRIBUTION.md); a pip-installed copy has none, so pass --image.
DEFAULT_IMAGE = Path(__file__).resolve().parents[2] / "examples" / "truck.jpg"
OUR_STAGES = ("load_image", "detect", "segment", "postprocess", "write")
FLOOR_PARTS = ("florence_vision", "florence_encoder", "florence_decode", "sam2_image", "sam2_masks")


@dataclass(frozen=True)
class BenchConfig:
    """Settings of one benchmark run.

    Attributes:
        preset: ``tiny`` (CI smoke) or ``base`` (real-size architectures).
        scenarios: Category x box counts to run.
        images: Image files to label.
        repeats: Timed rounds per scenario and image (after one warm-up).
        device: ``cpu``, ``cuda``, ``cuda:N``, ``mps`` or ``auto``.
        weights: ``auto``, ``random`` or ``real``.
        work_dir: Cache of random models and scratch outputs.
        folder_images: Images in the folder run (0 skips it).
        threads: ``torch.set_num_threads`` value; None keeps torch's default.
        refinement_clicks: Clicks timed by the refinement row (0 skips it).
        precision: Our pipeline's ``--precision`` (``auto``, ``fp32``, ``bf16``). The reference runs the demo's
            own precision (fp32 on CPUs, bf16 autocast on GPUs); the floor is measured at ours and, where that
            is not fp32, at fp32 too (the targets compare with the fp32 floor).
        gpu_folder_side: On a GPU, the long side in pixels of the images of the GPU table's folder run (0 skips it).
    """

    preset: str
    scenarios: tuple[Scenario, ...]
    images: tuple[Path, ...]
    repeats: int
    device: str
    weights: str
    work_dir: Path
    folder_images: int = 6
    threads: int | None = None
    refinement_clicks: int = 3
    precision: str = "auto"
    gpu_folder_side: int = 1024

    def __post_init__(self) -> None:
        from grounded_sam.models.devices import check_precision

        object.__setattr__(self, "precision", check_precision(self.precision))
        if self.repeats < 1:
            raise ValueError(f"repeats must be >= 1, but got {self.repeats}")
        if self.folder_images < 0 or self.refinement_clicks < 0:
            raise ValueError("folder_images and refinement_clicks must be >= 0")
        if not self.scenarios or not self.images:
            raise ValueError("at least one scenario and one image are needed")
        for image in self.images:
            if not Path(image).is_file():
                raise FileNotFoundError(f"Benchmark image {image} does not exist.")

    def as_dict(self) -> dict[str, Any]:
        return {
            "preset": self.preset, "scenarios": [s.name for s in self.scenarios],
            "images": [str(p) for p in self.images], "repeats": self.repeats, "device": self.device,
            "weights": self.weights, "folder_images": self.folder_images, "threads": self.threads,
            "refinement_clicks": self.refinement_clicks, "precision": self.precision,
        }


@dataclass
class _Runs:
    """Per-round stage times of one pipeline."""

    runs: list[dict[str, float]] = field(default_factory=list)
    detections: int = 0

    def summary(self) -> dict[str, Any]:
        stages = [k for k in self.runs[0] if k not in ("total", "cpu")] if self.runs else []
        return {
            "stages_s": {k: statistics.median(r[k] for r in self.runs) for k in stages},
            "total_s": statistics.median(r["total"] for r in self.runs),
            "cpu_s": statistics.median(r["cpu"] for r in self.runs),
            "runs": self.runs,
            "detections": self.detections,
        }


def run_benchmark(config: BenchConfig, on_scenario: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Runs every scenario and returns the report (plain JSON-able values).

    Args:
        config: What to run.
        on_scenario: Called with the report so far after each scenario (to save partial results).
    """
    import torch

    from grounded_sam.models.devices import resolve_device

    if config.threads:
        torch.set_num_threads(config.threads)
    device = resolve_device(config.device)
    report: dict[str, Any] = {
        "benchmark": "grounded_sam.bench", "version": REPORT_VERSION,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(device, config.precision), "settings": config.as_dict(), "results": [],
        "folder": None, "refinement": None, "gpu": None,
    }
    scratch = Path(tempfile.mkdtemp(prefix="bench-", dir=_ensure(config.work_dir)))
    load_samples: list[float | None] = []
    report["machine"]["load_average_at_start"] = _load_average()
    report["machine"]["load_average_per_round"] = load_samples
    try:
        for index, scenario in enumerate(config.scenarios):
            models = prepare_models(config.preset, scenario.boxes_per_category, config.work_dir, config.weights)  # type: ignore[arg-type]
            first = index == 0
            report["results"].extend(
                _run_scenario(config, scenario, models, device, scratch, load_samples, report if first else None)
            )
            gc.collect()
            if on_scenario is not None:
                on_scenario(report)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return report


def _load_average() -> float | None:
    """The 1-minute load average (None where the OS has none); this run itself adds about its threads."""
    import os

    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def _ensure(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _run_scenario(
    config: BenchConfig, scenario: Scenario, models: BenchModels, device: Any, scratch: Path,
    load_samples: list[float | None], extras: dict[str, Any] | None,
) -> list[dict[str, Any]]:
    """One scenario on every image; the folder and refinement rows go into ``extras`` when given.

    The load average after each round is appended to ``load_samples``.
    """
    from grounded_sam.models.devices import resolve_precision
    from grounded_sam.models.loading import clear_model_cache
    from grounded_sam.pipeline import GroundedSAM2

    clear_model_cache()
    gc.collect()
    pipe = GroundedSAM2(models.detector, models.segmenter, device=str(device), precision=config.precision)
    ours_precision = resolve_precision(config.precision, device)
    # The demo pattern autocasts to bf16 on GPUs only: on a CPU bf16 lowers our time, not the reference's.
    reference_precision = "fp32" if device.type == "cpu" else "auto"
    started = time.perf_counter()
    detector = pipe.detector
    detector_load = time.perf_counter() - started
    started = time.perf_counter()
    segmenter = pipe.segmenter
    segmenter_load = time.perf_counter() - started
    reference = ReferencePipeline.sharing_models_of(pipe)
    floor = ModelFloor(detector, segmenter)
    names = scenario.category_names
    logger.info("Scenario %s: %s", scenario.name, models.description)

    rows = []
    for image in config.images:
        out_ours, out_ref = scratch / "ours", scratch / "reference"
        ours, ref = _Runs(), _Runs()
        floor_samples: list[FloorSample] = []
        fp32_floor_samples: list[FloorSample] = []
        steps = {
            "ours": partial(_time_ours, pipe, image, names, out_ours, ours),
            "reference": _at(reference_precision, partial(_time_reference, reference, image, names, out_ref, ref)),
            "floor": _at(ours_precision, partial(_time_floor, floor, image, names, floor_samples)),
        }
        if ours_precision != "fp32":
            steps["floor_fp32"] = _at("fp32", partial(_time_floor, floor, image, names, fp32_floor_samples))
        order = list(steps)
        for name in order:  # warm-up, untimed
            steps[name]()
        ours.runs.clear()
        ref.runs.clear()
        floor_samples.clear()
        fp32_floor_samples.clear()
        for round_index in range(config.repeats):
            shift = round_index % len(order)
            for name in order[shift:] + order[:shift]:
                steps[name]()
            load_samples.append(_load_average())
            logger.info(
                "%s %s round %d/%d: ours %.2f s, reference %.2f s", scenario.name, Path(image).name,
                round_index + 1, config.repeats, ours.runs[-1]["total"], ref.runs[-1]["total"],
            )
        row = _row(scenario, models, image, ours, ref, floor_samples, detector_load, segmenter_load)
        fp32_floor = summarize_floor(fp32_floor_samples) if fp32_floor_samples else row["floor"]
        row.update({"precision": ours_precision, "reference_precision": "fp32" if device.type == "cpu" else "demo",
                    "floor_fp32": fp32_floor, "ratio_to_fp32_floor": row["ours"]["total_s"] / fp32_floor["total_s"]})
        rows.append(row)

    if extras is not None:
        first_image = config.images[0]
        fresh = rows[0]["ours"]["total_s"]
        if config.folder_images:
            logger.info("Folder run of %d images", config.folder_images)
            # The floor is measured right before and after the run, so a change of machine load
            # between the rounds above and the folder run does not count as overhead.
            rgb = _load(first_image)
            with precision_scope(ours_precision):
                bracket = [floor.measure(rgb, names)]
                result = measure_folder(pipe, first_image, names, config.folder_images, scratch, device)
                bracket.append(floor.measure(rgb, names))
            floor_summary = summarize_floor(bracket)
            floor_total, floor_cpu = floor_summary["total_s"], floor_summary["total_cpu_s"]
            # The whole run's time per image is the figure: with writes overlapped, the progress
            # calls (an image's files written) lag its labeling by one image, so the first interval
            # holds two images and the last only a write; their median is shown for information.
            median = statistics.median(result.per_image_s) if result.per_image_s else float("nan")
            per_image = result.wall_s / max(result.images, 1)
            extras["folder"] = {
                "scenario": scenario.name, "image": str(first_image), **result.as_dict(),
                "floor_per_image_s": floor_total, "single_image_s": fresh, "per_image_wall_s": per_image,
                "median_image_s": median, "overhead_vs_floor": per_image / floor_total - 1,
                "overhead_vs_floor_median": median / floor_total - 1,
                "floor_per_image_cpu_s": floor_cpu,
                "overhead_vs_floor_cpu_time": (result.cpu_s / max(result.images, 1)) / floor_cpu - 1 if floor_cpu else None,
            }
        if config.refinement_clicks:
            with precision_scope(ours_precision):  # the clicks run at the pipeline's precision
                refinement = measure_refinement(pipe, _load(first_image), names, fresh, clicks=config.refinement_clicks)
            extras["refinement"] = {"scenario": scenario.name, "image": str(first_image), **refinement}
        if device.type == "cuda" and config.gpu_folder_side:
            extras["gpu"] = measure_gpu_folder(pipe, first_image, config, scratch, device)
    return rows


def _at(precision: str, step: Callable[[], None]) -> Callable[[], None]:
    """``step`` run at ``precision`` (the models read it from :func:`~grounded_sam.models.devices.precision_scope`)."""

    def run() -> None:
        with precision_scope(precision):
            step()

    return run


#: The GPU table's folder run: categories per image (the issue's "3 categories").
GPU_FOLDER_CATEGORIES = 3


def measure_gpu_folder(pipe: Any, image: Path, config: BenchConfig, scratch: Path, device: Any) -> dict[str, Any]:
    """The GPU table's row: a folder run of ``config.folder_images`` (at least 4) copies of ``image`` resized to
    ``config.gpu_folder_side`` pixels on its long side, with :data:`GPU_FOLDER_CATEGORIES` categories."""
    import torch
    from PIL import Image

    from grounded_sam.bench.scenarios import CATEGORY_NAMES
    from grounded_sam.models.devices import bf16_supported, resolve_precision

    side = config.gpu_folder_side
    with Image.open(image) as handle:
        rgb = handle.convert("RGB")
    scale = side / max(rgb.size)
    resized = rgb.resize((max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale))), Image.Resampling.BICUBIC)
    path = _ensure(scratch / "gpu-image") / f"image-{side}px.png"
    resized.save(path)
    names = list(CATEGORY_NAMES[:GPU_FOLDER_CATEGORIES])
    pipe.predict(np.asarray(resized), names)  # warm-up: kernels and autotuning outside the timing
    result = measure_folder(pipe, path, names, max(config.folder_images, 4), scratch, device)
    return {
        "gpu": torch.cuda.get_device_name(device), "device": str(device), "bf16": bool(bf16_supported(device)),
        "precision": resolve_precision(config.precision, device), "image_size": list(resized.size),
        "categories": len(names), "images": result.images, "failed": result.failed, "wall_s": result.wall_s,
        "images_per_s": result.images_per_s, "gpu_peak_mb": result.gpu_peak_mb,
        "box_chunk_size": pipe.segmenter.box_chunk_size,
        "prompt_batch_size": getattr(pipe.detector, "prompt_batch_size", None),
    }


def _time_floor(floor: ModelFloor, image: Path, names: Sequence[str], samples: list[FloorSample]) -> None:
    samples.append(floor.measure(_load(image), names))


def _load(image: Path) -> Any:
    from grounded_sam.inputs.images import load_image

    return load_image(image)


def _write(out_dir: Path, image: Path, rgb: Any, detections: Any, names: Sequence[str]) -> float:
    from grounded_sam.export import JsonLabelWriter, LabeledImage

    started = time.perf_counter()
    item = LabeledImage(source=str(image), stem=Path(image).stem, image=rgb, detections=detections,
                        class_names=tuple(names))
    JsonLabelWriter(out_dir).write(item)
    return time.perf_counter() - started


def _time_ours(pipe: Any, image: Path, names: Sequence[str], out_dir: Path, runs: _Runs) -> None:
    """Ours end to end: decode the file, ``predict``, write the JSON labels."""
    cpu_started = time.process_time()
    started = time.perf_counter()
    rgb = _load(image)
    loaded = time.perf_counter() - started
    detections = pipe.predict(rgb, names)
    timings = detections.metadata["timings_s"]
    write = _write(out_dir, image, rgb, detections, names)
    total = time.perf_counter() - started
    stages = {
        "load_image": loaded + timings["load_image"], "detect": timings["detect"], "segment": timings["segment"],
        "postprocess": timings["postprocess"], "write": write,
    }
    runs.runs.append({**stages, "total": total, "cpu": time.process_time() - cpu_started})
    runs.detections = len(detections)


def _time_reference(reference: ReferencePipeline, image: Path, names: Sequence[str], out_dir: Path, runs: _Runs) -> None:
    """The reference end to end, writing the same JSON labels with the same writer."""
    cpu_started = time.process_time()
    started = time.perf_counter()
    rgb, detections, timings = reference(image, names)
    write = _write(out_dir, image, rgb, detections, names)
    total = time.perf_counter() - started
    runs.runs.append({**timings, "write": write, "total": total, "cpu": time.process_time() - cpu_started})
    runs.detections = len(detections)


def _row(
    scenario: Scenario, models: BenchModels, image: Path, ours: _Runs, ref: _Runs, floor_samples: list[FloorSample],
    detector_load: float, segmenter_load: float,
) -> dict[str, Any]:
    from PIL import Image

    with Image.open(image) as handle:
        size = list(handle.size)
    ours_summary, ref_summary = ours.summary(), ref.summary()
    floor = summarize_floor(floor_samples)
    predict_s = statistics.median(r["detect"] + r["segment"] + r["postprocess"] for r in ours.runs)
    paired = [r["total"] / o["total"] for o, r in zip(ours.runs, ref.runs)]
    return {
        "scenario": scenario.name, "categories": scenario.categories, "boxes_per_category": scenario.boxes_per_category,
        "image": str(image), "image_size": size, "models": models.description, "weights": models.weights,
        "model_load_s": {"detector": detector_load, "segmenter": segmenter_load},
        "ours": {**ours_summary, "predict_s": predict_s},
        "reference": ref_summary,
        "speedup": ref_summary["total_s"] / ours_summary["total_s"],
        "speedup_per_round": paired,
        "speedup_cpu_time": ref_summary["cpu_s"] / ours_summary["cpu_s"],
        "floor": floor,
        "overhead": {
            "end_to_end": ours_summary["total_s"] / floor["total_s"] - 1,
            "predict": predict_s / floor["total_s"] - 1,
            "end_to_end_cpu_time": ours_summary["cpu_s"] / floor["total_cpu_s"] - 1 if floor["total_cpu_s"] else None,
        },
    }


def summarize_floor(samples: Sequence[FloorSample]) -> dict[str, Any]:
    """Medians of the floor parts; the mask decode at its fastest chunk size."""
    parts = {name: statistics.median(getattr(s, name) for s in samples) for name in FLOOR_PARTS[:-1]}
    chunk_sizes = sorted(set().union(*(s.sam2_masks for s in samples)))
    chunks = {c: statistics.median(s.sam2_masks[c] for s in samples if c in s.sam2_masks) for c in chunk_sizes}
    best = min(chunks, key=chunks.__getitem__) if chunks else None
    parts["sam2_masks"] = chunks[best] if best is not None else 0.0
    cpu = {name: statistics.median(s.cpu.get(name, 0.0) for s in samples) for name in FLOOR_PARTS[:-1]}
    masks_cpu = [s.cpu_masks[best] for s in samples if best in s.cpu_masks]
    cpu["sam2_masks"] = statistics.median(masks_cpu) if masks_cpu else 0.0
    return {
        "parts_s": parts, "total_s": sum(parts.values()), "parts_cpu_s": cpu, "total_cpu_s": sum(cpu.values()), "sam2_masks_by_chunk_s": {str(c): t for c, t in chunks.items()},
        "best_chunk_size": best, "decode_steps": samples[0].decode_steps if samples else 0,
        "boxes": samples[0].num_boxes if samples else 0,
        "runs": [{**{n: getattr(s, n) for n in FLOOR_PARTS[:-1]}, "sam2_masks_by_chunk_s": {str(c): t for c, t in s.sam2_masks.items()}}
                 for s in samples],
    }


def machine_info(device: Any, precision: str = "auto") -> dict[str, Any]:
    """What the figures were measured on (``precision``: what our pipeline was asked to run at)."""
    import torch
    import transformers

    info: dict[str, Any] = {
        "cpu": _cpu_name(), "cpu_count": _cpu_count(), "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(), "python": platform.python_version(),
        "torch": torch.__version__, "transformers": transformers.__version__, "device": str(device),
        "gpu": None, "precision": "fp32",
    }
    from grounded_sam.models.devices import cpu_bf16_feature, resolve_precision

    info["cpu_bf16"] = cpu_bf16_feature()
    info["precision"] = "bf16 autocast" if resolve_precision(precision, device) == "bf16" else "fp32"
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_count() -> int:
    import os

    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1
