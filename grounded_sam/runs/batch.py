"""Labeling many images: collect inputs, name outputs uniquely, write each image as it is done.

Two entry points share one loop:

* :func:`run_labeling`, for the CLI and the app: a whole folder run into an output folder, with
  the dataset formats, the manifest (resume, refusal of other settings, ``force``), Ctrl-C handling
  and the dataset-level files assembled at the end.
* :func:`label_images`, the bare loop over a list of writers (no manifest).

Where the models run is the loop's engine: :class:`LocalEngine` (this process, the default) or
:class:`~grounded_sam.runs.ray_engine.RayEngine` (workers on a Ray cluster). An engine only turns
image paths into detections; everything else (names, resume and skips, the writes, the manifest) is
this module's, whatever the engine, so both end with the same files.

One failed image is recorded with its reason and never stops the run; every image's outputs are
written as soon as it is labeled (atomically), and nothing is held back in memory: once an image
is done only its small record remains, and dataset-level files are assembled from the per-image
JSON files one image at a time.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import time
import traceback
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any, Protocol

import numpy as np

from grounded_sam.categories import Categories, CategoriesLike, parse_categories
from grounded_sam.errors import DiskFullError, GroundedSamError, InputError
from grounded_sam.export.base import ImageRecord, LabeledImage, OutputWriter
from grounded_sam.export.formats import build_writers, parse_formats
from grounded_sam.inputs.images import IMAGE_EXTENSIONS, is_image_path, load_image
from grounded_sam.naming import sanitize_stem, unique_name

logger = logging.getLogger(__name__)


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
    """What happened to one image.

    Attributes:
        source: The input path.
        stem: Its output name.
        ok: Labeled now, or earlier (``skipped``).
        error: Why it failed.
        num_detections: Objects found.
        outputs: Files written for it (for a skipped image, those written by the earlier run).
        seconds: Time it took.
        skipped: Already labeled with the same settings by an earlier run into the same folder.
        worker: The engine's worker that labeled it (``host/id`` for Ray); None in this process.
    """

    source: str
    stem: str
    ok: bool
    error: str | None = None
    num_detections: int = 0
    outputs: list[str] = field(default_factory=list)
    seconds: float = 0.0
    skipped: bool = False
    worker: str | None = None


@dataclass
class BatchSummary:
    """The result of a run: every image's outcome, in input order.

    Attributes:
        outcomes: One per image reached (all of them unless the run was interrupted).
        dataset_outputs: Dataset-level files written at the end (COCO JSON, ``data.yaml``...).
        total: Images the run was given.
        out_dir: The output folder (for :func:`run_labeling`).
        interrupted: Stopped early (Ctrl-C, or ``should_stop``); a rerun resumes.
    """

    outcomes: list[ImageOutcome] = field(default_factory=list)
    dataset_outputs: list[str] = field(default_factory=list)
    total: int | None = None
    out_dir: Path | None = None
    interrupted: bool = False

    @property
    def labeled(self) -> list[ImageOutcome]:
        """Images labeled by this run."""
        return [o for o in self.outcomes if o.ok and not o.skipped]

    @property
    def skipped(self) -> list[ImageOutcome]:
        """Images an earlier run had already labeled with the same settings."""
        return [o for o in self.outcomes if o.skipped]

    @property
    def failed(self) -> list[ImageOutcome]:
        return [o for o in self.outcomes if not o.ok]

    @property
    def per_worker(self) -> dict[str, int]:
        """Images each worker labeled, by worker name; empty when they were labeled in this process."""
        return dict(sorted(Counter(o.worker for o in self.labeled if o.worker is not None).items()))

    def as_text(self) -> str:
        """A short human-readable report: counts, failures with reasons, and where outputs are."""
        total = self.total if self.total is not None else len(self.outcomes)
        objects = sum(o.num_detections for o in self.labeled)
        lines = [f"Labeled {len(self.labeled)} of {total} images ({objects} objects)."]
        if self.skipped:
            lines.append(f"Skipped {len(self.skipped)} already labeled by an earlier run with the same settings.")
        if self.per_worker:
            lines.append(f"Labeled per worker: {', '.join(f'{name} {count}' for name, count in self.per_worker.items())}.")
        if self.failed:
            lines.append(f"Failed {len(self.failed)}:")
            lines.extend(f"  {o.source}: {o.error}" for o in self.failed)
        if self.interrupted:
            lines.append(f"Interrupted after {len(self.outcomes)} of {total} images: "
                         "run the same command again to resume.")
        if self.out_dir is not None:
            lines.append(f"Outputs in {self.out_dir}/")
            lines.extend(f"  {_display(p, self.out_dir)}" for p in self.dataset_outputs)
        return "\n".join(lines)


def _display(path: str, out_dir: Path) -> str:
    try:
        return Path(path).relative_to(out_dir).as_posix()
    except ValueError:
        return path


# ------------------------------------------------------------------------------------ inputs and names


def collect_images(inputs: Iterable[str | os.PathLike[str]]) -> list[InputImage]:
    """Expands files and folders into the images to label.

    Folders are searched recursively for image extensions (any letter case, see
    :data:`grounded_sam.inputs.images.IMAGE_EXTENSIONS`), hidden files and folders skipped, in sorted
    order. A file given directly is always taken, whatever its suffix, so a bad file is reported
    rather than silently skipped.

    Raises:
        InputError: An input does not exist, or nothing at all was found.
    """
    inputs = list(inputs)
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


def source_key(path: str | os.PathLike[str]) -> str:
    """How the manifest names an input: its absolute path with links resolved."""
    return str(Path(path).resolve())


def assign_stems(images: Sequence[InputImage], known: Mapping[str, str] | None = None) -> list[str]:
    """Unique, sanitised output names in input order; repeats get ``-2``, ``-3``... (case-insensitively).

    Args:
        images: The inputs.
        known: :func:`source_key` -> stem from an earlier run into the same folder: those sources
            keep their names, and no new source takes one of them.
    """
    known = dict(known or {})
    stems: list[str] = []
    used = {stem.casefold() for stem in known.values()}
    for image in images:
        if known:
            earlier = known.get(source_key(image.path))
            if earlier is not None:
                stems.append(earlier)
                continue
        stems.append(unique_name(sanitize_stem(image.relative), used))
    return stems


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# ------------------------------------------------------------------------------------ engines

ProgressCallback = Callable[[int, int, ImageOutcome], None]


@dataclass
class LabelJob:
    """One image an engine is asked to label (the driver has checked it is not done already).

    Attributes:
        index: Its position among the run's inputs.
        image: The input.
        stem: Its output name.
        key: How the manifest names it (:func:`source_key`), or its path without a manifest.
        digest: Hex SHA-256 of its bytes (None without a manifest).
        previous: The manifest's earlier record of it, if any.
        prepare_s: Seconds the driver spent on it before handing it over (hashing).
    """

    index: int
    image: InputImage
    stem: str
    key: str
    digest: str | None = None
    previous: ImageRecord | None = None
    prepare_s: float = 0.0


@dataclass
class Labeled:
    """What an engine hands back for one job: its detections, or why it failed.

    Attributes:
        detections: The pipeline's result (boxes xyxy pixels, masks (N, H, W) bool); None on failure.
        size: ``(width, height)`` of the upright image once it was loaded (kept for a failed image too).
        rgb: The (H, W, 3) uint8 RGB image the detections belong to, when the engine has it here;
            None makes the driver load it again with the same :func:`~grounded_sam.inputs.images.load_image`.
        error: Why it failed, as the summary and the manifest say it.
        trace: The traceback of an unexpected failure (a bug, out of memory), for the log; None for
            the failures a user can fix (a corrupt file).
        seconds: Time the engine spent on it.
        worker: The worker that labeled it (None in this process).
    """

    detections: Any = None
    size: tuple[int, int] | None = None
    rgb: np.ndarray | None = None
    error: str | None = None
    trace: str | None = None
    seconds: float = 0.0
    worker: str | None = None


#: What a full disk (or a full quota) raises: no other image would fare better, so the run stops.
_DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


def disk_full(exc: BaseException) -> bool:
    """True if ``exc`` (or what it was raised from) says the disk or the quota is full."""
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno in _DISK_FULL:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def stopped_by_full_disk(action: str, exc: BaseException) -> DiskFullError:
    """The error that stops a run whose disk filled up while ``action`` (e.g. "writing x.jpg's outputs")."""
    reason = getattr(exc, "strerror", None) or exc
    return DiskFullError(
        f"The disk is full: {action} failed ({reason}). The run stopped; the images done so far are complete. "
        "Free space where the outputs go and run the same command again: it resumes where it stopped."
    )


def _drop_and_stop(written: Iterable[str | os.PathLike[str]], action: str, exc: BaseException) -> DiskFullError:
    """Removes the files an image got before the disk filled up, and returns the error that stops the run."""
    for path in written:
        Path(path).unlink(missing_ok=True)
    return stopped_by_full_disk(action, exc)


def describe_failure(exc: BaseException) -> tuple[str, str | None]:
    """``(error, traceback)`` of one image's failure: a user-fixable error is its message alone; anything
    else is named by its type and keeps its traceback for the log (call inside the ``except`` block)."""
    if isinstance(exc, GroundedSamError):
        return str(exc), None
    return f"{type(exc).__name__}: {exc}", traceback.format_exc()


def label_one(
    pipe: Any, path: Path, categories: Categories, *, keep_image: bool = True,
    image: Callable[[], np.ndarray] | None = None,
) -> Labeled:
    """Loads one image and runs the pipeline on it: the step every engine runs for every job.

    Args:
        pipe: Anything callable as ``pipe(rgb, categories)`` returning ``sv.Detections``.
        path: The image file.
        categories: The run's parsed categories.
        keep_image: Keep the loaded RGB image in the result (an engine in another process drops it).
        image: Returns the (H, W, 3) uint8 RGB image (e.g. a decode already under way on another
            thread), raising what :func:`~grounded_sam.inputs.images.load_image` raises; default: load ``path`` now.

    Returns:
        The detections, or the failure: a failed image never raises (KeyboardInterrupt still does).
    """
    started = time.perf_counter()
    labeled = Labeled()
    try:
        rgb = image() if image is not None else load_image(path)
        height, width = rgb.shape[:2]
        labeled.size = (width, height)
        labeled.detections = pipe(rgb, categories)
        if keep_image:
            labeled.rgb = rgb
    except Exception as exc:  # noqa: BLE001 - one image's failure, whatever it is, is recorded for it
        # A model or I/O failure on one image (out of memory on a huge one, a corrupt file) is
        # recorded for that image and the run goes on: one image must never cost the other ten thousand.
        labeled.detections = None
        labeled.error, labeled.trace = describe_failure(exc)
    labeled.seconds = time.perf_counter() - started
    return labeled


def load_pipeline_models(pipe: Any) -> None:
    """Loads a pipeline's models now (a no-op for test doubles), so missing weights stop a run once, clearly."""
    detector = getattr(pipe, "detector", None)
    if getattr(detector, "family", None) != "sam3":  # a one-model pipeline never uses its segmenter
        getattr(pipe, "segmenter", None)


