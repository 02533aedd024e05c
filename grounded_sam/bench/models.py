"""The models a benchmark run uses: real weights when present, else random real-size ones.

Random models are built once and kept in a cache folder (``~/.cache/grounded_sam_bench`` by
default): a Florence-2 per box count (its decoder is scripted to emit that many boxes for every
prompt, see :func:`grounded_sam.models.testing.script_florence2_output`) and one SAM2. Presets:

* ``tiny``: seconds to build and run, for CI smoke runs; the figures mean nothing.
* ``base``: the Florence-2-base and SAM2.1 hiera-base-plus architectures, the real compute.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from grounded_sam.bench.scenarios import scripted_text
from grounded_sam.errors import ModelNotFoundError

logger = logging.getLogger(__name__)

Preset = Literal["tiny", "base"]
WeightsChoice = Literal["auto", "random", "real"]
PRESETS: tuple[str, ...] = ("tiny", "base")
WEIGHTS_CHOICES: tuple[str, ...] = ("auto", "random", "real")

_REAL_NAMES = {"base": ("florence-2-base", "sam2.1-hiera-base-plus")}
_STAMP = "bench-build.json"
_BUILD_VERSION = 1


@dataclass(frozen=True)
class BenchModels:
    """Which weights a scenario runs with.

    Attributes:
        detector: Florence-2 registry name or folder.
        segmenter: SAM2 registry name or ``.pt`` path.
        weights: ``"real"`` or ``"random"``.
        scripted_boxes: Boxes per category the random detector is scripted to emit (None for real weights).
        description: One line for the report.
    """

    detector: str
    segmenter: str
    weights: str
    scripted_boxes: int | None
    description: str


def default_work_dir() -> Path:
    """``$XDG_CACHE_HOME/grounded_sam_bench`` (``~/.cache/grounded_sam_bench``)."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "grounded_sam_bench"


def real_weights_available(preset: str) -> bool:
    """True when the preset's real checkpoints are on disk (``models/`` or the HF cache); never downloads."""
    from grounded_sam.models.weights import resolve_detector, resolve_segmenter

    if preset not in _REAL_NAMES:
        return False
    detector, segmenter = _REAL_NAMES[preset]
    try:
        resolve_detector(detector, allow_download=False)
        resolve_segmenter(segmenter, allow_download=False)
    except ModelNotFoundError:
        return False
    return True


def prepare_models(
    preset: Preset, boxes_per_category: int, work_dir: Path, weights: WeightsChoice = "auto"
) -> BenchModels:
    """Returns the models for one scenario, building (and caching) random ones when needed.

    Args:
        preset: ``tiny`` or ``base``.
        boxes_per_category: Boxes the random detector is scripted to emit per prompt.
        work_dir: Cache folder for random models.
        weights: ``auto`` (real when present for ``base``, else random), ``random`` or ``real``.

    Raises:
        ValueError: Unknown preset or weights choice, or real weights asked for the tiny preset.
        ModelNotFoundError: ``weights="real"`` and the checkpoints are not on disk.
    """
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {', '.join(PRESETS)}, but got {preset!r}")
    if weights not in WEIGHTS_CHOICES:
        raise ValueError(f"weights must be one of {', '.join(WEIGHTS_CHOICES)}, but got {weights!r}")
    if weights == "real" and preset not in _REAL_NAMES:
        raise ValueError(f"There are no real weights for the {preset!r} preset; use --preset base.")
    use_real = weights == "real" or (weights == "auto" and real_weights_available(preset))
    if use_real:
        if not real_weights_available(preset):
            detector, segmenter = _REAL_NAMES[preset]
            raise ModelNotFoundError(
                f"--weights real needs {detector} and {segmenter} on disk; run: python -m grounded_sam download"
            )
        detector, segmenter = _REAL_NAMES[preset]
        return BenchModels(detector, segmenter, "real", None, f"real {detector} + {segmenter} weights")
    detector_dir = random_florence(preset, boxes_per_category, Path(work_dir))
    checkpoint = random_sam2(preset, Path(work_dir))
    names = {"tiny": "tiny Florence-2 + tiny SAM2.1", "base": "Florence-2-base + SAM2.1 hiera-base-plus architectures"}
    return BenchModels(
        str(detector_dir), str(checkpoint), "random", boxes_per_category,
        f"random {names[preset]}, detector scripted to {boxes_per_category} boxes per category",
    )


def random_florence(preset: str, boxes_per_category: int, work_dir: Path, size: str | None = None) -> Path:
    """A random Florence-2 scripted to ``boxes_per_category`` boxes per prompt, built once into ``work_dir/preset``.

    Args:
        preset: The benchmark preset (the cache's sub-folder).
        boxes_per_category: Boxes emitted per prompt.
        work_dir: Cache folder.
        size: :func:`~grounded_sam.models.testing.build_random_florence2`'s preset; default ``preset``.
    """
    from grounded_sam.models.testing import build_random_florence2

    size = size or preset
    text = scripted_text(boxes_per_category)
    target = work_dir / preset / f"florence-2-{size}-scripted-{boxes_per_category}box"
    stamp = {"version": _BUILD_VERSION, "preset": size, "scripted_output": text}
    if stamp_matches(target, stamp):
        return target
    logger.info("Building a random %s Florence-2 scripted to %d boxes per prompt in %s", preset, boxes_per_category, target)
    return build_atomically(target, stamp, lambda tmp: build_random_florence2(tmp, preset=size, scripted_output=text))


def random_sam2(preset: str, work_dir: Path) -> Path:
    """A random SAM2.1 (hiera-base-plus for ``base``, tiny for ``tiny``), built once into ``work_dir/preset``."""
    from grounded_sam.models.testing import build_random_sam2

    # base-plus must carry Meta's file name so its config comes from the sam2 package.
    name = "sam2.1_hiera_base_plus.pt" if preset == "base" else "sam2-tiny.pt"
    folder = work_dir / preset / "sam2"
    stamp = {"version": _BUILD_VERSION, "preset": preset, "file": name}
    if not stamp_matches(folder, stamp):
        logger.info("Building a random %s SAM2.1 in %s", preset, folder)
        sam_preset = "base-plus" if preset == "base" else "tiny"
        build_atomically(folder, stamp, lambda tmp: build_random_sam2(tmp / name, preset=sam_preset))
    return folder / name


def stamp_matches(folder: Path, stamp: dict[str, object]) -> bool:
    """True when ``folder`` holds a finished build of exactly ``stamp``."""
    try:
        return json.loads((folder / _STAMP).read_text()) == stamp
    except (OSError, ValueError):
        return False


def build_atomically(target: Path, stamp: dict[str, object], build) -> Path:
    """Builds into a temporary sibling folder and renames it into place, so a killed build leaves no half model."""
    tmp = target.with_name(target.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        build(tmp)
        (tmp / _STAMP).write_text(json.dumps(stamp))
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
