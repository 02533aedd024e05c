"""The run manifest: ``<out>/manifest.jsonl``, what makes a folder run resumable.

The first line holds the run's settings; then one line per finished image, appended (flushed and
fsynced) only after all of that image's outputs are written::

    {"kind": "run", "manifest_version": 1, "tool": "grounded_sam 0.1.0", "settings": {...}}
    {"kind": "image", "source": "/abs/in/a.jpg", "sha256": "...", "stem": "a", "status": "ok", ...}
    {"kind": "image", "source": "/abs/in/b.jpg", "sha256": "...", "stem": "b", "status": "failed", "error": "..."}

(the image fields are :class:`~grounded_sam.export.base.ImageRecord`'s). A source may have several
lines (a failure, then a success on a rerun); the last one counts. Running the same command again:

* resumes: sources whose last line is ``ok`` with the same content hash are skipped; failed ones
  are retried; a changed file is labeled again under the same output name;
* keeps output names: known sources keep their stem, so adding files never renames earlier outputs;
* refuses other settings (categories, models, pipeline options, formats...), naming what differs;
  ``force=True`` deletes this tool's outputs (only the entries in :data:`MANAGED_OUTPUTS`) first;
* deletes temporary files left by a killed run, and ignores (with a warning) a last line cut short
  by a kill during its append.

The manifest is locked while a run writes it (POSIX ``flock``), so two runs never share a folder.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import threading
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from grounded_sam.errors import OutputFolderError
from grounded_sam.export.base import ImageRecord
from grounded_sam.export.files import atomic_write_text, remove_temporary_files

logger = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.jsonl"
MANIFEST_VERSION = 1

#: What runs write at the top of an output folder; ``force`` deletes these, and nothing else.
MANAGED_OUTPUTS: tuple[str, ...] = (
    MANIFEST_NAME, "labels", "overlays", "images", "coco", "yolo", "voc", "masks", "crops",
    "mot.txt", "overlay.mp4", "track_state.json",
)

#: Settings that do not change any output; a resumed run may differ in them.
RESUME_IGNORED_SETTINGS: frozenset[str] = frozenset({"box_chunk_size"})


def plain(value: Any) -> Any:
    """``value`` as JSON would give it back (tuples as lists, paths as strings)."""
    return json.loads(json.dumps(value, default=str))


#: Settings added after runs were already being recorded, and the value an older run is taken to have had: a run
#: recorded before ``precision`` existed ran what ``auto`` meant then (bf16 on GPUs, fp32 on CPUs) and resumes with
#: ``auto`` (on a CPU with bf16 support its remaining images then run bf16: masks within 0.99 IoU of fp32).
SETTINGS_ADDED_LATER: dict[str, Any] = {"precision": "auto"}


def settings_differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Human-readable ``key: old -> new`` lines for settings that differ (ignoring :data:`RESUME_IGNORED_SETTINGS`;
    a setting of :data:`SETTINGS_ADDED_LATER` missing from ``old`` counts as its default)."""
    old = {**{k: v for k, v in SETTINGS_ADDED_LATER.items() if k in new}, **dict(old)}
    old, new = plain(old), plain(dict(new))
    lines = []
    for key in [*old, *(k for k in new if k not in old)]:
        if key in RESUME_IGNORED_SETTINGS or old.get(key) == new.get(key):
            continue
        lines.append(f"{key}: {json.dumps(old.get(key))} -> {json.dumps(new.get(key))}")
    return lines