class Engine(Protocol):
    """Where the models run. An engine turns jobs into :class:`Labeled` results; the loop does the rest.

    ``start`` is called once before a whole run (after the output folder is checked), ``label`` with
    the run's jobs (a lazy iterable: the local engine takes one at a time), ``close`` at the end,
    whatever happened. Results may come back in any order; every job must come back exactly once,
    failed if need be, unless the run is interrupted.
    """

    name: str

    def start(self, pipe: Any) -> None:
        ...

    def label(self, pipe: Any, categories: Categories, jobs: Iterable[LabelJob]) -> Iterator[tuple[LabelJob, Labeled]]:
        ...

    def close(self) -> None:
        ...


class LocalEngine:
    """The models in this process, one image at a time, in input order.

    Args:
        prefetch: Decode (and shrink) the next image on a worker thread while the models run on this one,
            so the models never wait for a file. False decodes each image just before its models run.
    """

    name = "local"
    prefetch = True  # a class default too: subclasses need not call __init__

    def __init__(self, *, prefetch: bool = True) -> None:
        self.prefetch = prefetch

    def start(self, pipe: Any) -> None:
        load_pipeline_models(pipe)

    def label(self, pipe: Any, categories: Categories, jobs: Iterable[LabelJob]) -> Iterator[tuple[LabelJob, Labeled]]:
        if not self.prefetch:
            for job in jobs:
                yield job, label_one(pipe, job.image.path, categories)
            return
        # One image ahead at most: its decoded pixels are the only memory this costs.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="grounded-sam-decode") as decoder:
            upcoming = iter(jobs)
            job = next(upcoming, None)
            decoding = decoder.submit(load_image, job.image.path) if job is not None else None
            try:
                while job is not None and decoding is not None:
                    current, decoded = job, decoding
                    job = next(upcoming, None)
                    decoding = decoder.submit(load_image, job.image.path) if job is not None else None
                    yield current, label_one(pipe, current.image.path, categories, image=decoded.result)
            finally:
                if decoding is not None:  # a stop or Ctrl-C: the next image is not needed
                    decoding.cancel()

    def close(self) -> None:
        pass


