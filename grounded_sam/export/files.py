"""Atomic file writes: a temporary file in the same folder, then a rename.

A reader (or a rerun after a crash) sees either the old file or the whole new one, never half.
Temporary files are named ``.<name>.<random>.tmp`` beside their target; a run killed with
``kill -9`` can leave one behind, and :func:`remove_temporary_files` clears them at the next start.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO

_TMP_SUFFIX = ".tmp"


def _temporary_beside(path: Path) -> tuple[int, str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    return tempfile.mkstemp(prefix=f".{path.name}.", suffix=_TMP_SUFFIX, dir=path.parent)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, *, durable: bool = True) -> Path:
    """Writes ``data`` to ``path`` atomically, creating parent folders. Returns the path.

    ``durable=False`` skips the ``fsync``: readers still never see half a file, but a power cut
    may lose the write. For files rewritten at every edit of a live session, not run outputs.
    """
    with atomic_open(path, "wb", durable=durable) as handle:
        handle.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Writes UTF-8 ``text`` to ``path`` atomically. Returns the path."""
    return atomic_write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w", *, durable: bool = True) -> Iterator[IO]:
    """Opens a temporary file for streaming a large output; renamed onto ``path`` on a clean exit.

    On an exception (KeyboardInterrupt included) the temporary file is removed and ``path`` is
    left as it was.

    Args:
        path: The final file.
        mode: ``"w"`` (UTF-8 text) or ``"wb"``.
        durable: ``fsync`` the file before the rename.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be 'w' or 'wb', but got {mode!r}")
    path = Path(path)
    fd, tmp = _temporary_beside(path)
    try:
        with os.fdopen(fd, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as handle:
            yield handle
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_copy(source: str | os.PathLike[str], path: str | os.PathLike[str]) -> Path:
    """Copies the bytes of ``source`` to ``path`` atomically (streamed, so large files stay out of memory)."""
    with open(source, "rb") as src, atomic_open(path, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    return Path(path)


def atomic_link_or_copy(source: str | os.PathLike[str], path: str | os.PathLike[str]) -> Path:
    """Makes ``path`` a hard link to ``source`` (no extra disk space), or a copy where links fail.

    Hard links fail across file systems and on some (FAT, exFAT, a few network shares); the copy
    keeps the output complete there. Either way ``path`` is replaced atomically.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:10]}{_TMP_SUFFIX}"
    try:
        os.link(source, tmp)
    except OSError:
        return atomic_copy(source, path)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def is_temporary_file(path: Path) -> bool:
    """Whether ``path`` is named like a temporary file of this module (``.<name>.<random>.tmp``)."""
    return path.name.startswith(".") and path.name.endswith(_TMP_SUFFIX)


def remove_temporary_files(folder: str | os.PathLike[str], *, recursive: bool = True) -> list[Path]:
    """Deletes leftover temporary files of interrupted atomic writes under ``folder``; returns them.

    Only names made by this module are touched, so other files in the folder are safe.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    candidates = folder.rglob(".*" + _TMP_SUFFIX) if recursive else folder.glob(".*" + _TMP_SUFFIX)
    removed = []
    for candidate in candidates:
        if candidate.is_file() and not candidate.is_symlink() and is_temporary_file(candidate):
            candidate.unlink(missing_ok=True)
            removed.append(candidate)
    return removed