class Manifest:
    """An open manifest; use :meth:`open` (as a context manager) rather than the constructor."""

    def __init__(self, out_dir: Path, settings: dict[str, Any], records: dict[str, ImageRecord], handle: IO[bytes]) -> None:
        self.out_dir = out_dir
        self.path = out_dir / MANIFEST_NAME
        self.settings = settings
        self._records = records
        self._handle = handle

    # ---------------------------------------------------------------- opening

    @classmethod
    def open(cls, out_dir: str | os.PathLike[str], settings: Mapping[str, Any], *, force: bool = False) -> Manifest:
        """Opens (or starts) the manifest of ``out_dir`` for a run with ``settings``.

        Raises:
            OutputFolderError: The folder holds a run with other settings (and ``force`` is off), or
                files in :data:`MANAGED_OUTPUTS` that no manifest accounts for, or a manifest it
                cannot read, or another run is writing to it now.
        """
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        settings = plain(dict(settings))
        path = out / MANIFEST_NAME
        if force and path.is_file():
            removed = remove_managed_outputs(out)
            logger.info("--force: removed %s from %s", ", ".join(removed) or "nothing", out)
        for name in MANAGED_OUTPUTS[1:]:
            remove_temporary_files(out / name)
        remove_temporary_files(out, recursive=False)

        if not path.is_file():
            leftovers = [name for name in MANAGED_OUTPUTS[1:] if _has_files(out / name)]
            if leftovers:
                raise OutputFolderError(
                    f"The output folder {out} already holds {', '.join(n + '/' for n in leftovers)} but no "
                    f"{MANIFEST_NAME}, so they were not written by a run this tool can resume or safely replace. "
                    "Choose another --out, or move those folders away first."
                )
            header = {"kind": "run", "manifest_version": MANIFEST_VERSION, "tool": _tool(), "settings": settings}
            atomic_write_text(path, json.dumps(header) + "\n")
            records: dict[str, ImageRecord] = {}
        else:
            old_settings, records = _read(path)
            differences = settings_differences(old_settings, settings)
            if differences:
                raise OutputFolderError(
                    f"The output folder {out} holds a run with other settings:\n  " + "\n  ".join(differences)
                    + "\nRun with the same settings to resume it, add --force to delete its outputs and start "
                    "again, or choose another --out."
                )
        handle = open(path, "ab")  # noqa: SIM115 - kept open (and locked) for the whole run
        try:
            _lock(handle, out)
        except BaseException:
            handle.close()
            raise
        done = sum(r.ok for r in records.values())
        if records:
            logger.info("Resuming %s: %d images done, %d failed before", out, done, len(records) - done)
        return cls(out, settings, records, handle)

    def close(self) -> None:
        if not self._handle.closed:
            self._handle.close()  # also releases the lock

    def __enter__(self) -> Manifest:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    # ---------------------------------------------------------------- reading

    def previous(self, source: str) -> ImageRecord | None:
        """The last record of ``source`` (an absolute path), if any."""
        return self._records.get(source)

    def is_done(self, source: str, sha256: str | None) -> bool:
        """Whether ``source`` was labeled with these settings and has not changed since."""
        record = self._records.get(source)
        return record is not None and record.ok and sha256 is not None and record.sha256 == sha256

    def stems(self) -> dict[str, str]:
        """Source -> stem for every source this folder has seen (so names never change)."""
        return {source: record.stem for source, record in self._records.items()}

    def dataset_records(self) -> list[ImageRecord]:
        """The records of every labeled image, sorted by stem: what dataset-level files list."""
        return sorted((r for r in self._records.values() if r.ok), key=lambda r: r.stem)

    # ---------------------------------------------------------------- writing

    def record(self, record: ImageRecord) -> None:
        """Appends one image's line, durably (flush and fsync) before returning.

        Ctrl-C or SIGTERM arriving meanwhile is held until the line is on disk AND in memory, so
        the dataset files written on the way out list exactly the images the manifest lists.
        """
        line = json.dumps({"kind": "image", **record.to_dict()}) + "\n"
        with _interrupts_deferred():
            self._handle.flush()
            fd = self._handle.fileno()
            end = os.fstat(fd).st_size
            try:
                # Straight to the file (no buffer that could hold on to half a line after a failure).
                data = line.encode("utf-8")
                while data:
                    data = data[os.write(fd, data):]
                os.fsync(fd)
            except OSError:
                # A full disk may have taken part of the line: cut it off, or the next line would be glued to it.
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, end)
                raise
            self._records[record.source] = record


@contextlib.contextmanager
def _interrupts_deferred() -> Iterator[None]:
    """Holds SIGINT/SIGTERM for the duration of the block, then re-delivers them as KeyboardInterrupt.

    Signal handlers can only be set in the main thread; elsewhere (the app's worker threads,
    where Ctrl-C does not reach the run) the block runs as is.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {}
    for number in (signal.SIGINT, signal.SIGTERM):
        previous[number] = signal.signal(number, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    if received:
        raise KeyboardInterrupt


def remove_managed_outputs(out_dir: Path, names: Iterable[str] = MANAGED_OUTPUTS) -> list[str]:
    """Deletes the entries of ``names`` directly under ``out_dir``; returns those that existed."""
    removed = []
    for name in names:
        target = out_dir / name
        if target.is_symlink() or target.is_file():
            target.unlink()
        elif target.is_dir():
            shutil.rmtree(target)
        else:
            continue
        removed.append(name)
    return removed


def _has_files(folder: Path) -> bool:
    return folder.is_dir() and any(p.is_file() for p in folder.rglob("*"))


def _tool() -> str:
    from grounded_sam import __version__

    return f"grounded_sam {__version__}"


def _read(path: Path) -> tuple[dict[str, Any], dict[str, ImageRecord]]:
    """The settings and the last record per source; repairs a last line cut short by a kill."""
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        keep = data.rfind(b"\n") + 1
        logger.warning("Ignoring the unfinished last line of %s (the run was killed while writing it)", path)
        with open(path, "r+b") as handle:
            handle.truncate(keep)
        data = data[:keep]
    lines = data.decode("utf-8", errors="replace").splitlines()
    try:
        header = json.loads(lines[0]) if lines else {}
    except json.JSONDecodeError:
        header = {}
    if header.get("kind") != "run" or not isinstance(header.get("settings"), dict):
        raise OutputFolderError(
            f"{path} is not a manifest this tool can read (its first line holds no run settings). "
            "Choose another --out, or delete the folder's outputs yourself."
        )
    if header.get("manifest_version", 0) > MANIFEST_VERSION:
        raise OutputFolderError(
            f"{path} was written by a newer version ({header.get('tool')}); update grounded_sam to resume it."
        )
    records: dict[str, ImageRecord] = {}
    for number, line in enumerate(lines[1:], start=2):
        try:
            entry = json.loads(line)
            if entry.get("kind") != "image":
                continue
            record = ImageRecord.from_dict(entry)
        except (json.JSONDecodeError, TypeError, ValueError, AttributeError) as exc:
            logger.warning("Ignoring line %d of %s: %s", number, path, exc)
            continue
        records[record.source] = record
    return header["settings"], records


def _lock(handle: IO[bytes], out: Path) -> None:
    try:
        import fcntl
    except ImportError:  # Windows: no advisory lock; one run per folder is then up to the user
        return
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        raise OutputFolderError(
            f"Another run is writing to {out} right now. Wait for it to finish, or choose another --out."
        ) from exc