# ------------------------------------------------------------------------------------ the loop

#: Write each image's files on a writer thread while the models run on the next image (True), or in the
#: loop's own thread before the next image starts (False: the sequential order, kept for comparison in tests).
WRITE_AHEAD = True


class _Loop:
    """Labels images through an engine and writes each as it comes back; shared by :func:`label_images`
    and :func:`run_labeling`, whatever the engine."""

    def __init__(
        self, pipe: Any, categories: Categories, writers: Sequence[OutputWriter], settings: dict[str, Any],
        *, out_dir: Path | None = None, manifest: Any = None, engine: Engine | None = None,
    ) -> None:
        self.pipe, self.categories, self.writers, self.settings = pipe, categories, writers, settings
        self.out_dir, self.manifest = out_dir, manifest
        self.engine = engine if engine is not None else LocalEngine()
        self.records: list[ImageRecord] = []  # without a manifest: the images labeled, for finalize

    def run(
        self, images: Sequence[InputImage], stems: Sequence[str], summary: BatchSummary,
        on_progress: ProgressCallback | None, should_stop: Callable[[], bool] | None,
    ) -> None:
        total = len(images)
        position: dict[int, int] = {}  # id(outcome) -> input index, to put outcomes back in input order

        def report(outcome: ImageOutcome, index: int) -> None:
            position[id(outcome)] = index
            summary.outcomes.append(outcome)
            if on_progress is not None:
                on_progress(len(summary.outcomes), total, outcome)

        def stopped() -> bool:
            if should_stop is not None and should_stop():
                summary.interrupted = True
            return summary.interrupted

        # An image's files are written (and its manifest line added) on one writer thread, in the order the
        # images come back, while the models run on the next image: the write costs no model time.
        writing: deque[tuple[int, Future[ImageOutcome]]] = deque()

        def write(job: LabelJob, labeled: Labeled) -> None:
            writing.append((job.index, writer.submit(self._finish, job, labeled)))

        def settle() -> None:
            """Waits for the images being written and reports them; a full disk (DiskFullError) raises here."""
            while writing:
                index, future = writing.popleft()
                report(future.result(), index)

        def more_to_do() -> bool:
            return len(summary.outcomes) + len(writing) < total

        def jobs() -> Iterator[LabelJob]:
            for index, (image, stem) in enumerate(zip(images, stems)):
                if stopped():
                    return
                prepared = self._prepare(index, image, stem)
                if isinstance(prepared, ImageOutcome):  # skipped
                    report(prepared, index)
                elif isinstance(prepared, tuple):  # unreadable: recorded as failed, through the writer like the rest
                    write(*prepared)
                else:
                    yield prepared

        writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="grounded-sam-writer")
        try:
            # closing(): a Stop or Ctrl-C between results still ends the engine's run (and its workers) now.
            with contextlib.closing(self.engine.label(self.pipe, self.categories, jobs())) as results:
                for job, labeled in results:
                    if WRITE_AHEAD:
                        # The images before were written while the models ran on this one. Settle them first: a
                        # full disk or a stop seen there ends the run before this image is written, as it would
                        # have before this image was labeled (its result is dropped; a rerun labels it).
                        settle()
                        if more_to_do() and stopped():
                            break
                        write(job, labeled)
                    else:
                        write(job, labeled)
                        settle()
                        if more_to_do() and stopped():
                            break
            settle()
        finally:
            # Ctrl-C or an error: the image being written is finished (atomic files, then its line) before the
            # manifest closes, and counted if it made it; nothing is left running.
            writer.shutdown(wait=True)
            for index, future in writing:
                if future.exception() is None:
                    report(future.result(), index)
                else:
                    logger.warning("Writing an image's outputs failed while the run stopped: %s", future.exception())
            # An engine may return images out of order: the summary lists them in input order.
            summary.outcomes.sort(key=lambda outcome: position.get(id(outcome), total))

    def _prepare(self, index: int, image: InputImage, stem: str) -> LabelJob | ImageOutcome | tuple[LabelJob, Labeled]:
        """The job for an image; its outcome when it was done earlier; or the job with its failure when the file
        cannot be read (to be written, i.e. recorded, like any other result)."""
        started = time.perf_counter()
        key = source_key(image.path) if self.manifest is not None else str(image.path)
        job = LabelJob(index, image, stem, key, previous=self.manifest.previous(key) if self.manifest is not None else None)
        if self.manifest is None:
            return job
        try:
            job.digest = file_sha256(image.path)
        except OSError as exc:
            error, trace = describe_failure(exc)
            job.prepare_s = time.perf_counter() - started
            return job, Labeled(error=error, trace=trace)
        job.prepare_s = time.perf_counter() - started
        previous = job.previous
        # Done, unchanged, and its files still there (someone may have deleted some): skip it.
        if self.manifest.is_done(key, job.digest) and all(self._absolute(p).is_file() for p in previous.outputs):
            return ImageOutcome(source=str(image.path), stem=stem, ok=True, skipped=True,
                                num_detections=previous.detections,
                                outputs=[str(self._absolute(p)) for p in previous.outputs])
        return job

    def _finish(self, job: LabelJob, labeled: Labeled) -> ImageOutcome:
        """Writes one image's outputs (atomically) and records it: the same steps whatever the engine."""
        started = time.perf_counter()
        image = job.image
        outcome = ImageOutcome(source=str(image.path), stem=job.stem, ok=False, worker=labeled.worker)
        error, trace = labeled.error, labeled.trace
        written: list[Path] = []
        width, height = labeled.size if labeled.size is not None else (None, None)
        if error is None:
            try:
                rgb = labeled.rgb if labeled.rgb is not None else load_image(image.path)
                height, width = rgb.shape[:2]
                item = LabeledImage(str(image.path), job.stem, rgb, labeled.detections, self.categories.class_names,
                                    dict(self.settings), source_path=image.path)
                for writer in self.writers:
                    written.extend(writer.write(item))
                outcome.ok, outcome.num_detections = True, len(labeled.detections)
            except Exception as exc:  # as in label_one: this image only
                if disk_full(exc):
                    # Every later image would fail the same way: stop here. This image's files go and it gets
                    # no manifest line, so the next run (after space is freed) labels it again.
                    raise _drop_and_stop(written, f"writing {image.path.name}'s outputs", exc) from exc
                # A writer's failure (a bug on an odd mask, a file it cannot create) costs this image only.
                error, trace = describe_failure(exc)
        if not outcome.ok:
            outcome.error = error
            if trace is None:
                logger.warning("Skipped %s: %s", image.path, error)
            else:
                logger.error("Failed on %s: %s\n%s", image.path, error, trace)
            # A failed image leaves nothing behind: no dataset may list half of it.
            for path in written:
                Path(path).unlink(missing_ok=True)
            written = []
        outcome.seconds = job.prepare_s + labeled.seconds + (time.perf_counter() - started)
        outcome.outputs = [str(p) for p in written]
        record = self._record(job.key, job.stem, job.digest, outcome, written, width, height)
        if self.manifest is None:
            if record.ok:
                self.records.append(record)
        else:
            self._remove_stale(job.previous, record)
            try:
                self.manifest.record(record)  # last: the line promises every output above is complete
            except OSError as exc:
                if not disk_full(exc):
                    raise
                # Without its line the image is labeled again on resume: its files go.
                raise _drop_and_stop(written, f"recording {image.path.name} in the manifest", exc) from exc
        return outcome

    def _relative(self, path: Path) -> str:
        if self.out_dir is not None:
            try:
                return Path(path).relative_to(self.out_dir).as_posix()
            except ValueError:
                pass
        return str(Path(path).resolve())

    def _absolute(self, relative: str) -> Path:
        return Path(relative) if self.out_dir is None else self.out_dir / relative

    def _record(
        self, key: str, stem: str, digest: str | None, outcome: ImageOutcome, written: list[Path],
        width: int | None, height: int | None,
    ) -> ImageRecord:
        outputs = tuple(self._relative(p) for p in written) if outcome.ok else ()
        return ImageRecord(
            source=key, stem=stem, status="ok" if outcome.ok else "failed", sha256=digest, error=outcome.error,
            width=width, height=height, detections=outcome.num_detections,
            labels=next((p for p in outputs if PurePath(p).parts[-2:] == ("labels", f"{stem}.json")), None),
            image_file=next((p for p in outputs if PurePath(p).parent.name == "images"), None),
            outputs=outputs, seconds=round(outcome.seconds, 3),
        )

    def _remove_stale(self, previous: ImageRecord | None, record: ImageRecord) -> None:
        """Deletes what an earlier run wrote for this source and this run did not (a changed or now failing file)."""
        if previous is None or self.out_dir is None:
            return
        for relative in set(previous.outputs) - set(record.outputs):
            path = self.out_dir / relative
            # Only files inside the output folder, whatever the manifest says.
            if ".." not in PurePath(relative).parts and not PurePath(relative).is_absolute() and path.is_file():
                path.unlink()
                logger.info("Removed %s, written for an earlier version of %s", relative, record.source)


