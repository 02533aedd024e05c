"""Jobs of the web app: a folder per job, batch inputs from uploads, zips and server folders, and a
blocking run (a batch, a clip) streamed item by item.

Nothing here knows about Gradio; :mod:`grounded_sam.app.batch_tab` and :mod:`grounded_sam.app.video_tab`
turn these pieces into a page. A job folder holds ``input/`` (extracted archives), ``results/`` (what
the writers write, zipped at the end) and the results zip. Old job folders are removed when a new
job starts.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePath
from typing import Any, TypeVar

from grounded_sam.app.settings import AppSettings
from grounded_sam.categories import CategoriesLike
from grounded_sam.errors import InputError
from grounded_sam.export.base import ImageRecord, LabeledImage, OutputWriter
from grounded_sam.export.files import atomic_write_text
from grounded_sam.inputs.archive import SkippedMember, extract_images
from grounded_sam.inputs.images import is_image_path
from grounded_sam.runs.batch import BatchSummary, ImageOutcome, InputImage, collect_images, label_images

__all__ = [
    "BatchInputs", "DisplayNameWriter", "ProgressCallback", "ProgressEvent", "format_seconds", "gather_inputs",
    "job_summary_text", "jobs_root", "new_job_dir", "seconds_left", "stream_job", "stream_label_images", "upload_path",
    "write_job_summary",
]

logger = logging.getLogger(__name__)

#: Job folders older than this are removed when a new job starts.
DEFAULT_MAX_JOB_AGE_S = 6 * 3600


def jobs_root() -> Path:
    """Where job folders live: ``<system temp>/grounded-sam-app`` (Gradio serves files from the temp folder)."""
    return Path(tempfile.gettempdir()) / "grounded-sam-app"


def new_job_dir(root: Path | None = None, *, max_age_s: float = DEFAULT_MAX_JOB_AGE_S) -> Path:
    """Creates a fresh, uniquely named job folder, after removing job folders older than ``max_age_s``."""
    root = root or jobs_root()
    root.mkdir(parents=True, exist_ok=True)
    cutoff = time.time() - max_age_s
    for child in root.iterdir():
        try:
            if child.is_dir() and not child.is_symlink() and child.stat().st_mtime < cutoff:
                shutil.rmtree(child, ignore_errors=True)
        except OSError:  # another worker removed it first
            continue
    return Path(tempfile.mkdtemp(prefix=time.strftime("%Y%m%d-%H%M%S-"), dir=root))


@dataclass
class BatchInputs:
    """The images of one batch job and what was left out.

    Attributes:
        images: To label, in upload order (archive members in archive order).
        skipped: Files not labeled and why (non-images, ``__MACOSX``, dotfiles, ...).
        names: ``str(image.path)`` -> the name the user knows it by (upload name or path inside
            the zip or folder), for summaries and written labels.
    """

    images: list[InputImage] = field(default_factory=list)
    skipped: list[SkippedMember] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)

    def add(self, path: Path, relative: PurePath, display: str) -> None:
        self.images.append(InputImage(path, relative))
        self.names[str(path)] = display


def gather_inputs(
    uploads: Sequence[tuple[Path, str]], server_folder: str, settings: AppSettings, input_dir: Path
) -> BatchInputs:
    """Collects a job's images from uploaded files, uploaded zips and a server folder.

    Args:
        uploads: ``(file on disk, name it was uploaded as)``; ``.zip`` files are extracted
            safely (see :func:`grounded_sam.inputs.archive.extract_images`), others are taken as images.
        server_folder: A folder under ``settings.batch_roots``, or empty.
        settings: Roots, the zip caps and the per-job image cap.
        input_dir: Where archives are extracted (one sub-folder each).

    Raises:
        ArchiveError: An archive is unsafe, unreadable or over a cap.
        InputError: No images at all, more than ``settings.max_batch_images``, or a server folder
            that is not allowed.
    """
    found = BatchInputs()
    for index, (path, name) in enumerate(uploads):
        if name.lower().endswith(".zip"):
            extracted = extract_images(path, input_dir / f"{index:03d}", settings.zip_limits)
            # Members are named by their path in the zip, prefixed by the zip's name only when
            # there is more than one upload to tell apart.
            prefix = f"{name}/" if len(uploads) > 1 else ""
            for image in extracted.images:
                relative = PurePath(image.relative_to(extracted.root).as_posix())
                found.add(image, relative, prefix + relative.as_posix())
            found.skipped.extend(replace(s, name=prefix + s.name) for s in extracted.skipped)
        elif is_image_path(name):
            found.add(path, PurePath(PurePath(name).name), name)
        else:
            found.skipped.append(SkippedMember(name, "not an image or a .zip"))
    if server_folder.strip():
        folder = settings.resolve_server_folder(server_folder)
        for image in collect_images([folder]):
            if settings.inside_roots(image.path):
                found.add(image.path, image.relative, image.relative.as_posix())
            else:  # a symlink inside an allowed folder must not reach outside it
                found.skipped.append(SkippedMember(image.relative.as_posix(), "links outside the allowed folders"))
    if not found.images:
        listed = "; ".join(f"{s.name} ({s.reason})" for s in found.skipped[:10])
        raise InputError(
            "No images to label: upload image files or a .zip of images"
            + (", or name a server folder." if settings.batch_roots else ".")
            + (f" Skipped: {listed}." if listed else "")
        )
    if len(found.images) > settings.max_batch_images:
        raise InputError(
            f"This job has {len(found.images)} images, over the cap of {settings.max_batch_images} per job. "
            "Split it into smaller jobs (the server's operator sets the cap)."
        )
    return found


class DisplayNameWriter:
    """Wraps a writer so the labels it writes name an image as the user knows it, not by its temp path."""

    def __init__(self, writer: OutputWriter, names: Mapping[str, str]) -> None:
        self.writer = writer
        self.names = names
        self.name = writer.name

    def write(self, item: LabeledImage) -> list[Path]:
        return self.writer.write(replace(item, source=self.names.get(item.source, item.source)))

    def finalize(self, records: Sequence[ImageRecord] = ()) -> list[Path]:
        return self.writer.finalize(records)


@dataclass(frozen=True)
class ProgressEvent:
    """One item (an image, a frame) is done: ``done`` of ``total`` (None when a clip does not say), and its outcome."""

    done: int
    total: int | None
    outcome: ImageOutcome


#: What a streamed job gets to report each item: ``(done, total or None, outcome)``.
ProgressCallback = Callable[[int, Any, ImageOutcome], None]
R = TypeVar("R")


class _Stopped(Exception):
    """Raised in the worker thread to end a run whose consumer went away."""


def stream_job(run: Callable[[ProgressCallback], R], *, name: str = "grounded-sam-job") -> Iterator[ProgressEvent | R]:
    """Runs a blocking job in a worker thread and yields a :class:`ProgressEvent` per item as it finishes, then
    the job's result.

    ``run`` receives the ``on_progress(done, total, outcome)`` callback to hand to the package's run
    (:func:`~grounded_sam.runs.batch.label_images`, :func:`~grounded_sam.runs.track.run_tracking`). The
    worker waits in that callback until the caller asks for the next item, so when the caller stops
    iterating (Stop, a closed page) the run ends there: closing the generator returns at once, never
    waits for another item, and two runs never use the models at once.

    Raises:
        Whatever ``run`` raises, in the caller's thread.
    """
    events: queue.Queue[tuple[str, Any]] = queue.Queue()
    resume = threading.Semaphore(0)
    stop = threading.Event()

    def on_progress(done: int, total: int | None, outcome: ImageOutcome) -> None:
        events.put(("progress", ProgressEvent(done, total, outcome)))
        resume.acquire()  # until the caller takes the next item, or stops
        if stop.is_set():
            raise _Stopped

    def work() -> None:
        try:
            events.put(("done", run(on_progress)))
        except _Stopped:
            events.put(("stopped", None))
        except BaseException as exc:  # handed to the consumer's thread, re-raised there
            events.put(("error", exc))

    worker = threading.Thread(target=work, name=name, daemon=True)
    worker.start()
    try:
        while True:
            kind, value = events.get()
            if kind == "progress":
                yield value
                resume.release()
            elif kind == "done":
                yield value
                return
            elif kind == "error":
                raise value
            else:
                return
    finally:
        stop.set()
        resume.release()
        worker.join()


def stream_label_images(
    pipe: Any,
    images: Sequence[InputImage],
    categories: CategoriesLike,
    writers: Sequence[OutputWriter],
    *,
    settings: dict[str, Any] | None = None,
    engine: Any = None,
) -> Iterator[ProgressEvent | BatchSummary]:
    """:func:`grounded_sam.runs.batch.label_images` as a generator (:func:`stream_job`): a :class:`ProgressEvent`
    per image, then the summary. Stopping stops the run after the image it is on.

    Args:
        engine: Where the models run (None: this process; a :class:`~grounded_sam.runs.ray_engine.RayEngine`).

    Raises:
        Whatever :func:`label_images` raises outside its per-image handling.
    """
    return stream_job(lambda on_progress: label_images(pipe, images, categories, writers, settings=settings,
                                                       on_progress=on_progress, engine=engine),
                      name="grounded-sam-batch")


def seconds_left(done: int, total: int, elapsed_s: float) -> float | None:
    """Estimated seconds to finish at the mean pace so far; None before the first image is done."""
    if done <= 0:
        return None
    return elapsed_s / done * max(total - done, 0)


def format_seconds(seconds: float | None) -> str:
    """``"about 40 s left"``, ``"about 3 min left"``; empty before there is an estimate."""
    if seconds is None:
        return ""
    if seconds < 90:
        return f"about {max(1, round(seconds))} s left" if seconds > 0 else "finishing"
    return f"about {round(seconds / 60)} min left"


def _error_text(outcome: ImageOutcome, names: Mapping[str, str]) -> str:
    """The outcome's error with the server path of the image replaced by the user's name for it."""
    return (outcome.error or "").replace(outcome.source, names.get(outcome.source, outcome.source))


def job_summary_text(summary: BatchSummary | None, inputs: BatchInputs, done: int | None = None) -> str:
    """The text the user reads: counts, then each failed image and each skipped file with its reason."""
    names = inputs.names
    outcomes = summary.outcomes if summary is not None else []
    if summary is None:
        lines = [f"Labeling... {done or 0} of {len(inputs.images)} images done."]
    else:
        objects = sum(o.num_detections for o in summary.labeled)
        lines = [f"Labeled {len(summary.labeled)} of {len(outcomes)} images ({objects} objects)."]
        if summary.failed:
            lines.append(f"Failed {len(summary.failed)}:")
            lines.extend(f"  {names.get(o.source, o.source)}: {_error_text(o, names)}" for o in summary.failed)
    if inputs.skipped:
        lines.append(f"Skipped {len(inputs.skipped)} (not labeled):")
        lines.extend(f"  {s.name}: {s.reason}" for s in inputs.skipped)
    return "\n".join(lines)


def write_job_summary(
    path: Path, summary: BatchSummary, inputs: BatchInputs, settings: dict[str, Any]
) -> Path:
    """Writes ``summary.json``: every image's outcome (by the user's names), the skipped files and the settings."""
    names = inputs.names
    document = {
        "labeled": len(summary.labeled),
        "failed": len(summary.failed),
        "images": [
            {"name": names.get(o.source, o.source), "stem": o.stem, "ok": o.ok,
             "error": o.error and _error_text(o, names), "detections": o.num_detections, "seconds": round(o.seconds, 3)}
            for o in summary.outcomes
        ],
        "skipped": [{"name": s.name, "reason": s.reason} for s in inputs.skipped],
        "settings": settings,
    }
    return atomic_write_text(path, json.dumps(document, indent=1))


def upload_path(value: Any) -> tuple[Path, str] | None:
    """``(file on disk, name it was uploaded as)`` from whatever Gradio hands over for a file, or None.

    Gradio passes a path string, a dict (``{"path": ..., "orig_name": ...}``, when preprocessing
    is off) or a ``FileData`` object, depending on the component and the event's settings.
    """
    if value is None:
        return None
    if isinstance(value, (str, os.PathLike)):
        path = Path(value)
        return path, path.name
    get = value.get if isinstance(value, Mapping) else (lambda key: getattr(value, key, None))
    path = get("path")
    if not path:
        return None
    return Path(path), str(get("orig_name") or Path(path).name)
