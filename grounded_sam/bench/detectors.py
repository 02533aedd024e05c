"""Detectors side by side: what each registered detector (and SAM2, where it needs one) costs per image.

``python -m grounded_sam.bench --detectors florence-2-base,grounding-dino-tiny,owlv2-base,sam3`` loads every
detector listed, then times :meth:`~grounded_sam.pipeline.GroundedSAM2.predict` with each on the same decoded
image: one untimed warm-up each, then ``repeats`` rounds whose order rotates, so drifting machine load hits
every detector alike; figures are medians. Detectors that find boxes hand them to the same SAM2; SAM 3
makes its masks itself.

Without real weights every detector is its real-size architecture with random weights (``--preset tiny``:
the tiny test architectures), built once into the work folder. Random weights find arbitrary boxes, so each
detector is made to produce the scenario's B boxes (masks) per category, and SAM2 decodes as many masks
for each: Florence-2 is scripted to emit them; Grounding DINO and OWLv2 keep every box (threshold 0) and
each category's B best are kept (:class:`BestBoxes`; a category may get fewer when few boxes score highest
for it); SAM 3 keeps each prompt's B best instances (``max_instances``). With real weights each detector
runs as users run it and finds what it finds; the ``boxes`` column says how many.
"""

from __future__ import annotations

import gc
import logging
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import supervision as sv

from grounded_sam.bench.models import build_atomically, random_florence, random_sam2, stamp_matches
from grounded_sam.bench.scenarios import Scenario
from grounded_sam.errors import GroundedSamError
from grounded_sam.models.registry import DEFAULT_SEGMENTER, DETECTORS

logger = logging.getLogger(__name__)

REPORT_VERSION = 1
_BUILD_VERSION = 1

#: The random real-size build of each registered detector: the test builder's preset (``--preset base``).
REAL_SIZES = {
    "florence-2-base": "base", "florence-2-large": "large", "grounding-dino-tiny": "swin-t",
    "grounding-dino-base": "swin-b", "owlv2-base": "base", "sam3": "base",
}


def parse_detectors(text: str) -> list[str]:
    """``"florence-2-base,sam3"`` (or ``"all"``) -> registry names, in order, each once.

    Raises:
        ValueError: A name the registry does not hold (the message lists those it does).
    """
    names = list(DETECTORS) if text.strip() == "all" else [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in DETECTORS]
    if unknown or not names:
        raise ValueError(f"Expected detector names among {', '.join(DETECTORS)} (or 'all'), but got {text!r}")
    return list(dict.fromkeys(names))


@dataclass(frozen=True)
class DetectorEntry:
    """One detector of the comparison and the weights it runs with.

    Attributes:
        name: Registry name.
        family: Registry family (``florence2``, ``grounding-dino``, ``owlv2``, ``sam3``).
        path: Its ``save_pretrained`` folder.
        weights: ``"real"`` or ``"random"``.
        segmenter: The SAM2 checkpoint (or registry name) that makes its masks; None for SAM 3.
        description: One line for the report.
    """

    name: str
    family: str
    path: str
    weights: str
    segmenter: str | None
    description: str


def prepare_detector(name: str, preset: str, boxes_per_category: int, work_dir: Path, weights: str = "auto",
                     segmenter: str | None = None) -> DetectorEntry:
    """The weights of one detector: real ones when on disk (``weights`` auto or real), else random ones, built once.

    Args:
        name: Registry name.
        preset: ``tiny`` or ``base``; real weights are used for ``base`` only.
        boxes_per_category: What a random Florence-2 is scripted to emit per prompt.
        work_dir: Cache of random models.
        weights: ``auto``, ``random`` or ``real``.
        segmenter: SAM2 weights for the detectors that need them.

    Raises:
        ModelNotFoundError: ``weights="real"`` and the detector's weights are not on disk.
        ValueError: Unknown preset or weights choice.
    """
    from grounded_sam.models.weights import resolve_detector

    spec = DETECTORS[name]
    if preset not in ("tiny", "base") or weights not in ("auto", "random", "real"):
        raise ValueError(f"Expected preset tiny or base and weights auto, random or real, but got {preset!r}, {weights!r}")
    if weights == "real" and preset != "base":
        raise ValueError("Real weights are real-size: use --preset base with --weights real.")
    needs = None if spec.family == "sam3" else segmenter
    if weights != "random" and preset == "base":
        try:
            found = resolve_detector(name, allow_download=False)
            return DetectorEntry(name, spec.family, str(found.path), "real", needs, f"real {name} weights")
        except GroundedSamError:
            if weights == "real":
                raise
    size = "tiny" if preset == "tiny" else REAL_SIZES[name]
    path = _random_detector(name, spec.family, preset, size, boxes_per_category, Path(work_dir))
    what = "tiny test architecture" if preset == "tiny" else f"real-size ({size}) architecture"
    return DetectorEntry(name, spec.family, str(path), "random", needs, f"random {name} {what}")