def label_images(
    pipe: Any,
    images: Sequence[InputImage],
    categories: CategoriesLike,
    writers: Sequence[OutputWriter],
    *,
    settings: dict[str, Any] | None = None,
    on_progress: ProgressCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
    engine: Engine | None = None,
) -> BatchSummary:
    """Labels images one by one and writes each one's outputs as soon as it is done (no manifest).

    Args:
        pipe: A :class:`~grounded_sam.pipeline.GroundedSAM2` (anything callable as ``pipe(image, categories)``).
        images: From :func:`collect_images`.
        categories: Parsed once for the whole run.
        writers: Output writers; each gets every labeled image, then ``finalize(records)`` with the
            records of the images labeled now, sorted by stem.
        settings: Recorded in the outputs.
        on_progress: Called after each image with ``(done, total, outcome)``.
        should_stop: Checked before each image; True ends the run early (``summary.interrupted``).
        engine: Where the models run: :class:`LocalEngine` (default) or a
            :class:`~grounded_sam.runs.ray_engine.RayEngine`; it is closed at the end.

    Returns:
        Every image's outcome. Errors of one image are caught and recorded; KeyboardInterrupt is not.
    """
    parsed = parse_categories(categories)
    summary = BatchSummary(total=len(images))
    stems = assign_stems(images)
    loop = _Loop(pipe, parsed, writers, dict(settings or {}), engine=engine)
    try:
        loop.run(images, stems, summary, on_progress, should_stop)
    finally:
        loop.engine.close()
    records = sorted(loop.records, key=lambda r: r.stem)
    for writer in writers:
        summary.dataset_outputs.extend(str(p) for p in writer.finalize(records))
    return summary


