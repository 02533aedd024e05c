"""Peak memory of folder runs: does it stay flat as the number of images grows?

Builds the tiny test models (random weights; the Florence-2 decoder scripted to find two boxes for
every prompt, so SAM2 makes real masks), draws synthetic 640x480 PNGs, and runs the real command,
``python -m grounded_sam label ... --format all``, once per folder size in a fresh subprocess. The
peak resident memory of each subprocess comes from the kernel (``os.wait4``), so nothing samples
or guesses. Prints both figures and the check of issue 4: the largest run must peak within 10% +
100 MB of the smallest.

    .venv/bin/python -m scripts.bench_folder_memory                 # 100 and 400 images
    .venv/bin/python -m scripts.bench_folder_memory --sizes 20 80   # a quicker look

Run it from the repository root (``-m`` puts the root on the import path).
Exit status 0 when the check passes, 1 when it does not. Linux and macOS (``os.wait4``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MB = 2**20


def build_models(folder: Path) -> tuple[Path, Path]:
    """The tiny scripted Florence-2 and tiny SAM2 (:func:`grounded_sam.models.testing.build_test_models`), built once."""
    from grounded_sam.models.testing import build_test_models

    models = build_test_models(folder)
    return models["florence_scripted"], models["sam2"]


def draw_images(folder: Path, count: int, size: tuple[int, int] = (640, 480)) -> list[Path]:
    """``count`` PNGs of coloured rectangles and ellipses on a gradient, different in each image."""
    import numpy as np
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    width, height = size
    gradient = np.linspace(40, 200, width, dtype=np.uint8)[None, :, None].repeat(height, 0).repeat(3, 2)
    paths = []
    for index in range(count):
        path = folder / f"img{index:05d}.png"
        paths.append(path)
        if path.is_file():
            continue
        rng = np.random.default_rng(index)
        image = Image.fromarray(gradient.copy())
        draw = ImageDraw.Draw(image)
        for _ in range(6):
            x1, y1 = int(rng.integers(0, width - 60)), int(rng.integers(0, height - 60))
            x2, y2 = x1 + int(rng.integers(40, 240)), y1 + int(rng.integers(40, 200))
            colour = tuple(int(v) for v in rng.integers(0, 256, 3))
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x1, y1, x2, y2), fill=colour)
        image.save(path)
    return paths


def run_label(images: list[Path], folder: Path, out: Path, florence: Path, sam2: Path) -> tuple[float, float, int]:
    """Labels ``images`` (linked into ``folder``) into ``out``; returns (peak RSS in MB, seconds, exit code)."""
    folder.mkdir(parents=True, exist_ok=True)
    for image in images:
        target = folder / image.name
        if not target.exists():
            os.link(image, target)
    shutil.rmtree(out, ignore_errors=True)
    command = [
        sys.executable, "-m", "grounded_sam", "label", str(folder), "--categories", "truck, tire", "--out", str(out),
        "--format", "all", "--detector-model", str(florence), "--segmenter-model", str(sam2), "--device", "cpu",
        "--no-progress",
    ]
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=REPO, env={**os.environ, "HF_HUB_OFFLINE": "1"},
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # Read stderr before waiting, so a chatty run cannot block on a full pipe.
    stderr = process.stderr.read().decode(errors="replace")  # type: ignore[union-attr]
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    process.returncode = code
    if code != 0:
        print(stderr[-3000:], file=sys.stderr)
    # ru_maxrss is in KiB on Linux, bytes on macOS.
    peak = usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024) / MB
    return peak, seconds, code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs=2, default=(100, 400), metavar=("SMALL", "LARGE"),
                        help="Folder sizes to compare (default 100 400).")
    parser.add_argument("--work-dir", type=Path, default=None, help="Where models, images and outputs go "
                        "(default: a temporary folder, deleted afterwards).")
    args = parser.parse_args(argv)
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="bench-folder-memory-"))
    try:
        florence, sam2 = build_models(work / "models")
        pool = draw_images(work / "pool", max(args.sizes))
        figures = []
        for size in args.sizes:
            peak, seconds, code = run_label(pool[:size], work / f"in-{size}", work / f"out-{size}", florence, sam2)
            if code != 0:
                print(f"the run over {size} images failed with exit code {code}", file=sys.stderr)
                return 1
            figures.append((size, peak, seconds))
            print(f"{size:5d} images: peak RSS {peak:8.1f} MB, {seconds:7.1f} s ({size / seconds:.2f} images/s)", flush=True)
        (small, small_peak, _), (large, large_peak, _) = figures
        limit = small_peak * 1.10 + 100
        verdict = "PASS" if large_peak <= limit else "FAIL"
        print(f"check: peak({large}) = {large_peak:.1f} MB <= 1.10 x peak({small}) + 100 MB = {limit:.1f} MB: {verdict}")
        print(f"growth: {large_peak - small_peak:+.1f} MB for {large - small} more images")
        return 0 if verdict == "PASS" else 1
    finally:
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