def _random_detector(name: str, family: str, preset: str, size: str, boxes_per_category: int, work_dir: Path) -> Path:
    from grounded_sam.models import testing

    if family == "florence2":
        return random_florence(preset, boxes_per_category, work_dir, size=size)
    builders: dict[str, Callable[..., Path]] = {
        "grounding-dino": testing.build_random_grounding_dino, "owlv2": testing.build_random_owlv2,
        "sam3": testing.build_random_sam3,
    }
    target = work_dir / preset / f"{name}-{size}-random"
    stamp = {"version": _BUILD_VERSION, "name": name, "size": size}
    if not stamp_matches(target, stamp):
        logger.info("Building a random %s %s in %s", size, name, target)
        build_atomically(target, stamp, lambda tmp: builders[family](tmp, preset=size))
    return target


def keep_best(detections: sv.Detections, per_class: int) -> sv.Detections:
    """Each class's ``per_class`` highest ``data["detector_score"]`` boxes, in their original order."""
    if len(detections) == 0:
        return detections
    scores = detections.data["detector_score"]
    keep = np.zeros(len(detections), bool)
    for class_id in np.unique(detections.class_id):
        rows = np.flatnonzero(detections.class_id == class_id)
        keep[rows[np.argsort(-scores[rows], kind="stable")[:per_class]]] = True
    return detections[keep]


class BestBoxes:
    """A scoring detector (Grounding DINO, OWLv2) whose result is cut to each category's best boxes.

    Args:
        detector: The detector, with its threshold at 0 so that every box competes.
        per_class: Boxes kept per category.
    """

    def __init__(self, detector: Any, per_class: int) -> None:
        self.detector = detector
        self.per_class = per_class
        self.family = detector.family

    def detect(self, image: np.ndarray, categories: Any, *, min_score: float = 0.0) -> sv.Detections:
        return keep_best(self.detector.detect(image, categories, min_score=min_score), self.per_class)


def load_for_benchmark(entry: DetectorEntry, device: Any, boxes_per_category: int) -> Any:
    """The detector as the comparison runs it: as users do with real weights; made to find the scenario's
    boxes with random ones (see the module's docstring)."""
    from grounded_sam.models.loading import detector_class_of

    detector_class = detector_class_of(entry.family)
    if entry.weights == "real" or entry.family == "florence2":
        return detector_class.from_pretrained(entry.path, device)
    if entry.family == "sam3":
        return detector_class.from_pretrained(entry.path, device, score_threshold=0.0, max_instances=boxes_per_category)
    return BestBoxes(detector_class.from_pretrained(entry.path, device, box_threshold=0.0), boxes_per_category)


def _pipeline(entry: DetectorEntry, detector: Any, device: str) -> Any:
    """A :class:`~grounded_sam.pipeline.GroundedSAM2` that runs ``detector`` (built here, not from the shared cache)."""
    from grounded_sam.pipeline import GroundedSAM2

    class BenchPipeline(GroundedSAM2):
        @property
        def detector(self) -> Any:
            return detector

    # No NMS: every detector's boxes all reach SAM2, so each row segments what its detector found.
    return BenchPipeline(entry.path, entry.segmenter or DEFAULT_SEGMENTER, device, nms="none")


@dataclass
class _Rounds:
    runs: list[dict[str, float]] = field(default_factory=list)
    boxes: list[int] = field(default_factory=list)


