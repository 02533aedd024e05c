"""Folder runs: images per second, the time over the models' floor, and memory per image.

The benchmark reaches the folder-run code through :func:`run_folder` only, so switching to a
new batch API (manifest, resume) is a change of that one function.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from grounded_sam.bench.memory import RssSampler, current_rss_bytes

logger = logging.getLogger(__name__)

MB = 2**20


def run_folder(
    pipe: Any, folder: Path, categories: Sequence[str], out_dir: Path,
    on_image: Callable[[int, int, Any], None] | None = None,
) -> tuple[int, int]:
    """Labels every image of ``folder`` into ``out_dir`` with the JSON writer, as the CLI's folder mode does.

    Returns:
        ``(labeled, failed)`` image counts.
    """
    from grounded_sam.export import JsonLabelWriter
    from grounded_sam.runs.batch import collect_images, label_images

    summary = label_images(
        pipe, collect_images([folder]), list(categories), [JsonLabelWriter(out_dir)], on_progress=on_image
    )
    return len(summary.labeled), len(summary.failed)


@dataclass
class FolderResult:
    """One folder run.

    Attributes:
        images: Images labeled.
        failed: Images that failed.
        wall_s: Seconds for the whole run.
        cpu_s: Process CPU seconds for the whole run.
        images_per_s: ``images / wall_s``.
        per_image_s: Seconds each image took, from one progress call to the next.
        peak_rss_mb: Peak resident memory while each image ran.
        rss_before_mb: Resident memory before the run (models loaded).
        gpu_peak_mb: Peak CUDA memory allocated during the run (None on CPU).
    """

    images: int
    failed: int
    wall_s: float
    cpu_s: float
    images_per_s: float
    per_image_s: list[float] = field(default_factory=list)
    peak_rss_mb: list[float] = field(default_factory=list)
    rss_before_mb: float = 0.0
    gpu_peak_mb: float | None = None

    @property
    def memory_growth_mb(self) -> float:
        """Peak of the last image minus peak of the first (0 with fewer than two images)."""
        return self.peak_rss_mb[-1] - self.peak_rss_mb[0] if len(self.peak_rss_mb) > 1 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "memory_growth_mb": self.memory_growth_mb}


def measure_folder(
    pipe: Any, image: Path, categories: Sequence[str], num_images: int, work_dir: Path, device: Any
) -> FolderResult:
    """Copies ``image`` ``num_images`` times into a folder and labels it with :func:`run_folder`.

    Copies of one image keep every image's model cost equal to the single-image floor, so the
    time over ``num_images`` floors is the folder mode's own overhead.
    """
    import torch

    folder, out_dir = work_dir / "folder-images", work_dir / "folder-out"
    for path in (folder, out_dir):
        shutil.rmtree(path, ignore_errors=True)
    folder.mkdir(parents=True)
    for i in range(num_images):
        shutil.copyfile(image, folder / f"image_{i:03d}{image.suffix.lower()}")

    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    per_image: list[float] = []
    peaks: list[float] = []
    rss_before = current_rss_bytes() / MB
    with RssSampler() as sampler:
        cpu_started = time.process_time()
        last = started = time.perf_counter()

        def on_image(done: int, total: int, outcome: Any) -> None:
            nonlocal last
            now = time.perf_counter()
            per_image.append(now - last)
            peaks.append(sampler.take_peak() / MB)
            last = now
            logger.info("folder run: image %d/%d in %.2f s", done, total, per_image[-1])

        labeled, failed = run_folder(pipe, folder, categories, out_dir, on_image)
        wall = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
    shutil.rmtree(folder, ignore_errors=True)
    shutil.rmtree(out_dir, ignore_errors=True)
    return FolderResult(
        images=labeled, failed=failed, wall_s=wall, cpu_s=cpu, images_per_s=labeled / wall if wall > 0 else 0.0,
        per_image_s=per_image, peak_rss_mb=peaks, rss_before_mb=rss_before,
        gpu_peak_mb=torch.cuda.max_memory_allocated(device) / MB if cuda else None,
    )