# ------------------------------------------------------------------------------------ a whole run


def pipeline_settings(pipe: Any) -> dict[str, Any]:
    """What a run records of its pipeline: :meth:`~grounded_sam.pipeline.GroundedSAM2.settings` without the
    device, or nothing for any other ``pipe(rgb, categories)`` callable (test doubles, edited labels)."""
    settings = getattr(pipe, "settings", None)
    return settings().as_dict() if callable(settings) else {}


def run_labeling(
    pipe: Any,
    inputs: Sequence[str | os.PathLike[str]] | Sequence[InputImage],
    categories: CategoriesLike,
    out_dir: str | os.PathLike[str],
    *,
    formats: str | Iterable[str] | None = (),
    plot: bool = False,
    overlap: str = "auto",
    coco_masks: str = "rle",
    force: bool = False,
    settings: Mapping[str, Any] | None = None,
    extra_writers: Sequence[OutputWriter] = (),
    on_progress: ProgressCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
    engine: Engine | None = None,
) -> BatchSummary:
    """Labels files and folders into ``out_dir``: per-image outputs as each image is done, datasets at the end.

    Writes ``labels/<stem>.json`` for every image, plus ``images/`` and the asked ``formats``
    (see :mod:`grounded_sam.export`), ``overlays/`` with ``plot``, and ``manifest.jsonl`` (see
    :mod:`grounded_sam.runs.manifest`). Running it again with the same settings resumes; with other
    settings it is refused unless ``force``.

    Args:
        pipe: A :class:`~grounded_sam.pipeline.GroundedSAM2` (or any ``pipe(rgb, categories)``).
        inputs: Image files and folders (searched recursively), or :class:`InputImage` items.
        categories: The category prompts.
        out_dir: The output folder.
        formats: Any of :data:`FORMATS` (``"coco,yolo"``, a list, or ``"all"``).
        plot: Also write an overlay PNG per image.
        overlap: ``auto``, ``score`` or ``order``; see :mod:`grounded_sam.export.overlap`.
        coco_masks: ``rle`` (exact) or ``polygon``.
        force: Delete the previous outputs of this tool in ``out_dir`` and start again.
        settings: More settings to record (and compare on resume).
        extra_writers: Writers to run after the built-in ones (their ``settings()`` are recorded too).
        on_progress: Called after each image with ``(done, total, outcome)``.
        should_stop: Checked before each image; True ends the run early, as Ctrl-C does.
        engine: Where the models run: :class:`LocalEngine` (default, this process) or a
            :class:`~grounded_sam.runs.ray_engine.RayEngine`. The outputs and the manifest do not
            depend on it, so a run started with one engine resumes with the other.

    Returns:
        The summary; ``interrupted`` if Ctrl-C (KeyboardInterrupt) or ``should_stop`` ended it early,
        in which case the dataset-level files hold the images done so far.

    Raises:
        InputError: An input is missing, or there are no images.
        OptionError: An unknown format, overlap mode or COCO mask mode.
        OutputFolderError: ``out_dir`` holds a run with other settings, or files it cannot account for.
        DiskFullError: The disk filled up: the run stopped after the images it completed (each whole, in the
            manifest); after freeing space the same call resumes.
    """
    from grounded_sam.export.coco import check_coco_masks
    from grounded_sam.export.overlap import check_overlap_mode
    from grounded_sam.runs.manifest import MANAGED_OUTPUTS, Manifest

    parsed = parse_categories(categories)
    chosen = parse_formats(formats)
    overlap, coco_masks = check_overlap_mode(overlap), check_coco_masks(coco_masks)
    out = Path(out_dir)
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    images = list(inputs) if all(isinstance(i, InputImage) for i in inputs) else collect_images(inputs)  # type: ignore[arg-type]
    images = _outside_outputs(images, out, MANAGED_OUTPUTS)

    run_settings: dict[str, Any] = {"categories": parsed.to_spec(), **pipeline_settings(pipe), **dict(settings or {}),
                                    "formats": list(chosen), "plot": bool(plot)}
    if chosen:
        run_settings["overlap"] = overlap
    if "coco" in chosen:
        run_settings["coco_masks"] = coco_masks
    for writer in extra_writers:
        extra = getattr(writer, "settings", None)
        run_settings[f"writer:{writer.name}"] = extra() if callable(extra) else extra

    writers = [*build_writers(out, parsed.class_names, chosen, plot=plot, overlap=overlap, coco_masks=coco_masks),
               *extra_writers]
    summary = BatchSummary(total=len(images), out_dir=out)
    engine = engine if engine is not None else LocalEngine()
    with Manifest.open(out, run_settings, force=force) as manifest:
        try:
            # Load the models (or reach the cluster) now, after the folder check: missing weights
            # then stop the run once, clearly, instead of failing every image.
            engine.start(pipe)
            stems = assign_stems(images, manifest.stems())
            loop = _Loop(pipe, parsed, writers, manifest.settings, out_dir=out, manifest=manifest, engine=engine)
            try:
                loop.run(images, stems, summary, on_progress, should_stop)
            except KeyboardInterrupt:
                # The images in progress are abandoned: their files are whole (atomic writes) and, with
                # no manifest line, they are labeled again on the next run.
                summary.interrupted = True
            except DiskFullError:
                summary.interrupted = True
                _finish_if_space(writers, manifest, summary)
                raise
        finally:
            engine.close()
        finish_run(writers, manifest, summary, "images")
    return summary


