"""Peak memory of folder runs and of video tracking: does it stay flat as the input grows?

Builds the tiny test models (random weights; the Florence-2 decoder scripted to find two boxes for
every prompt, so SAM2 makes real masks), draws synthetic inputs, and runs the real command once per
size in a fresh subprocess:

* ``folder``: 640x480 PNGs through ``python -m grounded_sam label ... --format all``;
* ``video``: a 320x240 clip of moving shapes through ``python -m grounded_sam track ... --format all --plot``.

The peak resident memory of each subprocess comes from the kernel (``os.wait4``), so nothing samples
or guesses. Prints both figures and the check: the larger run must peak within 10% + 100 MB of the
smaller one.

    .venv/bin/python -m scripts.bench_memory folder                  # 100 and 400 images
    .venv/bin/python -m scripts.bench_memory video                   # 100 and 400 frames
    .venv/bin/python -m scripts.bench_memory video --sizes 20 80     # a quicker look

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


def draw_clip(path: Path, frames: int, size: tuple[int, int] = (320, 240), fps: int = 30) -> Path:
    """A clip of ``frames`` frames: shapes that drift across a gradient (encoded with PyAV, MPEG-4)."""
    import av
    import numpy as np
    from PIL import Image, ImageDraw

    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    width, height = size
    gradient = np.linspace(40, 200, width, dtype=np.uint8)[None, :, None].repeat(height, 0).repeat(3, 2)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for index in range(frames):
            image = Image.fromarray(gradient.copy())
            draw = ImageDraw.Draw(image)
            for k in range(4):
                x = (20 + 60 * k + 2 * index) % (width - 40)
                draw.ellipse((x, 40 + 40 * k, x + 40, 80 + 40 * k), fill=(60 * k, 200 - 40 * k, 90))
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.asarray(image), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def folder_command(work: Path, size: int, pool: list[Path], out: Path, models: list[str]) -> list[str]:
    """The ``label`` command over the first ``size`` images of ``pool`` (hard-linked into their own folder)."""
    folder = work / f"in-{size}"
    folder.mkdir(parents=True, exist_ok=True)
    for image in pool[:size]:
        target = folder / image.name
        if not target.exists():
            os.link(image, target)
    return ["label", str(folder), "--categories", "truck, tire", "--out", str(out), "--format", "all", *models]


def video_command(work: Path, size: int, out: Path, models: list[str]) -> list[str]:
    """The ``track`` command over a clip of ``size`` frames."""
    clip = draw_clip(work / f"clip-{size}.mp4", size)
    return ["track", str(clip), "--categories", "ball, shape", "--out", str(out), "--format", "all", "--plot", *models]


def peak_rss(arguments: list[str], out: Path) -> tuple[float, float, int]:
    """Runs ``python -m grounded_sam ARGUMENTS`` into a fresh ``out``; returns (peak RSS in MB, seconds, exit code)."""
    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, "-m", "grounded_sam", *arguments, "--device", "cpu", "--no-progress"]
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=REPO, env={**os.environ, "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"},
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
    parser.add_argument("kind", choices=("folder", "video"), help="A folder run (images) or video tracking (frames).")
    parser.add_argument("--sizes", type=int, nargs=2, default=(100, 400), metavar=("SMALL", "LARGE"),
                        help="Input sizes to compare: images or frames (default 100 400).")
    parser.add_argument("--work-dir", type=Path, default=None, help="Where models, inputs and outputs go "
                        "(default: a temporary folder, deleted afterwards).")
    args = parser.parse_args(argv)
    work = args.work_dir or Path(tempfile.mkdtemp(prefix=f"bench-{args.kind}-memory-"))
    unit = "images" if args.kind == "folder" else "frames"
    try:
        florence, sam2 = build_models(work / "models")
        models = ["--detector-model", str(florence), "--segmenter-model", str(sam2)]
        pool = draw_images(work / "pool", max(args.sizes)) if args.kind == "folder" else []
        figures = []
        for size in args.sizes:
            out = work / f"out-{size}"
            arguments = (folder_command(work, size, pool, out, models) if args.kind == "folder"
                         else video_command(work, size, out, models))
            peak, seconds, code = peak_rss(arguments, out)
            if code != 0:
                print(f"the run over {size} {unit} failed with exit code {code}", file=sys.stderr)
                return 1
            figures.append((size, peak, seconds))
            print(f"{size:5d} {unit}: peak RSS {peak:8.1f} MB, {seconds:7.1f} s ({size / seconds:.2f} {unit}/s)",
                  flush=True)
        (small, small_peak, _), (large, large_peak, _) = figures
        limit = small_peak * 1.10 + 100
        verdict = "PASS" if large_peak <= limit else "FAIL"
        print(f"check: peak({large}) = {large_peak:.1f} MB <= 1.10 x peak({small}) + 100 MB = {limit:.1f} MB: {verdict}")
        print(f"growth: {large_peak - small_peak:+.1f} MB for {large - small} more {unit}")
        return 0 if verdict == "PASS" else 1
    finally:
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