def run_detector_benchmark(config: Any, detectors: Sequence[str],
                           on_scenario: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Times every detector on every scenario and image; returns the report (plain JSON-able values).

    Args:
        config: A :class:`~grounded_sam.bench.runner.BenchConfig` (preset, scenarios, images, repeats,
            device, weights, work folder, threads).
        detectors: Registry names.
        on_scenario: Called with the report so far after each scenario.
    """
    import torch

    from grounded_sam.bench.runner import machine_info
    from grounded_sam.inputs.images import load_image
    from grounded_sam.models.devices import resolve_device
    from grounded_sam.models.loading import clear_model_cache

    if config.threads:
        torch.set_num_threads(config.threads)
    device = resolve_device(config.device)
    report: dict[str, Any] = {
        "benchmark": "grounded_sam.bench detectors", "version": REPORT_VERSION,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine_info(device),
        "settings": {**config.as_dict(), "detectors": list(detectors)}, "detectors": [],
    }
    segmenter = _segmenter(config)
    for scenario in config.scenarios:
        clear_model_cache()
        gc.collect()
        entries = [prepare_detector(name, config.preset, scenario.boxes_per_category, config.work_dir,
                                    config.weights, segmenter) for name in detectors]
        pipes, load_s = {}, {}
        for entry in entries:
            started = time.perf_counter()
            pipe = _pipeline(entry, load_for_benchmark(entry, device, scenario.boxes_per_category), str(device))
            if entry.segmenter is not None:
                pipe.segmenter  # noqa: B018 (loaded here, so its load is not timed as work)
            pipes[entry.name], load_s[entry.name] = pipe, time.perf_counter() - started
        for image in config.images:
            rgb = load_image(image)
            rounds = {entry.name: _Rounds() for entry in entries}
            order = [entry.name for entry in entries]
            for name in order:  # warm-up, untimed
                pipes[name].predict(rgb, scenario.category_names)
            for round_index in range(config.repeats):
                shift = round_index % len(order)
                for name in order[shift:] + order[:shift]:
                    _time_predict(pipes[name], rgb, scenario, rounds[name])
                logger.info("%s %s round %d/%d: %s", scenario.name, Path(image).name, round_index + 1, config.repeats,
                            ", ".join(f"{n} {rounds[n].runs[-1]['total']:.2f} s" for n in order))
            for entry in entries:
                report["detectors"].append(_row(entry, scenario, image, rgb.shape, rounds[entry.name], load_s[entry.name]))
        del pipes
        if on_scenario is not None:
            on_scenario(report)
    return report


def _segmenter(config: Any) -> str:
    """SAM2 for the detectors that need it: real hiera-base-plus when on disk (base preset), else random."""
    from grounded_sam.models.weights import resolve_segmenter

    if config.weights != "random" and config.preset == "base":
        try:
            return str(resolve_segmenter(DEFAULT_SEGMENTER, allow_download=False).checkpoint)
        except GroundedSamError:
            if config.weights == "real":
                raise
    return str(random_sam2(config.preset, Path(config.work_dir)))


def _time_predict(pipe: Any, rgb: np.ndarray, scenario: Scenario, rounds: _Rounds) -> None:
    started = time.perf_counter()
    detections = pipe.predict(rgb, scenario.category_names)
    total = time.perf_counter() - started
    timings = detections.metadata["timings_s"]
    rounds.runs.append({"detect": timings["detect"], "segment": timings["segment"],
                        "postprocess": timings["postprocess"], "total": total})
    rounds.boxes.append(len(detections))


def _row(entry: DetectorEntry, scenario: Scenario, image: Path, shape: tuple[int, ...], rounds: _Rounds,
         load_s: float) -> dict[str, Any]:
    def median(key: str) -> float:
        return statistics.median(r[key] for r in rounds.runs)

    one_model = entry.segmenter is None  # SAM 3: the pipeline times its text -> masks as its segment stage
    return {
        "detector": entry.name, "family": entry.family, "weights": entry.weights, "models": entry.description,
        "segmenter": None if one_model else Path(entry.segmenter).name,
        "scenario": scenario.name, "image": str(image), "image_size": [int(shape[1]), int(shape[0])],
        "s_per_image": median("total"), "detector_s": median("segment" if one_model else "detect"),
        "sam2_s": None if one_model else median("segment"), "postprocess_s": median("postprocess"),
        "boxes": int(statistics.median(rounds.boxes)), "load_s": load_s, "runs": rounds.runs,
    }


def format_detector_table(report: dict[str, Any]) -> str:
    """The comparison as Markdown tables, one per scenario and image."""
    settings, machine = report["settings"], report["machine"]
    lines = [(f"Detectors side by side on {machine['device']} ({machine['cpu']}, {machine['torch_threads']} torch "
              f"threads, {machine['precision']}), preset {settings['preset']}, medians of {settings['repeats']} rounds")]
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in report["detectors"]:
        groups.setdefault((row["scenario"], row["image"]), []).append(row)
    for (scenario, image), rows in groups.items():
        categories, boxes = scenario.split("x")
        width, height = rows[0]["image_size"]
        lines += ["", f"{categories} categories x up to {boxes} boxes, {Path(image).name} {width}x{height}:", "",
                  "| model | weights | masks by | s/image | detector s | SAM2 s | boxes |",
                  "|---|---|---|---|---|---|---|"]
        for row in rows:
            sam2 = "-" if row["sam2_s"] is None else f"{row['sam2_s']:.2f}"
            lines.append(f"| {row['detector']} | {row['weights']} | {row['segmenter'] or 'itself'} | "
                         f"{row['s_per_image']:.2f} | {row['detector_s']:.2f} | {sam2} | {row['boxes']} |")
    return "\n".join(lines)