def _finish_if_space(writers: Sequence[OutputWriter], manifest: Any, summary: BatchSummary) -> None:
    """Tries the dataset-level files after a full disk stopped the run; each is written atomically, so one that
    does not fit leaves the earlier version (or none) in place, never half a file."""
    try:
        finish_run(writers, manifest, summary, "images")
    except OSError as exc:
        if not disk_full(exc):
            raise
        logger.warning("No space for the dataset-level files either (%s); the next run writes them", exc)


def finish_run(writers: Sequence[OutputWriter], manifest: Any, summary: BatchSummary, unit: str) -> None:
    """Writes the dataset-level files of every item the manifest holds (after a whole run, or an interrupted one)."""
    if summary.interrupted:
        logger.warning("Interrupted: writing the dataset files for the %d %s done so far", len(summary.outcomes), unit)
    records = manifest.dataset_records()
    for writer in writers:
        summary.dataset_outputs.extend(str(p) for p in writer.finalize(records))


def _outside_outputs(images: list[InputImage], out: Path, managed: Sequence[str]) -> list[InputImage]:
    """Drops inputs inside the output folder's own folders (a rerun over ``--out``'s parent must not label its outputs)."""
    roots = {(out / name).resolve() for name in managed}
    kept = [image for image in images if roots.isdisjoint(image.path.resolve().parents)]
    if len(kept) < len(images):
        logger.warning("Left out %d inputs inside the output folder's own folders", len(images) - len(kept))
    if not kept:
        raise InputError(f"Every input is inside the output folder {out}'s own folders: nothing to label.")
    return kept
