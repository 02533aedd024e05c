"""Labeling many images: collect inputs, name outputs uniquely, write each image as it is done.

One failed image is recorded with its reason and never stops the run; every image's outputs
are written as soon as it is labeled, so nothing is held back in memory.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any

from grounded_sam.categories import CategoriesLike, parse_categories
from grounded_sam.errors import GroundedSamError, InputError
from grounded_sam.export.base import LabeledImage, OutputWriter
from grounded_sam.images import IMAGE_EXTENSIONS, is_image_path, load_image

logger = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^\w.-]+")  # \w keeps letters of every script
_MAX_STEM = 150


@dataclass(frozen=True)
class InputImage:
    """An image to label.

    Attributes:
        path: The file.
        relative: Its path relative to the folder it was found in (just the name for a file
            given directly); the output name derives from it.
    """

    path: Path
    relative: PurePath


@dataclass
class ImageOutcome:
    """What happened to one image."""

    source: str
    stem: str
    ok: bool
    error: str | None = None
    num_detections: int = 0
    outputs: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class BatchSummary:
    """The result of a run: every image's outcome, in input order."""

    outcomes: list[ImageOutcome] = field(default_factory=list)
    dataset_outputs: list[str] = field(default_factory=list)

    @property
    def labeled(self) -> list[ImageOutcome]:
        return [o for o in self.outcomes if o.ok]

    @property
    def failed(self) -> list[ImageOutcome]:
        return [o for o in self.outcomes if not o.ok]

    def as_text(self) -> str:
        """A short human-readable report."""
        lines = [f"Labeled {len(self.labeled)} of {len(self.outcomes)} images "
                 f"({sum(o.num_detections for o in self.labeled)} objects)."]
        if self.failed:
            lines.append(f"Failed {len(self.failed)}:")
            lines.extend(f"  {o.source}: {o.error}" for o in self.failed)
        return "\n".join(lines)


def collect_images(inputs: Iterable[str | os.PathLike[str]]) -> list[InputImage]:
    """Expands files and folders into the images to label.

    Folders are searched recursively for image extensions (any letter case, see
    :data:`grounded_sam.images.IMAGE_EXTENSIONS`), hidden files and folders skipped, in sorted
    order. A file given directly is always taken, whatever its suffix, so a bad file is reported
    rather than silently skipped.

    Raises:
        InputError: An input does not exist, or nothing at all was found.
    """
    found: list[InputImage] = []
    seen: set[Path] = set()
    for raw in inputs:
        path = Path(raw).expanduser()
        if path.is_dir():
            for file in sorted(p for p in path.rglob("*") if p.is_file()):
                relative = file.relative_to(path)
                if any(part.startswith(".") for part in relative.parts) or not is_image_path(file):
                    continue
                if file.resolve() not in seen:
                    seen.add(file.resolve())
                    found.append(InputImage(file, relative))
        elif path.is_file():
            if path.resolve() not in seen:
                seen.add(path.resolve())
                found.append(InputImage(path, PurePath(path.name)))
        else:
            raise InputError(f"Input {raw} does not exist: expected an image file or a folder of images.")
    if not found:
        listed = ", ".join(str(i) for i in inputs)
        raise InputError(f"No images found in {listed}: looked for files ending in {', '.join(sorted(IMAGE_EXTENSIONS))}.")
    return found


def sanitize_stem(relative: PurePath) -> str:
    """A file-system-safe output name from a relative input path, without its suffix.

    ``sub/dir/img 1.jpg`` becomes ``sub__dir__img_1``; nothing in it can climb out of a folder.
    """
    parts = [*relative.parent.parts, relative.stem] if relative.suffix else list(relative.parts)
    cleaned = [_UNSAFE.sub("_", part).strip("._") for part in parts if part not in ("", ".", "..")]
    stem = "__".join(part for part in cleaned if part) or "image"
    return stem[:_MAX_STEM]


def assign_stems(images: Sequence[InputImage]) -> list[str]:
    """Unique, sanitised output names in input order; repeats get ``-2``, ``-3``... (case-insensitively)."""
    stems: list[str] = []
    used: set[str] = set()
    for image in images:
        base = sanitize_stem(image.relative)
        stem, n = base, 1
        while stem.casefold() in used:
            n += 1
            stem = f"{base}-{n}"
        used.add(stem.casefold())
        stems.append(stem)
    return stems


ProgressCallback = Callable[[int, int, ImageOutcome], None]


def label_images(
    pipe: Any,
    images: Sequence[InputImage],
    categories: CategoriesLike,
    writers: Sequence[OutputWriter],
    *,
    settings: dict[str, Any] | None = None,
    on_progress: ProgressCallback | None = None,
) -> BatchSummary:
    """Labels images one by one and writes each one's outputs as soon as it is done.

    Args:
        pipe: A :class:`~grounded_sam.pipeline.GroundedSAM2` (anything callable as ``pipe(image, categories)``).
        images: From :func:`collect_images`.
        categories: Parsed once for the whole run.
        writers: Output writers; each gets every labeled image, then ``finalize()``.
        settings: Recorded in the outputs.
        on_progress: Called after each image with ``(done, total, outcome)``.

    Returns:
        Every image's outcome. Errors of one image are caught and recorded; KeyboardInterrupt is not.
    """
    parsed = parse_categories(categories)
    summary = BatchSummary()
    stems = assign_stems(images)
    for index, (image, stem) in enumerate(zip(images, stems), start=1):
        started = time.perf_counter()
        outcome = ImageOutcome(source=str(image.path), stem=stem, ok=False)
        try:
            rgb = load_image(image.path)
            detections = pipe(rgb, parsed)
            item = LabeledImage(str(image.path), stem, rgb, detections, parsed.class_names, dict(settings or {}))
            for writer in writers:
                outcome.outputs.extend(str(p) for p in writer.write(item))
            outcome.ok, outcome.num_detections = True, len(detections)
        except GroundedSamError as exc:
            outcome.error = str(exc)
            logger.warning("Skipped %s: %s", image.path, exc)
        except (MemoryError, RuntimeError, ValueError, OSError) as exc:
            # A model or I/O failure on one image (out of memory on a huge one, a full disk for one
            # file) is reported for that image; the run goes on.
            outcome.error = f"{type(exc).__name__}: {exc}"
            logger.exception("Failed on %s", image.path)
        outcome.seconds = time.perf_counter() - started
        summary.outcomes.append(outcome)
        if on_progress is not None:
            on_progress(index, len(images), outcome)
    for writer in writers:
        summary.dataset_outputs.extend(str(p) for p in writer.finalize())
    return summary
